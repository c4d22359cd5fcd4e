"""Speaker segments from Whisper's words on the diarizer's turns: times from turns, text from words."""

from __future__ import annotations

import itertools

import numpy as np

from engines.diarization.types import SpeakerTurn
from engines.speaker_pieces import PieceAssembler, PieceRules, SpeakerSegment, TurnIndex, absorb_wedged_turns
from engines.types import Segment, Word


def segment(index: int, *words: tuple[str, float, float]) -> Segment:
    items = [Word(f" {text}", start, end, 0.9) for text, start, end in words]
    text = "".join(w.word for w in items)
    return Segment(
        index, 0, items[0].start, items[-1].end, text, list(range(2 * len(items))), 0.0, -0.2, 1.2, 0.1, items
    )


def assemble(turns: list[SpeakerTurn], *segments: Segment, rules: PieceRules | None = None) -> list[SpeakerSegment]:
    assembler = PieceAssembler(turns, rules)
    out = [piece for s in segments for piece in assembler.feed(s)]
    return out + list(assembler.flush())


def shape(pieces: list[SpeakerSegment]) -> list[tuple[float, float, str, str]]:
    return [(p.start, p.end, p.speaker, p.text.strip()) for p in pieces]


def test_pieces_take_their_times_from_the_turns_and_their_speaker_per_word() -> None:
    turns = [SpeakerTurn(1.0, 4.0, "A"), SpeakerTurn(4.2, 8.0, "B")]
    whisper = segment(0, ("hello", 1.4, 1.8), ("there", 1.9, 3.2), ("hi", 4.5, 4.9), ("you", 5.0, 7.1))
    assert shape(assemble(turns, whisper)) == [(1.0, 4.0, "A", "hello there"), (4.2, 8.0, "B", "hi you")]


def test_a_word_stretched_over_a_pause_keeps_only_its_speech() -> None:
    turns = [SpeakerTurn(2.9, 3.7, "A"), SpeakerTurn(10.4, 15.3, "A")]
    # Whisper put "okay" over 4.9-7.6 and "does" over 7.6-11.2: silence by the diarizer
    whisper = segment(0, ("okay", 2.9, 3.4), ("okay", 4.9, 7.6), ("does", 7.6, 11.2), ("anyone", 11.2, 11.4))
    pieces = assemble(turns, whisper)
    assert shape(pieces) == [(2.9, 3.7, "A", "okay"), (10.4, 15.3, "A", "does anyone")]


def test_words_far_from_any_speech_are_left_out_and_near_ones_join_the_nearest_turn() -> None:
    turns = [SpeakerTurn(14.0, 20.0, "A")]
    invented = segment(0, ("so", 5.2, 5.4), ("first", 5.7, 6.4))
    near = segment(1, ("right", 13.5, 13.8), ("then", 14.2, 14.6))
    pieces = assemble(turns, invented, near, rules=PieceRules(attach_seconds=1.0))
    assert shape(pieces) == [(14.0, 20.0, "A", "right then")]
    assert pieces[0].tokens == 4  # only the kept words' share of the tokens


def test_without_any_turn_nothing_is_dropped_and_every_segment_lasts() -> None:
    pieces = assemble([], segment(0, ("one", 1.0, 1.5)), segment(1, ("I", 2.0, 2.0)))
    assert [(p.speaker, p.text.strip()) for p in pieces] == [("A", "one"), ("A", "I")]
    assert all(p.end > p.start for p in pieces)


def test_a_zero_length_word_of_its_own_turn_gets_the_turn_as_its_time() -> None:
    turns = [SpeakerTurn(10.0, 11.98, "A"), SpeakerTurn(11.98, 12.5, "B"), SpeakerTurn(12.5, 15.0, "C")]
    whisper = segment(0, ("well", 10.2, 11.9), ("I", 12.004, 12.004), ("see", 12.6, 13.0))
    pieces = assemble(turns, whisper)
    assert shape(pieces)[1] == (11.98, 12.5, "B", "I")
    assert all(p.end > p.start for p in pieces)


def test_a_short_turn_wedged_in_one_other_speakers_speech_joins_it() -> None:
    turns = [SpeakerTurn(0.0, 3.0, "A"), SpeakerTurn(3.0, 3.1, "B"), SpeakerTurn(3.1, 6.0, "A")]
    assert absorb_wedged_turns(turns, 0.3) == [SpeakerTurn(0.0, 6.0, "A")]
    whisper = segment(0, ("so", 1.0, 2.9), ("I", 3.0, 3.1), ("think", 3.2, 5.0))
    assert shape(assemble(turns, whisper)) == [(0.0, 6.0, "A", "so I think")]
    between_two = [SpeakerTurn(0.0, 3.0, "A"), SpeakerTurn(3.0, 3.1, "B"), SpeakerTurn(3.1, 6.0, "C")]
    assert absorb_wedged_turns(between_two, 0.3) == between_two


def test_two_whisper_segments_in_one_turn_meet_halfway_and_a_short_one_joins() -> None:
    turns = [SpeakerTurn(0.0, 20.0, "A")]
    first = segment(0, ("one", 0.5, 4.0))
    second = segment(1, ("two", 4.05, 4.1))
    third = segment(2, ("three", 4.15, 9.0))  # "two" alone would last 4.025-4.125: it joins "three"
    pieces = assemble(turns, first, second, third)
    assert shape(pieces) == [(0.0, 4.025, "A", "one"), (4.025, 20.0, "A", "two three")]
    assert [p.id for p in pieces] == ["seg_0", "seg_1"]


def test_turn_index_finds_overlaps_and_the_nearest_turn_by_bisection() -> None:
    index = TurnIndex([SpeakerTurn(5.0, 6.0, "B"), SpeakerTurn(0.0, 2.0, "A"), SpeakerTurn(2.5, 4.0, "A")])
    assert index.place(1.5, 2.8, attach=0.5) == 0  # 0.5 s in A's first turn (index 0 after sorting) vs 0.3
    assert index.place(1.8, 2.9, attach=0.5) == 1
    assert index.place(4.3, 4.4, attach=0.5) == 1  # nearest: 0.3 s after A's second turn
    assert index.place(4.6, 4.7, attach=0.5) == 2  # nearest: 0.3 s before B
    assert index.place(8.0, 9.0, attach=0.5) is None
    assert index.place(0.5, 0.5, attach=0.0) == 0  # a zero-length word inside a turn


def test_random_words_on_random_turns_never_give_empty_or_backward_segments() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        edges = np.sort(rng.uniform(0, 60, size=2 * rng.integers(1, 15)))
        turns = [
            SpeakerTurn(round(float(s), 3), round(float(e), 3), f"S{rng.integers(0, 3)}")
            for s, e in zip(edges[::2], edges[1::2], strict=True)
            if e - s > 0.01
        ]
        starts = np.sort(rng.uniform(0, 60, size=rng.integers(1, 40)))
        words = [(f"w{i}", float(s), float(s + rng.choice([0.0, rng.uniform(0, 3)]))) for i, s in enumerate(starts)]
        cuts = sorted({0, len(words), *rng.integers(0, len(words), size=3).tolist()})
        segments = [segment(k, *words[a:b]) for k, (a, b) in enumerate(itertools.pairwise(cuts)) if b > a]
        pieces = assemble(turns, *segments)
        for before, after in itertools.pairwise(pieces):
            assert after.start >= before.end
        assert all(p.end > p.start for p in pieces)
        kept = " ".join(p.text.strip() for p in pieces).split()
        assert kept == sorted(kept, key=lambda w: int(w[1:]))  # words keep their order
