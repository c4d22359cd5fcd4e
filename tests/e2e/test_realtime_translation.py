"""Live translation: the real openai SDK's ``realtime.translations`` client against the real server (Whisper
``base``, multilingual), with a French recording and espeak-ng Spanish streamed in 200-ms frames of 24 kHz
PCM16, followed by silence as a translation client keeps sending, then ``session.close``."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from websockets.exceptions import InvalidStatus

from engines.audio import decode_audio
from tests.audio import espeak, recording, wer
from tests.server import RunningServer, async_sdk_client, run_server

pytestmark = pytest.mark.anyio

CONFIG = {
    "models": {
        "base": {"source": "embedded:base", "max_concurrency": 2},
        "tiny.en": {"source": "embedded:tiny.en", "max_concurrency": 1},
    },
    "preload_models": ["base"],
    "realtime": {"max_sessions_per_key": 5},
}
FRAME = 9600  # 200 ms of 24 kHz PCM16
# fr_picovoice_leopard.txt: "Sous le consulat il devient conservateur des eaux et forêts et conseiller général."
# (a literal translation, the historic present kept).
FRENCH_RECORDING_ENGLISH = "Under the Consulate, he becomes conservator of waters and forests and general councillor."
SPANISH = (
    "Mañana por la mañana vamos a visitar el museo de la ciudad con mis dos hermanos, "
    "y después comeremos juntos en un restaurante cerca del río."
)
SPANISH_ENGLISH = (
    "Tomorrow morning we are going to visit the city museum with my two brothers, "
    "and then we will eat together in a restaurant near the river."
)
# espeak-ng's French is not generated here: base hears it as Thai or babble even from a whole file.
Event = Any


@pytest.fixture(scope="module")
def tr_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own: translation needs the multilingual base (the other realtime tests use tiny.en)."""
    with run_server(tmp_path_factory.mktemp("translation"), CONFIG) as running:
        yield running


@pytest.fixture
async def aclient(tr_server: RunningServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with async_sdk_client(tr_server) as client:  # closed in the test's own event loop (test_realtime.py)
        yield client


@pytest.fixture(scope="module")
def spanish(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return espeak(tmp_path_factory.mktemp("speech") / "es.wav", SPANISH, voice="es", speed=140)


async def recv(conn: Any) -> Event:
    return await asyncio.wait_for(conn.recv(), 60)


def pcm24(path: Path) -> bytes:
    audio = decode_audio(path.read_bytes(), sample_rate=24_000)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


@dataclass
class Run:
    """What one streamed session saw: its events, when each arrived, and when the speech ended."""

    events: list[Event] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    started: float = 0.0
    speech_sent: float = 0.0

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]

    def text(self, kind: str = "session.output_transcript.delta") -> str:
        return "".join(e.delta for e in self.of(kind))

    def times(self, kind: str = "session.output_transcript.delta") -> list[float]:
        return [t - self.started for e, t in zip(self.events, self.arrived, strict=True) if e.type == kind]


async def translate(
    conn: Any, data: bytes, *, speed: float = 1.0, silence_seconds: float = 4.0, update: dict[str, Any] | None = None
) -> Run:
    """Stream ``data`` then silence in 200-ms frames, send session.close, and collect events until session.closed."""
    run = Run()
    created = await conn.recv()
    assert created.type == "session.created"
    assert created.session.type == "translation" and created.session.audio.output.language == "en"
    if update is not None:
        await conn.session.update(session=update)
    frames = [data[i : i + FRAME] for i in range(0, len(data), FRAME)]
    frames += [bytes(FRAME)] * int(silence_seconds / 0.2)

    async def send() -> None:
        run.started = time.monotonic()
        for i, frame in enumerate(frames):
            if i == len(frames) - int(silence_seconds / 0.2):
                run.speech_sent = time.monotonic() - run.started
            await conn.send({"type": "session.input_audio_buffer.append", "audio": base64.b64encode(frame).decode()})
            await asyncio.sleep(0.2 / speed)
        await conn.send({"type": "session.close"})

    sender = asyncio.create_task(send())
    deadline = time.monotonic() + 240
    try:
        while not run.of("session.closed"):
            assert time.monotonic() < deadline, f"timed out; events so far: {[e.type for e in run.events]}"
            try:
                event = await asyncio.wait_for(conn.recv(), timeout=1.0)
            except TimeoutError:
                continue
            run.events.append(event)
            run.arrived.append(time.monotonic())
    finally:
        await sender
    return run


async def test_french_recording_is_translated_while_it_streams(aclient: openai.AsyncOpenAI) -> None:
    data = pcm24(recording("fr_picovoice_leopard.wav"))
    async with aclient.realtime.translations.connect(model="base") as conn:
        run = await translate(conn, data)
    assert not run.of("error"), run.of("error")
    output = run.text()
    print(f"\nfr recording: WER {wer(FRENCH_RECORDING_ENGLISH, output):.2f} {output!r} at {run.times()}")
    assert wer(FRENCH_RECORDING_ENGLISH, output) <= 0.6  # base measured 0.46 on this recording
    assert not run.of("session.input_transcript.delta")  # no source transcript unless asked for
    assert run.times()[0] < run.speech_sent + 3.0  # the first words come while the audio (and silence) streams


async def test_generated_spanish_is_translated_with_deltas_during_speech(
    aclient: openai.AsyncOpenAI, spanish: Path
) -> None:
    async with aclient.realtime.translations.connect(model="base") as conn:
        run = await translate(conn, pcm24(spanish))
    assert not run.of("error"), run.of("error")
    output, times = run.text(), run.times()
    print(f"\nes: WER {wer(SPANISH_ENGLISH, output):.2f} {output!r}; speech sent at {run.speech_sent:.1f} s, "
          f"deltas at {[round(t, 1) for t in times]}")  # fmt: skip
    assert wer(SPANISH_ENGLISH, output) <= 0.6
    # Words arrive while the speaker talks (not only the turn's final, once it ends); a little slack for a busy machine.
    assert len(times) >= 2 and times[0] < run.speech_sent + 0.5


async def test_source_transcript_when_asked(aclient: openai.AsyncOpenAI, spanish: Path) -> None:
    update = {"audio": {"input": {"transcription": {"model": "base"}}, "output": {"language": "en"}}}
    async with aclient.realtime.translations.connect(model="base") as conn:
        run = await translate(conn, pcm24(spanish), speed=2.0, update=update)
    assert not run.of("error"), run.of("error")
    updated = run.of("session.updated")
    assert updated and updated[-1].session.audio.input.transcription.model == "base"
    source = run.text("session.input_transcript.delta")
    print(f"\nes source: WER {wer(SPANISH, source):.2f} {source!r}; output {run.text()!r}")
    assert wer(SPANISH, source) <= 0.5
    assert wer(SPANISH_ENGLISH, run.text()) <= 0.6


async def test_bad_events_and_unsupported_options_get_errors_and_the_session_goes_on(
    aclient: openai.AsyncOpenAI,
) -> None:
    bad: list[tuple[dict[str, Any] | str, str, str | None]] = [
        ({"type": "session.update", "session": {"audio": {"output": {"language": "fr"}}}}, "unsupported_value",
         "session.audio.output.language"),
        ({"type": "session.update", "session": {"audio": {"output": {"voice": "alloy"}}}}, "unsupported_value",
         "session.audio.output.voice"),
        ({"type": "session.update", "session": {"model": "tiny.en"}}, "unsupported_value", "session.model"),
        ({"type": "session.update", "session": {"audio": {"input": {"transcription": {"model": "nope"}}}}},
         "model_not_found", "session.audio.input.transcription.model"),
        ({"type": "session.update", "session": {"audio": {"input": {"bogus": 1}}}}, "unknown_parameter",
         "session.audio.input.bogus"),
        ({"type": "input_audio_buffer.commit"}, "invalid_value", "type"),
        ({"type": "session.input_audio_buffer.append", "audio": "not base64!"}, "invalid_value", "audio"),
        ("{not json", "invalid_json", None),
    ]  # fmt: skip
    async with aclient.realtime.translations.connect(model="base") as conn:
        assert (await recv(conn)).type == "session.created"
        for event, _, _ in bad:
            if isinstance(event, str):
                await conn.send_raw(event)
            else:
                await conn.send(event)  # type: ignore[arg-type]
        errors = [await recv(conn) for _ in bad]
        assert [e.type for e in errors] == ["error"] * len(bad)
        assert [(e.error.code, e.error.param) for e in errors] == [(code, param) for _, code, param in bad]
        assert "English" in errors[0].error.message and "text" in errors[1].error.message
        # The session goes on: a supported update is applied.
        await conn.session.update(session={"audio": {"input": {"noise_reduction": {"type": "near_field"}}}})
        updated = await recv(conn)
        assert updated.type == "session.updated"
        assert updated.session.audio.input.noise_reduction.type == "near_field"
        await conn.send({"type": "session.close"})
        assert (await recv(conn)).type == "session.closed"


async def test_an_english_only_or_unknown_model_is_refused(aclient: openai.AsyncOpenAI) -> None:
    for model, code in (("tiny.en", "unsupported_value"), ("no-such-model", "model_not_found")):
        async with aclient.realtime.translations.connect(model=model) as conn:
            event = await recv(conn)
        assert event.type == "error" and event.error.code == code, event


async def test_a_bad_key_is_refused_before_the_upgrade(tr_server: RunningServer) -> None:
    client = async_sdk_client(tr_server, "sk-gateway-wrong")
    with pytest.raises(InvalidStatus) as caught:
        async with client.realtime.translations.connect(model="base"):
            pass
    assert caught.value.response.status_code == 401


async def test_client_secrets_open_translation_sessions_only(
    tr_server: RunningServer, aclient: openai.AsyncOpenAI
) -> None:
    secret: Any = await aclient.realtime.translations.client_secrets.create(
        session={"model": "base", "audio": {"input": {"noise_reduction": {"type": "far_field"}}}},
        expires_after={"anchor": "created_at", "seconds": 60},
    )
    assert secret.value.startswith("ek_") and secret.session.type == "translation"
    assert secret.session.model == "base" and secret.session.audio.output.language == "en"
    browser = async_sdk_client(tr_server, secret.value)
    async with browser.realtime.translations.connect(model="ignored") as conn:
        created = await recv(conn)
        assert created.type == "session.created"
        assert created.session.model == "base"  # the secret's session
        assert created.session.audio.input.noise_reduction.type == "far_field"
    async with browser.realtime.connect(extra_query={"intent": "transcription"}) as other:
        refused = await recv(other)
    assert refused.type == "error" and refused.error.code == "unsupported_session_type"
    for session, param in (
        ({"model": "base", "audio": {"output": {"language": "de"}}}, "session.audio.output.language"),
        ({"model": "base", "audio": {"input": {"transcription": {"model": "base"}}}},
         "session.audio.input.transcription"),
        ({"model": "nope"}, "session.model"),
    ):  # fmt: skip
        with pytest.raises(openai.BadRequestError) as caught:
            await aclient.realtime.translations.client_secrets.create(session=session)  # type: ignore[arg-type]
        assert caught.value.body["param"] == param  # type: ignore[index]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the SDK's realtime client runs on asyncio
