"""The Whisper family's entry in the registry (engines/families.py): cheap to import."""

from __future__ import annotations

from engines.capabilities import Capabilities
from engines.families import EngineFamily
from engines.spec import LoadContext, ModelSpec
from engines.types import Transcriber

# An English-only checkpoint narrows these once loaded (WhisperEngine.capabilities).
CAPABILITIES = Capabilities(
    languages=None,
    translation=True,
    word_timestamps=True,
    logprobs=True,
    prompt=True,
    keywords=True,
    batching=True,
    live=True,
    diarization="words",
)


def _load(spec: ModelSpec, context: LoadContext) -> Transcriber:
    from engines.whisper.loading import load_whisper  # faster-whisper and CTranslate2 only when needed

    return load_whisper(spec, context)


FAMILY = EngineFamily("whisper", "OpenAI Whisper through faster-whisper / CTranslate2", CAPABILITIES, _load)
