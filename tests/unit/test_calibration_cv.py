"""bench.diarization_calibration's held-out threshold choice, on made-up similarities (no model is loaded)."""

from __future__ import annotations

import itertools
import json

import pytest

from bench.diarization_calibration import (
    CANDIDATES,
    Counts,
    Pair,
    assign_folds,
    choose_threshold,
    counts_at,
    cross_validate,
    cv_report,
    person_of,
    pooled,
    recording_groups,
    split_pairs,
)


def test_candidates_run_from_0_40_to_0_80_in_steps_of_0_025() -> None:
    assert len(CANDIDATES) == 17 and CANDIDATES[0] == 0.4 and CANDIDATES[-1] == 0.8
    assert all(b - a == pytest.approx(0.025) for a, b in itertools.pairwise(CANDIDATES))


def test_folds_deal_sorted_names_round_robin_whatever_the_order() -> None:
    folds = assign_folds(["e", "b", "a", "d", "c", "b"], 4)
    assert folds == {"a": 0, "b": 1, "c": 2, "d": 3, "e": 0}
    assert assign_folds(["c", "a", "e", "d", "b"], 4) == folds
    assert set(folds.values()) == {0, 1, 2, 3}  # no empty fold


def test_more_folds_than_groups_is_refused() -> None:
    with pytest.raises(ValueError):
        assign_folds(["a", "b", "c"], 4)


def test_a_value_at_the_threshold_is_a_name_not_a_miss() -> None:
    counts = counts_at([0.6, 0.59, 0.9], [0.6, 0.1, 0.2, 0.3], 0.6)
    assert counts == Counts(same=3, missed=1, different=4, false_named=1)
    assert counts.miss_rate == pytest.approx(1 / 3) and counts.false_name_rate == pytest.approx(0.25)
    assert counts.cost() == pytest.approx(1 / 3 + 5 * 0.25)
    assert counts.cost(weight=1.0) == pytest.approx(1 / 3 + 0.25)


def test_no_pairs_gives_zero_rates_and_counts_add_up() -> None:
    assert Counts(0, 0, 0, 0).cost() == 0.0
    assert pooled([Counts(1, 0, 3, 1), Counts(2, 1, 5, 0)]) == Counts(3, 1, 8, 1)


def test_ties_go_to_the_higher_threshold() -> None:
    # every candidate separates 0.9 from 0.1 perfectly: cost 0 everywhere
    assert choose_threshold([0.9], [0.1]) == 0.8
    # zero cost only at 0.425 and 0.45 (above the 0.42 impostor, not above the 0.45 voice)
    assert choose_threshold([0.45, 0.9], [0.42] + [0.1] * 9) == 0.45


def test_a_false_name_weighs_five_misses() -> None:
    same, different = [0.5, 0.9], [0.6, 0.1, 0.1, 0.1]
    # weight 5: naming the 0.6 impostor costs 1.25, missing the 0.5 voice 0.5 -> above 0.6, the highest
    assert choose_threshold(same, different) == 0.8
    # weight 1: 0.25 against 0.5 -> keep the 0.5 voice, the highest threshold that still names it
    assert choose_threshold(same, different, weight=1.0) == 0.5


def test_split_pairs_by_reference_and_rest() -> None:
    scores: dict[Pair, float] = {("a", "a"): 0.9, ("a", "b"): 0.2, ("b", "a"): 0.3, ("b", "b"): 0.8, ("b", "c"): 0.1}
    assert split_pairs(scores, {"b"}) == ([0.8], [0.3, 0.1])
    assert split_pairs(scores, {"a", "b"}, {"a", "b"}) == ([0.9, 0.8], [0.2, 0.3])


def _four_voices() -> tuple[dict[Pair, float], dict[str, str]]:
    names = ["a", "b", "c", "d"]
    scores = {(x, y): 0.1 for x in names for y in names}
    scores |= {("a", "a"): 0.9, ("b", "b"): 0.9, ("c", "c"): 0.9, ("d", "d"): 0.5}
    scores["b", "a"] = 0.7  # b's reference against a's rest: a near impostor
    return scores, {name: f"g{name}" for name in names}


def test_each_fold_chooses_without_its_voices_and_is_judged_on_their_references() -> None:
    scores, groups = _four_voices()
    telephone = {pair: (0.55 if pair[0] == pair[1] else value) for pair, value in scores.items()}
    folds = cross_validate(scores, telephone, groups, k=4)
    assert [f.held_out for f in folds] == [["ga"], ["gb"], ["gc"], ["gd"]]
    # holding a out drops (b, a) from training (its rest is a's): 0.5 keeps d; with it, it would be 0.725
    assert [f.threshold for f in folds] == [0.5, 0.5, 0.8, 0.8]
    assert [f.counts for f in folds] == [
        Counts(1, 0, 3, 0),
        Counts(1, 0, 3, 1),  # b's reference names a's rest at 0.5
        Counts(1, 0, 3, 0),
        Counts(1, 1, 3, 0),  # d's 0.5 is below the 0.8 chosen on a, b, c
    ]
    # the telephone rest is judged at the same thresholds: 0.55 passes 0.5, fails 0.8
    assert [f.telephone.missed for f in folds] == [0, 0, 1, 1]
    # every voice held out once: the pooled counts are every pair once
    assert pooled(f.counts for f in folds) == Counts(4, 1, 12, 1)


def test_report_has_held_out_in_sample_and_spread_and_is_json_ready() -> None:
    scores, groups = _four_voices()
    report = cv_report(scores, scores, groups, k=4)
    assert [f["threshold"] for f in report["per_fold"]] == [0.5, 0.5, 0.8, 0.8]
    held = report["held_out"]
    assert (held["missed"], held["same_pairs"], held["false_named"], held["different_pairs"]) == (1, 4, 1, 12)
    assert held["cost"] == pytest.approx(0.25 + 5 / 12, abs=1e-4)
    # in-sample: the 0.7 impostor (5/12) outweighs missing d (1/4)
    ins = report["in_sample"]
    assert ins["threshold"] == 0.8 and (ins["missed"], ins["false_named"]) == (1, 0)
    assert report["spread"] == {"min": 0.5, "max": 0.8, "chosen": [0.5, 0.8]}
    assert json.loads(json.dumps(report)) == report


def test_recordings_sharing_a_person_are_one_group() -> None:
    names = [
        "diar_ami_x_trn00:MEE067",
        "diar_ami_x_trn00:MEE068",
        "diar_ami_x_trn03:MEE067",
        "diar_ami_x_trn04:MEE075",
        "diar_other:MEE067",  # same label outside AMI: another person
        "en_jfk.flac",
    ]
    assert person_of(names[0]) == person_of(names[2]) != person_of(names[4])
    groups = recording_groups(names)
    assert groups[names[0]] == groups[names[1]] == groups[names[2]] == "diar_ami_x_trn00+diar_ami_x_trn03"
    assert groups[names[3]] == "diar_ami_x_trn04"
    assert groups[names[4]] == "diar_other" and groups[names[5]] == "en_jfk.flac"
