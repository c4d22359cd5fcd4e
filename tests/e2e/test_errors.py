"""Every error class: status, OpenAI's envelope, param/code, x-request-id; never a 5xx for bad input."""

from __future__ import annotations

import contextlib
import io
import re
import select
import socket
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.audio import convert, espeak
from tests.server import RunningServer, default_test_config, run_server

UPLOAD_LIMIT = 200_000
AUDIO_LIMIT_S = 20
MIN_RATE = 20_000  # bytes per second
GRACE_S = 2.0
IDLE_S = 3.0


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with small limits, so the limits can be hit cheaply."""
    config = default_test_config() | {
        "max_upload_bytes": UPLOAD_LIMIT,
        "max_audio_seconds": AUDIO_LIMIT_S,
        "min_upload_bytes_per_second": MIN_RATE,
        "upload_rate_grace_seconds": GRACE_S,
        "body_idle_timeout_seconds": IDLE_S,
        "preload_models": [],
        "models": {"tiny.en": {"source": "embedded:tiny.en"}},
        "aliases": {"whisper-1": {"model": "tiny.en", "usage": "duration"}},
    }
    with run_server(tmp_path_factory.mktemp("limited"), config) as running:
        yield running


def _post(
    server: RunningServer,
    *,
    files: Any = None,
    data: Any = None,
    key: str | None = "default",
    path: str = "/v1/audio/transcriptions",
    **kwargs: Any,
) -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {server.api_key if key == 'default' else key}"}
    headers |= kwargs.pop("headers", {})
    return httpx.post(server.base_url + path, headers=headers, files=files, data=data, timeout=120, **kwargs)


def _assert_envelope(
    response: httpx.Response, status: int, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    if param is not None:
        assert body["error"]["param"] == param
    return dict(body["error"])


def _wav_bytes(samples: int, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * samples)
    return buffer.getvalue()


def test_missing_key(server: RunningServer) -> None:
    response = _post(server, files={"file": ("a.wav", _wav_bytes(16000))}, data={"model": "whisper-1"}, key=None)
    error = _assert_envelope(response, 401, code="invalid_api_key")
    assert error["type"] == "invalid_request_error"


def test_wrong_key_through_sdk(server: RunningServer, synth_wav: Path) -> None:
    bad = openai.OpenAI(base_url=server.v1, api_key="sk-gateway-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.audio.transcriptions.create(model="whisper-1", file=synth_wav)
    assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_key_never_logged(server: RunningServer) -> None:
    assert server.api_key not in server.log()
    assert "sk-gateway-wrong" not in server.log()


def test_unknown_model(client: openai.OpenAI, synth_wav: Path) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(model="whisper-9000", file=synth_wav)
    assert info.value.code == "model_not_found" and info.value.param == "model"


@pytest.mark.parametrize(
    "payload", [b"this is not audio at all", b"RIFF\x00\x00\x00\x00WAVEjunk", bytes(range(256)) * 40]
)
def test_undecodable_audio(client: openai.OpenAI, payload: bytes) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=payload)
    assert "could not be decoded" in info.value.message and info.value.param == "file"


def test_empty_file(server: RunningServer) -> None:
    response = _post(server, files={"file": ("a.wav", b"")}, data={"model": "whisper-1"})
    _assert_envelope(response, 400, param="file")


def test_zero_length_audio(server: RunningServer) -> None:
    response = _post(server, files={"file": ("a.wav", _wav_bytes(0))}, data={"model": "whisper-1"})
    error = _assert_envelope(response, 400, param="file")
    assert "no audio" in error["message"]


def test_missing_file_and_model(server: RunningServer) -> None:
    _assert_envelope(_post(server, data={"model": "whisper-1"}), 400, param="file")
    _assert_envelope(_post(server, files={"file": ("a.wav", _wav_bytes(16000))}), 400, param="model")
    _assert_envelope(_post(server, content=b"not a form", headers={"content-type": "text/plain"}), 400)


def test_contradictory_combinations(client: openai.OpenAI, synth_wav: Path) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(
            model="whisper-1", file=synth_wav, response_format="json", timestamp_granularities=["word"]
        )
    assert info.value.param == "timestamp_granularities"
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(
            model="gpt-4o-transcribe", file=synth_wav, response_format="text", include=["logprobs"]
        )
    assert info.value.param == "include"


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("temperature", "hot", "temperature"),
        ("temperature", "1.5", "temperature"),
        ("response_format", "docx", "response_format"),
        ("language", "klingon", "language"),
        ("timestamp_granularities[]", "sentence", "timestamp_granularities"),
        ("stream", "maybe", "stream"),
    ],
)
def test_bad_field_values(server: RunningServer, field: str, value: str, param: str) -> None:
    response = _post(server, files={"file": ("a.wav", _wav_bytes(16000))}, data={"model": "whisper-1", field: value})
    error = _assert_envelope(response, 400, param=param)
    assert error["code"] in ("invalid_value", "unsupported_value")


def test_unknown_fields_are_ignored(client: openai.OpenAI, synth_wav: Path) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1", file=synth_wav, extra_body={"frobnicate": "yes", "user": "me"}
    )
    assert result.text


def test_framework_errors_use_the_envelope(server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    _assert_envelope(httpx.get(f"{server.v1}/no/such/route", headers=headers), 404)
    _assert_envelope(httpx.get(f"{server.v1}/audio/transcriptions", headers=headers), 405)
    _assert_envelope(httpx.get(f"{server.v1}/models/not-a-model", headers=headers), 404, code="model_not_found")


def test_request_id_on_every_response(server: RunningServer, client: openai.OpenAI) -> None:
    assert httpx.get(f"{server.base_url}/health").headers["x-request-id"]
    response = httpx.get(f"{server.v1}/models", headers={"x-request-id": "my-trace-1"})
    assert response.status_code == 401 and response.headers["x-request-id"] == "my-trace-1"
    raw = client.models.with_raw_response.list()
    assert raw.headers["x-request-id"].startswith("req_")


def test_upload_over_limit_gets_413(limited: RunningServer) -> None:
    too_big = _wav_bytes(UPLOAD_LIMIT)  # 2 bytes per sample: twice the limit
    response = _post(limited, files={"file": ("a.wav", too_big)}, data={"model": "whisper-1"})
    _assert_envelope(response, 413)
    client = openai.OpenAI(base_url=limited.v1, api_key=limited.api_key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=too_big)
    assert info.value.status_code == 413


def test_huge_body_is_refused_without_reading_it(limited: RunningServer) -> None:
    """A body far over the cap, sent chunked with no length: refused, server still fine."""
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        boundary_start = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        yield boundary_start
        chunk = b"\x00" * 65536
        while sent < 200 * 1024 * 1024:
            sent += len(chunk)
            yield chunk

    headers = {"Authorization": f"Bearer {limited.api_key}", "content-type": "multipart/form-data; boundary=x"}
    try:
        response = httpx.post(f"{limited.v1}/audio/transcriptions", headers=headers, content=endless(), timeout=60)
        _assert_envelope(response, 413)
    except httpx.HTTPError:
        pass  # the server may close the connection once it has answered 413
    assert sent < 50 * 1024 * 1024, "the server kept reading far past the limit"
    assert httpx.get(f"{limited.base_url}/health").status_code == 200


def test_declared_length_over_limit_gets_413_at_once(limited: RunningServer) -> None:
    """A 10 GB Content-Length is answered 413 from the headers alone, without waiting for a body."""
    host, port = limited.base_url.removeprefix("http://").split(":")
    request = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {limited.api_key}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 10000000000\r\n\r\n--x"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 413 " in status_line + b" ", status_line
    assert b"x-request-id" in answer.lower()


def test_audio_over_duration_limit(limited: RunningServer) -> None:
    # 25 s at 2 kHz fits under the upload cap but is over the duration limit.
    response = _post(
        limited,
        files={"file": ("a.wav", _wav_bytes(2000 * (AUDIO_LIMIT_S + 5), rate=2000))},
        data={"model": "whisper-1"},
    )
    error = _assert_envelope(response, 400, code="audio_too_long", param="file")
    assert str(AUDIO_LIMIT_S) in error["message"]


def test_lazy_model_loads_on_first_use(limited: RunningServer, tmp_path: Path) -> None:
    speech = espeak(tmp_path / "s.wav", "hello world", speed=160)
    client = openai.OpenAI(base_url=limited.v1, api_key=limited.api_key, max_retries=0)
    result = client.audio.transcriptions.create(model="whisper-1", file=speech)
    assert "hello" in result.text.lower()


def test_header_that_understates_the_length_is_caught_up_front(limited: RunningServer, tmp_path: Path) -> None:
    """An MP3 whose size/bitrate estimate says ~5 s but holds ~60 s: refused before transcription."""
    speech = espeak(tmp_path / "s.wav", "hello there, this is a test", speed=160)
    loud = convert(
        speech,
        tmp_path / "hi.mp3",
        "-t",
        "2",
        "-ar",
        "16000",
        "-ac",
        "1",
        "-b:a",
        "160k",
        "-write_xing",
        "0",
        "-id3v2_version",
        "0",
    )
    quiet = tmp_path / "lo.mp3"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "anoisesrc=d=60:c=pink:r=16000:a=0.05",
            "-ar",
            "16000",
            "-ac",
            "1",
            "-b:a",
            "8k",
            "-write_xing",
            "0",
            "-id3v2_version",
            "0",
            str(quiet),
        ],
        check=True,
    )
    lying = loud.read_bytes() + quiet.read_bytes()
    assert len(lying) < UPLOAD_LIMIT
    response = _post(limited, files={"file": ("a.mp3", lying)}, data={"model": "whisper-1"})
    _assert_envelope(response, 400, code="audio_too_long", param="file")


def _complete(answer: bytes) -> bool:
    """The whole HTTP answer is in: its head, and as many body bytes as its Content-Length says."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    if not separator:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return length is None or len(body) >= int(length.group(1))


def _drip(
    server: RunningServer, body: bytes, *, chunk: int, pause: float, give_up: float = 40.0
) -> tuple[bytes, float]:
    """Send ``body`` ``chunk`` bytes at a time with ``pause`` between; return the answer and when it came."""
    host, port = server.base_url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {server.api_key}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    started = time.monotonic()
    answer = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        sent = 0
        while time.monotonic() - started < give_up:
            if sent < len(body):
                with contextlib.suppress(OSError):  # the server may close its side once it has answered
                    sock.sendall(body[sent : sent + chunk])
                sent += chunk
            readable, _, _ = select.select([sock], [], [], pause)
            if readable:
                while not _complete(answer):  # the body may come in a later packet than the head
                    part = sock.recv(65536)
                    if not part:
                        break
                    answer += part
                return answer, time.monotonic() - started
    return answer, time.monotonic() - started


def _multipart(audio: bytes) -> bytes:
    return (
        b'--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\n" + audio + b"\r\n--x--\r\n"
    )


def test_slow_drip_upload_gets_408(limited: RunningServer) -> None:
    """1 KB/s is far below the minimum rate: refused with 408 soon after the grace period."""
    answer, seconds = _drip(limited, _multipart(_wav_bytes(60_000)), chunk=1024, pause=1.0)
    assert b" 408 " in answer.split(b"\r\n", 1)[0] + b" ", answer[:200]
    assert b'"request_timeout"' in answer or b"request_timeout" in answer
    assert seconds < GRACE_S + 10


def test_stalled_upload_gets_408(limited: RunningServer) -> None:
    """A body that stops arriving is refused after the idle timeout."""
    answer, seconds = _drip(limited, _multipart(_wav_bytes(60_000)), chunk=4096, pause=IDLE_S + 5, give_up=IDLE_S + 5)
    assert b" 408 " in answer.split(b"\r\n", 1)[0] + b" ", answer[:200]
    assert seconds < IDLE_S + 5


def test_honest_slow_upload_is_accepted(limited: RunningServer) -> None:
    """Above the minimum rate (here 2.5× it) a slow upload runs to its end and is transcribed."""
    answer, _ = _drip(limited, _multipart(_wav_bytes(80_000)), chunk=10_000, pause=0.2)
    assert b" 200 " in answer.split(b"\r\n", 1)[0] + b" ", answer[:300]
