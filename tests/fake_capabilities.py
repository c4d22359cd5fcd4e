"""What the fake engines of the unit tests can do: as much as Whisper."""

from __future__ import annotations

from engines.capabilities import Capabilities
from engines.whisper.engine import audio_tokens
from engines.whisper.family import CAPABILITIES

WHISPER_LIKE: Capabilities = CAPABILITIES
ENGLISH_ONLY: Capabilities = CAPABILITIES.english_only()

fake_audio_tokens = audio_tokens  # the fakes count audio tokens as Whisper does
