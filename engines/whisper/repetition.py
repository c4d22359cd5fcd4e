"""Signs that a decoded window loops or copies the previous text, from its text tokens alone."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")  # a token id or a word

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
# The same on words (lower case, no punctuation): Whisper also copies the previous text without its
# capitals and punctuation, which gives other tokens for the same words. Four words: about six tokens.
WORD_NGRAM = 4


def compression_ratio(text: str) -> float:
    """Bytes of the text over bytes of its zlib compression (as Whisper computes it); 0 for no text."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _ngrams(items: Sequence[T], n: int) -> set[tuple[T, ...]]:
    return {tuple(items[i : i + n]) for i in range(len(items) - n + 1)}


def copied_fraction(previous: Sequence[int], tokens: Sequence[int], ngram: int = NGRAM) -> float:
    """The fraction of ``tokens`` that lies in runs of ``ngram`` or more tokens also found in ``previous``."""
    return _covered_fraction(previous, tokens, ngram)


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (apostrophes kept: "don't" stays one word)."""
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def copied_words_fraction(previous_text: str, text: str, ngram: int = WORD_NGRAM) -> float:
    """The fraction of ``text``'s words in runs of ``ngram`` or more words also found in ``previous_text``."""
    return _covered_fraction(words(previous_text), words(text), ngram)


def _covered_fraction(previous: Sequence[T], items: Sequence[T], ngram: int) -> float:
    if len(items) < ngram:
        return 0.0
    seen = _ngrams(previous, ngram)
    covered = [False] * len(items)
    for i in range(len(items) - ngram + 1):
        if tuple(items[i : i + ngram]) in seen:
            covered[i : i + ngram] = [True] * ngram
    return sum(covered) / len(items)


# A window whose words repeat the end of the previous text this closely heard that speech again.
REHEARD_MIN_FRACTION = 0.8


def rehears_the_end(previous_text: str, text: str, ngram: int = WORD_NGRAM) -> bool:
    """Does ``text`` say again the last part of ``previous_text`` (not all of it)?

    When a window's timestamps run ahead of its audio, the next window starts too early and hears
    the end of the previous one again; Whisper transcribes it again even without the previous text
    in its prompt. The sign: the window's words are the previous text's last words, starting in its
    middle. (A passage said twice for real starts again from its beginning, and stays.)
    """
    before, now = words(previous_text), words(text)
    if len(now) < 2 * ngram or _covered_fraction(before, now, ngram) < REHEARD_MIN_FRACTION:
        return False
    opening = tuple(now[:ngram])
    starts = [i for i in range(1, len(before) - ngram + 1) if tuple(before[i : i + ngram]) == opening]
    return any(0.7 <= (len(before) - i) / len(now) <= 1.5 for i in starts)


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


def check_window(
    text: str, tokens: Sequence[int], previous: Sequence[int] = (), previous_text: str = ""
) -> WindowCheck:
    """Check a window's text and its text tokens (no timestamps) against the previous text (tokens and text)."""
    copied = max(copied_fraction(previous, tokens), copied_words_fraction(previous_text, text))
    return WindowCheck(compression_ratio(text.strip()), repeated_tail(tokens, previous), copied)
