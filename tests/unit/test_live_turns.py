"""Turn detection over per-frame speech probabilities (Silero's hysteresis), in samples."""

from __future__ import annotations

import numpy as np

from engines.live.turns import (
    IdleTimeout,
    PauseStarted,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    TurnEvent,
    TurnParams,
)
from engines.live.vad_stream import FRAME_SAMPLES as F

SPEECH, QUIET, MAYBE = 0.9, 0.05, 0.42  # MAYBE: between the two thresholds


def feed(detector: TurnDetector, *probs: float) -> list[TurnEvent]:
    return detector.feed(np.array(probs, dtype=np.float32))


def frames(ms: int) -> int:
    return ms * 16 // F  # 32 ms frames


def test_turn_starts_with_prefix_padding_and_stops_after_the_silence() -> None:
    detector = TurnDetector(TurnParams(prefix_padding_ms=64, silence_duration_ms=96))
    events = feed(detector, *[QUIET] * 10, *[SPEECH] * 5, *[QUIET] * 3)
    start = 10 * F - 64 * 16
    assert events == [SpeechStarted(start), PauseStarted(15 * F), SpeechStopped(18 * F, 15 * F)]
    assert not detector.in_speech


def test_padding_never_reaches_back_before_the_previous_turn() -> None:
    detector = TurnDetector(TurnParams(prefix_padding_ms=300, silence_duration_ms=64))
    first = feed(detector, SPEECH, SPEECH, QUIET, QUIET)
    assert first[-1] == SpeechStopped(4 * F, 2 * F)
    assert feed(detector, SPEECH) == [SpeechStarted(4 * F)]


def test_a_pause_shorter_than_the_silence_resumes_the_turn() -> None:
    detector = TurnDetector(TurnParams(prefix_padding_ms=0, silence_duration_ms=160))
    events = feed(detector, SPEECH, SPEECH, QUIET, QUIET, SPEECH, MAYBE, MAYBE, MAYBE, MAYBE, MAYBE, MAYBE)
    assert events == [SpeechStarted(0), PauseStarted(2 * F), SpeechResumed(4 * F)]
    assert detector.in_speech  # values between the thresholds neither end nor restart a turn


def test_a_turn_too_long_is_cut_at_its_quietest_recent_frame() -> None:
    detector = TurnDetector(TurnParams(prefix_padding_ms=0, silence_duration_ms=500, max_turn_ms=3200))
    probs = [SPEECH] * 100
    probs[90] = 0.3  # quieter than the rest, but no pause long enough to end the turn
    events = feed(detector, *probs)
    cut = 91 * F - F // 2
    assert SpeechStopped(cut, cut, cut=True) in events
    assert events[-1] == SpeechStarted(cut)
    assert detector.in_speech


def test_idle_timeout_repeats_while_nobody_speaks() -> None:
    detector = TurnDetector(TurnParams(idle_timeout_ms=1000))
    events = feed(detector, *[QUIET] * 70)
    assert [type(e) for e in events] == [IdleTimeout, IdleTimeout]
    first = events[0]
    assert isinstance(first, IdleTimeout) and first.start == 0 and first.end - first.start >= 16_000


def test_reset_forgets_the_current_turn() -> None:
    detector = TurnDetector(TurnParams(prefix_padding_ms=300))
    feed(detector, SPEECH, SPEECH)
    detector.reset(2 * F)
    assert not detector.in_speech
    assert feed(detector, SPEECH) == [SpeechStarted(2 * F)]
