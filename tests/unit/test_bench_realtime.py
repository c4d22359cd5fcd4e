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
