"""Server events in the SDK's shapes (``openai.types.realtime``; beta names where the beta protocol differs)."""

from __future__ import annotations

import secrets
from typing import Any

from app.api.errors import to_api_error
from app.api.openai_usage import tokens_body
from app.api.realtime.client_events import EventError
from app.api.realtime.session_config import beta_session_body, session_body
from app.api.render import logprobs_body
from app.serving.realtime import SessionConfig
from app.serving.realtime.events import (
    Cleared,
    Committed,
    ItemAdded,
    SessionChanged,
    SessionEvent,
    SpeechStarted,
    SpeechStopped,
    TimeoutTriggered,
    TranscriptCompleted,
    TranscriptDelta,
    TranscriptFailed,
    TurnUsage,
)
from app.settings import UsageKind


def new_event_id() -> str:
    return "event_" + secrets.token_hex(11)


def server_event(kind: str, **fields: Any) -> dict[str, Any]:
    """An event of ``kind`` with a new id (the translation protocol's events too)."""
    return {"event_id": new_event_id(), "type": kind, **fields}


_event = server_event  # the short name the renderers below use


def error_event(
    message: str, *, type: str = "invalid_request_error", code: str | None, param: str | None, event_id: str | None
) -> dict[str, Any]:
    error = {"type": type, "code": code, "message": message, "param": param, "event_id": event_id}
    return _event("error", error=error)


def event_error(exc: EventError) -> dict[str, Any]:
    return error_event(exc.message, code=exc.code, param=exc.param, event_id=exc.event_id)


def exception_error(exc: BaseException, event_id: str | None) -> dict[str, Any]:
    """A domain failure in the OpenAI envelope (the same mapping as the HTTP endpoints)."""
    error = to_api_error(exc)
    return error_event(error.message, type=error.type, code=error.code, param=error.param, event_id=event_id)


def _item(item_id: str, transcript: str | None) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_audio", "transcript": transcript}],
    }


def usage_body(usage: TurnUsage, kind: UsageKind) -> dict[str, Any]:
    if kind == "duration":
        return {"type": "duration", "seconds": round(usage.seconds, 3)}
    return tokens_body(usage.prompt_tokens, usage.audio_tokens, usage.output_tokens)


class EventRenderer:
    """Renders one session's events for its protocol (GA, or beta with ``OpenAI-Beta: realtime=v1``)."""

    def __init__(self, *, beta: bool, session_id: str, expires_at: int | None) -> None:
        self.beta = beta
        self.session_id = session_id
        self.expires_at = expires_at
        self._announced = False
        self.usage_kind: UsageKind = "tokens"

    def _session_kind(self) -> str:
        """``created`` for the first session event, ``updated`` for the others."""
        kind = "created" if not self._announced else "updated"
        self._announced = True
        return kind

    def session(self, config: SessionConfig) -> dict[str, Any]:
        kind = self._session_kind()
        if self.beta:
            body = beta_session_body(config, self.session_id, self.expires_at)
            return _event(f"transcription_session.{kind}", session=body)
        return _event(f"session.{kind}", session=session_body(config, self.session_id, self.expires_at))

    def render(self, event: SessionEvent) -> list[dict[str, Any]]:
        if isinstance(event, SessionChanged):
            return [self.session(event.config)]
        if isinstance(event, SpeechStarted):
            return [_event("input_audio_buffer.speech_started", audio_start_ms=event.audio_start_ms,
                           item_id=event.item_id)]  # fmt: skip
        if isinstance(event, SpeechStopped):
            return [_event("input_audio_buffer.speech_stopped", audio_end_ms=event.audio_end_ms, item_id=event.item_id)]
        if isinstance(event, TimeoutTriggered):
            return [_event("input_audio_buffer.timeout_triggered", audio_start_ms=event.audio_start_ms,
                           audio_end_ms=event.audio_end_ms, item_id=event.item_id)]  # fmt: skip
        if isinstance(event, Committed):
            return [_event("input_audio_buffer.committed", item_id=event.item_id,
                           previous_item_id=event.previous_item_id)]  # fmt: skip
        if isinstance(event, Cleared):
            return [_event("input_audio_buffer.cleared")]
        if isinstance(event, ItemAdded):
            kind = "conversation.item.created" if self.beta else "conversation.item.added"
            return [_event(kind, item=_item(event.item_id, None), previous_item_id=event.previous_item_id)]
        if isinstance(event, TranscriptDelta):
            return [_event("conversation.item.input_audio_transcription.delta", item_id=event.item_id,
                           content_index=0, delta=event.delta)]  # fmt: skip
        if isinstance(event, TranscriptCompleted):
            return self._completed(event)
        return self._failed(event)

    def _completed(self, event: TranscriptCompleted) -> list[dict[str, Any]]:
        fields: dict[str, Any] = {
            "item_id": event.item_id,
            "content_index": 0,
            "transcript": event.transcript,
            "usage": usage_body(event.usage, self.usage_kind),
        }
        if event.logprobs is not None:
            fields["logprobs"] = logprobs_body(event.logprobs)
        if event.languages_requested and not self.beta:
            fields["languages"] = [{"code": event.language}] if event.transcript else []
        events = [_event("conversation.item.input_audio_transcription.completed", **fields)]
        if not self.beta:
            events.append(_event("conversation.item.done", item=_item(event.item_id, event.transcript),
                                 previous_item_id=event.previous_item_id))  # fmt: skip
        return events

    def _failed(self, event: TranscriptFailed) -> list[dict[str, Any]]:
        error = to_api_error(event.error)
        body = {"type": error.type, "code": error.code, "message": error.message, "param": error.param}
        events = [_event("conversation.item.input_audio_transcription.failed", item_id=event.item_id,
                         content_index=0, error=body)]  # fmt: skip
        if not self.beta:
            events.append(_event("conversation.item.done", item=_item(event.item_id, None),
                                 previous_item_id=event.previous_item_id))  # fmt: skip
        return events
