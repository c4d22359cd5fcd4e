"""Which results of a window encoded shorter than 30 s are decoded again on the full window."""

from __future__ import annotations

import pytest

from engines.whisper.window_guard import full_window_reason, timed_segments

TB, EOT = 1000, 900  # timestamp_begin and end-of-text of a made-up vocabulary


def ts(seconds: float) -> int:
    return TB + round(seconds / 0.02)


def text(n: int) -> list[int]:
    return list(range(10, 10 + n))


def reason(sequence: list[int], audio: float = 10.0, no_speech: float = 0.01, passed: bool = True) -> str | None:
    return full_window_reason(
        sequence, timestamp_begin=TB, eot=EOT, audio_seconds=audio, no_speech_prob=no_speech, checks_passed=passed
    )


def test_segments_are_read_from_timestamp_pairs() -> None:
    segments = timed_segments([ts(0), *text(5), ts(2), ts(2), *text(3), ts(3.5)], TB, EOT)
    assert [(s.start, s.end, s.tokens) for s in segments] == [(0.0, 2.0, 5), (2.0, 3.5, 3)]


def test_ordinary_speech_is_kept() -> None:
    # 2 s of 6 tokens, then 4 s of 14, ending with the audio: what most windows look like
    assert reason([ts(0), *text(6), ts(2), ts(2.2), *text(14), ts(9.6)]) is None
    # more speech follows in the next window (two closing timestamps): not an early end
    assert reason([ts(0), *text(6), ts(2), ts(2)], audio=10.0) is None


def test_a_segment_stretched_over_skipped_speech_is_decoded_again() -> None:
    # 18 tokens over 12.8 s: a repeated sentence was skipped and its neighbour's times stretched
    found = reason([ts(0), *text(18), ts(12.8)], audio=13.7)
    assert found is not None and "stretched" in found


def test_speech_said_to_end_long_before_the_audio_is_decoded_again() -> None:
    found = reason([ts(0), *text(20), ts(5.0)], audio=14.7)
    assert found is not None and "end" in found
    assert reason([ts(0), *text(20), ts(5.0)], audio=7.0) is None  # within the tolerance


def test_timestamps_past_the_audio_are_decoded_again() -> None:
    found = reason([ts(0), *text(12), ts(7.0)], audio=4.9)
    assert found is not None and "past" in found


def test_failed_checks_and_unexplained_silence_are_decoded_again() -> None:
    assert reason([ts(0), *text(8), ts(3)], passed=False) is not None
    assert reason([], no_speech=0.1) is not None  # no text, yet the decoder does not call it silence
    assert reason([], no_speech=0.9) is None  # silence


@pytest.mark.parametrize("sequence", [[ts(0), *text(2), ts(0.5)], [], [ts(0), *text(1), ts(0.9)]])
def test_windows_under_a_second_are_never_decoded_again(sequence: list[int]) -> None:
    assert reason(sequence, audio=0.6, no_speech=0.1, passed=False) is None


def test_text_without_timestamps_is_judged_only_by_its_checks() -> None:
    assert reason(text(30), audio=20.0) is None
    assert reason(text(30), audio=20.0, passed=False) is not None
