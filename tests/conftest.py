"""Shared fixtures: one real server per test session, an SDK client, generated speech."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.audio import SYNTH_SENTENCE, espeak
from tests.server import RunningServer, run_server, sdk_client


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
