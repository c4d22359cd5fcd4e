"""Speaker naming: letters by first appearance, known-speaker matching, and the speaker-count options."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engines.diarization.speakers import (
    appearance_order,
    cluster_embeddings,
    letter_names,
    letters,
    match_known_speakers,
    name_speakers,
    relabel,
)
from engines.diarization.types import (
    Diarization,
    DiarizationError,
    DiarizationOptions,
    Embedding,
    Samples,
    SpeakerTurn,
)

SR = 16_000


def unit(*values: float) -> Embedding:
    vector = np.array(values, dtype=np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class FakeDiarizer:
    """Each sample's value names a voice: 1.0 → x axis, 2.0 → y axis, 3.0 → z axis."""

    name = "fake"
    match_threshold = 0.8

    def __init__(self) -> None:
        self.embedded: list[int] = []

    def diarize(self, audio: Samples, options: DiarizationOptions) -> Diarization:
        raise NotImplementedError

    def embed(self, audio: Samples) -> Embedding:
        self.embedded.append(audio.size)
        counts = np.array([np.sum(audio == v) for v in (1.0, 2.0, 3.0)], dtype=np.float32)
        return (counts / np.linalg.norm(counts)).astype(np.float32)


def turn(start: float, end: float, speaker: str) -> SpeakerTurn:
    return SpeakerTurn(start=start, end=end, speaker=speaker)


def test_letters_run_past_z_like_spreadsheet_columns() -> None:
    names = list(itertools.islice(letters(), 30))
    assert names[:3] == ["A", "B", "C"]
    assert names[25:30] == ["Z", "AA", "AB", "AC", "AD"]


def test_appearance_order_follows_start_times_not_input_order() -> None:
    turns = [turn(5, 6, "x"), turn(0, 1, "y"), turn(2, 3, "x"), turn(7, 8, "z")]
    assert appearance_order(turns) == ["y", "x", "z"]


def test_letter_names_in_order_of_first_appearance() -> None:
    turns = [turn(3, 4, "SPEAKER_01"), turn(0, 1, "SPEAKER_07"), turn(5, 6, "SPEAKER_01"), turn(8, 9, "SPEAKER_00")]
    assert letter_names(turns) == {"SPEAKER_07": "A", "SPEAKER_01": "B", "SPEAKER_00": "C"}
    relabelled = relabel(turns, letter_names(turns))
    assert [t.speaker for t in relabelled] == ["A", "B", "B", "C"]
    assert [t.start for t in relabelled] == [0, 3, 5, 8]


def test_unmatched_clusters_get_the_next_free_letter() -> None:
    turns = [turn(0, 1, "k0"), turn(1, 2, "k1"), turn(2, 3, "k2"), turn(3, 4, "k3")]
    names = letter_names(turns, {"k1": "Alice", "k2": "A"})  # someone is literally called "A"
    assert names == {"k0": "B", "k1": "Alice", "k2": "A", "k3": "C"}


def test_match_assigns_best_pairs_first_one_name_per_cluster() -> None:
    references = {"alice": unit(1, 0, 0), "bob": unit(0.9, 0.1, 0)}
    clusters = {"k0": unit(1, 0.05, 0), "k1": unit(0.8, 0.6, 0)}
    named = match_known_speakers(references, clusters, threshold=0.5)
    # alice·k0 is the best pair overall; bob then takes k1 although k0 suits him better too.
    assert named == {"k0": "alice", "k1": "bob"}


def test_match_leaves_clusters_below_threshold_unnamed() -> None:
    references = {"alice": unit(1, 0, 0), "carol": unit(0, 0, 1)}
    clusters = {"k0": unit(1, 0.1, 0), "k1": unit(0, 1, 0)}
    assert match_known_speakers(references, clusters, threshold=0.8) == {"k0": "alice"}
    assert match_known_speakers(references, clusters, threshold=0.999) == {}


def test_match_with_more_references_than_clusters() -> None:
    references = {"alice": unit(1, 0, 0), "bob": unit(0, 1, 0), "carol": unit(0, 0, 1)}
    assert match_known_speakers(references, {"k0": unit(0, 0.2, 1)}, threshold=0.5) == {"k0": "carol"}


def test_cluster_embeddings_uses_each_clusters_own_audio_longest_turns_first() -> None:
    audio = np.concatenate([np.full(SR, 1.0), np.full(2 * SR, 2.0), np.full(SR, 1.0)]).astype(np.float32)
    turns = [turn(0, 1, "k0"), turn(1, 3, "k1"), turn(3, 4, "k0")]
    fake = FakeDiarizer()
    centroids = cluster_embeddings(fake, audio, turns)
    np.testing.assert_allclose(centroids["k0"], unit(1, 0, 0), atol=1e-6)
    np.testing.assert_allclose(centroids["k1"], unit(0, 1, 0), atol=1e-6)
    capped = FakeDiarizer()
    cluster_embeddings(capped, audio, turns, max_seconds=0.5)
    assert capped.embedded == [SR, 2 * SR]  # one turn each: the cap is reached after the first


def test_name_speakers_matches_references_and_letters_the_rest() -> None:
    audio = np.concatenate([np.full(SR, v) for v in (1.0, 2.0, 3.0, 1.0)]).astype(np.float32)
    turns = [turn(0, 1, "SPEAKER_00"), turn(1, 2, "SPEAKER_01"), turn(2, 3, "SPEAKER_02"), turn(3, 4, "SPEAKER_00")]
    references = {"Zoe": unit(0, 0, 1), "Xavier": unit(1, 0, 0), "Nobody": unit(1, 1, 1)}
    named = name_speakers(turns, diarizer=FakeDiarizer(), audio=audio, references=references)
    assert [t.speaker for t in named] == ["Xavier", "A", "Zoe", "Xavier"]


def test_name_speakers_without_references_gives_letters() -> None:
    turns = [turn(0, 1, "SPEAKER_01"), turn(1, 2, "SPEAKER_00")]
    assert [t.speaker for t in name_speakers(turns)] == ["A", "B"]


def test_name_speakers_with_references_needs_the_audio() -> None:
    with pytest.raises(ValueError):
        name_speakers([turn(0, 1, "k")], references={"a": unit(1, 0, 0)})


def test_options_bounds() -> None:
    assert DiarizationOptions().bounds() == (1, None)
    assert DiarizationOptions(num_speakers=3, min_speakers=1, max_speakers=5).bounds() == (3, 3)
    assert DiarizationOptions(min_speakers=2, max_speakers=4).bounds() == (2, 4)


@pytest.mark.parametrize("kwargs", [{"num_speakers": 0}, {"min_speakers": -1}, {"min_speakers": 3, "max_speakers": 2}])
def test_options_reject_impossible_counts(kwargs: dict[str, int]) -> None:
    with pytest.raises(DiarizationError):
        DiarizationOptions(**kwargs)
