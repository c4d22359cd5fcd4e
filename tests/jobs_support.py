"""What the async-job tests share: a webhook receiver and a file server on loopback, and job calls over HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.server import RunningServer

FINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: records every POST; a path answers ``fail_first[path]`` 500s first."""

    base_url: str
    deliveries: list[Delivery] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def received(self, path: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 30.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.received(path)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.received(path))} deliveries, expected {count}")


@contextmanager
def webhook_receiver(host: str = "127.0.0.1") -> Iterator[Receiver]:
    receiver: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert receiver is not None
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with receiver.lock:
                receiver.deliveries.append(Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                failures = receiver.fail_first.get(self.path, 0)
                if failures:
                    receiver.fail_first[self.path] = failures - 1
            self.send_response(500 if failures else 204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    with _serving(host, Handler) as base_url:
        receiver = Receiver(base_url)
        yield receiver


@dataclass
class FileServer:
    """Serves files of one folder on loopback and records every request's path (``redirects`` answer 302)."""

    base_url: str
    requests: list[str] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)


@contextmanager
def file_server(folder: Path, host: str = "127.0.0.1") -> Iterator[FileServer]:
    served: FileServer | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert served is not None
            served.requests.append(self.path)
            target = served.redirects.get(self.path)
            if target is not None:
                self.send_response(302)
                self.send_header("location", target)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            path = folder / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("content-type", "audio/wav")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return None

    with _serving(host, Handler) as base_url:
        served = FileServer(base_url)
        yield served


@contextmanager
def _serving(host: str, handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(
    server: RunningServer,
    key: str,
    audio: Path | None,
    *,
    task: str = "transcriptions",
    **fields: Any,
) -> httpx.Response:
    """POST a job: a multipart upload of ``audio``, or (``audio`` None) a JSON body with the fields."""
    url = f"{server.v1}/audio/{task}/jobs"
    if audio is None:
        return httpx.post(url, headers=auth(key), json=fields, timeout=60)
    # Lists go as repeated fields (name them "x[]" where the API takes a list).
    form = {name: [str(v) for v in value] if isinstance(value, list) else str(value) for name, value in fields.items()}
    files = {"file": (audio.name, audio.read_bytes(), "application/octet-stream")}
    return httpx.post(url, headers=auth(key), data=form, files=files, timeout=60)


def submitted(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert job["object"] == "audio.job" and job["status"] == "queued"
    return job


def job(server: RunningServer, key: str, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.v1}/audio/jobs/{job_id}", headers=auth(key), timeout=30)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def wait_until(
    server: RunningServer, key: str, job_id: str, statuses: tuple[str, ...], timeout: float = 120.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = job(server, key, job_id)
        if found["status"] in statuses:
            return found
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} is still {found['status']} after {timeout} s")


def admin_job(server: RunningServer, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/admin/jobs/{job_id}", headers=auth(server.admin_key), timeout=30)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def webhook_secret(server: RunningServer, key: str) -> str:
    response = httpx.post(f"{server.v1}/audio/jobs/webhook_secret", headers=auth(key), timeout=30)
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


def verify(delivery: Delivery, secret: str) -> None:
    """The openai SDK's own check of a delivery's signature (raises when it does not hold)."""
    client = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
    client.webhooks.verify_signature(delivery.body, delivery.headers, secret=secret)


def error_of(response: httpx.Response) -> Mapping[str, Any]:
    body: dict[str, Any] = response.json()
    error: Mapping[str, Any] = body["error"]
    return error
