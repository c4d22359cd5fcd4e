"""Whisper base (embedded weights) with its CTranslate2 model's calls written down, for tests that count work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.spec import LoadContext, ModelSpec
from engines.whisper.engine import WhisperEngine
from engines.whisper.loading import load_whisper


@dataclass
class Generation:
    prompt: int  # prompt tokens
    generated: int  # tokens of its longest output


class RecordedModel:
    """The CTranslate2 model, with the frame count of every encoder call and the lengths of every generate call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.encoded: list[int] = []
        self.generations: list[Generation] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode(self, features: Any, to_cpu: bool = False) -> Any:
        self.encoded.append(int(features.shape[-1]))
        return self.inner.encode(features, to_cpu=to_cpu)

    def generate(self, encoder_output: Any, prompts: list[list[int]], **kwargs: Any) -> Any:
        results = self.inner.generate(encoder_output, prompts, **kwargs)
        for prompt, result in zip(prompts, results, strict=True):
            self.generations.append(Generation(len(prompt), max(len(s) for s in result.sequences_ids)))
        return results

    def clear(self) -> None:
        self.encoded.clear()
        self.generations.clear()


@contextmanager
def recorded_base(cache: Path) -> Iterator[WhisperEngine]:
    """Whisper base loaded from its embedded weights (assembled in ``cache``), its model a RecordedModel."""
    loaded = load_whisper(ModelSpec(name="base", source="embedded:base"), LoadContext(cache_dir=cache, offline=True))
    loaded.model.model = RecordedModel(loaded.model.model)
    try:
        yield loaded
    finally:
        loaded.close()


def recorder(engine: WhisperEngine) -> RecordedModel:
    """The engine's RecordedModel, cleared."""
    model = engine.model.model
    assert isinstance(model, RecordedModel)
    model.clear()
    return model
