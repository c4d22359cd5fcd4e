"""Other ways to count and group speakers on the embedded diarizer's own run embeddings, for the held-out comparison.

* ``pyannote_clusterer``: pyannote.audio's ``AgglomerativeClustering`` (the clustering of its 3.1
  pipeline: centroid linkage on unit vectors, a distance threshold, small clusters reassigned).
* ``spectral_clusterer``: spectral clustering with the number of speakers from the largest eigengap
  of the graph Laplacian, as in 3D-Speaker's CAM++ recipe: cosine affinity, each row pruned to its
  strongest ``pval`` share (at least ``min_pnum`` entries), symmetrised; k-means on the first k
  eigenvectors.

Both honour the speaker-count bounds. Neither uses the seconds each run stands for, nor the
cannot-link pairs: those belong to the engine's own clustering.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg
from scipy.cluster.vq import kmeans2

from engines.diarization.clustering import Clusterer, Labels, Matrix, dense_labels, normalize_rows

MAX_SPEAKERS = 10  # the eigengap is looked for among this many clusters at most


def pyannote_clusterer(threshold: float, min_cluster_size: int, method: str = "centroid") -> Clusterer:
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    from pyannote.audio.pipelines.clustering import AgglomerativeClustering

    clustering: Any = AgglomerativeClustering(metric="cosine")
    clustering.instantiate({"method": method, "threshold": threshold, "min_cluster_size": min_cluster_size})

    def cluster(
        embeddings: Matrix,
        seconds: Matrix,
        min_clusters: int,
        max_clusters: int | None,
        cannot_link: npt.NDArray[np.bool_],
    ) -> Labels:
        if len(embeddings) == 0:
            return np.zeros(0, dtype=np.int64)
        labels = clustering.cluster(
            normalize_rows(embeddings).astype(np.float64),
            min_clusters=min_clusters,
            max_clusters=max_clusters or max(len(embeddings), 1),
            num_clusters=min_clusters if max_clusters == min_clusters else None,
        )
        return dense_labels(np.asarray(labels, dtype=np.int64))

    return cluster


def spectral_clusterer(pval: float, min_pnum: int) -> Clusterer:
    def cluster(
        embeddings: Matrix,
        seconds: Matrix,
        min_clusters: int,
        max_clusters: int | None,
        cannot_link: npt.NDArray[np.bool_],
    ) -> Labels:
        count = len(embeddings)
        if count < 3:
            return np.zeros(count, dtype=np.int64)
        unit = normalize_rows(embeddings).astype(np.float64)
        affinity = unit @ unit.T
        keep = max(1, count - int((1 - max(min_pnum / count, pval)) * count))
        pruned = np.zeros_like(affinity)
        strongest = np.argsort(-affinity, axis=1)[:, :keep]
        rows = np.arange(count)[:, None]
        pruned[rows, strongest] = affinity[rows, strongest]
        symmetric = 0.5 * (pruned + pruned.T)
        np.fill_diagonal(symmetric, 0.0)
        laplacian = np.diag(symmetric.sum(axis=1)) - symmetric
        eigenvalues, eigenvectors = scipy.linalg.eigh(laplacian)
        upper = min(max_clusters or MAX_SPEAKERS, MAX_SPEAKERS, count - 1)
        lower = max(1, min(min_clusters, upper))
        gaps = np.diff(eigenvalues[: upper + 1])
        speakers = lower + int(np.argmax(gaps[lower - 1 : upper])) if upper > lower else lower
        if speakers <= 1:
            return np.zeros(count, dtype=np.int64)
        _, labels = kmeans2(eigenvectors[:, :speakers], speakers, minit="++", seed=0)
        return dense_labels(np.asarray(labels, dtype=np.int64))

    return cluster


__all__ = ["pyannote_clusterer", "spectral_clusterer"]
