"""What the fake engines of the unit tests can do (as much as Whisper), and what they all share."""

from __future__ import annotations

from engines.capabilities import Capabilities
from engines.whisper.engine import audio_tokens
from engines.whisper.family import CAPABILITIES

WHISPER_LIKE: Capabilities = CAPABILITIES
ENGLISH_ONLY: Capabilities = CAPABILITIES.english_only()

fake_audio_tokens = audio_tokens  # the fakes count audio tokens as Whisper does


class FakeRecogniser:
    """What every fake recogniser shares: a name, the CPU, Whisper's capabilities and token counts.
    Subclasses add ``transcribe``."""

    name: str = "fake"
    device: str = "cpu"
    capabilities: Capabilities = WHISPER_LIKE

    def audio_tokens(self, seconds: float) -> int:
        return fake_audio_tokens(seconds)

    def count_tokens(self, text: str) -> int:
        return len(text.split())
