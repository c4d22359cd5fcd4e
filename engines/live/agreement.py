"""Local agreement: which words of a growing turn's repeated hypotheses are stable enough to show.

A turn is decoded again and again as it grows. A word is committed (sent as a delta, never taken
back) once ``agree`` successive hypotheses have the same words up to and including it, compared
without case and punctuation; the last ``holdback`` words of even an agreed prefix wait for the
next round. What was committed is aligned against each new hypothesis (the decoder may revise
earlier words), so only the words after it are considered. The final hypothesis of a turn
completes it: whatever it has after the committed words is the last delta.
"""

from __future__ import annotations

import re
from collections import deque
from difflib import SequenceMatcher

_NOT_WORD = re.compile(r"[^\w']+")


def normalize(word: str) -> str:
    return _NOT_WORD.sub("", word.lower())


def align_tail(committed: list[str], hypothesis: list[str]) -> list[str]:
    """The words of ``hypothesis`` after what corresponds to all of ``committed``."""
    if not committed:
        return list(hypothesis)
    done = [normalize(w) for w in committed]
    new = [normalize(w) for w in hypothesis]
    if new[: len(done)] == done:
        return list(hypothesis[len(done) :])
    blocks = [b for b in SequenceMatcher(None, done, new, autojunk=False).get_matching_blocks() if b.size]
    if not blocks:
        return list(hypothesis[len(done) :])
    last = blocks[-1]
    # Committed words after the last match are taken to have been replaced one for one.
    position = last.b + last.size + (len(done) - (last.a + last.size))
    return list(hypothesis[min(position, len(hypothesis)) :])


MAX_LOOP_PERIOD = 3
MIN_LOOP_REPEATS = 3


def cut_loop(words: list[str]) -> list[str]:
    """``words`` without a trailing repetition loop ("to to to to", "the grass, the grass, the grass, ...").

    Greedy decoding of audio cut off mid-phrase sometimes repeats a few words until its token limit;
    the first occurrence is kept, the repeats are dropped.
    """
    keys = [normalize(w) for w in words]
    best = len(words)
    for period in range(1, MAX_LOOP_PERIOD + 1):
        start = len(keys) - period
        while start - period >= 0 and keys[start - period : start] == keys[start : start + period]:
            start -= period
        # trailing words (maybe a partial last repeat) past the whole repeats belong to the loop too
        repeats = (len(keys) - start) // period
        if repeats >= MIN_LOOP_REPEATS:
            best = min(best, start + period)
    return list(words[:best])


def _common_prefix(tails: list[list[str]]) -> int:
    length = min(len(t) for t in tails)
    for i in range(length):
        if len({normalize(t[i]) for t in tails}) > 1:
            return i
    return length


class LocalAgreement:
    """Commits the words that the last ``agree`` hypotheses share (LocalAgreement-n)."""

    def __init__(self, agree: int = 2, holdback: int = 0) -> None:
        if agree < 1:
            raise ValueError("agree must be at least 1")
        self.agree = agree
        self.holdback = holdback
        self.committed: list[str] = []
        self._tails: deque[list[str]] = deque(maxlen=agree)

    def update(self, hypothesis: list[str]) -> list[str]:
        """Take one more hypothesis of the whole turn so far; return the words newly committed."""
        tail = align_tail(self.committed, hypothesis)
        self._tails.append(tail)
        if len(self._tails) < self.agree:
            return []
        stable = _common_prefix(list(self._tails)) - self.holdback
        if stable <= 0:
            return []
        new = tail[:stable]  # the newest hypothesis's spelling of the agreed words
        self.committed.extend(new)
        self._tails = deque((t[stable:] for t in self._tails), maxlen=self.agree)
        return new

    def finish(self, final: list[str]) -> list[str]:
        """The final hypothesis's words after the committed ones; the turn is then complete."""
        rest = align_tail(self.committed, final)
        self.committed.extend(rest)
        self._tails.clear()
        return rest


def join_delta(words: list[str], *, first: bool) -> str:
    """Words as a delta: deltas join to the transcript, words separated by single spaces."""
    if not words:
        return ""
    text = " ".join(words)
    return text if first else " " + text
