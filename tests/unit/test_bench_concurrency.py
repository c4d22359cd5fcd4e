"""bench.concurrency's pure parts: the clients' schedules, the batch metrics, the row figures and the decisions."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from app.settings import DEFAULT_CONFIG, ModelConfig, load_settings
from bench.concurrency.clients import level_lanes, mixed_lanes
from bench.concurrency.clips import Clip
from bench.concurrency.decisions import decision_lines, target_level, window_lines
from bench.concurrency.figures import corpus_wer, summarize
from bench.concurrency.layouts import BATCHED_MAX_CONCURRENCY, configured_layout, layouts, write_server_config
from bench.concurrency.profile import TimedModel, batch_profile, parse_batch_metrics
from bench.concurrency.rows import ClipResult, Profile, Row
from bench.concurrency.table import table_row


def _clip(index: int, seconds: float = 5.0, role: str = "clip") -> Clip:
    return Clip(index, f"c{index}", "test", b"", seconds, role=role)


# --- schedules ----------------------------------------------------------------------------------------------


def test_level_lanes_deal_the_clips_round_robin_and_stream_every_nth() -> None:
    clips = [_clip(i) for i in range(5)]
    lanes = level_lanes(clips, 2, stream_every=2)
    assert [[s.clip.index for s in lane] for lane in lanes] == [[0, 2, 4], [1, 3]]
    assert all(s.at_s == 0.0 for lane in lanes for s in lane)
    assert [s.clip.index for lane in lanes for s in lane if s.streamed] == [1, 3]


def test_mixed_lanes_send_the_long_files_at_once_and_the_short_clips_at_a_fixed_rate() -> None:
    longs = [_clip(10, 50, "long"), _clip(11, 40, "long")]
    shorts = [_clip(20, role="short"), _clip(21, role="short")]
    lanes = mixed_lanes(longs, shorts, count=5, interval_s=2.0, start_s=0.5)
    assert len(lanes) == 7  # one client per request: a short clip never waits for the previous one's answer
    assert [(s.at_s, s.clip.index) for s in lanes[0] + lanes[1]] == [(0.0, 10), (0.0, 11)]
    assert [(lane[0].at_s, lane[0].clip.index) for lane in lanes[2:]] == [
        (0.5, 20),
        (2.5, 21),
        (4.5, 20),
        (6.5, 21),
        (8.5, 20),
    ]
    assert mixed_lanes(longs, shorts, count=0, interval_s=2.0) == [[lanes[0][0]], [lanes[1][0]]]


def test_target_level_prefers_eight_clients_measured_both_ways() -> None:
    assert target_level((1, 2, 4, 8, 16), (1, 8)) == 8
    assert target_level((1, 2), (1, 2)) == 2
    assert target_level((1, 2, 4), (1,)) == 1
    assert target_level((1, 4), (2,)) == 4


# --- where the time goes -----------------------------------------------------------------------------------

METRICS_BEFORE = """\
# TYPE stt_batch_size histogram
stt_batch_size_bucket{model="base",op="encode",le="+Inf"} 2.0
stt_batch_size_sum{model="base",op="encode"} 3.0
stt_batch_size_count{model="base",op="encode"} 2.0
stt_batch_size_sum{model="base",op="generate"} 3.0
stt_batch_size_count{model="base",op="generate"} 3.0
# TYPE stt_batch_busy_seconds_total counter
stt_batch_busy_seconds_total{model="base",op="encode"} 1.0
stt_batch_busy_seconds_total{model="base",op="generate"} 2.0
# TYPE stt_requests_total counter
stt_requests_total{model="base"} 7.0
"""

METRICS_AFTER = """\
# TYPE stt_batch_size histogram
stt_batch_size_sum{model="base",op="encode"} 11.0
stt_batch_size_count{model="base",op="encode"} 4.0
stt_batch_size_sum{model="base",op="generate"} 15.0
stt_batch_size_count{model="base",op="generate"} 7.0
# TYPE stt_batch_busy_seconds_total counter
stt_batch_busy_seconds_total{model="base",op="encode"} 4.0
stt_batch_busy_seconds_total{model="base",op="generate"} 11.0
stt_batch_busy_seconds_total{model="base",op="align"} 1.0
"""


def test_batch_profile_is_the_difference_of_two_readings() -> None:
    before, after = parse_batch_metrics(METRICS_BEFORE), parse_batch_metrics(METRICS_AFTER)
    assert before["stt_batch_busy_seconds_total"] == {"encode": 1.0, "generate": 2.0}
    profile = batch_profile(before, after)
    assert profile is not None
    assert profile.busy_s == {"encode": 3.0, "generate": 9.0, "align": 1.0, "detect_language": 0.0}
    assert profile.batch_mean == {"encode": 4.0, "generate": 3.0}  # (11 - 3) / (4 - 2), (15 - 3) / (7 - 3)
    assert profile.share("encode") == pytest.approx(3 / 13)
    assert profile.share("generate") == pytest.approx(9 / 13)


def test_no_batch_metrics_no_profile() -> None:
    assert batch_profile({}, parse_batch_metrics("# TYPE stt_requests_total counter\nstt_requests_total 1.0\n")) is None
    assert Profile({"encode": 0.0}).share("encode") is None


def test_timed_model_times_the_model_calls_and_passes_the_rest_through() -> None:
    class Model:
        device = "cpu"

        def encode(self, features: str) -> str:
            time.sleep(0.02)
            return features.upper()

        def is_multilingual(self) -> bool:
            return True

    busy = {"encode": 0.0, "generate": 0.0}
    timed = TimedModel(Model(), busy, threading.Lock())
    assert timed.encode("x") == "X"
    assert timed.device == "cpu"
    assert timed.is_multilingual() is True
    assert busy["encode"] >= 0.02
    assert busy["generate"] == 0.0


# --- layouts -----------------------------------------------------------------------------------------------


def test_layout_settings() -> None:
    every = layouts(2)
    split = every["unbatched-split"].model_settings(None, None)
    assert split == {"batching": False, "max_concurrency": 2, "cpu_threads": 1}
    wide = every["unbatched-wide"].model_settings(None, None)
    assert wide["max_concurrency"] == 1 and wide["cpu_threads"] == 2
    batched = every["batched-split"].model_settings(4, 2.5)
    assert batched == {
        "batching": True,
        "max_concurrency": BATCHED_MAX_CONCURRENCY,
        "batch_workers": 2,
        "cpu_threads": 1,
        "max_batch_size": 4,
        "batch_wait_ms": 2.5,
    }
    assert "max_batch_size" not in every["batched-wide"].model_settings(None, None)
    assert every["side"].workers == 2 and every["side"].threads == 1
    assert every["floor"].workers == 1 and every["floor"].threads == 1


def test_configured_layout_of_an_unbatched_model() -> None:
    assert configured_layout(ModelConfig(source="x", max_concurrency=2), threads=2, cores=2) == "unbatched-split"
    assert configured_layout(ModelConfig(source="x", max_concurrency=1), threads=2, cores=2) == "unbatched-wide"
    assert configured_layout(ModelConfig(source="x", max_concurrency=3), threads=2, cores=2) is None


def test_configured_layout_of_a_batched_model() -> None:
    model = ModelConfig.model_validate({"source": "x", "batching": True, "max_concurrency": 16, "batch_workers": 2})
    assert configured_layout(model, threads=2, cores=2) == "batched-split"
    model = ModelConfig.model_validate({"source": "x", "batching": True, "max_concurrency": 16, "batch_workers": 1})
    assert configured_layout(model, threads=2, cores=2) == "batched-wide"


def test_server_config_holds_the_model_under_test_alone(tmp_path: Path) -> None:
    settings = load_settings(DEFAULT_CONFIG)
    model_settings = layouts(2)["unbatched-wide"].model_settings(None, None)
    path = write_server_config(settings, "base", model_settings, 64, tmp_path / "wide")
    written = yaml.safe_load(path.read_text())
    assert list(written["models"]) == ["base"]
    assert written["models"]["base"]["max_concurrency"] == 1
    assert written["models"]["base"]["cpu_threads"] == 2
    assert written["models"]["base"]["max_queue"] == 64
    assert written["preload_models"] == ["base"]
    assert all(alias["model"] == "base" for alias in written["aliases"].values())
    assert str(tmp_path) in written["ledger_url"]
    reloaded = load_settings(path)
    assert reloaded.models["base"].cpu_threads == 2


# --- figures -----------------------------------------------------------------------------------------------


def test_corpus_wer_counts_every_answer_and_ignores_case_and_punctuation() -> None:
    references = {1: "the cat sat", 2: "a dog"}
    assert corpus_wer(references, [(1, "The cat, sat."), (2, "a dog")]) == 0.0
    # The second answer for clip 1 misses a word: 1 error in 3 + 3 + 2 words.
    assert corpus_wer(references, [(1, "the cat sat"), (1, "the cat"), (2, "a dog")]) == pytest.approx(1 / 8)
    assert corpus_wer(references, [(3, "unknown")]) is None


def _row(kind: str, results: list[ClipResult], key: str = "unbatched-split") -> Row:
    return Row(key, f"{kind} row", kind, 2, 10.0, 5.0, 500.0, True, [0.5, 0.5, 0.5], results, shorts=2)


def test_summary_of_a_mixed_row_times_the_short_clips_and_lists_the_long_files() -> None:
    catalog = {0: _clip(0, 50.0, "long"), 1: _clip(1, 40.0, "long"), 2: _clip(2, 5.0, "short")}
    floor = {0: "long one", 1: "long two", 2: "short"}
    results = [
        ClipResult(0, "long one", 8.0),
        ClipResult(1, "long two", 7.0),
        ClipResult(2, "short", 1.0, sent_at_s=0.5),
        ClipResult(2, "short", 3.0, sent_at_s=2.5),
    ]
    s = summarize(_row("mixed", results), catalog, floor)
    assert s["audio_s"] == 100.0
    assert s["audio_s_per_wall_s"] == 10.0
    assert s["cpu_s_per_audio_s"] == 0.05
    assert s["latency_p50_s"] == 2.0
    assert s["long_files_s"] == [8.0, 7.0]
    assert s["wer_vs_floor"] == 0.0
    assert s["same_text_as_floor"] == 4
    cells = table_row(s)
    assert cells[1] == "2 long + 2 short"
    assert cells[6] == "8.0 / 7.0"


def _summary(
    key: str, kind: str, clients: int, rate: float, per_request: float, wer: float = 0.0, cpu: float = 0.2
) -> dict[str, object]:
    return {
        "key": key,
        "cpu_s_per_audio_s": cpu,
        "label": key,
        "kind": kind,
        "clients": clients,
        "audio_s_per_wall_s": rate,
        "wall_s_per_request": per_request,
        "wer_vs_floor": wer,
        "same_text_as_floor": 4 if wer == 0 else 3,
        "requests": 4,
        "errors": 0,
        "latency_p95_s": 1.0,
    }


def _lines(summaries: list[dict[str, object]], default_key: str | None) -> list[str]:
    labels: Mapping[str, str] = {key: key for key in ("unbatched-split", "batched-wide", "batched-split")}
    return decision_lines(summaries, 8, default_key, labels)


def test_decisions_against_the_targets() -> None:
    summaries = [
        _summary("floor", "in-process", 1, 3.0, 3.0),
        _summary("side", "in-process", 2, 4.0, 5.0),
        _summary("unbatched-split", "server", 1, 3.0, 2.0),
        _summary("unbatched-split", "server", 8, 4.5, 1.0),
        _summary("batched-wide", "server", 1, 3.1, 2.08),
        _summary("batched-wide", "server", 8, 5.6, 1.0),
    ]
    lines = _lines(summaries, "batched-wide")
    assert "throughput at 8 clients: batched-wide 5.60 audio s/s = 1.40x side (4.00); target >= 1.3: met" in lines
    assert any(line.startswith("lone request: batched-wide 2.08 s per request = 1.040x") for line in lines)
    assert any(line.endswith("target <= 1.05: met") for line in lines)
    assert "transcripts: WER 0 against the 1-thread floor in all 5 row(s), every text identical" in lines
    assert any(line.startswith("best layout at 8 clients: batched-wide") for line in lines)
    assert "the configured default (batched-wide) is the best measured one: yes" in lines


def test_decisions_name_what_missed() -> None:
    summaries = [
        _summary("floor", "in-process", 1, 3.0, 3.0),
        _summary("side", "in-process", 2, 4.0, 5.0),
        _summary("unbatched-split", "server", 1, 3.0, 2.0),
        _summary("unbatched-split", "server", 8, 4.5, 1.0),
        _summary("batched-split", "server", 1, 2.5, 2.4, wer=0.01),
        _summary("batched-split", "server", 8, 4.4, 1.0),
    ]
    lines = _lines(summaries, "unbatched-split")
    assert any("1.10x side" in line and line.endswith("MISSED") for line in lines)
    assert any(line.startswith("lone request: batched-split") and line.endswith("MISSED") for line in lines)
    assert any(line.startswith("transcripts: WER > 0") and "batched-split (1 cl) 1.0 %" in line for line in lines)
    assert "the configured default (unbatched-split) is the best measured one: yes" in lines
    lines = _lines(summaries, "batched-split")
    assert any(line.startswith("the configured default (batched-split) is the best measured one: no") for line in lines)
    assert "the configured default layout is none of the measured ones" in _lines(summaries, None)


def test_window_lines_judge_every_server_row_against_the_30s_floor() -> None:
    summaries = [
        _summary("floor", "in-process", 1, 3.0, 3.0, cpu=0.22),
        _summary("side", "in-process", 2, 6.0, 5.0, cpu=0.21),
        _summary("unbatched-split", "server", 1, 6.0, 1.0, wer=0.004, cpu=0.14),
        _summary("unbatched-split", "server", 8, 9.0, 1.0, wer=0.004, cpu=0.15),
        _summary("unbatched-split-30s", "server", 8, 6.0, 1.0, cpu=0.21),
    ]
    lines = window_lines(summaries, 8)
    assert len(lines) == 3
    lone, busy, full = lines
    assert "at 1 client(s)" in lone and "0.64x the floor (target <= 0.7: met)" in lone and "side by side" not in lone
    assert "9.00 audio s/s = 1.50x side by side (target >= 1.4: met)" in busy
    assert "WER vs floor 0.4 % (target <= 0.5: met)" in busy
    assert "1.00x side by side (target >= 1.4: MISSED)" in full and "0.95x the floor (target <= 0.7: MISSED)" in full
    assert window_lines(summaries[1:], 8) == [
        "encoder windows: not compared (no floor row or no server row at 1 or 8 clients)"
    ]


def test_the_30s_layout_turns_the_padding_off() -> None:
    settings = layouts(2)["unbatched-split-30s"].model_settings(None, None)
    assert settings == {"batching": False, "max_concurrency": 2, "cpu_threads": 1, "encoder_padding_seconds": None}
    assert "encoder_padding_seconds" not in layouts(2)["unbatched-split"].model_settings(None, None)
