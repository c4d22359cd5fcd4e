"""Speaker segments of a diarized transcript: Whisper's words laid on the diarizer's turns.

The diarizer says who speaks when; Whisper says what was said, and roughly when (its word times
drift: a word can stretch over a pause of several seconds). So the segments take their times from
the diarizer and their text from Whisper:

* every word goes to the turn it overlaps most, or to the nearest turn within ``attach_seconds``;
  a word farther than that from any speech the diarizer heard is Whisper output over non-speech
  and is left out (unless the diarizer heard no speech at all: then nothing is dropped);
* the words of one turn and one Whisper segment form a piece, and the pieces of a turn tile it:
  the first starts where the turn starts, the last ends where it ends, and two neighbours meet
  halfway between their words. A piece that would last under ``min_piece_seconds`` joins its
  neighbour in the same turn;
* a turn shorter than ``min_piece_seconds`` wedged between two turns of one other speaker (a word
  or two that the diarizer gave to another voice) is given to that speaker first.

Speaker changes stay at word level, every piece lasts as long as its share of a turn (never zero),
and pieces never overlap or go back in time, because the diarizer's one-speaker-at-a-time turns
do not.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from engines.diarization.types import SpeakerTurn
from engines.types import Segment, Word

# The shortest segment given out where no turn sets the time (Whisper can time a word at one instant).
MIN_SEGMENT_SECONDS = 0.01


@dataclass(frozen=True)
class PieceRules:
    """How words are placed on turns; see bench/DIARIZATION.md for how each value was chosen."""

    attach_seconds: float = 1.0  # a word this close to a turn (but outside every turn) joins it
    min_piece_seconds: float = 0.3  # shorter pieces join a neighbour; shorter wedged turns join theirs
    fallback_speaker: str = "A"  # the speaker when the diarizer heard nobody at all


@dataclass(frozen=True)
class SpeakerSegment:
    """A piece of one or more Whisper segments spoken by one speaker."""

    id: str
    start: float
    end: float
    text: str
    speaker: str
    tokens: int  # share of the Whisper segments' generated tokens, for usage


def absorb_wedged_turns(turns: Sequence[SpeakerTurn], min_seconds: float) -> list[SpeakerTurn]:
    """Turns shorter than ``min_seconds`` that touch a turn of one other speaker on both sides join them."""
    out: list[SpeakerTurn] = []
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    index = 0
    while index < len(ordered):
        turn = ordered[index]
        if (
            out
            and index + 1 < len(ordered)
            and turn.duration < min_seconds
            and out[-1].speaker == ordered[index + 1].speaker != turn.speaker
            and turn.start - out[-1].end < min_seconds
            and ordered[index + 1].start - turn.end < min_seconds
        ):
            following = ordered[index + 1]
            out[-1] = SpeakerTurn(out[-1].start, max(following.end, out[-1].end), out[-1].speaker)
            index += 2
            continue
        if out and out[-1].speaker == turn.speaker and turn.start <= out[-1].end:
            out[-1] = SpeakerTurn(out[-1].start, max(turn.end, out[-1].end), turn.speaker)
        else:
            out.append(turn)
        index += 1
    return out


class TurnIndex:
    """The turns sorted by start, with the turn a word belongs to found by bisection."""

    def __init__(self, turns: Sequence[SpeakerTurn]) -> None:
        self.turns = sorted(turns, key=lambda t: (t.start, t.end))
        self._starts = [t.start for t in self.turns]
        self._ends = [t.end for t in self.turns]
        # Exclusive turns never overlap, so the ends rise with the starts; the running maximum
        # keeps the search correct for any list.
        for index in range(1, len(self._ends)):
            self._ends[index] = max(self._ends[index], self._ends[index - 1])

    def __len__(self) -> int:
        return len(self.turns)

    def place(self, start: float, end: float, attach: float) -> int | None:
        """The turn overlapping [start, end] most, else the nearest within ``attach`` s, else None."""
        first = bisect.bisect_right(self._ends, start)  # turns that end after the word starts
        last = bisect.bisect_left(self._starts, end)  # ... and start before it ends
        best, best_overlap = None, 0.0
        for index in range(first, last):
            turn = self.turns[index]
            overlap = min(end, turn.end) - max(start, turn.start)
            if overlap > best_overlap or best is None:
                best, best_overlap = index, overlap
        if best is not None:
            return best
        nearest, distance = None, attach
        for index in (first - 1, first, last - 1, last):
            if 0 <= index < len(self.turns):
                turn = self.turns[index]
                gap = max(turn.start - end, start - turn.end, 0.0)
                if gap <= distance:
                    nearest, distance = index, gap
        return nearest


@dataclass
class _Draft:
    """A piece being built: words of one turn (and, unless joined, one Whisper segment)."""

    turn: int
    segment: int
    start: float
    words: list[Word] = field(default_factory=list)
    tokens: float = 0.0

    @property
    def words_end(self) -> float:
        return self.words[-1].end


class PieceAssembler:
    """Feed Whisper segments in time order; get speaker segments, each once the next one is known."""

    def __init__(self, turns: Sequence[SpeakerTurn], rules: PieceRules | None = None) -> None:
        self.rules = rules or PieceRules()
        self.index = TurnIndex(absorb_wedged_turns(turns, self.rules.min_piece_seconds))
        self._draft: _Draft | None = None
        self._held: _Draft | None = None  # a finished piece, kept until it is sure no short piece joins it
        self._held_end = 0.0
        self._count = 0

    def feed(self, segment: Segment) -> Iterator[SpeakerSegment]:
        if not segment.text.strip():
            return
        if not len(self.index):  # the diarizer heard nobody: Whisper's segments, one speaker
            yield from self._release_held()
            end = max(segment.end, segment.start + MIN_SEGMENT_SECONDS)
            yield self._emit(segment.start, end, segment.text, self.rules.fallback_speaker, len(segment.tokens))
            return
        words = segment.words or [Word(segment.text, segment.start, segment.end, 1.0)]
        share = len(segment.tokens) / len(words)
        for word in words:
            turn = self.index.place(word.start, word.end, self.rules.attach_seconds)
            if turn is None:
                continue  # far from any speech the diarizer heard
            yield from self._add(turn, segment.id, word, share)

    def flush(self) -> Iterator[SpeakerSegment]:
        if self._draft is not None:
            yield from self._finish(self._draft, self.index.turns[self._draft.turn].end)
            self._draft = None
        yield from self._release_held()

    def _add(self, turn: int, segment: int, word: Word, share: float) -> Iterator[SpeakerSegment]:
        draft = self._draft
        if draft is not None and turn < draft.turn:
            turn = draft.turn  # never back in time: a stray word stays in the current turn
        bounds = self.index.turns[turn]
        start = min(max(word.start, bounds.start), bounds.end)  # the word's time inside its turn
        word = Word(word.word, start, min(max(word.end, start), bounds.end), word.probability)
        if draft is not None and draft.turn == turn and draft.segment != segment:
            # Another Whisper segment in the same turn: the two pieces meet halfway between their words.
            boundary = (draft.words_end + word.start) / 2
            if boundary - draft.start >= self.rules.min_piece_seconds:
                yield from self._finish(draft, boundary)
                draft = self._draft = _Draft(turn, segment, boundary)
            else:
                draft.segment = segment  # too short to stand alone: the pieces join
        elif draft is None or draft.turn != turn:
            if draft is not None:
                yield from self._finish(draft, self.index.turns[draft.turn].end)
            draft = self._draft = _Draft(turn, segment, bounds.start)
        draft.words.append(word)
        draft.tokens += share

    def _finish(self, draft: _Draft, end: float) -> Iterator[SpeakerSegment]:
        held = self._held
        if held is not None and held.turn == draft.turn and end - draft.start < self.rules.min_piece_seconds:
            held.words += draft.words  # a short tail of the same turn joins the piece before it
            held.tokens += draft.tokens
            self._held_end = end
            return
        yield from self._release_held()
        self._held, self._held_end = draft, end

    def _release_held(self) -> Iterator[SpeakerSegment]:
        held, self._held = self._held, None
        if held is not None:
            text = "".join(w.word for w in held.words)
            speaker = self.index.turns[held.turn].speaker
            yield self._emit(held.start, self._held_end, text, speaker, round(held.tokens))

    def _emit(self, start: float, end: float, text: str, speaker: str, tokens: int) -> SpeakerSegment:
        piece = SpeakerSegment(f"seg_{self._count}", round(start, 3), round(end, 3), text, speaker, tokens)
        self._count += 1
        return piece


__all__ = ["MIN_SEGMENT_SECONDS", "PieceAssembler", "PieceRules", "SpeakerSegment", "TurnIndex", "absorb_wedged_turns"]
