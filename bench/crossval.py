"""Leave-one-recording-out choice of tuned values: chosen on the other recordings, scored on the one left out.

Every candidate (a dict of tuned values) is scored once on every recording, which gives an error
matrix; a fold picks the candidate with the lowest mean error over the recordings it may see,
and reports that candidate's error on the one it may not. The in-sample choice (all recordings
see and judge it) is reported beside it, so the gap between the two is visible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Candidate = Mapping[str, Any]


@dataclass(frozen=True)
class Fold:
    held_out: str
    chosen: int  # index of the candidate chosen without the held-out recording
    error: float  # that candidate's error on the held-out recording


@dataclass(frozen=True)
class CrossValidation:
    """The error matrix and both choices. ``errors[c, r]``: candidate c on recording r."""

    candidates: list[Candidate]
    recordings: list[str]
    errors: npt.NDArray[np.float64]
    folds: list[Fold]
    in_sample: int  # index of the candidate chosen on every recording

    @property
    def held_out_mean(self) -> float:
        return float(np.mean([fold.error for fold in self.folds]))

    @property
    def in_sample_mean(self) -> float:
        return float(self.errors[self.in_sample].mean())

    @property
    def gap(self) -> float:
        """How much better the in-sample figure looks than the held-out one."""
        return self.held_out_mean - self.in_sample_mean

    def spread(self) -> dict[str, list[Any]]:
        """Each tuned value's choices across the folds (sorted distinct values); one value means stable."""
        keys = list(self.candidates[0]) if self.candidates else []
        return {key: sorted({self.candidates[f.chosen][key] for f in self.folds}, key=repr) for key in keys}

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the first candidate (the values in use), the held-out and in-sample figures, the folds."""
        return {
            "in_use": dict(self.candidates[0]),
            "in_use_mean_error": round(float(self.errors[0].mean()), 4),
            "held_out_mean_error": round(self.held_out_mean, 4),
            "in_sample_choice": dict(self.candidates[self.in_sample]),
            "in_sample_mean_error": round(self.in_sample_mean, 4),
            "gap": round(self.gap, 4),
            "spread": {k: list(v) for k, v in self.spread().items()},
            "folds": {
                f.held_out: {"chosen": dict(self.candidates[f.chosen]), "error": round(f.error, 4)} for f in self.folds
            },
        }

    def chosen_in_fold(self, recording: str) -> Candidate:
        return self.candidates[next(f.chosen for f in self.folds if f.held_out == recording)]


def best(errors: npt.NDArray[np.float64], columns: npt.NDArray[np.bool_]) -> int:
    """The candidate with the lowest mean error over ``columns``; ties go to the earliest candidate."""
    means = errors[:, columns].mean(axis=1)
    return int(np.flatnonzero(means <= means.min() + 1e-12)[0])


def leave_one_out(
    candidates: Sequence[Candidate],
    recordings: Sequence[str],
    error: Callable[[Candidate, str], float],
) -> CrossValidation:
    """Score every candidate on every recording (``error(candidate, recording)``), then choose per fold."""
    if not candidates or len(recordings) < 2:
        raise ValueError("cross-validation needs candidates and at least two recordings")
    matrix = np.array([[error(c, r) for r in recordings] for c in candidates], dtype=np.float64)
    return from_matrix(list(candidates), list(recordings), matrix)


def from_matrix(
    candidates: Sequence[Candidate], recordings: Sequence[str], errors: npt.NDArray[np.float64]
) -> CrossValidation:
    folds = []
    for index, name in enumerate(recordings):
        seen = np.ones(len(recordings), dtype=bool)
        seen[index] = False
        chosen = best(errors, seen)
        folds.append(Fold(name, chosen, float(errors[chosen, index])))
    everything = best(errors, np.ones(len(recordings), dtype=bool))
    return CrossValidation(list(candidates), list(recordings), errors, folds, everything)


def grid(**values: Sequence[Any]) -> list[dict[str, Any]]:
    """Every combination of the given values, the first value of each key first."""
    combos: list[dict[str, Any]] = [{}]
    for key, options in values.items():
        combos = [{**combo, key: option} for combo in combos for option in options]
    return combos


__all__ = ["CrossValidation", "Fold", "best", "from_matrix", "grid", "leave_one_out"]
