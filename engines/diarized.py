"""Transcription with speakers: Whisper and the diarizer run side by side on the same decoded audio,
then every Whisper segment is split where its words change speaker."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from engines.audio import Samples
from engines.diarization.speakers import name_speakers
from engines.diarization.types import DiarizationOptions, Diarizer, Embedding, SpeakerTurn
from engines.longform import LongFormRun
from engines.types import Segment, TranscriptInfo, Word


@dataclass(frozen=True)
class SpeakerSegment:
    """A piece of one Whisper segment spoken by one speaker."""

    id: str
    start: float
    end: float
    text: str
    speaker: str
    tokens: int  # share of the Whisper segment's generated tokens, for usage


def speaker_at(turns: Sequence[SpeakerTurn], start: float, end: float) -> str | None:
    """The speaker overlapping [start, end] the most, else the nearest turn's speaker."""
    best, best_overlap = None, 0.0
    for turn in turns:
        overlap = min(end, turn.end) - max(start, turn.start)
        if overlap > best_overlap:
            best, best_overlap = turn.speaker, overlap
    if best is not None:
        return best
    middle = (start + end) / 2
    nearest = min(turns, key=lambda t: min(abs(middle - t.start), abs(middle - t.end)), default=None)
    return nearest.speaker if nearest else None


def split_by_speaker(segment: Segment, turns: Sequence[SpeakerTurn], fallback: str) -> list[tuple[str, list[Word]]]:
    """Consecutive runs of the segment's words that share a speaker."""
    runs: list[tuple[str, list[Word]]] = []
    for word in segment.words:
        speaker = speaker_at(turns, word.start, word.end) or (runs[-1][0] if runs else fallback)
        if runs and runs[-1][0] == speaker:
            runs[-1][1].append(word)
        else:
            runs.append((speaker, [word]))
    return runs


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
    ) -> None:
        self.run = run
        self.diarizer = diarizer
        self.audio = audio
        self.options = options
        self.references = dict(references or {})
        self.threshold = threshold
        self._next = 0

    @property
    def info(self) -> TranscriptInfo:
        return self.run.info

    def _turns(self) -> list[SpeakerTurn]:
        # One speaker at a time: where voices overlap, the words go to the dominant one.
        turns = self.diarizer.diarize(self.audio, self.options).exclusive
        return name_speakers(
            turns, diarizer=self.diarizer, audio=self.audio, references=self.references, threshold=self.threshold
        )

    def segments(self) -> Iterator[SpeakerSegment]:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diarize")
        try:
            turns_future: Future[list[SpeakerTurn]] = pool.submit(self._turns)
            pending: list[Segment] = []
            for segment in self.run.segments():
                pending.append(segment)
                if turns_future.done():
                    yield from self._split(pending, turns_future.result())
                    pending.clear()
            yield from self._split(pending, turns_future.result())
        finally:
            # On cancellation do not wait for a diarizer that cannot be interrupted mid-way.
            pool.shutdown(wait=False, cancel_futures=True)

    def _split(self, segments: list[Segment], turns: list[SpeakerTurn]) -> Iterator[SpeakerSegment]:
        for segment in segments:
            if not segment.text.strip():
                continue
            fallback = speaker_at(turns, segment.start, segment.end) or "A"
            runs = split_by_speaker(segment, turns, fallback) if segment.words else []
            if not runs:
                yield self._piece(segment.start, segment.end, segment.text, fallback, len(segment.tokens))
                continue
            total_words = sum(len(words) for _, words in runs)
            for speaker, words in runs:
                share = round(len(segment.tokens) * len(words) / total_words)
                yield self._piece(words[0].start, words[-1].end, "".join(w.word for w in words), speaker, share)

    def _piece(self, start: float, end: float, text: str, speaker: str, tokens: int) -> SpeakerSegment:
        piece = SpeakerSegment(f"seg_{self._next}", round(start, 3), round(end, 3), text, speaker, tokens)
        self._next += 1
        return piece
