"""Figures over repeated measurements: medians and percentiles, and the timing of repeated calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def median(values: Sequence[float]) -> float:
    """The median (the mean of the two middle values of an even count)."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile, interpolated linearly between the nearest values; None when there are none."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


def rounded(value: float | None, digits: int = 4) -> float | None:
    """``value`` rounded for a JSON file; None stays None."""
    return None if value is None else round(value, digits)


def timed(call: Callable[[], T], repeats: int) -> tuple[tuple[float, ...], T]:
    """Wall seconds of ``repeats`` calls (at least one), and the last call's result."""
    runs: list[float] = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = call()
        runs.append(time.perf_counter() - start)
    return tuple(runs), result
