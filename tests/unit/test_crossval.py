"""bench.crossval: each fold chooses without its recording, ties go to the first candidate, the gap is visible."""

from __future__ import annotations

import numpy as np
import pytest

from bench.crossval import from_matrix, grid, leave_one_out


def test_each_fold_chooses_on_the_other_recordings_only() -> None:
    candidates = [{"t": 0.3}, {"t": 0.4}, {"t": 0.5}]
    # t=0.3 is best on a and b, t=0.5 only on c; t=0.4 is never best but never bad
    errors = np.array([[0.0, 0.0, 0.9], [0.1, 0.1, 0.2], [0.5, 0.5, 0.0]])
    cv = from_matrix(candidates, ["a", "b", "c"], errors)
    assert [cv.candidates[f.chosen]["t"] for f in cv.folds] == [0.4, 0.4, 0.3]
    assert [f.error for f in cv.folds] == [0.1, 0.1, 0.9]
    assert cv.held_out_mean == pytest.approx(1.1 / 3)
    assert cv.candidates[cv.in_sample] == {"t": 0.4}  # mean 0.133 against 0.3 and 0.333
    assert cv.in_sample_mean == pytest.approx(0.4 / 3)
    assert cv.gap == pytest.approx(0.7 / 3)
    assert cv.spread() == {"t": [0.3, 0.4]}
    assert cv.chosen_in_fold("c") == {"t": 0.3}


def test_ties_go_to_the_earliest_candidate() -> None:
    errors = np.array([[0.2, 0.2], [0.2, 0.2]])
    cv = from_matrix([{"t": 1}, {"t": 2}], ["a", "b"], errors)
    assert cv.in_sample == 0 and all(f.chosen == 0 for f in cv.folds)


def test_leave_one_out_scores_every_candidate_on_every_recording_once() -> None:
    calls: list[tuple[int, str]] = []

    def error(candidate: dict[str, int], recording: str) -> float:
        calls.append((candidate["k"], recording))
        return abs(candidate["k"] - len(recording))

    cv = leave_one_out(grid(k=(1, 2, 3)), ["x", "yy", "zzz"], error)  # type: ignore[arg-type]
    assert sorted(calls) == sorted((k, r) for k in (1, 2, 3) for r in ("x", "yy", "zzz"))
    assert cv.errors.shape == (3, 3)
    with pytest.raises(ValueError):
        leave_one_out([{"k": 1}], ["only"], error)  # type: ignore[arg-type]


def test_grid_lists_every_combination_first_values_first() -> None:
    assert grid(a=(1, 2), b=("x", "y")) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
