"""Plain data types shared by the engines and the service: decoding options and transcripts."""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from engines.capabilities import Capabilities

Task = Literal["transcribe", "translate"]

# Whisper's temperature fallback schedule, used when the caller asks for temperature 0.
FALLBACK_TEMPERATURES: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class BatchPriority(IntEnum):
    """Which model calls lead a batch when the batching engine has a choice (lower goes first)."""

    FINAL = 0  # a live turn's final decode: someone waits for its completed event
    NORMAL = 1  # file requests
    BACKGROUND = 2  # a growing turn's speculative decodes (deltas)


@dataclass(frozen=True)
class DecodeOptions:
    """What one request asks of the recogniser.

    The service only sets what the model's capabilities allow (app/serving/capabilities.py). The
    search settings (``temperatures``, ``beam_size``) and the window limits (``encoder_padding_seconds``,
    ``max_new_tokens``) are hints: a family applies what its decoder has (Moonshine decodes greedily,
    with no fixed window, and reads only the first temperature and the token limit).
    """

    task: Task = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperatures: tuple[float, ...] = FALLBACK_TEMPERATURES
    word_timestamps: bool = False
    logprobs: bool = False
    beam_size: int = 5
    keywords: tuple[str, ...] = ()  # words or phrases to favour (Whisper hotwords)
    languages: tuple[str, ...] = ()  # with no `language`: detect only among these
    # None: Whisper's full 30-s window; else encode only the audio plus this much padding (live turns)
    encoder_padding_seconds: float | None = None
    # With a shortened window: decode a window whose result looks wrong again on the full window
    full_window_guard: bool = True
    # With a shortened window: round its length up to 10, 20 or 30 s (file requests; realtime turns keep
    # their exact padding, measured on their own)
    round_encoder_window: bool = True
    # When the model batches: round a shortened window up to a multiple of this many seconds instead of
    # 10, 20 or 30 s (live decodes: finer steps cost less encoding, and still let sessions share decodes)
    batch_window_step_seconds: float | None = None
    max_new_tokens: int | None = None  # per 30-s window; None: Whisper's own limit
    priority: BatchPriority = BatchPriority.NORMAL  # only matters when the model batches requests


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class TokenLogprob:
    """One decoded text token with its log-probability under the model."""

    token: str
    logprob: float
    bytes: tuple[int, ...]


@dataclass
class Segment:
    """One timed piece of a transcript. The fields are those of OpenAI's ``verbose_json`` segment
    (Whisper's own, which the API kept); a family without some of them fills neutral values."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass(frozen=True)
class TranscriptInfo:
    """Known before the first segment is decoded."""

    task: Task
    language: str
    language_probability: float
    duration: float
    prompt_tokens: int
    audio_tokens: int


@dataclass
class Transcript:
    info: TranscriptInfo
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments).strip()

    @property
    def output_tokens(self) -> int:
        return sum(len(segment.tokens) for segment in self.segments)

    @property
    def words(self) -> list[Word]:
        return [word for segment in self.segments for word in segment.words]

    @property
    def logprobs(self) -> list[TokenLogprob]:
        return [lp for segment in self.segments for lp in segment.logprobs]


class TranscriptResult(Protocol):
    """What accounting needs from any finished transcription (plain or with speakers)."""

    @property
    def info(self) -> TranscriptInfo: ...

    @property
    def text(self) -> str: ...

    @property
    def output_tokens(self) -> int: ...


class Transcriber(Protocol):
    """A loaded speech recogniser of any family (engines/families.py), or a fake in tests; shared
    between threads. Nothing outside a family's package knows more of it than this."""

    name: str

    @property
    def device(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def count_tokens(self, text: str) -> int: ...

    def audio_tokens(self, seconds: float) -> int:
        """Input tokens that ``seconds`` of audio count as in usage (the model's encoder positions)."""
        ...

    def transcribe(
        self, audio: npt.NDArray[np.float32], options: DecodeOptions, cancel: threading.Event | None = None
    ) -> tuple[TranscriptInfo, Generator[Segment, None, None]]:
        """Start decoding; segments are produced lazily, window by window."""
        ...
