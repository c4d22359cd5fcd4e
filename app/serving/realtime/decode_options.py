"""How each decode of a realtime turn is set up (options, token budget), and what a session may ask of its model."""

from __future__ import annotations

import math

from app.serving.capabilities import Asked, Params, check_supported
from app.serving.realtime.config import SessionConfig
from app.settings import RealtimeConfig
from engines.types import FALLBACK_TEMPERATURES, BatchPriority, DecodeOptions, Transcriber

# Token budgets per decode: speech needs about 5 tokens a second; a decode looping on cut-off audio
# would otherwise run to the model's own limit (and take seconds). The engine may lower the budget
# further to fit its window (Whisper: prompt and output share 448 tokens).
LIVE_TOKENS_PER_SECOND, LIVE_TOKENS_EXTRA = 8, 16
FINAL_TOKENS_PER_SECOND, FINAL_TOKENS_EXTRA = 12, 32
MAX_TOKENS_PER_WINDOW = 180


def decode_options(
    config: SessionConfig,
    limits: RealtimeConfig,
    *,
    seconds: float,
    final: bool,
    beam_size: int,
    detected_language: str | None,
    said: list[str] | None = None,
) -> DecodeOptions:
    """A final (or speculative) decode: beam search, fallback temperatures; a live one: greedy, one temperature."""
    per_second, extra = (FINAL_TOKENS_PER_SECOND, FINAL_TOKENS_EXTRA) if final else (
        LIVE_TOKENS_PER_SECOND, LIVE_TOKENS_EXTRA)  # fmt: skip
    transcription = config.transcription
    # A translated turn detects its language again on each decode: a detection pinned on its first second
    # is often wrong for speech that is not English, and translating "from" the wrong language garbles the turn.
    language = transcription.language or (detected_language if config.task == "transcribe" else None)
    return DecodeOptions(
        task=config.task,
        language=language,
        # A decode from a turn's anchor hears the words said before it as previous text
        prompt=" ".join([transcription.prompt or "", *(said or [])]).strip() or None,
        temperatures=FALLBACK_TEMPERATURES if final else (0.0,),
        logprobs=final and config.include_logprobs,
        beam_size=beam_size if final else 1,
        keywords=transcription.keywords,
        languages=() if language else transcription.languages,
        encoder_padding_seconds=limits.encoder_padding_seconds if final else limits.live_encoder_padding_seconds,
        full_window_guard=final,  # a live decode is replaced by the next one; it is not worth a second decode
        round_encoder_window=False,  # turns keep the exact padding their settings were measured with
        batch_window_step_seconds=None if final else limits.live_window_step_seconds,
        max_new_tokens=min(math.ceil(per_second * seconds) + extra, MAX_TOKENS_PER_WINDOW),
        priority=BatchPriority.FINAL if final else BatchPriority.BACKGROUND,
    )


# Session options are named by their path in the session config.
SESSION_PARAMS = Params(
    task="session.audio.input.transcription.model",
    language="session.audio.input.transcription.language",
    languages="session.audio.input.transcription.languages",
    prompt="session.audio.input.transcription.prompt",
    keywords="session.audio.input.transcription.keywords",
    logprobs="session.include",
    live="session.audio.input.transcription.model",
)


def check_config(config: SessionConfig, engine: Transcriber, model: str) -> None:
    """Refuse (``InvalidInput``) what the session asks that the model cannot do."""
    wanted = Asked.of(config.transcription, task=config.task, logprobs=config.include_logprobs, live=True)
    check_supported(wanted, engine.capabilities, model, SESSION_PARAMS)
