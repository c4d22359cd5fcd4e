"""Signs that a decoded window loops or copies the previous text, from its text tokens alone."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

# Whisper's own threshold: text that zlib squeezes this much is repetitive.
COMPRESSION_RATIO_THRESHOLD = 2.4
# Runs of this many tokens that were said before count as repeated. Six tokens is about four
# words: long enough that ordinary speech rarely repeats one by chance, short enough to catch a
# loop of a short phrase ("I'm Sheila. I'm Sheila. …").
NGRAM = 6
# A window that ends with at least TAIL_MIN_TOKENS tokens of which TAIL_MIN_FRACTION were said
# before (earlier in the window or in the previous text) ends in a loop.
TAIL_MIN_TOKENS = 12
TAIL_MIN_FRACTION = 0.8
# A window whose tokens repeat the previous text (the prompt) over at least this fraction copied it.
COPY_MIN_FRACTION = 0.5


def compression_ratio(text: str) -> float:
    """Bytes of the text over bytes of its zlib compression (as Whisper computes it); 0 for no text."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _ngrams(tokens: Sequence[int], n: int) -> set[tuple[int, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def copied_fraction(previous: Sequence[int], tokens: Sequence[int], ngram: int = NGRAM) -> float:
    """The fraction of ``tokens`` that lies in runs of ``ngram`` or more tokens also found in ``previous``."""
    if len(tokens) < ngram:
        return 0.0
    seen = _ngrams(previous, ngram)
    covered = [False] * len(tokens)
    for i in range(len(tokens) - ngram + 1):
        if tuple(tokens[i : i + ngram]) in seen:
            covered[i : i + ngram] = [True] * ngram
    return sum(covered) / len(tokens)


def repeated_marks(tokens: Sequence[int], previous: Sequence[int] = (), ngram: int = NGRAM) -> list[bool]:
    """For each token: does it lie in a run of ``ngram`` tokens said before (earlier here, or in ``previous``)?"""
    marks = [False] * len(tokens)
    seen = _ngrams(previous, ngram)
    first: dict[tuple[int, ...], int] = {}
    for i in range(len(tokens) - ngram + 1):
        gram = tuple(tokens[i : i + ngram])
        if gram in seen or first.setdefault(gram, i) < i:
            marks[i : i + ngram] = [True] * ngram
    return marks


def repeated_tail(
    tokens: Sequence[int],
    previous: Sequence[int] = (),
    *,
    ngram: int = NGRAM,
    min_tokens: int = TAIL_MIN_TOKENS,
    min_fraction: float = TAIL_MIN_FRACTION,
) -> int | None:
    """Where the window starts repeating itself (or the previous text) until its end, or None.

    That is the first repeated token from which at least ``min_tokens`` tokens remain and at
    least ``min_fraction`` of them repeat what was said before: a decoding loop runs to the end
    of the window, because nothing stops it.
    """
    marks = repeated_marks(tokens, previous, ngram)
    remaining_marked = 0
    tail: int | None = None
    for start in range(len(tokens) - 1, -1, -1):
        remaining_marked += marks[start]
        remaining = len(tokens) - start
        if marks[start] and remaining >= min_tokens and remaining_marked >= min_fraction * remaining:
            tail = start
    return tail


@dataclass(frozen=True)
class WindowCheck:
    """What the checks found in one window's text tokens."""

    compression_ratio: float
    tail: int | None  # index of the first text token of a repeated tail
    copied: float  # fraction of the text tokens copied from the previous text

    @property
    def compresses(self) -> bool:
        return self.compression_ratio > COMPRESSION_RATIO_THRESHOLD

    @property
    def copies_prompt(self) -> bool:
        return self.copied >= COPY_MIN_FRACTION

    @property
    def repetitive(self) -> bool:
        return self.compresses or self.tail is not None or self.copies_prompt

    def describe(self) -> str:
        reasons = []
        if self.compresses:
            reasons.append(f"compression ratio {self.compression_ratio:.2f}")
        if self.tail is not None:
            reasons.append(f"repeats itself from token {self.tail}")
        if self.copies_prompt:
            reasons.append(f"{self.copied:.0%} copied from the previous text")
        return ", ".join(reasons) or "clean"


def check_window(text: str, tokens: Sequence[int], previous: Sequence[int] = ()) -> WindowCheck:
    """Check a window's text and its text tokens (no timestamps) against the previous text's tokens."""
    return WindowCheck(
        compression_ratio(text.strip()), repeated_tail(tokens, previous), copied_fraction(previous, tokens)
    )
