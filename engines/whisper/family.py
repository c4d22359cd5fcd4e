"""The Whisper family's entry in the registry (engines/families.py): cheap to import."""

from __future__ import annotations

from engines.capabilities import Capabilities
from engines.families import EngineFamily

# Every language Whisper knows; an English-only checkpoint narrows this once loaded (WhisperEngine).
CAPABILITIES = Capabilities(
    translation=True,
    word_timestamps=True,
    logprobs=True,
    prompt=True,
    keywords=True,
    batching=True,
    diarization="words",
)

FAMILY = EngineFamily(
    "whisper",
    "OpenAI Whisper through faster-whisper / CTranslate2",
    CAPABILITIES,
    "engines.whisper.loading:load_whisper",
)
