"""What a session reports, as plain data; the api layer renders each in the GA or the beta protocol."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.serving.realtime.config import SessionConfig
from engines.types import TokenLogprob


@dataclass(frozen=True)
class SessionChanged:
    config: SessionConfig


@dataclass(frozen=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class TimeoutTriggered:
    item_id: str
    audio_start_ms: int
    audio_end_ms: int


@dataclass(frozen=True)
class Committed:
    item_id: str
    previous_item_id: str | None


@dataclass(frozen=True)
class Cleared:
    pass


@dataclass(frozen=True)
class ItemAdded:
    item_id: str
    previous_item_id: str | None


@dataclass(frozen=True)
class TranscriptDelta:
    item_id: str
    delta: str
    first_after: float | None = None  # on a turn's first delta: seconds since its speech started


@dataclass(frozen=True)
class TurnUsage:
    """What a turn's transcription consumed, in both of OpenAI's usage shapes."""

    seconds: float
    prompt_tokens: int
    audio_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class TranscriptCompleted:
    item_id: str
    previous_item_id: str | None
    transcript: str
    language: str
    usage: TurnUsage
    logprobs: list[TokenLogprob] | None = None
    languages_requested: bool = False
    latency: float = 0.0  # seconds from the turn's commit to its transcript


@dataclass(frozen=True)
class TranscriptFailed:
    item_id: str
    previous_item_id: str | None
    error: Exception = field(compare=False)


SessionEvent = (
    SessionChanged
    | SpeechStarted
    | SpeechStopped
    | TimeoutTriggered
    | Committed
    | Cleared
    | ItemAdded
    | TranscriptDelta
    | TranscriptCompleted
    | TranscriptFailed
)
