"""The in-process test seam: the real app over an ASGI transport, with a fake recogniser instead of Whisper."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import numpy.typing as npt
import openai
from fastapi import FastAPI

from app.api.auth import hash_key, new_secret
from app.main import create_app
from app.settings import ApiKeyRecord, Settings
from engines.audio import SAMPLE_RATE
from engines.capabilities import Capabilities
from engines.errors import DecodingCancelled
from engines.spec import ModelSpec
from engines.types import DecodeOptions, Segment, TranscriptInfo
from tests.fake_capabilities import WHISPER_LIKE, fake_audio_tokens

WINDOW_SECONDS = 30.0
FAKE_TEXT = " fake words"


@dataclass
class FakeEngine:
    """A recogniser that answers " fake words" per 30-s window, taking ``decode_seconds`` for each."""

    name: str = "fake"
    decode_seconds: float = 0.0
    device: str = "cpu"
    capabilities: Capabilities = WHISPER_LIKE
    windows_decoded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def audio_tokens(self, seconds: float) -> int:
        return fake_audio_tokens(seconds)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def transcribe(
        self, audio: npt.NDArray[np.float32], options: DecodeOptions, cancel: threading.Event | None = None
    ) -> tuple[TranscriptInfo, Generator[Segment, None, None]]:
        duration = audio.size / SAMPLE_RATE
        info = TranscriptInfo(
            task=options.task,
            language=options.language or "en",
            language_probability=1.0,
            duration=duration,
            prompt_tokens=0,
            audio_tokens=self.audio_tokens(duration),
        )
        return info, self._segments(duration, options, cancel)

    def _segments(
        self, duration: float, options: DecodeOptions, cancel: threading.Event | None
    ) -> Generator[Segment, None, None]:
        for index in range(max(1, math.ceil(duration / WINDOW_SECONDS))):
            finish = time.monotonic() + self.decode_seconds
            while True:  # a decode that notices cancellation, as the real one does between windows
                if cancel is not None and cancel.is_set():
                    raise DecodingCancelled("decoding was cancelled")
                if time.monotonic() >= finish:
                    break
                time.sleep(0.01)
            with self._lock:
                self.windows_decoded += 1
            start = index * WINDOW_SECONDS
            end = min(duration, start + WINDOW_SECONDS)
            yield Segment(
                id=index,
                seek=int(start * 100),
                start=round(start, 3),
                end=round(end, 3),
                text=FAKE_TEXT,
                tokens=[1, 2],
                temperature=0.0,
                avg_logprob=-0.1,
                compression_ratio=1.0,
                no_speech_prob=0.0,
            )


@dataclass
class FakeLoader:
    """Loads one shared FakeEngine, taking ``load_seconds`` (a cold model) each time it is called."""

    engine: FakeEngine = field(default_factory=FakeEngine)
    load_seconds: float = 0.0
    loads: int = 0

    def __call__(self, spec: ModelSpec) -> FakeEngine:
        time.sleep(self.load_seconds)
        self.loads += 1
        return self.engine


@dataclass
class InProcess:
    app: FastAPI
    client: openai.AsyncOpenAI
    http: httpx2.AsyncClient
    key: str
    loader: FakeLoader


def fake_settings(data_dir: Path, key: str, **overrides: Any) -> Settings:
    """One fake model behind `whisper-1` and `gpt-4o-transcribe`; nothing preloaded."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "models": {"fake": {"source": "fake", "max_concurrency": 1, "max_queue": 4}},
        "aliases": {
            "whisper-1": {"model": "fake", "usage": "duration"},
            "gpt-4o-transcribe": {"model": "fake", "usage": "tokens"},
        },
        "api_keys": [ApiKeyRecord(name="test", sha256=hash_key(key))],
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def in_process(data_dir: Path, loader: FakeLoader | None = None, **overrides: Any) -> AsyncIterator[InProcess]:
    """The real app (lifespan included) with a fake recogniser, and an SDK client that talks to it in memory."""
    key = new_secret()
    loader = loader or FakeLoader()
    app = create_app(fake_settings(data_dir, key, **overrides), loader=loader)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://in-process", timeout=60) as http:
            client = openai.AsyncOpenAI(base_url="http://in-process/v1", api_key=key, http_client=http, max_retries=0)
            yield InProcess(app, client, http, key, loader)
