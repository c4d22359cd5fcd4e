"""Live transcription: the real openai SDK's realtime client (GA and beta) against the real server, with
real recordings and generated speech streamed in 20–100 ms chunks."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from engines.audio import decode_audio
from tests.audio import convert, espeak, recording, reference, wer
from tests.server import RunningServer, async_sdk_client, run_server

pytestmark = pytest.mark.anyio  # async tests run on asyncio (the SDK needs it)

CONFIG = {
    # Two slots per model, as the default config: a final and the next turn's live decode run at once.
    "models": {
        "base": {"source": "embedded:base", "max_concurrency": 2},
        "tiny.en": {"source": "embedded:tiny.en", "max_concurrency": 2},
    },
    "aliases": {
        "whisper-1": {"model": "tiny.en", "usage": "duration"},
        "gpt-realtime-whisper": {"model": "tiny.en", "usage": "tokens"},
        "gpt-live-transcribe": {"model": "base", "usage": "tokens"},
    },
    "preload_models": ["tiny.en", "base"],
    # 15-s turns: the long utterance below stays one turn (the default cuts turns at 10 s).
    # Turn anchors (off by default) on here: every test's live decodes go through them too.
    "realtime": {"max_sessions_per_key": 5, "max_turn_seconds": 15, "anchor_turns": True},
}
INTENT = {"intent": "transcription"}
# About 12 s without a pause: long enough for live deltas even on a busy machine.
LONG_UTTERANCE = (
    "the committee agreed that the new library building would open in the spring and that every student "
    "in the district would receive a free card to borrow books and music and films for the whole summer"
)
SENTENCES = [
    "The river flows quietly past the old mill.",
    "Seven green apples fell from the tall tree.",
    "Please bring the blue folder to my office.",
    "The train to Boston leaves at half past nine.",
]
Event = Any


@pytest.fixture(scope="module")
def rt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(tmp_path_factory.mktemp("realtime"), CONFIG) as running:
        yield running


@pytest.fixture
async def aclient(rt_server: RunningServer) -> AsyncIterator[openai.AsyncOpenAI]:
    # One per test, closed in the test's own event loop: a pooled HTTP connection left for the garbage
    # collector is closed in a later test's loop and fails that test ("Event loop is closed").
    async with async_sdk_client(rt_server) as client:
        yield client


@pytest.fixture(scope="module")
def sclient(rt_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=rt_server.v1, api_key=rt_server.api_key, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("sentences")
    return [espeak(folder / f"s{i}.wav", text) for i, text in enumerate(SENTENCES)]


def pcm24(path: Path, *, pad_seconds: float = 1.0) -> bytes:
    audio = decode_audio(path.read_bytes(), sample_rate=24_000)
    audio = np.concatenate([audio, np.zeros(int(24_000 * pad_seconds), np.float32)])
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def session(**audio_input: Any) -> Any:
    return {"type": "transcription", "audio": {"input": audio_input}}


async def stream(conn: Any, data: bytes, *, bytes_per_second: int = 48_000, chunk_ms: int = 100,
                 speed: float = 4.0) -> None:  # fmt: skip
    chunk = bytes_per_second * chunk_ms // 1000
    for i in range(0, len(data), chunk):
        await conn.input_audio_buffer.append(audio=base64.b64encode(data[i : i + chunk]).decode())
        await asyncio.sleep(chunk_ms / 1000 / speed)


async def events_until(conn: Any, done: Callable[[list[Event]], bool], timeout: float = 240) -> list[Event]:
    """Events until ``done`` says so; it is asked on every event and every second (its inputs may change)."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while not done(events):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; events so far: {[e.type for e in events]}")
        try:
            events.append(await asyncio.wait_for(conn.recv(), timeout=1.0))
        except TimeoutError:
            continue
    return events


def completed(events: list[Event]) -> list[Event]:
    return [e for e in events if e.type == "conversation.item.input_audio_transcription.completed"]


def count_completed(n: int) -> Callable[[list[Event]], bool]:
    return lambda events: len(completed(events)) >= n


async def transcribe_live(conn: Any, data: bytes, turns: int, **kwargs: Any) -> list[Event]:
    sender = asyncio.create_task(stream(conn, data, **kwargs))
    try:
        return await events_until(conn, count_completed(turns))
    finally:
        await sender


# --- server VAD ------------------------------------------------------------------------------------------


async def test_server_vad_turns_in_order(aclient: openai.AsyncOpenAI) -> None:
    """JFK at real time in 20 ms chunks: turns with speech_started/stopped, committed, item added, deltas
    joining to each completed transcript, item done."""
    path = recording("en_jfk.flac")
    async with aclient.realtime.connect(extra_query=INTENT) as conn:
        created = await conn.recv()
        assert created.type == "session.created"
        await conn.session.update(session=session(
            transcription={"model": "gpt-realtime-whisper", "language": "en"},
            turn_detection={"type": "server_vad", "silence_duration_ms": 500},
        ))  # fmt: skip
        assert (await conn.recv()).type == "session.updated"
        sender = asyncio.create_task(stream(conn, pcm24(path), chunk_ms=20, speed=1.0))
        events = await events_until(conn, lambda ev: sender.done() and _all_items_done(ev))
        await sender
    turns = completed(events)
    assert len(turns) >= 2
    for turn in turns:
        mine = [e for e in events if _item_of(e) == turn.item_id]
        kinds = [e.type for e in mine]
        assert kinds.index("input_audio_buffer.speech_started") < kinds.index("input_audio_buffer.speech_stopped")
        assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("input_audio_buffer.committed")
        assert kinds.index("input_audio_buffer.committed") < kinds.index("conversation.item.added")
        assert kinds[-1] == "conversation.item.done" and mine[-1].item.content[0].transcript == turn.transcript
        deltas = "".join(e.delta for e in mine if e.type.endswith("transcription.delta"))
        assert deltas == turn.transcript  # append-only deltas join to the transcript
        assert turn.usage.type == "tokens" and turn.usage.input_token_details.audio_tokens > 0
    text = " ".join(t.transcript for t in turns)
    assert wer(reference("en_jfk.flac"), text) <= 0.25, text


async def test_deltas_flow_while_the_speaker_is_still_talking(aclient: openai.AsyncOpenAI, tmp_path: Path) -> None:
    path = espeak(tmp_path / "long.wav", LONG_UTTERANCE, speed=160)
    async with aclient.realtime.connect(extra_query=INTENT) as conn:
        await conn.session.update(session=session(transcription={"model": "gpt-realtime-whisper", "delay": "low"}))
        events = await transcribe_live(conn, pcm24(path), 1, chunk_ms=50, speed=1.0)
    kinds = [e.type for e in events]
    stopped = kinds.index("input_audio_buffer.speech_stopped")
    early = [e.delta for e in events[:stopped] if e.type.endswith("transcription.delta")]
    assert early, "no delta arrived while the speaker was still talking"
    turn = completed(events)[0]
    assert turn.transcript.startswith("".join(early))
    assert wer(LONG_UTTERANCE, turn.transcript) <= 0.25, turn.transcript


# Three sentences, about 13 s without a commit: Whisper times each sentence as a segment.
THREE_SENTENCES = (
    "The museum opens at nine in the morning. Visitors can buy their tickets at the front desk. "
    "The cafe on the second floor serves soup and sandwiches until three in the afternoon."
)


async def test_a_long_turn_is_decoded_on_from_its_shown_words(
    rt_server: RunningServer, aclient: openai.AsyncOpenAI, tmp_path: Path
) -> None:
    """One 13-s manual turn: once a sentence is shown, later live decodes start after it and hear its words as
    the prompt; the deltas still join to the transcript, as good as ever."""
    path = espeak(tmp_path / "three.wav", THREE_SENTENCES, speed=160)
    async with aclient.realtime.connect(extra_query=INTENT) as conn:
        created: Any = await conn.recv()  # session.created
        await conn.session.update(
            session=session(turn_detection=None, transcription={"model": "gpt-live-transcribe", "language": "en"})
        )
        assert (await conn.recv()).type == "session.updated"
        await stream(conn, pcm24(path), chunk_ms=100, speed=1.0)
        await conn.input_audio_buffer.commit()
        events = await events_until(conn, count_completed(1))
    (turn,) = completed(events)
    deltas = "".join(e.delta for e in events if e.type.endswith("transcription.delta"))
    assert deltas == turn.transcript
    assert wer(THREE_SENTENCES, turn.transcript) <= 0.15, turn.transcript
    marker = f"session={created.session.id} "
    for _ in range(50):  # the session's log line is written once it has closed
        lines = [line for line in rt_server.log().splitlines() if marker in line and "decodes=" in line]
        if lines:
            break
        await asyncio.sleep(0.1)
    anchored = int(lines[0].split("'anchored': ")[1].split(",")[0])
    assert anchored > 0, lines[0]


def _item_of(event: Event) -> str | None:
    item = getattr(event, "item", None)
    return item.id if item is not None else getattr(event, "item_id", None)


def _all_items_done(events: list[Event]) -> bool:
    started = {e.item_id for e in events if e.type == "input_audio_buffer.speech_started"}
    done = {e.item.id for e in events if e.type == "conversation.item.done"}
    stopped = [e for e in events if e.type == "input_audio_buffer.speech_stopped"]
    return bool(started) and started <= done and len(stopped) == len(started)


async def test_several_turns_match_the_file_endpoint(aclient: openai.AsyncOpenAI, sclient: openai.OpenAI) -> None:
    """The 35-s Harvard sentences (8 kHz telephone) at 4x real time: one turn per pause, as good as a file."""
    path = recording("en_osr_harvard72_8k.wav")
    async with aclient.realtime.connect(extra_query=INTENT) as conn:
        await conn.session.update(session=session(transcription={"model": "gpt-realtime-whisper", "language": "en"}))
        sender = asyncio.create_task(stream(conn, pcm24(path), chunk_ms=100, speed=4.0))
        events = await events_until(conn, lambda ev: sender.done() and _all_items_done(ev))
        await sender
    live = " ".join(t.transcript for t in completed(events))
    assert len(completed(events)) >= 5
    whole = sclient.audio.transcriptions.create(model="gpt-realtime-whisper", file=path, language="en").text
    assert wer(reference("en_osr_harvard72_8k.wav"), live) <= wer(reference("en_osr_harvard72_8k.wav"), whole) + 0.1
    assert wer(whole, live) <= 0.2, (whole, live)


# --- manual commits, formats, log-probs ------------------------------------------------------------------


def test_manual_commits_with_the_sync_client(sclient: openai.OpenAI, sentences: list[Path]) -> None:
    with sclient.realtime.connect(extra_query=INTENT) as conn:
        assert conn.recv().type == "session.created"
        conn.session.update(session=session(turn_detection=None, transcription={"model": "gpt-realtime-whisper"}))
        updated: Any = conn.recv()
        assert updated.type == "session.updated" and updated.session.audio.input.turn_detection is None
        transcripts = []
        for path in sentences[:2]:
            data = pcm24(path, pad_seconds=0.2)
            for i in range(0, len(data), 4800):  # 100 ms chunks, as fast as they go
                conn.input_audio_buffer.append(audio=base64.b64encode(data[i : i + 4800]).decode())
            conn.input_audio_buffer.commit()
            for event in conn:
                assert not event.type.startswith("input_audio_buffer.speech")
                if event.type == "conversation.item.input_audio_transcription.completed":
                    transcripts.append(event.transcript)
                    break
    for text, expected in zip(transcripts, SENTENCES[:2], strict=True):
        assert wer(expected, text) <= 0.2, text


@pytest.mark.parametrize(("fmt", "ffmpeg_format"), [("audio/pcmu", "mulaw"), ("audio/pcma", "alaw")])
async def test_g711_input(aclient: openai.AsyncOpenAI, tmp_path: Path, fmt: str, ffmpeg_format: str) -> None:
    name = "en_librispeech_1272-128104-0000.wav"
    raw = convert(recording(name), tmp_path / "speech.raw", "-ar", "8000", "-ac", "1", "-f", ffmpeg_format)
    async with aclient.realtime.connect(extra_query=INTENT) as conn:
        await conn.session.update(session=session(format={"type": fmt}, turn_detection=None))
        await stream(conn, raw.read_bytes(), bytes_per_second=8000, chunk_ms=50, speed=20)
        await conn.input_audio_buffer.commit()
        events = await events_until(conn, count_completed(1))
    assert wer(reference(name), completed(events)[0].transcript) <= 0.3, completed(events)[0].transcript


async def test_logprobs_when_included(aclient: openai.AsyncOpenAI, sentences: list[Path]) -> None:
    async with aclient.realtime.connect(extra_query=INTENT) as conn:
        logprobs: Any = {**session(turn_detection=None), "include": ["item.input_audio_transcription.logprobs"]}
        await conn.session.update(session=logprobs)
        await stream(conn, pcm24(sentences[2], pad_seconds=0.2), speed=50)
        await conn.input_audio_buffer.commit()
        turn = completed(await events_until(conn, count_completed(1)))[0]
    assert turn.logprobs and all(lp.logprob <= 0 for lp in turn.logprobs)
    joined = "".join(lp.token for lp in turn.logprobs).strip()
    assert wer(turn.transcript, joined) <= 0.1
    assert bytes(turn.logprobs[0].bytes).decode() == turn.logprobs[0].token


# --- bad events, auth, secrets ---------------------------------------------------------------------------


async def test_every_bad_event_gets_an_error_and_the_session_goes_on(
    aclient: openai.AsyncOpenAI, sentences: list[Path]
) -> None:
    bad = [
        ("e1", "{not json", "invalid_json"),
        ("e2", json.dumps({"type": "input_audio_buffer.bogus", "event_id": "e2"}), "invalid_value"),
        ("e3", json.dumps({"type": "session.update", "event_id": "e3", "session": {"type": "transcription",
         "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": "high"}}}}}), "invalid_type"),
        ("e4", json.dumps({"type": "input_audio_buffer.append", "event_id": "e4", "audio": "%%% not base64"}),
         "invalid_value"),
        ("e5", json.dumps({"type": "input_audio_buffer.commit", "event_id": "e5"}), "input_audio_buffer_commit_empty"),
        ("e6", json.dumps({"type": "session.update", "event_id": "e6", "session": {"type": "transcription",
         "audio": {"input": {"transcription": {"model": "no-such-model"}}}}}), "model_not_found"),
        ("e7", json.dumps({"type": "session.update", "event_id": "e7", "session": {"type": "realtime"}}),
         "invalid_value"),
    ]  # fmt: skip
    async with aclient.realtime.connect(extra_query=INTENT) as conn:
        await conn.recv()
        await conn.session.update(session=session(turn_detection=None))
        await conn.recv()
        errors = []
        for _, raw, _ in bad:
            await conn.send_raw(raw)
            errors.append(await conn.recv())
        for (event_id, _, code), error in zip(bad, errors, strict=True):
            assert error.type == "error", error
            assert error.error.code == code, error
            if event_id != "e1":
                assert error.error.event_id == event_id
        await stream(conn, pcm24(sentences[0], pad_seconds=0.2), speed=50)
        await conn.input_audio_buffer.commit()
        turn = completed(await events_until(conn, count_completed(1)))[0]
    assert wer(SENTENCES[0], turn.transcript) <= 0.2


async def test_the_request_rules_hold_in_a_session(aclient: openai.AsyncOpenAI, sentences: list[Path]) -> None:
    """The file endpoint's rules for keywords and languages (app/api/request_rules.py), as error events naming
    the field; the session goes on with its configuration as it was."""
    field = "session.audio.input.transcription"
    refused: list[tuple[dict[str, Any], str]] = [
        ({"keywords": ["two\nlines"]}, f"{field}.keywords"),
        ({"keywords": ["<|fr|>"]}, f"{field}.keywords"),
        ({"languages": ["xx"]}, f"{field}.languages"),
        ({"language": "en", "languages": ["en", "fr"]}, f"{field}.languages"),
    ]
    async with aclient.realtime.connect(extra_query=INTENT) as conn:
        await conn.recv()
        await conn.session.update(session=session(turn_detection=None))
        await conn.recv()
        for transcription, param in refused:
            audio = {"input": {"transcription": {"model": "gpt-realtime-whisper", **transcription}}}
            await conn.send_raw(json.dumps({"type": "session.update", "session": {"type": "transcription",
                                                                                "audio": audio}}))  # fmt: skip
            error = await conn.recv()
            assert error.type == "error" and error.error.param == param, (transcription, error)
        await stream(conn, pcm24(sentences[0], pad_seconds=0.2), speed=50)
        await conn.input_audio_buffer.commit()
        turn = completed(await events_until(conn, count_completed(1)))[0]
    assert wer(SENTENCES[0], turn.transcript) <= 0.2


async def test_a_bad_key_is_refused_before_the_upgrade(rt_server: RunningServer) -> None:
    client = openai.AsyncOpenAI(base_url=rt_server.v1, api_key="sk-gateway-wrong", max_retries=0)
    with pytest.raises(InvalidStatus) as caught:
        async with client.realtime.connect(extra_query=INTENT):
            pass
    assert caught.value.response.status_code == 401
    assert "sk-gateway-wrong" not in rt_server.log()


async def test_browser_subprotocol_with_an_ephemeral_secret(
    rt_server: RunningServer, sclient: openai.OpenAI, sentences: list[Path]
) -> None:
    secret = sclient.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 60},
        session=session(turn_detection=None, transcription={"model": "gpt-realtime-whisper", "language": "en"}),
    )
    assert secret.value.startswith("ek_") and secret.expires_at > time.time()
    # The secret is for realtime only.
    http = httpx.get(f"{rt_server.v1}/models", headers={"Authorization": f"Bearer {secret.value}"})
    assert http.status_code == 401
    url = rt_server.v1.replace("http://", "ws://") + "/realtime?intent=transcription"
    protocols = ["realtime", f"openai-insecure-api-key.{secret.value}"]
    async with websockets.connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "realtime"
        created = json.loads(await ws.recv())
        assert created["type"] == "session.created"
        assert created["session"]["audio"]["input"]["turn_detection"] is None  # the secret's session config
        data = pcm24(sentences[1], pad_seconds=0.2)
        for i in range(0, len(data), 9600):
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(data[i : i + 9600]).decode()}))  # fmt: skip
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "conversation.item.input_audio_transcription.completed":
                break
    assert wer(SENTENCES[1], event["transcript"]) <= 0.2
    with pytest.raises(InvalidStatus):
        async with websockets.connect(url, subprotocols=["realtime", "openai-insecure-api-key.ek_forged"]):  # type: ignore[list-item]
            pass


async def test_a_conversation_session_is_refused(aclient: openai.AsyncOpenAI) -> None:
    async with aclient.realtime.connect(model="gpt-realtime") as conn:
        error = await conn.recv()
        assert error.type == "error" and error.error.code == "unsupported_session_type"
        with pytest.raises(ConnectionClosed) as caught:
            await conn._connection.recv()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1008


# --- serving -------------------------------------------------------------------------------------------


async def test_four_sessions_at_once(aclient: openai.AsyncOpenAI, sentences: list[Path]) -> None:
    async def one(path: Path) -> str:
        async with aclient.realtime.connect(extra_query=INTENT) as conn:
            await conn.session.update(session=session(transcription={"model": "gpt-live-transcribe"}))
            events = await transcribe_live(conn, pcm24(path), 1, chunk_ms=50, speed=2.0)
            return " ".join(t.transcript for t in completed(events))

    results = await asyncio.gather(*(one(path) for path in sentences))
    for expected, got in zip(SENTENCES, results, strict=True):
        assert wer(expected, got) <= 0.25, (expected, got)


async def test_over_the_session_limit_closes_with_1013(rt_server: RunningServer, aclient: openai.AsyncOpenAI) -> None:
    managers = [aclient.realtime.connect(extra_query=INTENT) for _ in range(5)]
    connections = [await m.enter() for m in managers]
    try:
        for conn in connections:
            assert (await conn.recv()).type == "session.created"
        async with aclient.realtime.connect(extra_query=INTENT) as extra:
            error = await extra.recv()
            assert error.type == "error" and error.error.code == "session_limit_reached"
            with pytest.raises(ConnectionClosed) as caught:
                await extra._connection.recv()
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1013
    finally:
        for conn in connections:
            await conn.close()
    await asyncio.sleep(0.5)


async def test_a_disconnect_mid_turn_frees_the_model(rt_server: RunningServer, aclient: openai.AsyncOpenAI) -> None:
    path = recording("en_osr_harvard72_8k.wav")
    async with aclient.realtime.connect(extra_query=INTENT) as conn:
        await conn.session.update(session=session(turn_detection=None, transcription={"model": "gpt-live-transcribe"}))
        await stream(conn, pcm24(path, pad_seconds=0)[: 24_000 * 2 * 25], speed=100)
        await conn.input_audio_buffer.commit()
        await events_until(conn, lambda ev: bool(ev) and ev[-1].type == "conversation.item.added")
        # The final decode of 25 s with base takes seconds; wait until it holds the model (a busy
        # machine may take a moment to start it).
        busy = await _wait_for_status(rt_server, lambda row: row["running"] == 1 and row["in_use"] >= 1)
        assert busy["running"] == 1 and busy["in_use"] >= 1
    status = await _wait_for_status(rt_server, lambda row: row["running"] == 0 and row["in_use"] == 0, timeout=30)
    assert status["running"] == 0 and status["in_use"] == 0


async def _wait_for_status(
    server: RunningServer, condition: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    """The base model's row of /admin/models once ``condition`` holds, or the last row after ``timeout`` s."""
    started = time.monotonic()
    status = _base_status(server)
    while not condition(status) and time.monotonic() - started < timeout:
        await asyncio.sleep(0.05)
        status = _base_status(server)
    return status


def _base_status(server: RunningServer) -> dict[str, Any]:
    rows = httpx.get(f"{server.base_url}/admin/models", headers={"Authorization": f"Bearer {server.admin_key}"})
    return next(row for row in rows.json()["data"] if row["name"] == "base")


async def test_the_beta_protocol(rt_server: RunningServer, sentences: list[Path]) -> None:
    # The beta client always uses wss:// unless told where the WebSocket lives.
    websocket_url = rt_server.v1.replace("http://", "ws://")
    client = openai.AsyncOpenAI(
        base_url=rt_server.v1, websocket_base_url=websocket_url, api_key=rt_server.api_key, max_retries=0
    )
    async with client.beta.realtime.connect(model="gpt-realtime-whisper", extra_query=INTENT) as conn:
        created: Any = await conn.recv()  # the SDK's beta union lacks this type; it still parses
        assert created.type == "transcription_session.created"
        await conn.transcription_session.update(session={
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 400},
        })  # fmt: skip
        updated: Any = await conn.recv()
        assert updated.type == "transcription_session.updated"
        assert updated.session.input_audio_transcription.model == "whisper-1"
        data = pcm24(sentences[0])
        for i in range(0, len(data), 4800):
            await conn.input_audio_buffer.append(audio=base64.b64encode(data[i : i + 4800]).decode())
            await asyncio.sleep(0.025)
        events: list[Any] = []
        async for event in conn:
            events.append(event)
            if event.type == "conversation.item.input_audio_transcription.completed":
                break
    kinds = [e.type for e in events]
    assert "conversation.item.created" in kinds and "conversation.item.added" not in kinds
    assert events[-1].usage.type == "duration"  # whisper-1 reports seconds
    assert wer(SENTENCES[0], events[-1].transcript) <= 0.25


def test_sessions_are_accounted(rt_server: RunningServer) -> None:
    metrics = httpx.get(f"{rt_server.base_url}/metrics").text
    assert "stt_realtime_sessions_total" in metrics and "stt_realtime_turn_latency_seconds_bucket" in metrics
    assert "stt_realtime_sessions_active 0.0" in metrics
    with sqlite3.connect(rt_server.log_path.parent / "usage.db") as db:
        rows = db.execute("SELECT key_name, SUM(audio_seconds), COUNT(*) FROM usage_events WHERE endpoint = 'realtime' "
                          "GROUP BY key_name").fetchall()  # fmt: skip
    assert rows and rows[0][0] == "test" and rows[0][1] > 10
    assert "realtime session done" in rt_server.log()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
