"""The installed faster-whisper still has every internal that engines/whisper/adapter.py replaces or
calls; an upgrade that changes one fails here, with what changed, instead of at request time."""

from __future__ import annotations

from typing import Any

import faster_whisper

from engines.whisper.adapter import contract_problems


def test_the_installed_faster_whisper_keeps_the_adapter_contract() -> None:
    problems = contract_problems()
    assert not problems, (
        f"faster-whisper {faster_whisper.__version__} changed internals that engines/whisper/adapter.py relies on: "
        + "; ".join(problems)
        + ". Update the adapter (and its RELIED_ON lists) for this version, or keep the pinned version."
    )


class ChangedWhisperModel:
    """A faster-whisper whose window decode took new parameters and whose transcribe stopped calling it."""

    def __init__(self) -> None:
        self.model: Any = None
        self.hf_tokenizer: Any = None
        self.max_length = 448
        self.time_precision = 0.02

    def generate_with_fallback(self, encoder_output: Any, prompt: list[int], options: Any) -> Any: ...

    def encode(self, features: Any) -> Any: ...

    def find_alignment(self, tokenizer: Any, text_tokens: Any, encoder_output: Any, num_frames: int) -> Any: ...

    def detect_language(self, audio: Any = None) -> Any: ...

    def transcribe(self, audio: Any, language: str | None = None, task: str = "transcribe") -> Any:
        return self.encode(audio)


def test_a_changed_faster_whisper_is_caught_with_a_clear_message() -> None:
    problems = contract_problems(ChangedWhisperModel)
    assert any("generate_with_fallback" in p and "no longer starts with" in p for p in problems)
    assert any("transcribe lost parameters" in p and "hotwords" in p for p in problems)
    assert "faster-whisper no longer calls self.generate_with_fallback(…) on the model" in problems
    assert "WhisperModel no longer sets self.input_stride" in problems
