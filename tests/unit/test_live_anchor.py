"""Where a growing turn's decodes start (engines/live/anchor.py)."""

from __future__ import annotations

from engines.audio import SAMPLE_RATE
from engines.live.anchor import Anchor, advance
from engines.live.decoding import Hypothesis


def heard(text: str, seconds: float, segments: list[tuple[float, int]]) -> Hypothesis:
    return Hypothesis(text, "en", 0.9, int(seconds * SAMPLE_RATE), segment_ends=tuple(segments))


def test_moves_to_the_last_segment_whose_words_are_all_shown() -> None:
    decode = heard("one two three. four five. six", 6.0, [(2.0, 3), (4.0, 2), (6.0, 1)])
    anchor = advance(Anchor(), decode, ["one", "two", "three.", "four", "five."])
    assert anchor == Anchor(4 * SAMPLE_RATE, 5, "en")  # and the language its words were heard in


def test_not_past_a_segment_with_words_not_yet_shown() -> None:
    decode = heard("one two three. four five. six", 6.0, [(2.0, 3), (4.0, 2), (6.0, 1)])
    assert advance(Anchor(), decode, ["one", "two", "three.", "four"]) == Anchor(2 * SAMPLE_RATE, 3, "en")
    assert advance(Anchor(), decode, ["one", "two"]) == Anchor()


def test_not_into_the_last_second_of_the_decoded_audio() -> None:
    decode = heard("one two three. four five.", 4.5, [(2.0, 3), (4.0, 2)])
    assert advance(Anchor(), decode, ["one", "two", "three.", "four", "five."]) == Anchor(2 * SAMPLE_RATE, 3, "en")


def test_counts_from_the_previous_anchor() -> None:
    start = Anchor(3 * SAMPLE_RATE, 2)
    decode = heard("three four. five", 5.0, [(2.5, 2), (5.0, 1)])  # heard from 3 s on
    anchor = advance(start, decode, ["one", "two", "three", "four.", "five"])
    assert anchor == Anchor(int(5.5 * SAMPLE_RATE), 4, "en")


def test_stays_when_the_shown_words_are_not_the_decoded_ones() -> None:
    decode = heard("one too three. four", 5.0, [(2.0, 3), (5.0, 1)])
    assert advance(Anchor(), decode, ["one", "two", "three.", "four"]) == Anchor()


def test_a_word_the_decode_added_or_dropped_does_not_hold_it_back() -> None:
    added = heard("so one two three. four", 5.0, [(2.0, 4), (5.0, 1)])
    assert advance(Anchor(), added, ["one", "two", "three.", "four"]) == Anchor(2 * SAMPLE_RATE, 3, "en")
    dropped = heard("one three four. five", 5.0, [(2.0, 3), (5.0, 1)])
    assert advance(Anchor(), dropped, ["one", "two", "three", "four.", "five"]) == Anchor(2 * SAMPLE_RATE, 4, "en")


def test_a_segment_end_must_be_two_shown_words_in_a_row() -> None:
    decode = heard("one three. four", 5.0, [(2.0, 2), (5.0, 1)])  # "two" missing right before the end
    assert advance(Anchor(), decode, ["one", "two", "three.", "four"]) == Anchor()


def test_compares_without_case_and_punctuation() -> None:
    decode = heard("One, two three. four", 5.0, [(2.0, 3), (5.0, 1)])
    assert advance(Anchor(), decode, ["one", "two", "three", "four"]) == Anchor(2 * SAMPLE_RATE, 3, "en")


def test_a_segment_timed_past_the_audio_is_never_an_anchor() -> None:
    decode = heard("one two", 3.0, [(9.0, 2)])
    assert advance(Anchor(), decode, ["one", "two"]) == Anchor()


def test_the_whole_turn_from_a_decode_after_the_anchor() -> None:
    decode = Hypothesis("five six", "en", 0.9, 2 * SAMPLE_RATE, output_tokens=2, prompt_tokens=9)
    whole = decode.after(["one", "two"], 3 * SAMPLE_RATE, word_tokens=2, prompt_tokens=0)
    assert whole.text == "one two five six" and whole.samples == 5 * SAMPLE_RATE
    assert whole.output_tokens == 4 and whole.prompt_tokens == 0
