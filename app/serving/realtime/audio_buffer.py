"""A session's 16 kHz audio on one timeline: appended as it streams, read by span, dropped once committed."""

from __future__ import annotations

import numpy as np

from engines.audio import SAMPLE_RATE, Samples


class AudioBuffer:
    """Samples from ``base`` to ``end`` (indices on the session's timeline) in one growing array."""

    def __init__(self, capacity_seconds: float = 8.0) -> None:
        self._data = np.zeros(int(capacity_seconds * SAMPLE_RATE), dtype=np.float32)
        self._size = 0
        self.base = 0  # timeline index of self._data[0]

    @property
    def end(self) -> int:
        return self.base + self._size

    def append(self, samples: Samples) -> None:
        needed = self._size + samples.size
        if needed > self._data.size:
            grown = np.zeros(max(needed, 2 * self._data.size), dtype=np.float32)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : needed] = samples
        self._size = needed

    def span(self, start: int, end: int | None = None) -> Samples:
        """A copy of [start, end) (clamped to what is held)."""
        stop = self.end if end is None else min(end, self.end)
        first = max(start, self.base)
        if stop <= first:
            return np.zeros(0, dtype=np.float32)
        return self._data[first - self.base : stop - self.base].copy()

    def drop_before(self, position: int) -> None:
        """Forget audio before ``position``; memory is given back once most of the array is unused."""
        drop = min(max(0, position - self.base), self._size)
        if drop == 0:
            return
        remaining = self._size - drop
        self._data[:remaining] = self._data[drop : self._size]
        self._size = remaining
        self.base += drop
        if self._data.size > 4 * max(remaining, SAMPLE_RATE * 8):
            self._data = self._data[: max(2 * remaining, SAMPLE_RATE * 8)].copy()
