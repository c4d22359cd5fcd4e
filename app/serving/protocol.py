"""Typed requests for the audio endpoints, free of any web-framework types."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from app.settings import UsageKind
from engines.types import TranscriptResult


class ResponseFormat(StrEnum):
    JSON = "json"
    TEXT = "text"
    SRT = "srt"
    VTT = "vtt"
    VERBOSE_JSON = "verbose_json"
    DIARIZED_JSON = "diarized_json"


TRANSLATION_FORMATS = frozenset(
    {ResponseFormat.JSON, ResponseFormat.TEXT, ResponseFormat.SRT, ResponseFormat.VTT, ResponseFormat.VERBOSE_JSON}
)


# File chunking only: realtime turn detection has its own ServerVadConfig (500 ms of silence, idle timeout).
@dataclass(frozen=True)
class ServerVad:
    """OpenAI's ``server_vad`` chunking parameters (defaults as documented by OpenAI)."""

    threshold: float = 0.5
    silence_duration_ms: int = 200
    prefix_padding_ms: int = 300


@dataclass(frozen=True)
class ChunkingStrategy:
    type: Literal["auto", "server_vad"]
    vad: ServerVad = field(default_factory=ServerVad)


@dataclass(frozen=True)
class KnownSpeaker:
    name: str
    reference: bytes  # decoded bytes of the data URL


@dataclass(frozen=True)
class AudioRequest:
    """One transcription or translation request, validated."""

    task: Literal["transcribe", "translate"]
    file: bytes
    model: str
    response_format: ResponseFormat = ResponseFormat.JSON
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    segment_timestamps: bool = True
    logprobs: bool = False
    stream: bool = False
    chunking: ChunkingStrategy | None = None
    known_speakers: tuple[KnownSpeaker, ...] = ()
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    keywords: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    channels: Literal["mix", "separate", "auto"] | None = None  # None: the server's default_channels


@dataclass(frozen=True)
class ModelRoute:
    """Which local model serves a requested model name, and how its usage is reported."""

    requested: str
    model_id: str
    usage: UsageKind
    diarize: bool = False


@dataclass(frozen=True)
class Rendered:
    """A whole answer: its bytes and their media type."""

    body: bytes
    media_type: str


@dataclass(frozen=True)
class StreamEvent:
    """One streamed payload, plus what the server needs to account for it (never sent)."""

    payload: dict[str, Any]
    status: int | None = None  # set on the last event: 200 for done, the error's status otherwise
    transcript: TranscriptResult | None = None
