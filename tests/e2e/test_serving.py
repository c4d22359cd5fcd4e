"""Serving a team: concurrency, back-pressure (429 + Retry-After), health under load, idle unload,
per-key limits, the usage ledger and Prometheus metrics, through the real SDK."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.settings import PROJECT_ROOT
from tests.audio import LONG_TEXT, espeak, repeat_audio, wer
from tests.server import RunningServer, run_server

SENTENCES = [
    "The river flows quietly past the old mill.",
    "Seven green apples fell from the tall tree.",
    "Please bring the blue folder to my office.",
    "The train to Boston leaves at half past nine.",
    "Fresh bread smells wonderful in the morning.",
    "Our team won the final game last Sunday.",
    "She opened the window and looked outside.",
    "Turn left at the bakery and walk two blocks.",
]

TINY = {
    "models": {"tiny.en": {"source": "embedded:tiny.en", "max_concurrency": 1, "max_queue": 0}},
    "aliases": {"whisper-1": {"model": "tiny.en", "usage": "duration"}},
    "preload_models": ["tiny.en"],
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("clips")
    return [(espeak(folder / f"clip{i}.wav", text), text) for i, text in enumerate(SENTENCES)]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("long-clip")
    passage = espeak(folder / "passage.wav", LONG_TEXT, speed=170)
    return repeat_audio(passage, folder / "long.wav", 3)


def _metric(server: RunningServer, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_concurrent_clients_all_get_their_own_answer(
    client: openai.OpenAI, server: RunningServer, clips: list[tuple[Path, str]]
) -> None:
    before = _metric(server, "stt_requests_total", status="200")

    def transcribe(item: tuple[Path, str]) -> tuple[str, str]:
        path, text = item
        return text, client.audio.transcriptions.create(model="gpt-4o-transcribe", file=path).text

    with ThreadPoolExecutor(max_workers=len(clips)) as pool:
        results = list(pool.map(transcribe, clips))
    for expected, got in results:
        assert wer(expected, got) <= 0.25, (expected, got)
    assert _metric(server, "stt_requests_total", status="200") - before == len(clips)


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One slot, no queue: the second concurrent request is refused at once."""
    with run_server(tmp_path_factory.mktemp("tiny"), TINY) as running:
        yield running


def _occupy(server: RunningServer, path: Path) -> threading.Thread:
    def run() -> None:
        client = openai.OpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0, timeout=300)
        client.audio.transcriptions.create(model="whisper-1", file=path)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while _metric(server, "stt_in_flight") < 1:
        assert time.monotonic() < deadline, "the occupying request never started"
        time.sleep(0.05)
    return thread


def test_full_queue_gives_429_and_the_sdk_retry_succeeds(
    tiny_server: RunningServer, long_clip: Path, clips: list[tuple[Path, str]]
) -> None:
    busy = _occupy(tiny_server, long_clip)
    path, text = clips[0]
    refused = httpx.post(
        f"{tiny_server.v1}/audio/transcriptions",
        headers={"Authorization": f"Bearer {tiny_server.api_key}"},
        files={"file": ("a.wav", path.read_bytes())},
        data={"model": "whisper-1"},
        timeout=60,
    )
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "queue_full"
    # The SDK honours Retry-After and retries until the slot is free again. On a loaded machine the
    # occupying request can take minutes, so the retry budget is generous rather than tight.
    patient = openai.OpenAI(base_url=tiny_server.v1, api_key=tiny_server.api_key, max_retries=30, timeout=300)
    result = patient.audio.transcriptions.create(model="whisper-1", file=path)
    assert wer(text, result.text) <= 0.25
    busy.join(timeout=300)
    assert _metric(tiny_server, "stt_requests_total", status="429") >= 1


def test_health_stays_fast_while_every_worker_is_busy(tiny_server: RunningServer, long_clip: Path) -> None:
    busy = _occupy(tiny_server, long_clip)
    timings = []
    with httpx.Client(base_url=tiny_server.base_url) as http:
        for _ in range(20):
            started = time.perf_counter()
            assert http.get("/health").status_code == 200
            timings.append(time.perf_counter() - started)
            time.sleep(0.05)
    busy.join(timeout=300)
    assert statistics.median(timings) < 0.1 and sorted(timings)[-2] < 0.1, timings


def test_admin_view_requires_admin_key(tiny_server: RunningServer) -> None:
    plain = httpx.get(
        f"{tiny_server.base_url}/admin/models", headers={"Authorization": f"Bearer {tiny_server.api_key}"}
    )
    assert plain.status_code == 403 and plain.json()["error"]["code"] == "admin_required"
    deadline = time.monotonic() + 120  # run alone, the test would look before the preload has finished
    while httpx.get(f"{tiny_server.base_url}/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    admin = httpx.get(
        f"{tiny_server.base_url}/admin/models", headers={"Authorization": f"Bearer {tiny_server.admin_key}"}
    )
    row = admin.json()["data"][0]
    assert row["name"] == "tiny.en" and row["loaded"] is True and row["memory_bytes"] > 0


def test_ready_reports_preloaded_models(tiny_server: RunningServer) -> None:
    response = httpx.get(f"{tiny_server.base_url}/ready")
    assert response.status_code == 200 and response.json()["ready"] is True


def test_idle_unload_then_reload(tmp_path: Path, clips: list[tuple[Path, str]]) -> None:
    config = TINY | {
        "models": {"tiny.en": {"source": "embedded:tiny.en", "idle_unload_seconds": 1}},
        "preload_models": [],
    }
    with run_server(tmp_path, config) as server:
        admin = {"Authorization": f"Bearer {server.admin_key}"}

        def loaded() -> bool:
            return bool(httpx.get(f"{server.base_url}/admin/models", headers=admin).json()["data"][0]["loaded"])

        assert not loaded()
        client = openai.OpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0, timeout=120)
        path, text = clips[1]
        assert wer(text, client.audio.transcriptions.create(model="whisper-1", file=path).text) <= 0.25
        deadline = time.monotonic() + 30
        while loaded():
            assert time.monotonic() < deadline, "the idle model was never unloaded"
            time.sleep(0.2)
        assert _metric(server, "stt_model_unloads_total") == 1
        assert wer(text, client.audio.transcriptions.create(model="whisper-1", file=path).text) <= 0.25
        assert _metric(server, "stt_model_loads_total") == 2


def test_per_key_rate_limit_and_ledger(tmp_path: Path, clips: list[tuple[Path, str]]) -> None:
    config = TINY | {
        "default_limits": {"requests_per_minute": 3},
        "models": {"tiny.en": {"source": "embedded:tiny.en"}},
    }
    with run_server(tmp_path, config) as server:
        client = openai.OpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0, timeout=120)
        durations = []
        for path, _ in clips[:3]:
            result = client.audio.transcriptions.create(model="whisper-1", file=path, response_format="verbose_json")
            durations.append(result.duration)
        with pytest.raises(openai.RateLimitError) as info:
            client.audio.transcriptions.create(model="whisper-1", file=clips[3][0])
        assert info.value.code == "rate_limit_exceeded"
        assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
        # Another key has its own window.
        admin_client = openai.OpenAI(base_url=server.v1, api_key=server.admin_key, max_retries=0, timeout=120)
        admin_client.audio.transcriptions.create(model="whisper-1", file=clips[4][0])
        ledger_url = f"sqlite:///{tmp_path / 'usage.db'}"
    usage = subprocess.run(
        [sys.executable, "-m", "app", "usage", "--json"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "STT_LEDGER_URL": ledger_url},
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {row["key"]: row for row in json.loads(usage.stdout)["keys"]}
    assert rows["test"]["requests"] == 3  # the refused request is not billed
    assert rows["test"]["audio_seconds"] == pytest.approx(sum(durations), abs=0.05)
    assert rows["test-admin"]["requests"] == 1


def test_metrics_count_what_was_done(tmp_path: Path, clips: list[tuple[Path, str]]) -> None:
    with run_server(tmp_path, TINY | {"models": {"tiny.en": {"source": "embedded:tiny.en"}}}) as server:
        client = openai.OpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0, timeout=120)
        audio = 0.0
        for path, _ in clips[:2]:
            audio += client.audio.transcriptions.create(
                model="whisper-1", file=path, response_format="verbose_json"
            ).duration
        list(client.audio.transcriptions.create(model="whisper-1", file=clips[2][0], stream=True))
        with pytest.raises(openai.BadRequestError):
            client.audio.transcriptions.create(model="whisper-1", file=b"not audio")
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{server.base_url}/metrics").text)}
        assert (
            _metric(server, "stt_requests_total", model="whisper-1", response_format="verbose_json", status="200") == 2
        )
        assert _metric(server, "stt_requests_total", status="400") == 1
        assert _metric(server, "stt_time_to_first_delta_seconds_count") == 1
        assert _metric(server, "stt_audio_seconds_total") >= audio
        assert _metric(server, "stt_request_duration_seconds_count") == 4
        assert {"stt_queue_depth", "stt_in_flight", "stt_model_loads", "stt_model_unloads"} <= set(families)
        assert "key=test" in server.log() and server.api_key not in server.log()


def test_deployment_files_pass_the_linters() -> None:
    result = subprocess.run(["bash", "scripts/lint_deploy.sh"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
