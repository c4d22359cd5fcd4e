"""Data types and the engine Protocol shared by every diarization backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engines.errors import EngineError

Samples = npt.NDArray[np.float32]
Embedding = npt.NDArray[np.float32]


class DiarizationError(EngineError):
    """A diarization request that cannot be served as asked (e.g. contradictory speaker counts)."""


@dataclass(frozen=True)
class SpeakerTurn:
    """One stretch of speech by one speaker; ``speaker`` is an engine-internal cluster label."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Diarization:
    """Who speaks when, two ways: ``turns`` keeps overlapped speech (turns of different speakers may
    overlap); ``exclusive`` has one speaker at a time, overlaps given to the dominant voice, which is
    what attributing transcript words needs. Engines without overlap detection give the same list twice."""

    turns: list[SpeakerTurn]
    exclusive: list[SpeakerTurn]

    @classmethod
    def single(cls, turns: list[SpeakerTurn]) -> Diarization:
        return cls(turns, list(turns))

    @property
    def speakers(self) -> list[str]:
        """Labels in order of first appearance."""
        return list(dict.fromkeys(t.speaker for t in sorted(self.turns, key=lambda t: (t.start, t.end))))


@dataclass(frozen=True)
class DiarizationOptions:
    """Speaker-count hints; all None means the engine decides how many speakers there are."""

    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DiarizationError(f"{name} must be at least 1, got {value}.")
        if self.min_speakers is not None and self.max_speakers is not None and self.min_speakers > self.max_speakers:
            raise DiarizationError(f"min_speakers ({self.min_speakers}) exceeds max_speakers ({self.max_speakers}).")

    def bounds(self) -> tuple[int, int | None]:
        """(minimum, maximum or None) speaker count; ``num_speakers`` fixes both."""
        if self.num_speakers is not None:
            return self.num_speakers, self.num_speakers
        return self.min_speakers or 1, self.max_speakers


class Diarizer(Protocol):
    """A loaded diarization engine; safe to share between threads (implementations serialise as needed)."""

    @property
    def name(self) -> str: ...

    @property
    def match_threshold(self) -> float:
        """Cosine similarity of two ``embed()`` vectors above which they count as the same voice."""
        ...

    def diarize(self, audio: Samples, options: DiarizationOptions) -> Diarization:
        """Turns sorted by start time for 16 kHz mono float32 ``audio``; labels in order of first appearance."""
        ...

    def embed(self, audio: Samples) -> Embedding:
        """A unit-norm voice embedding of a (single-speaker) clip, comparable by cosine similarity."""
        ...
