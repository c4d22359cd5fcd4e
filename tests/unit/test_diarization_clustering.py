"""Diarization maths on synthetic embeddings: clustering with count hints, frame votes, smoothing, turns."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

from engines.diarization.clustering import (  # after the skip: scipy is optional
    Window,
    build_turns,
    centroids,
    cluster,
    frame_scores,
    region_turns,
    smooth,
)


def voices(counts: list[int], *, spread: float = 0.15, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Noisy copies of one random direction per voice, in that order."""
    rng = np.random.default_rng(seed)
    rows = []
    for count in counts:
        center = rng.standard_normal(dim)
        center /= np.linalg.norm(center)
        for _ in range(count):
            rows.append(center + spread * rng.standard_normal(dim) / np.sqrt(dim))
    return np.array(rows, dtype=np.float32)


def test_cluster_finds_the_number_of_voices_and_numbers_by_first_occurrence() -> None:
    embeddings = voices([6, 5, 4])
    order = [6, 0, 11, 1, 7, 12, 2, 8, 13, 3, 9, 14, 4, 10, 5]  # interleave the voices
    labels = cluster(embeddings[order], threshold=0.3)
    assert labels[:3].tolist() == [0, 1, 2]
    assert sorted(np.bincount(labels).tolist()) == [4, 5, 6]


def test_cluster_honours_speaker_count_hints() -> None:
    embeddings = voices([6, 5, 4])
    assert cluster(embeddings, threshold=0.3, max_clusters=2).max() == 1
    assert cluster(embeddings, threshold=0.3, min_clusters=5).max() == 4
    assert cluster(embeddings, threshold=0.3, min_clusters=2, max_clusters=2).max() == 1
    assert cluster(embeddings[:6], threshold=0.3, min_clusters=2).max() == 1  # one voice, split on request


def test_cluster_folds_tiny_clusters_unless_they_are_far_away() -> None:
    main = voices([8], seed=1)
    near = main[:1] * 0.75 + voices([1], seed=2) * 0.25  # a blend: e.g. a window across two voices
    far = voices([1], seed=3)
    labels = cluster(np.vstack([main, near]), threshold=0.05, min_cluster_size=2, small_cluster_threshold=0.4)
    assert labels.max() == 0
    labels = cluster(np.vstack([main, far]), threshold=0.3, min_cluster_size=2, small_cluster_threshold=0.4)
    assert labels.max() == 1


def test_cluster_edge_cases() -> None:
    assert cluster(np.zeros((0, 4), dtype=np.float32), threshold=0.3).size == 0
    assert cluster(voices([1]), threshold=0.3).tolist() == [0]


def test_frame_scores_split_overlapping_windows_between_centres() -> None:
    embeddings = voices([1, 1])
    windows = [Window(0, 100), Window(50, 150)]
    scores = frame_scores(windows, embeddings, centroids(embeddings, np.array([0, 1])), 200)
    labels = np.argmax(scores[:, :150], axis=0)
    assert labels[:50].tolist() == [0] * 50 and labels[100:150].tolist() == [1] * 50
    assert np.isneginf(scores[:, 150:]).all()  # not covered by any window


def test_smooth_folds_short_runs_into_the_longer_neighbour() -> None:
    labels = np.array([0] * 30 + [1] * 5 + [0] * 10 + [2] * 40, dtype=np.int64)
    smoothed = smooth(labels, min_run=20)
    assert smoothed.tolist() == [0] * 45 + [2] * 40
    assert smooth(np.array([1, 1, 1], dtype=np.int64), min_run=50).tolist() == [1, 1, 1]


def test_region_turns_and_build_turns() -> None:
    labels = np.array([3] * 100 + [1] * 50, dtype=np.int64)
    pieces = region_turns(labels, Window(200, 350), 0.01)
    assert pieces == [(2.0, 3.0, 3), (3.0, 3.5, 1)]
    pieces += [(3.8, 5.0, 1), (6.0, 7.0, 1)]
    turns = build_turns(pieces, merge_gap=0.5)
    assert [(t.start, t.end, t.speaker) for t in turns] == [
        (2.0, 3.0, "SPEAKER_00"),
        (3.0, 5.0, "SPEAKER_01"),
        (6.0, 7.0, "SPEAKER_01"),
    ]
