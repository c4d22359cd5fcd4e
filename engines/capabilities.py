"""What an engine family can do, declared once, so the service can refuse what it cannot (a 400
that names the option and the model) instead of silently ignoring it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

# How transcripts meet the diarizer's turns: ``words`` lays timed words on the turns
# (engines/diarized.py); ``turns`` transcribes each speaker's stretch on its own (engines/turnwise.py).
DiarizationPairing = Literal["words", "turns"]


@dataclass(frozen=True)
class Capabilities:
    """Features of one loaded model. Families declare them; a loaded model may narrow them
    (an English-only Whisper checkpoint neither translates nor takes other languages)."""

    # Languages it transcribes (ISO 639-1); None: every language the family knows.
    languages: frozenset[str] | None = None
    translation: bool = False  # task "translate" (speech in any language → English text)
    word_timestamps: bool = False  # per-word start and end times
    logprobs: bool = False  # per-token log-probabilities (include[]=logprobs)
    prompt: bool = False  # a text prompt that conditions the decoding
    keywords: bool = False  # keywords[] (favoured words and phrases)
    segment_timestamps: bool = True  # segments timed within the audio (srt, vtt, verbose_json)
    streaming: bool = True  # segments come out while later audio is decoded (SSE deltas)
    batching: bool = False  # the batching engine can run its model calls together
    live: bool = True  # realtime transcription sessions
    diarization: DiarizationPairing | None = "turns"  # None: no speakers

    def speaks(self, language: str) -> bool:
        return self.languages is None or language in self.languages

    def english_only(self) -> Capabilities:
        return replace(self, languages=frozenset({"en"}), translation=False)
