"""Two replicas of the real server (tiny.en) on two ports, sharing one real Redis (``shared_state_url``) and one
real PostgreSQL ledger, driven through the openai SDK: one limit per key, client secrets valid on both, usage
counted once, and a Redis outage answered with 503 until Redis returns."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import websockets
from pytest_redis.executor import RedisExecutor
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait
from websockets.exceptions import InvalidStatus

from app.api.auth import hash_key, new_secret
from engines.audio import decode_audio
from tests.audio import espeak, wer
from tests.server import RunningServer, run_server
from tests.services import PostgresServer, redis_server, redis_url

pytestmark = pytest.mark.e2e

RPM = 4
CONFIG = {
    "models": {"tiny.en": {"source": "embedded:tiny.en", "max_concurrency": 1}},
    "aliases": {
        "whisper-1": {"model": "tiny.en", "usage": "duration"},
        "gpt-realtime-whisper": {"model": "tiny.en", "usage": "tokens"},
    },
    "preload_models": ["tiny.en"],
    "key_limits": {"limited": {"requests_per_minute": RPM}, "outage": {"requests_per_minute": 100}},
}
INTENT = {"intent": "transcription"}
SENTENCE = "Please bring the blue folder to my office."
KEY_NAMES = ("test", "limited", "outage", "counted", "console", "admin")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Replicas:
    servers: tuple[RunningServer, RunningServer]
    keys: dict[str, str]  # name -> secret, the same on both
    redis: RedisExecutor

    def client(self, index: int, key: str = "test") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.servers[index].v1, api_key=self.keys[key], max_retries=0, timeout=120)

    def aclient(self, index: int, api_key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.servers[index].v1, api_key=api_key, max_retries=0)

    def get(self, index: int, path: str, key: str = "admin") -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[key]}"}
        return httpx.get(self.servers[index].base_url + path, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[Replicas]:
    keys = {name: new_secret() for name in KEY_NAMES}
    records = [{"name": n, "sha256": hash_key(k), "admin": n == "admin"} for n, k in keys.items()]
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        ledger_url = stack.enter_context(postgres.database())
        env = {
            "STT_API_KEYS": json.dumps(records),
            "STT_SHARED_STATE_URL": redis_url(redis),
            "STT_LEDGER_URL": ledger_url,
        }
        servers = tuple(
            stack.enter_context(run_server(tmp_path_factory.mktemp(f"replica{i}"), CONFIG, env)) for i in range(2)
        )
        for server in servers:
            _wait_ready(server)
        yield Replicas((servers[0], servers[1]), keys, redis)


def _wait_ready(server: RunningServer, timeout: float = 180.0) -> None:
    """Until the preloaded model is in memory (run_server waits only for /health)."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{server.base_url}/ready", timeout=5).status_code != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready within {timeout} s:\n{server.log()}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return espeak(tmp_path_factory.mktemp("speech") / "sentence.wav", SENTENCE)


def _status(call: Any) -> int:
    try:
        call()
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def test_both_replicas_are_ready_with_the_shared_state(replicas: Replicas) -> None:
    for index in range(2):
        ready = replicas.get(index, "/ready")
        assert ready.status_code == 200 and ready.json()["shared_state"] == "ok", ready.text


def test_a_keys_limit_holds_across_both_replicas(replicas: Replicas, speech: Path) -> None:
    statuses = []
    for attempt in range(RPM + 2):  # alternating: each replica alone would admit RPM
        client = replicas.client(attempt % 2, "limited")
        statuses.append(_status(lambda c=client: c.audio.transcriptions.create(model="whisper-1", file=speech)))
    assert statuses == [200] * RPM + [429, 429]
    with pytest.raises(openai.RateLimitError) as refused:
        replicas.client(1, "limited").audio.transcriptions.create(model="whisper-1", file=speech)
    assert f"Limit {RPM}, Used {RPM}" in str(refused.value) and refused.value.code == "rate_limit_exceeded"


async def _transcribe_live(client: openai.AsyncOpenAI, speech: Path) -> str:
    audio = decode_audio(speech.read_bytes(), sample_rate=24_000)
    pcm = (np.clip(np.concatenate([audio, np.zeros(4800, np.float32)]), -1, 1) * 32767).astype("<i2").tobytes()
    async with client.realtime.connect(extra_query=INTENT) as conn:
        for i in range(0, len(pcm), 9600):
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + 9600]).decode())
        await conn.input_audio_buffer.commit()
        while True:
            event = await asyncio.wait_for(conn.recv(), timeout=120)
            assert event.type != "error", event
            if event.type == "conversation.item.input_audio_transcription.completed":
                return str(event.transcript)


def _mint(replicas: Replicas, index: int) -> str:
    secret = replicas.client(index).realtime.client_secrets.create(
        session={"type": "transcription", "audio": {"input": {"turn_detection": None}}}
    )
    return secret.value


@pytest.mark.anyio
async def test_a_client_secret_minted_on_one_replica_opens_a_session_on_the_other(
    replicas: Replicas, speech: Path
) -> None:
    secret = _mint(replicas, 0)
    transcript = await _transcribe_live(replicas.aclient(1, secret), speech)
    assert wer(SENTENCE, transcript) <= 0.25, transcript


def test_usage_from_both_replicas_appears_once(replicas: Replicas, speech: Path) -> None:
    for index in (0, 1, 1):
        replicas.client(index, "counted").audio.transcriptions.create(model="whisper-1", file=speech)
    deadline = time.monotonic() + 10  # rows are written just after each answer
    while True:
        views = [{row["key"]: row for row in replicas.get(i, "/admin/usage").json()["data"]} for i in range(2)]
        if all(view.get("counted", {}).get("requests") == 3 for view in views) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert views[0] == views[1]  # one ledger
    counted = views[0]["counted"]
    assert counted["requests"] == 3 and 6 < counted["audio_seconds"] < 15
    assert views[0]["limited"]["requests"] == RPM  # refusals are not rows


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="Chromium and its driver are not installed")
def test_the_console_of_either_replica_shows_usage_from_both(replicas: Replicas, speech: Path) -> None:
    for index in (0, 1):
        replicas.client(index, "console").audio.transcriptions.create(model="whisper-1", file=speech)
    deadline = time.monotonic() + 10  # rows are written just after each answer
    while time.monotonic() < deadline:
        rows = {row["key"]: row for row in replicas.get(0, "/admin/usage").json()["data"]}
        if rows.get("console", {}).get("requests") == 2:
            break
        time.sleep(0.2)
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    browser = Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        for server in replicas.servers:
            browser.get(f"{server.base_url}/console")
            field = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "api-key"))
            field.send_keys(replicas.keys["admin"], Keys.ENTER)

            def console_requests(driver: Chrome) -> str | None:
                rows = driver.find_elements(By.CSS_SELECTOR, '#usage tr[data-key="console"]')
                return rows[0].find_elements(By.TAG_NAME, "td")[0].text if rows else None

            assert WebDriverWait(browser, 30, poll_frequency=0.2).until(console_requests) == "2"
    finally:
        browser.quit()


@pytest.mark.anyio
async def test_redis_outage_answers_503_and_service_resumes_when_it_returns(replicas: Replicas, speech: Path) -> None:
    replicas.redis.kill()  # SIGKILL: no goodbye to the clients
    try:
        for index in range(2):
            ready = replicas.get(index, "/ready")
            assert ready.status_code == 503 and ready.json()["shared_state"] == "unreachable"
            assert replicas.get(index, "/health").status_code == 200
            started = time.monotonic()
            with pytest.raises(openai.InternalServerError) as refused:
                replicas.client(index, "outage").audio.transcriptions.create(model="whisper-1", file=speech)
            assert time.monotonic() - started < 5
            assert refused.value.status_code == 503 and refused.value.code == "shared_state_unavailable"
            assert refused.value.response.headers["retry-after"] == "2"
            # A key without a requests-per-minute limit needs no shared state: it is served.
            assert replicas.client(index, "test").audio.transcriptions.create(model="whisper-1", file=speech).text
        with pytest.raises(openai.InternalServerError):
            _mint(replicas, 0)
        url = replicas.servers[1].v1.replace("http://", "ws://") + "/realtime?intent=transcription"
        with pytest.raises(InvalidStatus) as denied:
            async with websockets.connect(url, subprotocols=["realtime", "openai-insecure-api-key.ek_unknown"]):  # type: ignore[list-item]
                pass
        assert denied.value.response.status_code == 503
    finally:
        replicas.redis.start()
    for index in range(2):
        assert replicas.get(index, "/ready").status_code == 200
        client = replicas.client(index, "outage")
        assert client.audio.transcriptions.create(model="whisper-1", file=speech).text
    transcript = await _transcribe_live(replicas.aclient(0, _mint(replicas, 1)), speech)
    assert wer(SENTENCE, transcript) <= 0.25, transcript
