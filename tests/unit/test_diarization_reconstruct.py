"""Local speakers of chunks onto one timeline: runs, constrained assignment, speaker count, both views."""

from __future__ import annotations

import numpy as np
import pytest

from engines.diarization.clustering import agglomerate
from engines.diarization.reconstruct import (
    Grid,
    Run,
    cluster_activation,
    constrained_assignment,
    frames_to_turns,
    inherit_labels,
    local_runs,
    run_mask,
    run_seconds,
    select_speakers,
    speaker_count,
)

# 10 frames per chunk, 0.1 s apart; chunks every 0.5 s (5 frames): half overlap.
GRID = Grid(chunk_step=0.5, frame_step=0.1, frame_duration=0.1, frames_per_chunk=10)


def activity(*chunks: list[str]) -> np.ndarray:
    """Chunks drawn as strings per local speaker: '1' active, '.' silent."""
    return np.array([[[c == "1" for c in row] for row in zip(*speakers, strict=True)] for speakers in chunks]).astype(
        np.float32
    )


def test_runs_are_cut_at_pauses_longer_than_the_gap() -> None:
    data = activity(["11.1...111", "1111111111"])
    runs = local_runs(data, max_gap=1)
    assert [(r.speaker, r.start, r.end) for r in runs] == [(0, 0, 4), (0, 7, 10), (1, 0, 10)]
    assert runs[0].active == 3
    # speaker 0's frames overlap speaker 1's everywhere: no clean frames at all
    assert runs[0].clean == 0 and runs[2].clean == 10 - 6


def test_run_mask_keeps_only_clean_frames_when_asked() -> None:
    data = activity(["1111......", "..1111...."])
    run = local_runs(data, max_gap=0)[0]
    assert run_mask(data, run, clean=False).tolist() == [True] * 4 + [False] * 6
    assert run_mask(data, run, clean=True).tolist() == [True] * 2 + [False] * 8


def test_two_local_speakers_of_one_chunk_never_share_a_cluster() -> None:
    runs = [Run(0, 0, 0, 5, 5, 5), Run(0, 1, 3, 8, 5, 5), Run(1, 0, 0, 4, 4, 4)]
    similarity = np.array([[0.9, 0.1], [0.8, 0.7], [0.9, 0.2]], dtype=np.float32)
    labels = constrained_assignment(runs, similarity, np.array([True, True, True]))
    # run 1 prefers cluster 0 but overlaps run 0 (another local speaker of chunk 0)
    assert labels.tolist() == [0, 1, 0]


def test_short_runs_inherit_the_nearest_labelled_run_of_their_local_speaker() -> None:
    runs = [Run(0, 0, 0, 3, 3, 3), Run(0, 0, 5, 6, 1, 1), Run(0, 1, 7, 9, 2, 2)]
    labels = inherit_labels(runs, np.array([1, -1, -1]))
    assert labels.tolist() == [1, 1, -1]  # the other local speaker has no labelled sibling


def test_overlap_and_exclusive_views() -> None:
    # one chunk: speaker 0 throughout, speaker 1 overlapping frames 4-7
    data = activity(["1111111111", "....1111.."])
    grid = Grid(chunk_step=1.0, frame_step=0.1, frame_duration=0.1, frames_per_chunk=10)
    runs = local_runs(data, max_gap=0)
    labels = np.array([0, 1])
    count = speaker_count(data, grid)
    assert count.tolist() == [1, 1, 1, 1, 2, 2, 2, 2, 1, 1]
    activation = cluster_activation(data, runs, labels, 2, grid)
    both = select_speakers(activation, count)
    assert both[:, 1].tolist() == [False] * 4 + [True] * 4 + [False] * 2
    one = select_speakers(activation, np.minimum(count, 1))
    assert one.sum(axis=1).tolist() == [1] * 10
    turns = frames_to_turns(both, grid)
    assert [(round(s, 2), round(e, 2), k) for s, e, k in turns] == [(0.0, 1.0, 0), (0.4, 0.8, 1)]


def test_a_counted_speaker_no_cluster_was_heard_for_stays_silent() -> None:
    activation = np.array([[2.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    binary = select_speakers(activation, np.array([2, 3]))
    assert binary.tolist() == [[True, False], [True, False]]


def test_speaker_count_averages_the_chunks_that_see_a_frame() -> None:
    data = activity(["1111111111", "1111111111"], ["11111.....", "1111111111"])
    count = speaker_count(data, GRID)
    assert len(count) == 15
    assert count[:5].tolist() == [2] * 5  # only chunk 0
    assert count[10:].tolist() == [1] * 5  # only chunk 1: one speaker from frame 5 on


def test_gaps_shorter_than_min_off_are_bridged() -> None:
    binary = np.array([[1], [1], [0], [1], [0], [0], [0], [1]], dtype=bool)
    grid = Grid(chunk_step=1.0, frame_step=0.1, frame_duration=0.1, frames_per_chunk=8)
    assert len(frames_to_turns(binary, grid)) == 3
    assert len(frames_to_turns(binary, grid, min_off=0.15)) == 2


def unit_rows(*rows: tuple[float, ...]) -> np.ndarray:
    matrix = np.array(rows, dtype=np.float32)
    unit: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit


def test_agglomerate_respects_cannot_link_pairs() -> None:
    # two close voices: merged at 0.3 unless the segmentation heard them together
    embeddings = unit_rows((1, 0.1, 0), (1, 0.12, 0), (1, 0.5, 0), (1, 0.52, 0))
    seconds = np.ones(4, dtype=np.float32) * 5
    assert len(set(agglomerate(embeddings, seconds, threshold=0.3).tolist())) == 1
    cannot = np.zeros((4, 4), dtype=bool)
    cannot[0, 2] = cannot[2, 0] = cannot[1, 3] = cannot[3, 1] = True
    labels = agglomerate(embeddings, seconds, threshold=0.3, cannot_link=cannot)
    assert labels.tolist() == [0, 0, 1, 1]


def test_agglomerate_folds_brief_clusters_unless_they_stand_apart() -> None:
    embeddings = unit_rows((1, 0, 0), (1, 0.05, 0), (0.7, 0.7, 0), (0, 0, 1))
    seconds = np.array([10, 10, 0.5, 0.5], dtype=np.float32)
    labels = agglomerate(embeddings, seconds, threshold=0.2, min_speaker_s=2.0, keep_threshold=0.6)
    # the 0.5-s cluster near the big one joins it; the one far from everything stays a speaker
    assert labels.tolist() == [0, 0, 0, 1]


def test_agglomerate_honours_speaker_count_bounds() -> None:
    embeddings = unit_rows((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0.1, 0))
    seconds = np.ones(4, dtype=np.float32)
    assert agglomerate(embeddings, seconds, threshold=0.3, max_clusters=2).max() == 1
    assert agglomerate(embeddings, seconds, threshold=1.5, min_clusters=3).max() == 2
    assert agglomerate(embeddings[:1], seconds[:1], threshold=0.3).tolist() == [0]


def test_long_runs_are_cut_into_equal_parts_of_at_most_max_length() -> None:
    data = activity(["1111111111"])
    runs = local_runs(data, max_gap=1, max_length=4)
    assert [(r.start, r.end, r.active) for r in runs] == [(0, 3, 3), (3, 7, 4), (7, 10, 3)]
    assert [(r.start, r.end) for r in local_runs(data, max_gap=1)] == [(0, 10)]


def test_run_seconds_count_each_frame_once_however_many_chunks_hear_it() -> None:
    # chunks every 5 frames, 10 frames long: the middle frames are heard by two chunks, the ends by one
    data = activity(["1111111111"], ["1111111111"])
    runs = local_runs(data, max_gap=0)
    seconds = run_seconds(data, runs, GRID)
    assert seconds.tolist() == pytest.approx([0.5 + 0.25, 0.25 + 0.5])
    assert float(seconds.sum()) == pytest.approx(15 * GRID.frame_step)
