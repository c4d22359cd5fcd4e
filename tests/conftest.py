"""Shared fixtures: one real server per test session, an SDK client, generated speech, PostgreSQL and Redis, and
Whisper base in process with its model calls recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from pytest_redis.executor import RedisExecutor

from engines.whisper.engine import WhisperEngine
from tests.audio import SYNTH_SENTENCE, espeak
from tests.recorded_whisper import recorded_base
from tests.server import RunningServer, run_server, sdk_client
from tests.services import PostgresServer, postgres_server, redis_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture(scope="session")
def client(server: RunningServer) -> openai.OpenAI:
    return sdk_client(server)


@pytest.fixture(scope="session")
def synth_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 6 s of generated English speech with a known transcript (SYNTH_SENTENCE)."""
    return espeak(tmp_path_factory.mktemp("synth") / "synth.wav", SYNTH_SENTENCE)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session; ``postgres.database()`` gives each test its own database."""
    with postgres_server() as running:
        yield running


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RedisExecutor]:
    """A real redis-server for the session (tests that stop it start their own: see tests/services.py)."""
    with redis_server() as running:
        yield running


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhisperEngine]:
    """Whisper base in this process, its model's calls written down (tests that count encodes and tokens)."""
    with recorded_base(tmp_path_factory.mktemp("models")) as loaded:
        yield loaded
