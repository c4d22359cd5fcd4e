"""The client events of a realtime transcription session, GA and beta, validated with pydantic.

Field names, nesting and value sets follow ``openai.types.realtime`` (GA) and
``openai.types.beta.realtime`` (beta) of the openai SDK. Models are strict (a string where a
number belongs is refused) and forbid unknown fields, so a typo gets an error event naming it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


# --- GA ----------------------------------------------------------------------------------------------


class PcmFormat(Strict):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[24000] = 24000


class PcmuFormat(Strict):
    type: Literal["audio/pcmu"]


class PcmaFormat(Strict):
    type: Literal["audio/pcma"]


AudioFormat = Annotated[PcmFormat | PcmuFormat | PcmaFormat, Field(discriminator="type")]

Delay = Literal["minimal", "low", "medium", "high", "xhigh"]


class Transcription(Strict):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    keywords: list[str] | None = None
    languages: list[str] | None = None
    delay: Delay | None = None


# Wire model (strict, wire-only fields too); session_config.py maps it onto serving's plain ServerVadConfig.
class ServerVadDetection(Strict):
    type: Literal["server_vad"]
    threshold: float | None = Field(None, ge=0, le=1)
    prefix_padding_ms: int | None = Field(None, ge=0, le=10_000)
    silence_duration_ms: int | None = Field(None, ge=0, le=10_000)
    idle_timeout_ms: int | None = Field(None, ge=1000, le=3_600_000)
    create_response: bool | None = None  # conversation sessions only; accepted and ignored
    interrupt_response: bool | None = None


# Wire model (strict, wire-only fields too); session_config.py maps it onto serving's plain SemanticVadConfig.
class SemanticVadDetection(Strict):
    type: Literal["semantic_vad"]
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


# Wire union, validated by its type tag; session_config.py maps it onto serving's plain TurnDetectionConfig.
TurnDetection = Annotated[ServerVadDetection | SemanticVadDetection, Field(discriminator="type")]


# Wire model (strict, bounded strength); session_config.py maps it onto serving's plain NoiseReductionConfig.
class NoiseReduction(Strict):
    type: Literal["near_field", "far_field"] | None = None
    strength: float | None = Field(None, ge=0, le=1)


class AudioInput(Strict):
    format: AudioFormat | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    noise_reduction: NoiseReduction | None = None


class Audio(Strict):
    input: AudioInput | None = None


Include = Literal["item.input_audio_transcription.logprobs"]


class TranscriptionSession(Strict):
    type: Literal["transcription"]
    audio: Audio | None = None
    include: list[Include] | None = None


class ConversationSession(BaseModel):
    """A speech-to-speech session: recognised only to be refused."""

    model_config = ConfigDict(extra="allow")
    type: Literal["realtime"]


class SessionUpdate(Strict):
    type: Literal["session.update"]
    event_id: str | None = None
    session: Annotated[TranscriptionSession | ConversationSession, Field(discriminator="type")]


class Append(Strict):
    type: Literal["input_audio_buffer.append"]
    event_id: str | None = None
    audio: str


class Commit(Strict):
    type: Literal["input_audio_buffer.commit"]
    event_id: str | None = None


class Clear(Strict):
    type: Literal["input_audio_buffer.clear"]
    event_id: str | None = None


# --- beta (OpenAI-Beta: realtime=v1) -------------------------------------------------------------------


class BetaTranscription(Strict):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class BetaTurnDetection(Strict):
    type: Literal["server_vad", "semantic_vad"] | None = None
    threshold: float | None = Field(None, ge=0, le=1)
    prefix_padding_ms: int | None = Field(None, ge=0, le=10_000)
    silence_duration_ms: int | None = Field(None, ge=0, le=10_000)
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


class BetaNoiseReduction(Strict):
    type: Literal["near_field", "far_field"] | None = None


class BetaSession(Strict):
    input_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | None = None
    input_audio_transcription: BetaTranscription | None = None
    turn_detection: BetaTurnDetection | None = None
    input_audio_noise_reduction: BetaNoiseReduction | None = None
    include: list[Include] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    client_secret: dict[str, Any] | None = None


class BetaSessionUpdate(Strict):
    type: Literal["transcription_session.update"]
    event_id: str | None = None
    session: BetaSession


ClientEvent = SessionUpdate | BetaSessionUpdate | Append | Commit | Clear

EVENT_MODELS: dict[str, type[ClientEvent]] = {
    "session.update": SessionUpdate,
    "transcription_session.update": BetaSessionUpdate,
    "input_audio_buffer.append": Append,
    "input_audio_buffer.commit": Commit,
    "input_audio_buffer.clear": Clear,
}

# Client events of conversation sessions: known, but meaningless in a transcription session.
CONVERSATION_EVENTS = frozenset(
    {
        "conversation.item.create",
        "conversation.item.retrieve",
        "conversation.item.truncate",
        "conversation.item.delete",
        "response.create",
        "response.cancel",
        "output_audio_buffer.clear",
    }
)


class EventError(Exception):
    """A client event that cannot be used: reported as an ``error`` event; the session goes on."""

    def __init__(self, message: str, *, code: str, param: str | None = None, event_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.event_id = event_id


def event_id_of(data: dict[str, Any]) -> str | None:
    value = data.get("event_id")
    return value if isinstance(value, str) else None


def event_object(raw: str | bytes) -> dict[str, Any]:
    """A client message as the JSON object every event is, or EventError."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise EventError("The message is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise EventError("An event must be a JSON object.", code="invalid_json")
    return data


def parse_client_event(raw: str | bytes) -> ClientEvent:
    """One message from the client, validated, or EventError saying what is wrong and where."""
    data = event_object(raw)
    kind = data.get("type")
    event_id = event_id_of(data)
    if not isinstance(kind, str):
        raise EventError("Missing required parameter: 'type'.", code="missing_required_parameter", param="type",
                         event_id=event_id)  # fmt: skip
    if kind in CONVERSATION_EVENTS:
        raise EventError(
            f"'{kind}' is not supported in a transcription session.", code="unsupported_event", param="type",
            event_id=event_id,
        )  # fmt: skip
    model = EVENT_MODELS.get(kind)
    if model is None:
        supported = ", ".join(f"'{name}'" for name in EVENT_MODELS)
        raise EventError(
            f"Invalid value: '{kind}'. Supported values are: {supported}.", code="invalid_value", param="type",
            event_id=event_id,
        )  # fmt: skip
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, event_id) from None


_UNION_FIELDS = {"session": {"transcription", "realtime"}, "format": {"audio/pcm", "audio/pcmu", "audio/pcma"},
                 "turn_detection": {"server_vad", "semantic_vad"}}  # fmt: skip


def _param(location: tuple[int | str, ...]) -> str:
    """The dotted parameter path, without the branch tags pydantic adds after a discriminated union."""
    parts: list[str] = []
    for part in map(str, location):
        if parts and part in _UNION_FIELDS.get(parts[-1], ()):
            continue
        parts.append(part)
    return ".".join(parts)


def validation_error(exc: ValidationError, event_id: str | None) -> EventError:
    first = exc.errors()[0]
    param = _param(first.get("loc", ()))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return EventError(f"Unknown parameter: '{param}'.", code="unknown_parameter", param=param, event_id=event_id)
    if kind == "missing":
        return EventError(
            f"Missing required parameter: '{param}'.", code="missing_required_parameter", param=param,
            event_id=event_id,
        )  # fmt: skip
    if kind.endswith("_type") or kind in ("model_type", "dict_type", "list_type"):
        return EventError(f"Invalid type for '{param}': {first.get('msg', '')}.", code="invalid_type", param=param,
                          event_id=event_id)  # fmt: skip
    return EventError(f"Invalid value for '{param}': {first.get('msg', '')}.", code="invalid_value", param=param,
                      event_id=event_id)  # fmt: skip
