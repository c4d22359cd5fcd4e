"""The held-out choice of the encoder window rule (bench/window_heldout.py): pure logic on made-up scores."""

from __future__ import annotations

import numpy as np

from bench.window_heldout import CANDIDATES, Scores, choose, label, leave_one_out

RECORDINGS = ["a", "b", "c"]


def scores(drift: list[list[float]], cpu: list[list[float]]) -> Scores:
    return Scores(CANDIDATES[: len(drift)], RECORDINGS, np.array(drift), np.array(cpu))


def test_the_cheapest_candidate_within_the_tolerance() -> None:
    made_up = scores(
        [[0.0, 0.0, 0.0], [0.002, 0.004, 0.0], [0.02, 0.0, 0.0]],
        [[0.6, 0.6, 0.6], [0.5, 0.5, 0.5], [0.3, 0.3, 0.3]],
    )
    assert choose(made_up, np.ones(3, dtype=bool)) == 1  # the third drifts 0.67 points on average


def test_the_least_drifting_when_none_is_within() -> None:
    made_up = scores([[0.03, 0.03, 0.03], [0.02, 0.02, 0.02]], [[0.5, 0.5, 0.5], [0.9, 0.9, 0.9]])
    assert choose(made_up, np.ones(3, dtype=bool)) == 1


def test_a_tie_keeps_the_rule_in_use() -> None:
    made_up = scores([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    assert choose(made_up, np.ones(3, dtype=bool)) == 0


def test_each_fold_chooses_without_its_recording_and_reports_on_it() -> None:
    # Candidate 1 is cheap and clean on a and b but drifts 3 points on c: only c's own fold can see that.
    made_up = scores([[0.0, 0.0, 0.0], [0.0, 0.0, 0.03]], [[0.6, 0.6, 0.6], [0.4, 0.4, 0.4]])
    folds = {fold.held_out: fold for fold in leave_one_out(made_up)}
    assert folds["c"].chosen == 1 and folds["c"].drift == 0.03  # chosen on a and b, scored on c
    assert folds["a"].chosen == 0 and folds["b"].chosen == 0  # c's drift counts: 1.5 points on average


def test_labels_name_the_padding_and_the_rounding() -> None:
    assert label(CANDIDATES[0]) == "10 s, rounded"
    assert label({"encoder_padding_seconds": 5.0, "round_encoder_window": False}) == "5 s"
