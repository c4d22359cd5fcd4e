"""Transcription with speakers for engines without word timings: the diarizer's turns first, then
each speaker's stretch of speech transcribed on its own.

Where the recogniser times every word, words are laid on the diarizer's turns (engines/diarized.py).
Without word times that is not possible, so the audio is cut where the speaker changes instead:
consecutive turns of one speaker (a wedged turn under ``min_piece_seconds`` joins them, as in
engines/speaker_pieces.py) form a stretch of at most ``max_stretch_seconds``, and each stretch is
decoded with a little of the audio around it. Segment times are the turns' own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from engines.audio import SAMPLE_RATE, Samples
from engines.diarization.types import DiarizationOptions, Diarizer, Embedding, SpeakerTurn
from engines.diarized import named_turns, wait_for_turns
from engines.errors import DecodingCancelled
from engines.speaker_pieces import PieceRules, SpeakerSegment, absorb_wedged_turns
from engines.types import DecodeOptions, Transcriber, TranscriptInfo

MAX_STRETCH_SECONDS = 20.0  # a longer run of one speaker is decoded in pieces cut between turns
JOIN_GAP_SECONDS = 1.0  # turns of one speaker this close together are decoded as one stretch
CONTEXT_SECONDS = 0.2  # audio around a stretch that the recogniser hears too (a cut-off first sound)


@dataclass(frozen=True)
class Stretch:
    start: float
    end: float
    speaker: str


def stretches(turns: list[SpeakerTurn], rules: PieceRules, max_seconds: float = MAX_STRETCH_SECONDS) -> list[Stretch]:
    """One speaker's consecutive turns joined (gaps under ``JOIN_GAP_SECONDS``), at most ``max_seconds`` each."""
    out: list[Stretch] = []
    for turn in absorb_wedged_turns(turns, rules.min_piece_seconds):
        last = out[-1] if out else None
        if (
            last is not None
            and last.speaker == turn.speaker
            and turn.start - last.end < JOIN_GAP_SECONDS
            and turn.end - last.start <= max_seconds
        ):
            out[-1] = Stretch(last.start, max(last.end, turn.end), turn.speaker)
            continue
        start = turn.start
        while turn.end - start > max_seconds:  # one turn longer than a stretch: cut it evenly
            pieces = int((turn.end - start) // max_seconds) + 1
            step = (turn.end - start) / pieces
            out.append(Stretch(start, start + step, turn.speaker))
            start += step
        out.append(Stretch(start, turn.end, turn.speaker))
    return out


@dataclass
class TurnwiseRun:
    """Iterate ``segments()`` for speaker segments; ``info`` is final once they are exhausted."""

    engine: Transcriber
    options: DecodeOptions
    diarizer: Diarizer
    audio: Samples
    diarization: DiarizationOptions
    references: Mapping[str, Embedding] = field(default_factory=dict)
    threshold: float | None = None
    cancel: threading.Event | None = None
    rules: PieceRules = field(default_factory=PieceRules)
    _language: tuple[str, float] | None = field(default=None, init=False)

    @property
    def info(self) -> TranscriptInfo:
        duration = self.audio.size / SAMPLE_RATE
        language, probability = self._language or (self.options.language or "en", 0.0)
        return TranscriptInfo(
            task=self.options.task,
            language=language,
            language_probability=probability,
            duration=duration,
            prompt_tokens=self.engine.count_tokens(self.options.prompt) if self.options.prompt else 0,
            audio_tokens=self.engine.audio_tokens(duration),
        )

    def segments(self) -> Iterator[SpeakerSegment]:
        count = 0
        for stretch in stretches(self._diarized(), self.rules):
            self._check_cancel()
            low = max(0, int((stretch.start - CONTEXT_SECONDS) * SAMPLE_RATE))
            high = min(self.audio.size, int((stretch.end + CONTEXT_SECONDS) * SAMPLE_RATE))
            info, decoded = self.engine.transcribe(self.audio[low:high], self.options, self.cancel)
            try:
                pieces = list(decoded)
            finally:
                decoded.close()
            text = "".join(piece.text for piece in pieces)
            if not text.strip():
                continue
            if self._language is None:
                self._language = (info.language, info.language_probability)
            tokens = sum(len(piece.tokens) for piece in pieces)
            start, end = round(stretch.start, 3), round(stretch.end, 3)
            yield SpeakerSegment(f"seg_{count}", start, end, text, stretch.speaker, tokens)
            count += 1

    def _diarized(self) -> list[SpeakerTurn]:
        """The named turns, unless the request is cancelled first (then within one poll)."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diarize")
        try:
            args = (self.diarizer, self.audio, self.diarization, self.references, self.threshold)
            return wait_for_turns(pool.submit(named_turns, *args), self.cancel)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DecodingCancelled("transcription was cancelled")
