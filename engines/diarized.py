"""Transcription with speakers: Whisper and the diarizer run side by side on the same decoded audio,
then every Whisper segment is split where its words change speaker."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace

from engines.audio import Samples
from engines.diarization.speakers import name_speakers
from engines.diarization.types import DiarizationOptions, Diarizer, Embedding, SpeakerTurn
from engines.errors import DecodingCancelled
from engines.longform import LongFormRun
from engines.types import Segment, TranscriptInfo, Word

# How often a wait for the diarizer looks at the request's cancel flag.
CANCEL_POLL_SECONDS = 0.1


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


SNAP_SECONDS = 0.5  # a piece edge this close to its speaker turn's edge moves onto it
BRIDGE_SECONDS = 2.0  # a same-speaker pause up to this long, inside one of their turns, stays in the piece


class TurnFitter:
    """Moves piece edges from Whisper's word times to the diarizer's speech boundaries, never across another piece.

    Word timestamps start late and end early by a few tenths of a second, and the pause between two
    pieces of one speaker inside one of their turns is part of that turn. A piece's start moves
    back to its turn's start when that is at most ``SNAP_SECONDS`` earlier; its end moves on to the
    turn's end likewise, or to the next piece when the same speaker continues within the same turn.
    The speaker of every word never changes. Each piece is held until the next one is known.
    """

    def __init__(self, turns: Sequence[SpeakerTurn]) -> None:
        self.turns = list(turns)
        self._held: SpeakerSegment | None = None
        self._floor = 0.0  # end of the last piece given out

    def feed(self, pieces: Iterable[SpeakerSegment]) -> Iterator[SpeakerSegment]:
        for piece in pieces:
            if self._held is not None:
                yield self._release(self._held, piece)
            start = piece.start
            turn = self._turn(piece)
            if turn is not None and piece.start - SNAP_SECONDS <= turn.start < piece.start:
                start = max(turn.start, self._floor)
            self._held = replace(piece, start=round(min(start, piece.start), 3))

    def flush(self) -> Iterator[SpeakerSegment]:
        if self._held is not None:
            yield self._release(self._held, None)
            self._held = None

    def _release(self, piece: SpeakerSegment, following: SpeakerSegment | None) -> SpeakerSegment:
        ceiling = following.start if following is not None else float("inf")
        end = piece.end
        turn = self._turn(piece)
        if turn is not None:
            if (
                following is not None
                and following.speaker == piece.speaker
                and 0 < following.start - piece.end <= BRIDGE_SECONDS
                and turn.start <= piece.end
                and turn.end >= following.start
            ):
                end = following.start
            elif piece.end < turn.end <= piece.end + SNAP_SECONDS:
                end = turn.end
        end = max(piece.end, min(end, ceiling))
        self._floor = end
        return replace(piece, end=round(end, 3))

    def _turn(self, piece: SpeakerSegment) -> SpeakerTurn | None:
        """The piece's speaker's turn that overlaps (or touches) it most."""
        best, best_overlap = None, -0.05
        for turn in self.turns:
            if turn.speaker != piece.speaker:
                continue
            overlap = min(piece.end, turn.end) - max(piece.start, turn.start)
            if overlap > best_overlap:
                best, best_overlap = turn, overlap
        return best


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
        """Speaker pieces of Whisper's segments, their edges fitted to the speaker turns (one piece late)."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diarize")
        try:
            turns_future: Future[list[SpeakerTurn]] = pool.submit(self._turns)
            pending: list[Segment] = []
            fitter: TurnFitter | None = None
            for segment in self.run.segments():
                pending.append(segment)
                if turns_future.done():
                    turns = self._wait(turns_future)
                    fitter = fitter or TurnFitter(turns)
                    yield from fitter.feed(self._split(pending, turns))
                    pending.clear()
            turns = self._wait(turns_future)
            fitter = fitter or TurnFitter(turns)
            yield from fitter.feed(self._split(pending, turns))
            yield from fitter.flush()
        finally:
            # On cancellation do not wait for a diarizer that cannot be interrupted mid-way.
            pool.shutdown(wait=False, cancel_futures=True)

    def _wait(self, turns: Future[list[SpeakerTurn]]) -> list[SpeakerTurn]:
        """The diarizer's turns, unless the request is cancelled first (then within one poll)."""
        while True:
            try:
                return turns.result(timeout=CANCEL_POLL_SECONDS)
            except FutureTimeout:
                cancel = self.run.cancel
                if cancel is not None and cancel.is_set():
                    raise DecodingCancelled("diarization was cancelled") from None

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
