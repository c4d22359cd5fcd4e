"""stream=true through the real SDK: event order, deltas that join to the done text, logprobs,
keep-alives, a mid-stream error, and a disconnect that frees the model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.audio import LONG_TEXT, SYNTH_SENTENCE, espeak, repeat_audio, wer
from tests.server import RunningServer, default_test_config, run_server, sdk_client


def _events(client: openai.OpenAI, path: Path, **kwargs: Any) -> list[Any]:
    stream = client.audio.transcriptions.create(file=path, stream=True, **kwargs)
    return list(stream)


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 2.5 minutes of generated speech (a ~25 s passage six times)."""
    folder = tmp_path_factory.mktemp("long")
    passage = espeak(folder / "passage.wav", LONG_TEXT, speed=170)
    return repeat_audio(passage, folder / "long.wav", 6)


@pytest.mark.parametrize("model", ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"])
def test_stream_events_match_non_streamed_text(client: openai.OpenAI, synth_wav: Path, model: str) -> None:
    events = _events(client, synth_wav, model=model)
    types = [e.type for e in events]
    assert types[-1] == "transcript.text.done" and types.count("transcript.text.done") == 1
    assert set(types[:-1]) == {"transcript.text.delta"} and len(types) >= 2
    done = events[-1]
    assert done.text == "".join(e.delta for e in events[:-1])
    plain = client.audio.transcriptions.create(model=model, file=synth_wav)
    assert done.text == plain.text
    assert wer(SYNTH_SENTENCE, done.text) <= 0.2
    if model == "whisper-1":
        assert done.usage is None
    else:
        assert done.usage is not None and done.usage.type == "tokens"
        assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens > 0


def test_stream_logprobs_on_deltas_and_done(client: openai.OpenAI, synth_wav: Path) -> None:
    events = _events(client, synth_wav, model="gpt-4o-transcribe", include=["logprobs"])
    deltas, done = events[:-1], events[-1]
    for delta in deltas:
        assert delta.logprobs, "each delta carries the log-probs of its tokens"
        assert "".join(lp.token for lp in delta.logprobs).strip() == delta.delta.strip()
        assert all(lp.logprob <= 0 for lp in delta.logprobs)
    assert done.logprobs is not None
    assert [lp.token for lp in done.logprobs] == [lp.token for d in deltas for lp in d.logprobs]


def test_stream_is_incremental_on_long_audio(client: openai.OpenAI, long_speech: Path) -> None:
    started = time.monotonic()
    arrivals: list[float] = []
    deltas: list[str] = []
    stream = client.audio.transcriptions.create(model="whisper-1", file=long_speech, stream=True)
    for event in stream:
        arrivals.append(time.monotonic() - started)
        if event.type == "transcript.text.delta":
            deltas.append(event.delta)
    first, total = arrivals[0], arrivals[-1]
    assert len(deltas) >= 6
    # The first window is decoded long before the ~2.5 min file is done.
    assert first < 0.5 * total, (first, total)
    assert wer(LONG_TEXT * 6, "".join(deltas)) <= 0.3


@pytest.fixture(scope="module")
def piece_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = {**default_test_config(), "first_piece_seconds": 8.0}
    with run_server(tmp_path_factory.mktemp("piece"), config) as running:
        yield running


def test_a_first_piece_gives_a_short_first_delta_and_the_same_text_both_ways(
    piece_server: RunningServer, tmp_path: Path
) -> None:
    """With `first_piece_seconds`, decoding starts with a piece of 2-8 s (the second window starts
    there: its segments' `seek`), and the streamed text is still the joined deltas and the
    non-streamed answer."""
    passage = espeak(tmp_path / "passage.wav", LONG_TEXT, speed=170)
    twice = repeat_audio(passage, tmp_path / "twice.wav", 2)
    client = sdk_client(piece_server)
    verbose = client.audio.transcriptions.create(model="whisper-1", file=twice, response_format="verbose_json")
    seeks = sorted({segment.seek for segment in verbose.segments or []})
    assert seeks[0] == 0 and 200 <= seeks[1] <= 800, f"windows start at {seeks} (mel frames)"
    events = _events(client, twice, model="whisper-1")
    deltas, done = events[:-1], events[-1]
    assert len(deltas) >= 2 and done.text == "".join(e.delta for e in deltas)
    assert done.text == verbose.text
    assert wer(f"{LONG_TEXT} {LONG_TEXT}", done.text) <= 0.25


def test_stream_sse_wire_format(server: RunningServer, synth_wav: Path) -> None:
    with httpx.stream(
        "POST",
        f"{server.v1}/audio/transcriptions",
        headers={"Authorization": f"Bearer {server.api_key}"},
        files={"file": ("a.wav", synth_wav.read_bytes())},
        data={"model": "whisper-1", "stream": "true", "response_format": "text"},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    lines = [line for line in body.splitlines() if line.strip()]
    assert lines and all(line.startswith(("data: ", ":")) for line in lines), body
    assert not any(line.startswith("event:") for line in lines)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with one inference slot and fast keep-alives."""
    config = default_test_config() | {"sse_keepalive_seconds": 0.5}
    with run_server(tmp_path_factory.mktemp("one-worker"), config) as running:
        yield running


def _occupy(server: RunningServer, path: Path, done: threading.Event) -> threading.Thread:
    def run() -> None:
        client = openai.OpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0, timeout=900)
        client.audio.transcriptions.create(model="whisper-1", file=path)
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_keepalive_comments_while_waiting_for_a_busy_model(
    one_worker: RunningServer, long_speech: Path, synth_wav: Path
) -> None:
    busy_done = threading.Event()
    busy = _occupy(one_worker, long_speech, busy_done)
    time.sleep(1.0)
    with httpx.stream(
        "POST",
        f"{one_worker.v1}/audio/transcriptions",
        headers={"Authorization": f"Bearer {one_worker.api_key}"},
        files={"file": ("a.wav", synth_wav.read_bytes())},
        data={"model": "whisper-1", "stream": "true"},
        timeout=300,
    ) as response:
        lines = [line for line in response.iter_lines() if line.strip()]
    busy.join(timeout=300)
    assert busy_done.is_set()
    pings = [line for line in lines if line.startswith(":")]
    assert pings and all(line.strip() == ": ping" for line in pings), lines[:5]
    assert lines.index(pings[0]) < next(i for i, line in enumerate(lines) if line.startswith("data:"))
    # The SDK skips the comments and sees only the events.
    client = openai.OpenAI(base_url=one_worker.v1, api_key=one_worker.api_key, max_retries=0)
    busy_done.clear()
    busy = _occupy(one_worker, long_speech, busy_done)
    time.sleep(1.0)
    events = _events(client, synth_wav, model="whisper-1")
    busy.join(timeout=300)
    assert events[-1].type == "transcript.text.done" and wer(SYNTH_SENTENCE, events[-1].text) <= 0.2


def _in_flight(server: RunningServer) -> float:
    text = httpx.get(f"{server.base_url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "stt_in_flight"
        for sample in family.samples
    )


def _seconds_until_idle(server: RunningServer, limit: float = 120.0) -> float:
    started = time.monotonic()
    while _in_flight(server) > 0:
        assert time.monotonic() - started < limit, "the model never became free"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def window_seconds(one_worker: RunningServer, long_speech: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    """Wall time of one ~25 s decoding window on this machine now (timings vary with load)."""
    passage = long_speech.with_name("passage.wav")
    client = openai.OpenAI(base_url=one_worker.v1, api_key=one_worker.api_key, max_retries=0, timeout=300)
    started = time.monotonic()
    client.audio.transcriptions.create(model="whisper-1", file=passage)
    return time.monotonic() - started


def test_disconnect_frees_the_model(
    one_worker: RunningServer, long_speech: Path, synth_wav: Path, window_seconds: float
) -> None:
    client = openai.OpenAI(base_url=one_worker.v1, api_key=one_worker.api_key, max_retries=0, timeout=300)
    stream = client.audio.transcriptions.create(model="whisper-1", file=long_speech, stream=True)
    first = next(iter(stream))
    assert first.type == "transcript.text.delta"
    stream.close()  # hang up with about five of the six windows still to decode
    freed_after = _seconds_until_idle(one_worker)
    # At most the window in progress is finished; the remaining ~5 windows are not decoded.
    assert freed_after < 2 * window_seconds + 2, (freed_after, window_seconds)
    assert "stopping decoding early" in one_worker.log()
    result = client.audio.transcriptions.create(model="whisper-1", file=synth_wav)
    assert wer(SYNTH_SENTENCE, result.text) <= 0.2


def test_non_streamed_disconnect_frees_the_model(
    one_worker: RunningServer, long_speech: Path, synth_wav: Path, window_seconds: float
) -> None:
    impatient = openai.OpenAI(base_url=one_worker.v1, api_key=one_worker.api_key, max_retries=0, timeout=3)
    with pytest.raises(openai.APITimeoutError):
        impatient.audio.transcriptions.create(model="whisper-1", file=long_speech)
    freed_after = _seconds_until_idle(one_worker)
    assert freed_after < 2 * window_seconds + 2, (freed_after, window_seconds)
    assert "status=499" in one_worker.log()
    client = openai.OpenAI(base_url=one_worker.v1, api_key=one_worker.api_key, max_retries=0, timeout=300)
    result = client.audio.transcriptions.create(model="whisper-1", file=synth_wav)
    assert wer(SYNTH_SENTENCE, result.text) <= 0.2


def test_error_after_the_stream_started(tmp_path: Path, long_speech: Path) -> None:
    """A request over the server's time limit: the stream has begun, so the error comes as an event."""
    config = default_test_config() | {"request_timeout_seconds": 4}
    with run_server(tmp_path, config) as server:
        client = openai.OpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0, timeout=120)
        stream = client.audio.transcriptions.create(model="whisper-1", file=long_speech, stream=True)
        seen: list[str] = []
        with pytest.raises(openai.APIError) as info:
            for event in stream:
                seen.append(event.type)
        assert "transcript.text.done" not in seen
        assert "time limit" in info.value.message
        with httpx.stream(
            "POST",
            f"{server.v1}/audio/transcriptions",
            headers={"Authorization": f"Bearer {server.api_key}"},
            files={"file": ("a.wav", long_speech.read_bytes())},
            data={"model": "whisper-1", "stream": "true"},
            timeout=120,
        ) as response:
            assert response.status_code == 200
            data = [line for line in response.iter_lines() if line.startswith("data: ")]
        last = json.loads(data[-1].removeprefix("data: "))
        assert set(last) == {"error"} and last["error"]["code"] == "timeout"
        assert set(last["error"]) == {"message", "type", "param", "code"}
        # Without streaming, the same limit is a plain error answer.
        with pytest.raises(openai.APIStatusError) as plain:
            client.audio.transcriptions.create(model="whisper-1", file=long_speech)
        assert plain.value.status_code == 504 and plain.value.response.headers["x-should-retry"] == "false"
