"""Start the real server (uvicorn, 127.0.0.1, a free port) in a subprocess for end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import yaml

from app.api.auth import hash_key, new_secret
from app.settings import PROJECT_ROOT
from bench.server import free_port as free_port  # re-exported: the tests import it from here
from bench.server import server_process

# Shared by all test servers so the embedded base model is assembled once per checkout.
MODEL_CACHE = PROJECT_ROOT / "var" / "models"


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    api_key: str
    admin_key: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def sdk_client(server: RunningServer) -> openai.OpenAI:
    # No retries: a test must see the first answer, and a 5xx must not be hidden by a retry.
    return openai.OpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0, timeout=300)


def async_sdk_client(server: RunningServer, api_key: str | None = None) -> openai.AsyncOpenAI:
    """The async SDK client (realtime sessions) on ``server``, with its key unless another is given."""
    return openai.AsyncOpenAI(base_url=server.v1, api_key=api_key or server.api_key, max_retries=0)


def default_test_config() -> dict[str, object]:
    return {
        # as configs/default.yaml: windows encoded as their audio plus 10 s of padding
        "models": {
            "base": {"source": "embedded:base", "encoder_padding_seconds": 10},
            "tiny.en": {"source": "embedded:tiny.en", "encoder_padding_seconds": 10},
        },
        "aliases": {
            "whisper-1": {"model": "base", "usage": "duration"},
            "gpt-4o-transcribe": {"model": "base", "usage": "tokens"},
            "gpt-4o-mini-transcribe": {"model": "base", "usage": "tokens"},
            "gpt-4o-mini-transcribe-2025-12-15": {"model": "base", "usage": "tokens"},
            "gpt-4o-transcribe-diarize": {"model": "base", "usage": "tokens", "diarize": True},
            "gpt-transcribe": {"model": "base", "usage": "tokens"},
        },
        "preload_models": ["base"],
    }


def served(workdir: Path, config: Mapping[str, object] | None = None) -> Iterator[RunningServer]:
    """A fixture's body: the server up for the fixture's scope."""
    with run_server(workdir, config) as running:
        yield running


@contextmanager
def run_server(
    workdir: Path,
    config: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    startup_timeout: float = 180.0,
) -> Iterator[RunningServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(dict(config or default_test_config())))
    api_key, admin_key = new_secret(), new_secret()
    port = free_port()
    child_env = {
        "STT_DATA_DIR": str(workdir),
        "STT_API_KEYS": json.dumps(
            [
                {"name": "test", "sha256": hash_key(api_key)},
                {"name": "test-admin", "sha256": hash_key(admin_key), "admin": True},
            ]
        ),
        "STT_MODEL_CACHE_DIR": str(MODEL_CACHE),
        **(env or {}),
    }
    log_path = workdir / "server.log"
    with server_process(config_path, port, log_path, child_env) as process:
        server = RunningServer(f"http://127.0.0.1:{port}", api_key, admin_key, process, log_path)
        _wait_until_up(server, startup_timeout)
        yield server


def _wait_until_up(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server did not start within {timeout} s:\n{server.log()}")
