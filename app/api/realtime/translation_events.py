"""The client events of a realtime translation session, and their session configuration on the wire.

Field names and nesting follow ``openai.types.realtime.realtime_translation_*`` of the openai SDK.
Models are strict and forbid unknown fields, as for transcription sessions, except ``audio.output``:
its fields other than ``language`` ask for translated speech, which is not served and gets an error
that says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from app.api.realtime.client_events import EventError, Strict, event_id_of, event_object, validation_error
from app.serving.realtime import NoiseReductionConfig, SessionConfig, TranscriptionConfig
from app.serving.realtime.config import Delay

OUTPUT_LANGUAGE = "en"  # Whisper translates into English only


class NoiseReduction(Strict):
    type: Literal["near_field", "far_field"]
    strength: float | None = Field(None, ge=0, le=1)


class InputTranscription(Strict):
    model: str


class AudioInput(Strict):
    noise_reduction: NoiseReduction | None = None
    transcription: InputTranscription | None = None


class AudioOutput(Strict):
    model_config = ConfigDict(strict=True, extra="allow")  # anything but language asks for audio: refused by name
    language: str | None = None


class Audio(Strict):
    input: AudioInput | None = None
    output: AudioOutput | None = None


class TranslationSession(Strict):
    audio: Audio | None = None
    model: str | None = None  # set at creation (the URL's model); an update may only repeat it
    type: Literal["translation"] | None = None


class SessionUpdate(Strict):
    type: Literal["session.update"]
    session: TranslationSession
    event_id: str | None = None


class Append(Strict):
    type: Literal["session.input_audio_buffer.append"]
    audio: str
    event_id: str | None = None


class Close(Strict):
    type: Literal["session.close"]
    event_id: str | None = None


ClientEvent = SessionUpdate | Append | Close
EVENT_MODELS: dict[str, type[ClientEvent]] = {
    "session.update": SessionUpdate,
    "session.input_audio_buffer.append": Append,
    "session.close": Close,
}


def parse_translation_event(raw: str | bytes) -> ClientEvent:
    """One message from a translation client, validated, or EventError saying what is wrong and where."""
    data = event_object(raw)
    kind, event_id = data.get("type"), event_id_of(data)
    if not isinstance(kind, str):
        raise EventError("Missing required parameter: 'type'.", code="missing_required_parameter", param="type",
                         event_id=event_id)  # fmt: skip
    model = EVENT_MODELS.get(kind)
    if model is None:
        supported = ", ".join(f"'{name}'" for name in EVENT_MODELS)
        raise EventError(f"Invalid value: '{kind}'. A translation session accepts {supported}.",
                         code="invalid_value", param="type", event_id=event_id)  # fmt: skip
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, event_id) from None


@dataclass(frozen=True)
class TranslationConfig:
    """A translation session's settings: the translate-task decode, and the optional source transcript's model."""

    decode: SessionConfig
    input_model: str | None = None  # audio.input.transcription.model: source-language deltas when set


# Translations of a turn's first seconds are unstable (the language is often misdetected, the words
# reordered as the sentence grows), so live words wait for three successive decodes a second apart to agree.
TRANSLATION_DELAY: Delay = "high"


def default_translation(model: str) -> TranslationConfig:
    transcription = TranscriptionConfig(model=model, delay=TRANSLATION_DELAY)
    return TranslationConfig(SessionConfig(transcription=transcription, task="translate"))


def _unsupported(message: str, param: str, event_id: str | None) -> EventError:
    return EventError(message, code="unsupported_value", param=param, event_id=event_id)


def apply_translation_update(
    current: TranslationConfig, session: TranslationSession, event_id: str | None
) -> TranslationConfig:
    """``current`` with the update's fields applied; an unsupported option raises EventError naming it."""
    if session.model is not None and session.model != current.decode.transcription.model:
        raise _unsupported("The session's model is set when it is created and cannot be changed.",
                           "session.model", event_id)  # fmt: skip
    audio = session.audio
    if audio is None:
        return current
    if audio.output is not None:
        extra = sorted((audio.output.model_extra or {}).keys())
        if extra:
            raise _unsupported(
                f"Translated output audio is not supported (got 'session.audio.output.{extra[0]}'): this server "
                "sends the translation as text (session.output_transcript.delta) only.",
                f"session.audio.output.{extra[0]}", event_id,
            )  # fmt: skip
        language = audio.output.language
        if language is not None and language.strip().lower() not in (OUTPUT_LANGUAGE, "english"):
            raise _unsupported(
                f"Output language {language!r} is not supported: this server translates into English ('en') only.",
                "session.audio.output.language", event_id,
            )  # fmt: skip
    decode, input_model = current.decode, current.input_model
    if audio.input is not None:
        given = audio.input.model_fields_set
        if "noise_reduction" in given:
            noise = audio.input.noise_reduction
            decode = replace(decode, noise_reduction=None if noise is None else NoiseReductionConfig(
                noise.type, noise.strength))  # fmt: skip
        if "transcription" in given:
            transcription = audio.input.transcription
            input_model = None if transcription is None else transcription.model
    return TranslationConfig(decode, input_model)


def translation_session_body(config: TranslationConfig, session_id: str, expires_at: int | None) -> dict[str, Any]:
    """A ``RealtimeTranslationSession``."""
    noise = config.decode.noise_reduction
    return {
        "id": session_id,
        "type": "translation",
        "model": config.decode.transcription.model,
        "expires_at": expires_at,
        "audio": {
            "input": {
                "noise_reduction": None
                if noise is None
                else {"type": noise.type or "near_field", "strength": noise.strength},
                "transcription": None if config.input_model is None else {"model": config.input_model},
            },
            "output": {"language": OUTPUT_LANGUAGE},
        },
    }
