"""One turn of a realtime session (one conversation item): what the VAD heard of it, and how far decoding got.

A turn's state is in three parts, each written by one owner: ``TurnSpeech`` by the session (from
the VAD's turn events), ``TurnDecoding`` by the decoder, and ``CommittedAudio`` once, by the
session, when the turn is committed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from engines.audio import SAMPLE_RATE, Samples
from engines.live.agreement import LocalAgreement
from engines.live.anchor import Anchor
from engines.live.decoding import Hypothesis


def new_item_id() -> str:
    return "item_" + secrets.token_hex(11)


def to_ms(samples: int) -> int:
    return samples * 1000 // SAMPLE_RATE


@dataclass
class TurnSpeech:
    """What the VAD heard of an open turn; written by the session, read by the decoder."""

    end: int = 0  # end of the last frame the VAD heard as speech
    heard: bool = False
    paused: bool = False
    epoch: int = 0  # bumped whenever speech (re)starts, so older speculative decodes are stale


@dataclass
class TurnDecoding:
    """How far decoding got: the stable words and the best hypotheses; written by the decoder only."""

    agreement: LocalAgreement
    decoded_to: int  # end of the audio the last live decode covered
    live_seconds: float = 0.0  # how long the last live decode took (it paces the next one)
    language: str | None = None  # pinned by the first confident detection
    speculative: Hypothesis | None = None
    speculative_epoch: int = -1  # the speech epoch the speculative decode heard
    deltas_sent: int = 0
    anchor: Anchor = field(default_factory=Anchor)  # where the next decode of the turn starts


@dataclass(frozen=True)
class CommittedAudio:
    """A committed turn's audio (from its start to where it was committed) and place in the conversation."""

    audio: Samples
    previous_item_id: str | None
    gate: bool  # the final checks for any speech first (manual commits, idle timeouts)
    at: float = field(default_factory=time.perf_counter)


@dataclass(eq=False)
class Turn:
    """Open while audio arrives; committed (``committed`` set) once it ends. Compared by identity."""

    item_id: str
    start: int
    decoding: TurnDecoding
    speech: TurnSpeech = field(default_factory=TurnSpeech)
    committed: CommittedAudio | None = None
    opened_at: float = field(default_factory=time.perf_counter)
