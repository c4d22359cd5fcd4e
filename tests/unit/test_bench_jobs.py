"""The async-jobs benchmark's pure logic: key shares, fairness, integrity, throughput and its table (no servers)."""

from __future__ import annotations

import pytest

from bench.jobs import (
    TABLE_HEADERS,
    JobRecord,
    assign_keys,
    fairness,
    integrity,
    jobs_throughput,
    latency_summary,
    parse_keys,
    ratio,
    table_cells,
    tables,
)


def job(
    key: str,
    submitted: float,
    started: float | None,
    finished: float | None,
    *,
    statuses: tuple[str, ...] = ("queued", "running", "succeeded"),
    attempts: int = 1,
) -> JobRecord:
    record = JobRecord(key, 0, "f.wav", 60.0, submitted, id=f"audiojob_{key}{submitted}", attempts=attempts)
    record.started_at, record.finished_at = started, finished
    for status in statuses:
        record.observe(status)
    return record


def test_parse_keys_reads_names_and_weights() -> None:
    assert parse_keys("a:12, b:5,c:3") == [("a", 12), ("b", 5), ("c", 3)]


@pytest.mark.parametrize("spec", ["a", "a:0", "a:x", "a:1,a:2", "probe:1", ""])
def test_parse_keys_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="--keys"):
        parse_keys(spec)


def test_assign_keys_exact_weights_group_by_key_in_order() -> None:
    names = assign_keys([("a", 12), ("b", 5), ("c", 3)], 20)
    assert names == ["a"] * 12 + ["b"] * 5 + ["c"] * 3


@pytest.mark.parametrize("jobs", [3, 6, 7, 13, 40])
def test_assign_keys_scales_and_gives_every_key_a_job(jobs: int) -> None:
    names = assign_keys([("a", 12), ("b", 5), ("c", 3)], jobs)
    assert len(names) == jobs
    assert set(names) == {"a", "b", "c"}
    assert names.count("a") >= names.count("b") >= names.count("c")


def test_latency_summary_and_ratio() -> None:
    summary = latency_summary([1.0, 2.0, 3.0, 4.0, 5.0])
    assert summary == {"n": 5, "p50_s": 3.0, "p95_s": pytest.approx(4.8)}
    assert latency_summary([]) == {"n": 0, "p50_s": None, "p95_s": None}
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0.0) is None


def test_fairness_holds_when_each_first_job_starts_early() -> None:
    jobs = [job("a", 0.0, 1.0, 5), job("a", 0.1, 1.1, 5), job("a", 0.2, 9.0, 12), job("b", 0.3, 5.0, 9),
            job("c", 0.4, 5.5, 9)]  # fmt: skip
    result = fairness(jobs)
    assert result["rank_limit"] == 5
    assert result["holds"] is True
    assert {k: v["first_start_rank"] for k, v in result["keys"].items()} == {"a": 1, "b": 3, "c": 4}
    assert result["keys"]["a"]["mean_wait_s"] == pytest.approx((1.0 + 1.0 + 8.8) / 3)
    assert result["keys"]["b"]["jobs"] == 1


def test_fairness_fails_when_a_key_waits_behind_another_keys_backlog() -> None:
    jobs = [job("a", 0.0, float(n), n + 1.0) for n in range(6)] + [job("b", 0.5, 6.0, 7.0)]
    result = fairness(jobs)
    assert result["rank_limit"] == 4
    assert result["keys"]["b"]["first_start_rank"] == 7
    assert result["holds"] is False


def test_fairness_breaks_start_ties_by_submit_time_and_never_started_fails() -> None:
    tied = fairness([job("b", 0.2, 1.0, 2.0), job("a", 0.1, 1.0, 2.0)])
    assert tied["keys"]["a"]["first_start_rank"] == 1
    never = fairness([job("a", 0.0, 1.0, 2.0), job("b", 0.1, None, None, statuses=("queued",))])
    assert never["keys"]["b"]["first_start_rank"] is None
    assert never["holds"] is False


def test_integrity_clean_run() -> None:
    jobs = [job("a", 0, 1, 2), job("b", 0, 1, 2)]
    result = integrity(jobs, 2, killed=False)
    assert result == {"submitted": 2, "succeeded": 2, "lost": 0, "ledger_rows": 2, "duplicated": 0,
                      "ended_twice": 0, "second_attempts": 0, "ok": True}  # fmt: skip


def test_integrity_spots_lost_duplicated_and_retried_jobs() -> None:
    lost = integrity([job("a", 0, 1, 2), job("a", 0, 1, None, statuses=("queued", "failed"))], 1, killed=False)
    assert (lost["lost"], lost["ok"]) == (1, False)
    duplicated = integrity([job("a", 0, 1, 2)], 2, killed=False)
    assert (duplicated["duplicated"], duplicated["ok"]) == (1, False)
    twice = integrity([job("a", 0, 1, 2, statuses=("running", "succeeded", "running", "succeeded"))], 1, killed=True)
    assert (twice["ended_twice"], twice["ok"]) == (1, False)


def test_integrity_allows_a_second_attempt_only_after_a_kill() -> None:
    jobs = [job("a", 0, 1, 2), job("a", 0, 1, 3, attempts=2)]
    assert integrity(jobs, 2, killed=False)["ok"] is False
    killed = integrity(jobs, 2, killed=True)
    assert (killed["second_attempts"], killed["ok"]) == (1, True)


def test_observe_keeps_distinct_statuses_in_order() -> None:
    record = JobRecord("a", 0, "f.wav", 60.0, 0.0)
    for status in ["queued", "queued", "running", "running", "succeeded", "succeeded"]:
        record.observe(status)
    assert record.statuses == ["queued", "running", "succeeded"]
    assert record.final_states == 1


def test_jobs_throughput_from_first_submit_to_last_finish() -> None:
    jobs = [job("a", 10.0, 11.0, 40.0), job("b", 12.0, 13.0, 70.0)]
    wall, throughput = jobs_throughput(jobs)
    assert wall == 60.0
    assert throughput == pytest.approx(2.0)
    assert jobs_throughput([]) == (None, None)


def test_table_cells_full_row_and_sparse_rows() -> None:
    jobs = [job("a", 0, 1, 2), job("b", 0, 1.5, 3)]
    row = {
        "run": "jobs",
        "integrity": integrity(jobs, 2, killed=False),
        "wall_s": 123.45,
        "throughput": 9.876,
        "vs_sync": 0.95,
        "probe": {"p50_s": 0.5, "p95_s": 0.9},
        "p95_vs_idle": 1.25,
        "fairness": fairness(jobs),
        "cpu_s": [100.0, 98.6],
        "peak_rss_mib": [512.4, 500.0],
    }
    cells = table_cells(row)
    assert len(cells) == len(TABLE_HEADERS)
    assert cells == ["jobs", "2/2", "0", "2", "0", "123.5", "9.88", "0.95", "0.50 / 0.90", "1.25",
                     "yes (a:1, b:2)", "100 + 99", "512 / 500"]  # fmt: skip
    idle = table_cells({"run": "idle probe", "probe": {"p50_s": 0.4, "p95_s": 0.6}})
    assert idle == ["idle probe", "-", "-", "-", "-", "-", "-", "-", "0.40 / 0.60", "-", "-", "-", "-"]


def test_tables_render_text_and_markdown_alike() -> None:
    rows = [{"run": "synchronous", "wall_s": 10.0, "throughput": 12.0, "vs_sync": 1.0}]
    text, markdown = tables(rows)
    assert text.splitlines()[0].startswith("run ")
    assert "synchronous" in text.splitlines()[2]
    assert markdown.splitlines()[0] == "| " + " | ".join(TABLE_HEADERS) + " |"
    assert markdown.splitlines()[2].startswith("| synchronous | - |")
