"""One live turn (one conversation item): its span of the stream, its stable words, its best hypotheses."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from engines.audio import SAMPLE_RATE, Samples
from engines.live.agreement import LocalAgreement
from engines.live.decoding import Hypothesis


def new_item_id() -> str:
    return "item_" + secrets.token_hex(11)


def to_ms(samples: int) -> int:
    return samples * 1000 // SAMPLE_RATE


@dataclass
class LiveTurn:
    """Open while audio arrives; frozen (``audio`` set) once committed, until its final transcript is out."""

    item_id: str
    start: int
    agreement: LocalAgreement
    speech_end: int = 0  # end of the last frame the VAD heard as speech
    heard_speech: bool = False
    paused: bool = False
    speech_epoch: int = 0  # bumped whenever speech (re)starts, so older speculative decodes are stale
    decoded_to: int = 0  # end of the audio the last live decode covered
    live_seconds: float = 0.0  # how long the last live decode took (it paces the next one)
    language: str | None = None  # pinned by the first confident detection
    speculative: Hypothesis | None = None
    speculative_epoch: int = -1
    end: int | None = None
    audio: Samples | None = None
    gate: bool = False  # the final checks for any speech first (manual commits, idle timeouts)
    previous_item_id: str | None = None
    opened_at: float = field(default_factory=time.perf_counter)
    committed_at: float | None = None
    deltas_sent: int = 0

    @property
    def committed(self) -> bool:
        return self.audio is not None

    def speculation_covers_turn(self) -> bool:
        """Whether the speculative decode heard every bit of this turn's speech (and nothing came after)."""
        spec = self.speculative
        return (
            spec is not None
            and self.speculative_epoch == self.speech_epoch
            and self.start + spec.samples >= self.speech_end
        )

    def freeze(self, end: int, audio: Samples, previous_item_id: str | None) -> None:
        self.end, self.audio, self.previous_item_id = end, audio, previous_item_id
        self.committed_at = time.perf_counter()
