"""bench.realtime's table: the batch column shows the mean encoder/decoder batch sizes, or "-" without batching."""

from __future__ import annotations

from bench.realtime import batch_means, table


def test_batch_means_are_shown_for_batching_models_only() -> None:
    assert batch_means(None) == "-"
    assert batch_means({}) == "-"
    assert batch_means({"encode": 1.0, "generate": 1.34}) == "1.0/1.3"
    assert batch_means({"generate": 2.0}) == "-/2.0"


def test_the_table_has_a_batch_column() -> None:
    row = {
        "model": "base", "sessions": 8, "recordings": "harvard", "turns": 10, "incomplete_turns": 0,
        "first_delta_p50_s": 1.5, "first_delta_p95_s": 3.0, "completion_p50_s": 0.5, "completion_p95_s": 1.9,
        "cpu_s_per_audio_s": 0.26, "keeps_real_time": True, "batch_mean": {"encode": 1.0, "generate": 1.3},
    }  # fmt: skip
    header, _, line = table([row]).splitlines()
    assert "batch enc/gen" in header and "1.0/1.3" in line


def test_pooled_runs_hold_every_turn_and_sum_cpu_and_audio() -> None:
    from bench.realtime import Level, SessionResult, Turn

    def run(first_delta: float, cpu: float) -> Level:
        result = SessionResult("en_osr_harvard72_8k.wav")
        result.turns["a"] = Turn(started=1.0, audio_ms=4000, first_delta=1.0 + first_delta, stopped=5.0, completed=5.5)
        return Level("base", 1, [result], 10.0, cpu, 12.0)

    pooled = Level.pooled([run(1.0, 2.0), run(3.0, 4.0)])
    assert len(pooled.turns()) == 2 and sorted(pooled.first_delta()) == [1.0, 3.0]
    assert pooled.row()["cpu_s_per_audio_s"] == 6.0 / 20.0
    assert pooled.sessions == 1


def test_repeat_must_be_positive() -> None:
    import pytest

    from bench.realtime import build_parser

    assert build_parser().parse_args(["--repeat", "3"]).repeat == 3
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--repeat", "0"])
