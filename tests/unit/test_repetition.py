"""Loop and copy detection on synthetic token sequences."""

from __future__ import annotations

import pytest

from engines.repetition import (
    COMPRESSION_RATIO_THRESHOLD,
    check_window,
    compression_ratio,
    copied_fraction,
    repeated_tail,
)

SENTENCE = list(range(100, 110))  # ten distinct tokens: one short sentence
OTHER = list(range(200, 214))

# --- detection ------------------------------------------------------------------------------


def test_compression_ratio_flags_repeated_text_only() -> None:
    clean = "And so, my fellow Americans, ask not what your country can do for you."
    looping = "I don't hear that in New Jersey now. " * 6
    assert compression_ratio(clean) < COMPRESSION_RATIO_THRESHOLD
    assert compression_ratio(looping) > COMPRESSION_RATIO_THRESHOLD
    assert compression_ratio("") == 0.0


def test_a_loop_at_the_end_is_found_where_it_starts_repeating() -> None:
    tokens = OTHER + SENTENCE + SENTENCE + SENTENCE + SENTENCE[:4]  # cut off mid-sentence by the length limit
    assert repeated_tail(tokens) == len(OTHER) + len(SENTENCE)


def test_a_short_phrase_looping_is_found() -> None:
    phrase = [300, 301, 302]  # " I'm Sheila."
    tokens = OTHER + phrase * 8
    tail = repeated_tail(tokens)
    assert tail is not None and len(OTHER) + 1 <= tail <= len(OTHER) + len(phrase)


def test_clean_speech_and_short_real_repeats_are_not_loops() -> None:
    assert repeated_tail(OTHER + SENTENCE) is None
    hello = [400, 401]  # " Hello?"
    assert repeated_tail(hello + hello + OTHER) is None  # "Hello? Hello?" then the conversation
    assert repeated_tail(OTHER + hello * 3) is None  # too short to be a loop
    # A phrase said twice in the middle, then new speech: not a loop running to the end.
    assert repeated_tail(SENTENCE + SENTENCE + OTHER) is None


def test_a_window_that_repeats_the_previous_text_is_a_loop_from_its_start() -> None:
    assert repeated_tail(SENTENCE + OTHER, previous=[1, 2, *SENTENCE, *OTHER]) == 0
    assert repeated_tail(SENTENCE + OTHER, previous=OTHER[:3]) is None


def test_copied_fraction() -> None:
    assert copied_fraction(SENTENCE + OTHER, OTHER) == 1.0
    assert copied_fraction(SENTENCE, OTHER) == 0.0
    assert copied_fraction(SENTENCE, SENTENCE + OTHER) == pytest.approx(len(SENTENCE) / (len(SENTENCE) + len(OTHER)))
    assert copied_fraction(SENTENCE, SENTENCE[:3]) == 0.0  # shorter than an n-gram: nothing to compare


def test_check_window_flags() -> None:
    clean = check_window("a clean sentence", OTHER, previous=SENTENCE)
    assert not clean.repetitive and clean.describe() == "clean"
    copied = check_window("a clean sentence", SENTENCE, previous=[7, *SENTENCE])
    assert copied.copies_prompt and copied.repetitive
    looping = check_window("words " * 40, OTHER + SENTENCE * 4)
    assert looping.tail is not None and looping.compresses and looping.repetitive
    assert "repeats itself" in looping.describe()
