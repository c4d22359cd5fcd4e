"""Session configuration on the wire: GA and beta updates merged into a SessionConfig, and rendered back."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.api.errors import APIError
from app.api.languages import normalize_language
from app.api.realtime import client_events as wire
from app.api.request_rules import check_keywords, check_language_pair, check_languages, check_prompt
from app.serving.errors import InvalidInput
from app.serving.realtime import (
    NoiseReductionConfig,
    SemanticVadConfig,
    ServerVadConfig,
    SessionConfig,
    TranscriptionConfig,
    TurnDetectionConfig,
)
from engines.live.codecs import InputFormat

GA_FORMATS: dict[str, InputFormat] = {"audio/pcm": "pcm16", "audio/pcmu": "pcmu", "audio/pcma": "pcma"}
BETA_FORMATS: dict[str, InputFormat] = {"pcm16": "pcm16", "g711_ulaw": "pcmu", "g711_alaw": "pcma"}
LOGPROBS = "item.input_audio_transcription.logprobs"
TRANSCRIPTION_PARAM = "session.audio.input.transcription"


def default_config(model: str) -> SessionConfig:
    return SessionConfig(transcription=TranscriptionConfig(model=model))


def _language(value: str | None, param: str) -> str | None:
    if value is None or not value.strip():
        return None
    code = normalize_language(value)
    if code is None:
        raise InvalidInput(param, f"Unsupported language {value!r}; use an ISO-639-1 code such as 'en'.",
                           code="unsupported_value")  # fmt: skip
    return code


def _as_invalid(error: APIError) -> InvalidInput:
    return InvalidInput(error.param or "", error.message, code=error.code or "invalid_value")


def _transcription(current: TranscriptionConfig, update: wire.Transcription, param: str) -> TranscriptionConfig:
    fields = update.model_fields_set
    changes: dict[str, Any] = {}
    if "model" in fields and update.model:
        changes["model"] = update.model
    if "language" in fields:
        changes["language"] = _language(update.language, f"{param}.language")
    try:
        if "prompt" in fields:
            changes["prompt"] = check_prompt(update.prompt, f"{param}.prompt")
        if "keywords" in fields:
            changes["keywords"] = check_keywords(update.keywords or [], f"{param}.keywords")
        if "languages" in fields and update.languages is not None:
            changes["languages"] = check_languages(update.languages, f"{param}.languages", allow_empty=False)
        elif "languages" in fields:
            changes["languages"] = ()  # null clears the list
        if "delay" in fields:
            changes["delay"] = update.delay
        merged = replace(current, **changes)
        # The merged session is checked, so a later update cannot pair languages with an earlier language.
        check_language_pair(merged.language, merged.languages, f"{param}.{_pair_param(fields, update)}")
    except APIError as exc:
        raise _as_invalid(exc) from None
    return merged


def _pair_param(fields: set[str], update: wire.Transcription) -> str:
    """Which of the pair to blame: ``languages`` if this update set it, else the ``language`` it set."""
    return "languages" if "languages" in fields and update.languages else "language"


def _turn_detection(update: wire.TurnDetection | None) -> TurnDetectionConfig:
    if update is None:
        return None
    if isinstance(update, wire.SemanticVadDetection):
        return SemanticVadConfig(eagerness=update.eagerness or "auto")
    defaults = ServerVadConfig()
    return ServerVadConfig(
        threshold=defaults.threshold if update.threshold is None else update.threshold,
        prefix_padding_ms=defaults.prefix_padding_ms if update.prefix_padding_ms is None else update.prefix_padding_ms,
        silence_duration_ms=(
            defaults.silence_duration_ms if update.silence_duration_ms is None else update.silence_duration_ms
        ),
        idle_timeout_ms=update.idle_timeout_ms,
    )


def _noise(
    current: NoiseReductionConfig | None, update: wire.NoiseReduction | wire.BetaNoiseReduction | None
) -> NoiseReductionConfig | None:
    if update is None:
        return None
    strength = getattr(update, "strength", None)
    if strength is None:
        strength = current.strength if current is not None and current.strength is not None else 1.0
    return NoiseReductionConfig(type=update.type, strength=strength)


def apply_update(current: SessionConfig, session: wire.TranscriptionSession) -> SessionConfig:
    """A GA ``session.update``: only the fields present change."""
    config = current
    if "include" in session.model_fields_set:
        config = replace(config, include_logprobs=LOGPROBS in (session.include or []))
    audio_input = session.audio.input if session.audio is not None else None
    if audio_input is None:
        return config
    fields = audio_input.model_fields_set
    if "format" in fields and audio_input.format is not None:
        config = replace(config, format=GA_FORMATS[audio_input.format.type])
    if "transcription" in fields and audio_input.transcription is not None:
        config = replace(
            config, transcription=_transcription(config.transcription, audio_input.transcription, TRANSCRIPTION_PARAM)
        )
    if "turn_detection" in fields:
        config = replace(config, turn_detection=_turn_detection(audio_input.turn_detection))
    if "noise_reduction" in fields:
        config = replace(config, noise_reduction=_noise(config.noise_reduction, audio_input.noise_reduction))
    return config


def apply_beta_update(current: SessionConfig, session: wire.BetaSession) -> SessionConfig:
    """A beta ``transcription_session.update`` (flat fields); only the fields present change."""
    config = current
    fields = session.model_fields_set
    if "include" in fields:
        config = replace(config, include_logprobs=LOGPROBS in (session.include or []))
    if "input_audio_format" in fields and session.input_audio_format is not None:
        config = replace(config, format=BETA_FORMATS[session.input_audio_format])
    if "input_audio_transcription" in fields and session.input_audio_transcription is not None:
        beta = session.input_audio_transcription
        update = wire.Transcription.model_validate(beta.model_dump(exclude_unset=True))
        config = replace(
            config, transcription=_transcription(config.transcription, update, "session.input_audio_transcription")
        )
    if "turn_detection" in fields:
        detection = session.turn_detection
        ga: wire.TurnDetection | None = None
        if detection is not None and detection.type == "semantic_vad":
            ga = wire.SemanticVadDetection(type="semantic_vad", eagerness=detection.eagerness)
        elif detection is not None:
            ga = wire.ServerVadDetection(
                type="server_vad",
                threshold=detection.threshold,
                prefix_padding_ms=detection.prefix_padding_ms,
                silence_duration_ms=detection.silence_duration_ms,
            )
        config = replace(config, turn_detection=_turn_detection(ga))
    if "input_audio_noise_reduction" in fields:
        config = replace(config, noise_reduction=_noise(config.noise_reduction, session.input_audio_noise_reduction))
    return config


# --- rendering -------------------------------------------------------------------------------------------


def _transcription_body(transcription: TranscriptionConfig) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": transcription.model,
        "language": transcription.language,
        "prompt": transcription.prompt or "",
    }
    if transcription.keywords:
        body["keywords"] = list(transcription.keywords)
    if transcription.languages:
        body["languages"] = list(transcription.languages)
    if transcription.delay is not None:
        body["delay"] = transcription.delay
    return body


def _turn_detection_body(detection: TurnDetectionConfig) -> dict[str, Any] | None:
    if detection is None:
        return None
    if isinstance(detection, SemanticVadConfig):
        return {"type": "semantic_vad", "eagerness": detection.eagerness}
    return {
        "type": "server_vad",
        "threshold": detection.threshold,
        "prefix_padding_ms": detection.prefix_padding_ms,
        "silence_duration_ms": detection.silence_duration_ms,
        "idle_timeout_ms": detection.idle_timeout_ms,
    }


def _noise_body(noise: NoiseReductionConfig | None) -> dict[str, Any] | None:
    return None if noise is None else {"type": noise.type, "strength": noise.strength}


def _format_body(fmt: InputFormat) -> dict[str, Any]:
    return {"type": "audio/pcm", "rate": 24000} if fmt == "pcm16" else {"type": f"audio/{fmt}"}


def session_body(config: SessionConfig, session_id: str, expires_at: int | None) -> dict[str, Any]:
    """The GA transcription session object (``session.created`` / ``.updated``, client secrets)."""
    return {
        "type": "transcription",
        "object": "realtime.transcription_session",
        "id": session_id,
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": _format_body(config.format),
                "transcription": _transcription_body(config.transcription),
                "turn_detection": _turn_detection_body(config.turn_detection),
                "noise_reduction": _noise_body(config.noise_reduction),
            }
        },
        "include": [LOGPROBS] if config.include_logprobs else None,
    }


def beta_session_body(config: SessionConfig, session_id: str, expires_at: int | None) -> dict[str, Any]:
    """The beta transcription session object (``transcription_session.created`` / ``.updated``).

    ``client_secret`` is absent, as the beta API sends it only for sessions created over REST.
    """
    beta_format = {v: k for k, v in BETA_FORMATS.items()}[config.format]
    transcription = config.transcription
    detection = _turn_detection_body(config.turn_detection)
    if detection is not None:
        detection.pop("idle_timeout_ms", None)
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "expires_at": expires_at,
        "modalities": ["text"],
        "input_audio_format": beta_format,
        "input_audio_transcription": {
            "model": transcription.model,
            "language": transcription.language,
            "prompt": transcription.prompt or "",
        },
        "turn_detection": detection,
        "input_audio_noise_reduction": None
        if config.noise_reduction is None
        else {"type": config.noise_reduction.type},
        "include": [LOGPROBS] if config.include_logprobs else None,
    }
