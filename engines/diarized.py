"""Transcription with speakers: Whisper and the diarizer run side by side on the same decoded audio,
then Whisper's words are laid on the diarizer's turns (engines.speaker_pieces)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from engines.audio import Samples
from engines.diarization.speakers import name_speakers
from engines.diarization.types import DiarizationOptions, Diarizer, Embedding, SpeakerTurn
from engines.errors import DecodingCancelled
from engines.longform import LongFormRun
from engines.speaker_pieces import PieceAssembler, PieceRules, SpeakerSegment
from engines.types import Segment, TranscriptInfo

# How often a wait for the diarizer looks at the request's cancel flag.
CANCEL_POLL_SECONDS = 0.1


@dataclass
class DiarizedTranscript:
    info: TranscriptInfo
    segments: list[SpeakerSegment]

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments).strip()

    @property
    def output_tokens(self) -> int:
        return sum(segment.tokens for segment in self.segments)


class DiarizedRun:
    """Iterate ``segments()`` for speaker segments; ``info`` as for LongFormRun."""

    def __init__(
        self,
        run: LongFormRun,
        diarizer: Diarizer,
        audio: Samples,
        options: DiarizationOptions,
        references: Mapping[str, Embedding] | None = None,
        threshold: float | None = None,
        rules: PieceRules | None = None,
    ) -> None:
        self.run = run
        self.diarizer = diarizer
        self.audio = audio
        self.options = options
        self.references = dict(references or {})
        self.threshold = threshold
        self.rules = rules or PieceRules()

    @property
    def info(self) -> TranscriptInfo:
        return self.run.info

    def _turns(self) -> list[SpeakerTurn]:
        return named_turns(self.diarizer, self.audio, self.options, self.references, self.threshold)

    def segments(self) -> Iterator[SpeakerSegment]:
        """Speaker pieces of Whisper's words on the diarizer's turns (each given out once the next is known)."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diarize")
        try:
            turns_future: Future[list[SpeakerTurn]] = pool.submit(self._turns)
            pending: list[Segment] = []
            assembler: PieceAssembler | None = None
            for segment in self.run.segments():
                pending.append(segment)
                if turns_future.done():
                    assembler = assembler or PieceAssembler(wait_for_turns(turns_future, self.run.cancel), self.rules)
                    for ready in pending:
                        yield from assembler.feed(ready)
                    pending.clear()
            assembler = assembler or PieceAssembler(wait_for_turns(turns_future, self.run.cancel), self.rules)
            for ready in pending:
                yield from assembler.feed(ready)
            yield from assembler.flush()
        finally:
            # On cancellation do not wait for a diarizer that cannot be interrupted mid-way.
            pool.shutdown(wait=False, cancel_futures=True)


def named_turns(
    diarizer: Diarizer,
    audio: Samples,
    options: DiarizationOptions,
    references: Mapping[str, Embedding],
    threshold: float | None,
) -> list[SpeakerTurn]:
    """The diarizer's turns, one speaker at a time (where voices overlap, the dominant one), with public names."""
    turns = diarizer.diarize(audio, options).exclusive
    return name_speakers(turns, diarizer=diarizer, audio=audio, references=references, threshold=threshold)


def wait_for_turns(turns: Future[list[SpeakerTurn]], cancel: threading.Event | None) -> list[SpeakerTurn]:
    """The diarizer's turns, unless the request is cancelled first (then within one poll)."""
    while True:
        try:
            return turns.result(timeout=CANCEL_POLL_SECONDS)
        except FutureTimeout:
            if cancel is not None and cancel.is_set():
                raise DecodingCancelled("diarization was cancelled") from None


__all__ = ["DiarizedRun", "DiarizedTranscript", "SpeakerSegment", "named_turns", "wait_for_turns"]
