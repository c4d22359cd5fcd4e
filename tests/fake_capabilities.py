"""What the fake engines of the unit tests can do: as much as Whisper."""

from __future__ import annotations

import math

from engines.capabilities import Capabilities
from engines.whisper.family import CAPABILITIES

WHISPER_LIKE: Capabilities = CAPABILITIES
ENGLISH_ONLY: Capabilities = CAPABILITIES.english_only()


def fake_audio_tokens(seconds: float) -> int:
    return math.ceil(seconds * 50)
