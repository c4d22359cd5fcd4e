"""Engine-independent diarization maths: cluster window embeddings, label frames, smooth, build turns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from engines.diarization.types import SpeakerTurn

Matrix = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]


class Clusterer(Protocol):
    """Labels 0..k-1 for embeddings (and the seconds of speech each stands for), within [min, max] clusters;
    ``cannot_link`` marks pairs the segmentation heard as two voices at once."""

    def __call__(
        self,
        embeddings: Matrix,
        seconds: Matrix,
        min_clusters: int,
        max_clusters: int | None,
        cannot_link: npt.NDArray[np.bool_],
    ) -> Labels: ...


@dataclass(frozen=True)
class Window:
    """A stretch of frames [start, end) whose audio was embedded as one vector."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def normalize_rows(vectors: Matrix) -> Matrix:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit: Matrix = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def cluster(
    embeddings: Matrix,
    *,
    threshold: float,
    min_clusters: int = 1,
    max_clusters: int | None = None,
    min_cluster_size: int = 1,
    small_cluster_threshold: float | None = None,
) -> Labels:
    """Average-linkage agglomerative clustering on cosine distance; labels are 0..k-1 by first occurrence.

    The tree is cut where the mean cosine distance between two groups exceeds ``threshold``,
    then re-cut to respect [min_clusters, max_clusters]. A cluster with fewer than
    ``min_cluster_size`` members (often laughter, noise, or windows straddling two voices) must
    stand further than ``small_cluster_threshold`` from every other cluster to survive; otherwise
    it joins the nearest one (while there are more clusters than ``min_clusters``).
    """
    count = len(embeddings)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if count == 1:
        return np.zeros(1, dtype=np.int64)
    tree = linkage(normalize_rows(embeddings).astype(np.float64), method="average", metric="cosine")
    labels = fcluster(tree, t=threshold, criterion="distance")
    found = int(labels.max())
    if max_clusters is not None and found > max_clusters:
        labels = fcluster(tree, t=max_clusters, criterion="maxclust")
    elif found < min_clusters:
        labels = fcluster(tree, t=min(min_clusters, count), criterion="maxclust")
    elif min_cluster_size > 1:
        limit = threshold if small_cluster_threshold is None else small_cluster_threshold
        labels = _absorb_small(embeddings, np.asarray(labels) - 1, min_cluster_size, limit, min_clusters) + 1
    return dense_labels(np.asarray(labels) - 1)


def _absorb_small(embeddings: Matrix, labels: Labels, min_size: int, limit: float, min_clusters: int) -> Labels:
    labels = labels.copy()
    unit = normalize_rows(embeddings)
    kept: set[int] = set()  # small clusters found distinct enough to stay
    while True:
        ids, sizes = np.unique(labels, return_counts=True)
        candidates = [(size, c) for c, size in zip(ids.tolist(), sizes.tolist(), strict=True) if size < min_size]
        candidates = [item for item in candidates if item[1] not in kept]
        if len(ids) <= max(min_clusters, 1) or not candidates:
            return labels
        small = min(candidates)[1]
        members = unit[labels == small]
        others = [c for c in ids.tolist() if c != small]
        # Average-linkage distance, the same measure the tree was cut with.
        distances = [1.0 - float((members @ unit[labels == c].T).mean()) for c in others]
        nearest = int(np.argmin(distances))
        if distances[nearest] >= limit:
            kept.add(small)
        else:
            labels[labels == small] = others[nearest]


def dense_labels(labels: Labels) -> Labels:
    """Renumber labels 0..k-1 in order of first occurrence."""
    order: dict[int, int] = {}
    for label in labels.tolist():
        order.setdefault(label, len(order))
    return np.array([order[label] for label in labels.tolist()], dtype=np.int64)


def centroids(embeddings: Matrix, labels: Labels) -> Matrix:
    """Unit-norm mean embedding of each cluster, row k for label k."""
    count = int(labels.max()) + 1 if len(labels) else 0
    return normalize_rows(np.stack([embeddings[labels == k].mean(axis=0) for k in range(count)]))


def frame_scores(windows: list[Window], embeddings: Matrix, centers: Matrix, num_frames: int) -> Matrix:
    """(clusters, frames) mean cosine similarity of the windows covering each frame to each centroid.

    Overlapping windows vote on the frames they share, which places a speaker change between
    two windows' centres rather than at a window edge. Frames no window covers score -inf.
    """
    similarity = normalize_rows(embeddings) @ centers.T
    totals = np.zeros((len(centers), num_frames), dtype=np.float32)
    counts = np.zeros(num_frames, dtype=np.float32)
    for window, row in zip(windows, similarity, strict=True):
        totals[:, window.start : window.end] += row[:, None]
        counts[window.start : window.end] += 1
    scores = np.full_like(totals, -np.inf)
    covered = counts > 0
    scores[:, covered] = totals[:, covered] / counts[covered]
    return scores


def smooth(labels: Labels, min_run: int) -> Labels:
    """Fold runs shorter than ``min_run`` frames into their longer neighbour, shortest first."""
    runs = _runs(labels)
    while len(runs) > 1:
        index = min(range(len(runs)), key=lambda i: runs[i][2] - runs[i][1])
        label, start, end = runs[index]
        if end - start >= min_run:
            break
        left = runs[index - 1] if index > 0 else None
        right = runs[index + 1] if index + 1 < len(runs) else None
        pick = left if right is None or (left is not None and left[2] - left[1] >= right[2] - right[1]) else right
        assert pick is not None
        runs[index] = (pick[0], start, end)
        runs = _merge_runs(runs)
    out = np.empty_like(labels)
    for label, start, end in runs:
        out[start:end] = label
    return out


def _runs(labels: Labels) -> list[tuple[int, int, int]]:
    """(label, start, end) for each maximal run of equal labels."""
    if len(labels) == 0:
        return []
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = [0, *edges.tolist()]
    ends = [*edges.tolist(), len(labels)]
    return [(int(labels[s]), s, e) for s, e in zip(starts, ends, strict=True)]


def _merge_runs(runs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    merged: list[tuple[int, int, int]] = []
    for label, start, end in runs:
        if merged and merged[-1][0] == label:
            merged[-1] = (label, merged[-1][1], end)
        else:
            merged.append((label, start, end))
    return merged


def region_turns(labels: Labels, region: Window, frame_seconds: float) -> list[tuple[float, float, int]]:
    """(start s, end s, cluster) for each run of labels inside one speech region."""
    return [
        ((region.start + start) * frame_seconds, (region.start + end) * frame_seconds, label)
        for label, start, end in _runs(labels)
    ]


def build_turns(pieces: list[tuple[float, float, int]], *, merge_gap: float, named: bool = True) -> list[SpeakerTurn]:
    """Join same-speaker pieces separated by at most ``merge_gap`` s; name speakers by first appearance.

    With ``named=False`` the speaker of each turn is the cluster number as a string.
    """
    joined: list[tuple[float, float, int]] = []
    for start, end, label in sorted(pieces):
        if joined and joined[-1][2] == label and start - joined[-1][1] <= merge_gap:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end), label)
        else:
            joined.append((start, end, label))
    if not named:
        return [SpeakerTurn(round(float(s), 3), round(float(e), 3), str(label)) for s, e, label in joined]
    names: dict[int, str] = {}
    turns = []
    for start, end, label in joined:
        name = names.setdefault(label, f"SPEAKER_{len(names):02d}")
        turns.append(SpeakerTurn(start=round(float(start), 3), end=round(float(end), 3), speaker=name))
    return turns


def agglomerate(
    embeddings: Matrix,
    seconds: npt.NDArray[np.float32],
    *,
    threshold: float,
    min_clusters: int = 1,
    max_clusters: int | None = None,
    min_speaker_s: float = 0.0,
    keep_threshold: float | None = None,
    cannot_link: npt.NDArray[np.bool_] | None = None,
    penalty: float = 1.0,
) -> Labels:
    """Average-linkage clustering on cosine distance, with the speech each embedding stands for.

    The tree is cut at ``threshold`` (then re-cut to respect [min_clusters, max_clusters]). A
    cluster holding less than ``min_speaker_s`` seconds of speech (a cough, laughter, a few words
    in another voice quality) joins its nearest cluster unless it stands further than
    ``keep_threshold`` from all of them. Labels are 0..k-1 by first occurrence.

    ``cannot_link`` (count × count) marks pairs known to be different voices; their distance is
    raised to at least ``penalty``, so groups holding such pairs merge later (average linkage
    averages the penalty in, so one doubtful pair cannot veto a merge on its own).
    """
    count = len(embeddings)
    if count <= 1:
        return np.zeros(count, dtype=np.int64)
    unit = normalize_rows(embeddings).astype(np.float64)
    distances = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    if cannot_link is not None:
        distances = np.where(cannot_link, np.maximum(distances, penalty), distances)
    np.fill_diagonal(distances, 0.0)
    tree = linkage(squareform(distances, checks=False), method="average")
    labels = np.asarray(fcluster(tree, t=threshold, criterion="distance")) - 1
    found = int(labels.max()) + 1
    if max_clusters is not None and found > max_clusters:
        return dense_labels(np.asarray(fcluster(tree, t=max_clusters, criterion="maxclust")) - 1)
    if found < min_clusters:
        return dense_labels(np.asarray(fcluster(tree, t=min(min_clusters, count), criterion="maxclust")) - 1)
    if min_speaker_s > 0:
        labels = _absorb_brief(embeddings, labels, seconds, min_speaker_s, keep_threshold or threshold, min_clusters)
    return dense_labels(labels)


def _absorb_brief(
    embeddings: Matrix,
    labels: Labels,
    seconds: npt.NDArray[np.float32],
    min_seconds: float,
    limit: float,
    min_clusters: int,
) -> Labels:
    labels = labels.copy()
    unit = normalize_rows(embeddings)
    kept: set[int] = set()
    while True:
        ids = np.unique(labels).tolist()
        brief = [(float(seconds[labels == c].sum()), c) for c in ids if c not in kept]
        brief = [item for item in brief if item[0] < min_seconds]
        if len(ids) <= max(min_clusters, 1) or not brief:
            return labels
        small = min(brief)[1]
        members = unit[labels == small]
        others = [c for c in ids if c != small]
        distances = [1.0 - float((members @ unit[labels == c].T).mean()) for c in others]
        nearest = int(np.argmin(distances))
        if distances[nearest] >= limit:
            kept.add(small)
        else:
            labels[labels == small] = others[nearest]
