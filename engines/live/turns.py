"""Turn detection on a live stream: speech probabilities per frame in, turn events (in samples) out.

A pure state machine with Silero's hysteresis: speech starts on a frame at or above ``threshold``;
a pause starts on a frame below ``threshold - 0.15``; the turn stops once the pause has lasted
``silence_duration_ms`` (a frame back above ``threshold`` resumes it). A turn that reaches
``max_turn_ms`` is cut at its quietest recent frame, and the next turn starts right there, so no
audio is lost or heard twice. With ``idle_timeout_ms``, a stretch without speech that long is
reported. Positions are sample indices on the stream's 16 kHz timeline.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from engines.audio import SAMPLE_RATE
from engines.live.vad_stream import FRAME_SAMPLES, Probabilities

HYSTERESIS = 0.15
CUT_LOOKBACK_FRAMES = 62  # about 2 s: where a too-long turn may be cut


@dataclass(frozen=True)
class TurnParams:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    max_turn_ms: int | None = None
    idle_timeout_ms: int | None = None


@dataclass(frozen=True)
class SpeechStarted:
    start: int  # includes the prefix padding, never before the end of the previous turn


@dataclass(frozen=True)
class PauseStarted:
    speech_end: int  # end of the last frame that was speech


@dataclass(frozen=True)
class SpeechResumed:
    at: int


@dataclass(frozen=True)
class SpeechStopped:
    end: int  # includes the silence that ended the turn
    speech_end: int
    cut: bool = False  # ended by the length limit, not by a silence


@dataclass(frozen=True)
class IdleTimeout:
    start: int
    end: int


TurnEvent = SpeechStarted | PauseStarted | SpeechResumed | SpeechStopped | IdleTimeout


def _samples(ms: int) -> int:
    return ms * SAMPLE_RATE // 1000


class TurnDetector:
    """Server VAD over a stream of frame probabilities (see the module docstring)."""

    def __init__(self, params: TurnParams) -> None:
        self.params = params  # may be replaced between feeds (a session update)
        self.frame = 0  # index of the next frame to be fed; frame k covers samples [512k, 512k + 512)
        self.in_speech = False
        self._floor = 0
        self._idle_from = 0
        self._turn_start = 0
        self._speech_end = 0
        self._pause_from: int | None = None
        self._recent: deque[tuple[int, float]] = deque(maxlen=CUT_LOOKBACK_FRAMES)

    def reset(self, floor: int) -> None:
        """Forget the current turn (after a manual commit or a clear): nothing before ``floor`` is a turn."""
        self.in_speech = False
        self._pause_from = None
        self._floor = floor
        self._idle_from = floor
        self._recent.clear()

    @staticmethod
    def _end_of(frame: int) -> int:
        return (frame + 1) * FRAME_SAMPLES

    def feed(self, probabilities: Probabilities) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        for prob in probabilities.tolist():
            self._step(self.frame, float(prob), events)
            self.frame += 1
        return events

    def _step(self, frame: int, prob: float, events: list[TurnEvent]) -> None:
        params = self.params
        end = self._end_of(frame)
        start = end - FRAME_SAMPLES
        if end <= self._floor:
            return  # audio already committed or cleared
        if not self.in_speech:
            if prob >= params.threshold:
                self.in_speech = True
                self._turn_start = max(self._floor, start - _samples(params.prefix_padding_ms))
                self._speech_end = end
                self._pause_from = None
                self._recent.clear()
                events.append(SpeechStarted(self._turn_start))
            elif params.idle_timeout_ms is not None and end - self._idle_from >= _samples(params.idle_timeout_ms):
                events.append(IdleTimeout(self._idle_from, end))
                self._idle_from = end
            return
        self._recent.append((frame, prob))
        if prob >= params.threshold:
            self._speech_end = end
            if self._pause_from is not None:
                self._pause_from = None
                events.append(SpeechResumed(start))
        elif prob < max(params.threshold - HYSTERESIS, 0.01) and self._pause_from is None:
            self._pause_from = start
            events.append(PauseStarted(self._speech_end))
        if self._pause_from is not None and end - self._pause_from >= _samples(params.silence_duration_ms):
            events.append(SpeechStopped(end, self._speech_end))
            self.in_speech = False
            self._pause_from = None
            self._floor = self._idle_from = end
            return
        if params.max_turn_ms is not None and end - self._turn_start >= _samples(params.max_turn_ms):
            self._cut(events)

    def _cut(self, events: list[TurnEvent]) -> None:
        """End a turn that is too long at its quietest recent frame; the next turn starts there."""
        quietest, _ = min(reversed(self._recent), key=lambda item: item[1])
        cut = self._end_of(quietest) - FRAME_SAMPLES // 2
        events.append(SpeechStopped(cut, min(self._speech_end, cut), cut=True))
        events.append(SpeechStarted(cut))
        self._turn_start = self._floor = cut
        self._speech_end = max(self._speech_end, cut)
        self._pause_from = None
        self._recent.clear()
