"""Figures over repeated measurements: medians and percentiles."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np


def median(values: Sequence[float]) -> float:
    """The median (the mean of the two middle values of an even count)."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile, interpolated linearly between the nearest values; None when there are none."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


def rounded(value: float | None, digits: int = 4) -> float | None:
    """``value`` rounded for a JSON file; None stays None."""
    return None if value is None else round(value, digits)
