"""File requests encode each window with the model's configured padding (null: Whisper's full window)."""

from __future__ import annotations

from pathlib import Path

from app.serving.protocol import AudioRequest
from app.serving.service import TranscriptionService
from tests.inprocess import FakeEngine, fake_settings


def _padding(tmp_path: Path, configured: float | None, keywords: tuple[str, ...] = ()) -> float | None:
    service = object.__new__(TranscriptionService)  # only its settings are used by decode_options
    model = {"source": "fake", "encoder_padding_seconds": configured}
    service.settings = fake_settings(tmp_path, "key", models={"fake": model})
    request = AudioRequest(task="transcribe", file=b"", model="fake", keywords=keywords)
    return service.decode_options(request, FakeEngine(), "fake").encoder_padding_seconds


def test_the_models_padding_reaches_the_decode_options(tmp_path: Path) -> None:
    assert _padding(tmp_path, 10.0) == 10.0
    assert _padding(tmp_path, None) is None


def test_requests_with_keywords_keep_the_full_window(tmp_path: Path) -> None:
    assert _padding(tmp_path, 10.0, ("Siobhan",)) is None
