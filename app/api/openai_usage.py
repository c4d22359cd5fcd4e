"""OpenAI's two `usage` shapes, counted from what the model really consumed and produced.

tokens shape:
- ``text_tokens``: Whisper tokens of the caller's ``prompt`` (as fed to the decoder).
- ``audio_tokens``: encoder positions covering the audio, one per 20 ms (1500 per 30 s
  window); padding of the last window is not counted.
- ``output_tokens``: tokens the decoder generated for the returned segments, timestamp
  tokens included.
duration shape: audio seconds rounded up, as OpenAI bills whisper-1.
"""

from __future__ import annotations

import math
from typing import Any

from app.settings import UsageKind
from engines.types import TranscriptResult


def duration_usage(transcript: TranscriptResult) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(transcript.info.duration)}


def tokens_usage(transcript: TranscriptResult) -> dict[str, Any]:
    return tokens_body(transcript.info.prompt_tokens, transcript.info.audio_tokens, transcript.output_tokens)


def tokens_body(text_tokens: int, audio_tokens: int, output_tokens: int) -> dict[str, Any]:
    """The ``tokens`` shape from its three counts (a file's transcript, or a realtime turn)."""
    input_tokens = text_tokens + audio_tokens
    return {
        "type": "tokens",
        "input_tokens": input_tokens,
        "input_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def usage_for(kind: UsageKind, transcript: TranscriptResult) -> dict[str, Any]:
    return tokens_usage(transcript) if kind == "tokens" else duration_usage(transcript)
