"""Admission, queueing, time limits, cancellation, bookkeeping and rendering, through the real app with a fake
recogniser: the in-process seam (no model, no server process)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import openai
import pytest
from starlette.types import Message

from app.accounting.request_record import RequestRecord
from app.api.routes import _stream
from app.api.state import app_state
from app.serving.deadline import Deadline
from app.serving.errors import ClientGone
from app.serving.service import TranscriptionService
from app.settings import Settings
from tests.audio import SYNTH_SENTENCE, espeak
from tests.inprocess import FAKE_TEXT, FakeEngine, FakeLoader, InProcess, in_process

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _transcribe(setup: InProcess, audio: bytes, **extra: Any) -> Any:
    return await setup.client.audio.transcriptions.create(model="whisper-1", file=audio, **extra)


async def _outcomes(calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the calls at once; each result, or the exception it raised."""
    results: list[Any] = [None] * len(calls)

    async def one(index: int) -> None:
        try:
            results[index] = await calls[index]()
        except Exception as exc:
            results[index] = exc

    async with anyio.create_task_group() as group:
        for index in range(len(calls)):
            group.start_soon(one, index)
    return results


def _status(outcome: Any) -> int:
    return outcome.status_code if isinstance(outcome, openai.APIStatusError) else 200


def _metric(setup: InProcess, name: str, **labels: str) -> float:
    value = app_state(setup.app).metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return espeak(tmp_path_factory.mktemp("speech") / "speech.wav", SYNTH_SENTENCE).read_bytes()


async def test_every_format_renders_from_the_fake_engine(tmp_path: Path, speech: bytes) -> None:
    async with in_process(tmp_path) as setup:
        assert (await _transcribe(setup, speech)).text == FAKE_TEXT.strip()
        srt = await _transcribe(setup, speech, response_format="srt")
        assert srt.startswith("1\n00:00:00,000 --> ") and FAKE_TEXT.strip() in srt
        verbose = await _transcribe(setup, speech, response_format="verbose_json")
        assert verbose.segments[0].text == FAKE_TEXT and verbose.language == "english"
        stream = await setup.client.audio.transcriptions.create(model="gpt-4o-transcribe", file=speech, stream=True)
        events = [event async for event in stream]
        assert events[-1].type == "transcript.text.done" and events[-1].text == FAKE_TEXT.strip()


async def test_queue_limit_holds_while_the_model_is_cold(tmp_path: Path, speech: bytes) -> None:
    """Places are reserved at admission: a burst during a slow model load cannot pass the limit."""
    loader = FakeLoader(load_seconds=1.0)
    models = {"fake": {"source": "fake", "max_concurrency": 1, "max_queue": 1}}
    async with in_process(tmp_path, loader, models=models) as setup:
        outcomes = await _outcomes([lambda: _transcribe(setup, speech) for _ in range(5)])
        statuses = sorted(_status(o) for o in outcomes)
        assert statuses == [200, 200, 429, 429, 429], outcomes
        refused = [o for o in outcomes if isinstance(o, openai.APIStatusError)]
        assert all(o.body["code"] == "queue_full" for o in refused)  # type: ignore[index]
        assert app_state(setup.app).service.slots["fake"].reserved == 0


async def test_full_queue_refusals_do_not_use_the_key_quota(tmp_path: Path, speech: bytes) -> None:
    """Only admitted requests count against requests-per-minute."""
    loader = FakeLoader(FakeEngine(decode_seconds=0.5))
    models = {"fake": {"source": "fake", "max_concurrency": 1, "max_queue": 0}}
    limits = {"requests_per_minute": 2}
    async with in_process(tmp_path, loader, models=models, default_limits=limits) as setup:
        outcomes = await _outcomes([lambda: _transcribe(setup, speech) for _ in range(3)])
        assert sorted(_status(o) for o in outcomes) == [200, 429, 429]
        # One request used the quota; the two refused for a full queue did not.
        assert (await _transcribe(setup, speech)).text == FAKE_TEXT.strip()


async def test_time_limit_counts_from_the_request_start(tmp_path: Path, speech: bytes) -> None:
    """A model load longer than the limit times the request out, though decoding itself is instant."""
    loader = FakeLoader(load_seconds=1.5)
    async with in_process(tmp_path, loader, request_timeout_seconds=1.0) as setup:
        with pytest.raises(openai.APIStatusError) as caught:
            await _transcribe(setup, speech)
        assert caught.value.status_code == 504
        assert caught.value.body["code"] == "timeout"  # type: ignore[index]
        assert app_state(setup.app).service.slots["fake"].reserved == 0


async def test_time_limit_stops_a_long_decode(tmp_path: Path, speech: bytes) -> None:
    loader = FakeLoader(FakeEngine(decode_seconds=30.0))
    async with in_process(tmp_path, loader, request_timeout_seconds=0.5) as setup:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            await _transcribe(setup, speech)
        assert caught.value.status_code == 504
        assert time.monotonic() - started < 5


async def test_malformed_multipart_is_400_and_accounted(tmp_path: Path) -> None:
    async with in_process(tmp_path) as setup:
        headers = {"authorization": f"Bearer {setup.key}", "content-type": "multipart/form-data"}  # no boundary
        response = await setup.http.post("/v1/audio/transcriptions", headers=headers, content=b"--x\r\ngarbage")
        assert response.status_code == 400
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert _metric(setup, "stt_requests_total", model="-", response_format="-", status="400") == 1


async def test_a_stream_torn_down_before_its_first_frame_releases_everything(tmp_path: Path, speech: bytes) -> None:
    """The client is gone before the first byte: the lease and queue place come back, the request is recorded."""
    async with in_process(tmp_path) as setup:
        service: TranscriptionService = app_state(setup.app).service
        settings: Settings = app_state(setup.app).settings
        import io

        from starlette.datastructures import FormData, UploadFile

        from app.api.form import parse_audio_form

        form = FormData([("file", UploadFile(io.BytesIO(speech))), ("model", "whisper-1"), ("stream", "true")])
        request = await parse_audio_form(form, task="transcribe", max_upload_bytes=settings.max_upload_bytes)
        job = await service.start(service.admit(request), Deadline(60))
        record = RequestRecord(app_state(setup.app).metrics, endpoint="transcribe", key_name="test", model="whisper-1")
        response = _stream(job, record, settings)

        async def receive() -> Message:
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            raise OSError("the client went away")

        with pytest.raises(BaseException):  # noqa: B017 - whatever the transport raises is not the point
            await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
        assert service.slots["fake"].reserved == 0
        assert all(status.in_use == 0 for status in service.manager.status())
        assert _metric(setup, "stt_requests_total", model="whisper-1", response_format="-", status="499") == 1


async def test_a_client_that_leaves_stops_the_decoding(tmp_path: Path, speech: bytes) -> None:
    loader = FakeLoader(FakeEngine(decode_seconds=30.0))
    async with in_process(tmp_path, loader) as setup:
        service: TranscriptionService = app_state(setup.app).service
        import io

        from starlette.datastructures import FormData, UploadFile

        from app.api.form import parse_audio_form

        form = FormData([("file", UploadFile(io.BytesIO(speech))), ("model", "whisper-1")])
        request = await parse_audio_form(form, task="transcribe", max_upload_bytes=10**8)
        job = await service.start(service.admit(request), Deadline(60))
        started = time.monotonic()

        async def gone() -> bool:
            return time.monotonic() - started > 0.3

        with pytest.raises(ClientGone):
            await job.collect(gone)
        assert time.monotonic() - started < 3
        assert service.slots["fake"].reserved == 0
        assert all(status.in_use == 0 for status in service.manager.status())
