"""One realtime WebSocket connection: client events in, session events out, limits, and how it closes.

Close codes: 1000 after an idle timeout; 1008 for policy (a conversation session, a quota, the
session length); 1011 for an internal error; 1013 when the server is at its session limits (the
SDK's reconnect logic retries 1011 and 1013). Each is preceded by an ``error`` event.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.websockets import WebSocket

from app.accounting.ledger_hooks import LedgerHooks
from app.accounting.session_record import SessionRecord
from app.accounting.shared_sessions import admit_session
from app.accounting.shared_state import SharedStateUnavailable
from app.api.realtime import client_events as wire
from app.api.realtime.client_events import EventError, parse_client_event
from app.api.realtime.server_events import EventRenderer, error_event, event_error, exception_error
from app.api.realtime.session_config import apply_beta_update, apply_update, default_config
from app.api.realtime.ws_auth import Grant
from app.serving.errors import InvalidInput, ModelNotFound, RateLimited, ServingError, SessionLimitReached
from app.serving.realtime import RealtimeSession, SessionConfig, SessionRegistry, SessionTicket
from app.serving.realtime.config import Task
from app.serving.realtime.events import SessionEvent, TranscriptCompleted, TranscriptDelta, TranscriptFailed
from app.serving.service import TranscriptionService
from app.settings import Settings
from engines.errors import EngineError
from engines.live.vad_stream import FrameScorer

log = logging.getLogger(__name__)

CLOSE_NORMAL, CLOSE_POLICY, CLOSE_INTERNAL, CLOSE_TRY_AGAIN = 1000, 1008, 1011, 1013
MODEL_PARAM = "session.audio.input.transcription.model"

Outgoing = SessionEvent | dict[str, Any]


class AudioEvent(Protocol):
    """An append, in either session protocol."""

    audio: str
    event_id: str | None


@dataclass(frozen=True)
class Closing:
    code: int
    error: dict[str, Any]


def default_model(settings: Settings) -> str:
    if settings.realtime.default_model:
        return settings.realtime.default_model
    if "gpt-realtime-whisper" in settings.aliases:
        return "gpt-realtime-whisper"
    return next(iter(settings.aliases), None) or next(iter(settings.models))


class RealtimeConnection:
    # The sessions this connection serves, and where a client secret minted for the other kind opens.
    task: Task = "transcribe"
    other_kind = "translation sessions (/v1/realtime/translations)"

    def __init__(
        self,
        websocket: WebSocket,
        *,
        settings: Settings,
        service: TranscriptionService,
        registry: SessionRegistry,
        hooks: LedgerHooks,
        record: SessionRecord,
        scorer: FrameScorer,
        grant: Grant,
        beta: bool,
    ) -> None:
        self.websocket = websocket
        self.settings = settings
        self.service = service
        self.registry = registry
        self.hooks = hooks
        self.record = record
        self.scorer = scorer
        self.grant = grant
        self.beta = beta
        self.renderer = EventRenderer(beta=beta, session_id=record.session_id, expires_at=None)
        self._out: MemoryObjectSendStream[Outgoing]
        self._in: MemoryObjectReceiveStream[Outgoing]
        self._out, self._in = anyio.create_memory_object_stream[Outgoing](max_buffer_size=math.inf)
        self._gone = False
        self._client_code = 1006  # how the client left, when it did (1006: the connection just dropped)
        self._ticket: SessionTicket | None = None

    # --- the connection's life -----------------------------------------------------------------------

    async def serve(self) -> None:
        code = CLOSE_INTERNAL
        session: RealtimeSession | None = None
        try:
            closing, session = await self._open()
            if closing is None and session is not None:
                closing = await self._run(session)
            if closing is not None:
                code = closing.code
                await self._flush()
                await self._send(closing.error)
                await self._close(closing.code)
            else:
                code = self._client_code
        except Exception:
            log.exception("realtime session %s failed", self.record.session_id)
            await self._send(error_event("The server had an internal error.", type="server_error",
                                         code="internal_error", param=None, event_id=None))  # fmt: skip
            await self._close(CLOSE_INTERNAL)
        finally:
            self._out.close()
            self._in.close()
            if session is not None:
                await session.aclose()  # stops any decoding first
            if self._ticket is not None:
                self._ticket.release()
            extra = {} if session is None else {"decodes": {k: round(v, 2) for k, v in vars(session.stats).items()}}
            self.record.finish(code, session.audio_seconds if session is not None else 0.0, extra)

    async def _open(self) -> tuple[Closing | None, RealtimeSession | None]:
        """Check the intent, the key's quotas and the session limits, then start the session."""
        refusal = self._refusal()
        if refusal is not None:
            return refusal, None
        config = self._initial_config()
        try:
            route = self.service.resolve(config.transcription.model)
        except ModelNotFound as exc:
            return Closing(CLOSE_POLICY, exception_error(exc, None)), None
        self.record.model = route.requested
        try:
            if self.hooks.quotas is not None:
                await anyio.to_thread.run_sync(self.hooks.quotas.admit, self.grant.principal.name)
            self._ticket = await admit_session(self.registry, self.grant.principal.name, route.model_id)
        except RateLimited as exc:
            return Closing(CLOSE_POLICY, exception_error(exc, None)), None
        except (SessionLimitReached, SharedStateUnavailable) as exc:  # the SDK's reconnect logic retries 1013
            return Closing(CLOSE_TRY_AGAIN, exception_error(exc, None)), None
        self.record.opened()
        session = RealtimeSession(self.service, self.settings.realtime, config, self._emit, self.scorer)
        self.renderer.usage_kind = route.usage
        try:
            await session.start()
        except (ServingError, EngineError) as exc:
            await session.aclose()
            return Closing(CLOSE_INTERNAL, exception_error(exc, None)), None
        return None, session

    def _refusal(self) -> Closing | None:
        """Why this connection is not served at all (before any session starts), if it is not."""
        if self.websocket.query_params.get("intent") != "transcription":
            message = (
                "This server only serves transcription sessions: connect with ?intent=transcription "
                "(client.realtime.connect(extra_query={'intent': 'transcription'}))."
            )
            return Closing(CLOSE_POLICY, error_event(message, code="unsupported_session_type", param="intent",
                                                     event_id=None))  # fmt: skip
        return self._secret_of_other_kind()

    def _secret_of_other_kind(self) -> Closing | None:
        """A client secret minted for the other kind of session opens only that kind."""
        if self.grant.config is None or self.grant.config.task == self.task:
            return None
        message = f"This client secret opens {self.other_kind}."
        return Closing(CLOSE_POLICY, error_event(message, code="unsupported_session_type", param=None, event_id=None))

    def _initial_config(self) -> SessionConfig:
        if self.grant.config is not None:
            return self.grant.config
        requested = self.websocket.query_params.get("model")
        if requested and (requested in self.settings.aliases or requested in self.settings.models):
            return default_config(requested)  # a beta client names its model in the URL
        return default_config(default_model(self.settings))

    async def _run(self, session: RealtimeSession) -> Closing | None:
        closing: Closing | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self._sender, group.cancel_scope)
            group.start_soon(session.run)
            try:
                closing = await self._receive(session)
            finally:
                session.stop()  # a running decode ends at its next window
                group.cancel_scope.cancel()
        return None if self._gone else closing

    # --- receiving ------------------------------------------------------------------------------------

    async def _receive(self, session: RealtimeSession) -> Closing | None:
        limits = self.settings.realtime
        with anyio.move_on_after(limits.max_session_seconds):
            while True:
                with anyio.move_on_after(limits.idle_timeout_seconds) as idle:
                    message = await self.websocket.receive()
                if idle.cancelled_caught:
                    message_text = f"The session was idle for {limits.idle_timeout_seconds:g} s and is closed."
                    return Closing(CLOSE_NORMAL, error_event(message_text, code="session_idle_timeout", param=None,
                                                             event_id=None))  # fmt: skip
                if message["type"] == "websocket.disconnect":
                    self._gone = True
                    self._client_code = int(message.get("code") or 1005)
                    return None
                data = message.get("text")
                closing = await self._handle(session, data if data is not None else message.get("bytes") or b"")
                if closing is not None:
                    return closing
        text = f"The session reached its maximum length of {limits.max_session_seconds:g} s."
        return Closing(CLOSE_POLICY, error_event(text, code="session_expired", param=None, event_id=None))

    async def _handle(self, session: RealtimeSession, data: str | bytes) -> Closing | None:
        """Act on one client message; a Closing ends the session (``_receive`` returns it)."""
        event_id: str | None = None
        try:
            event = parse_client_event(data)
            event_id = event.event_id
            if isinstance(event, wire.Append):
                session.append(self._audio(event))
            elif isinstance(event, wire.Commit):
                session.commit()
            elif isinstance(event, wire.Clear):
                session.clear()
            elif isinstance(event, wire.BetaSessionUpdate):
                await self._update(session, apply_beta_update(session.config, event.session), event_id)
            elif isinstance(event.session, wire.ConversationSession):
                raise EventError(
                    "This server only serves transcription sessions; session.type must be 'transcription'.",
                    code="invalid_value", param="session.type", event_id=event_id,
                )  # fmt: skip
            else:
                await self._update(session, apply_update(session.config, event.session), event_id)
        except EventError as exc:
            self._out.send_nowait(event_error(exc))
        except (ServingError, EngineError) as exc:
            self._out.send_nowait(exception_error(exc, event_id))
        except Exception as exc:  # a bug must not end the session, let alone the server
            log.exception("realtime event failed")
            self._out.send_nowait(exception_error(exc, event_id))
        return None

    def _audio(self, event: AudioEvent) -> bytes:
        limit = self.settings.realtime.max_append_bytes
        if len(event.audio) > 4 * math.ceil(limit / 3):
            raise InvalidInput("audio", f"One append may carry at most {limit} bytes of audio.", code="audio_too_large")
        try:
            return base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError):
            raise EventError("Invalid 'audio': expected base64-encoded audio bytes.", code="invalid_value",
                             param="audio", event_id=event.event_id) from None  # fmt: skip

    async def _update(self, session: RealtimeSession, config: SessionConfig, event_id: str | None) -> None:
        try:
            route = self.service.resolve(config.transcription.model)
        except ModelNotFound as exc:
            raise EventError(str(exc), code="model_not_found", param=MODEL_PARAM, event_id=event_id) from None
        ticket = self._ticket
        assert ticket is not None
        previous = ticket.model_id
        ticket.move_to(route.model_id)
        try:
            await session.update(config)
        except BaseException:
            ticket.move_to(previous)
            raise
        self.renderer.usage_kind = route.usage

    # --- sending ----------------------------------------------------------------------------------------

    def _emit(self, event: SessionEvent) -> None:
        self._out.send_nowait(event)

    async def _sender(self, scope: anyio.CancelScope) -> None:
        async for item in self._in:
            for payload in self._payloads(item):
                if not await self._send(payload):
                    scope.cancel()  # the client is gone: stop everything
                    return

    def _payloads(self, item: Outgoing) -> list[dict[str, Any]]:
        if isinstance(item, dict):
            return [item]
        if isinstance(item, TranscriptDelta) and item.first_after is not None:
            self.record.first_delta(item.first_after)
        elif isinstance(item, TranscriptCompleted):
            usage = item.usage
            self.record.turn_completed(item.latency, usage.prompt_tokens + usage.audio_tokens, usage.output_tokens)
        elif isinstance(item, TranscriptFailed):
            self.record.turn_failed()
        return self.renderer.render(item)

    async def _flush(self) -> None:
        """Send what is still queued (before a server-side close)."""
        while True:
            try:
                item = self._in.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            for payload in self._payloads(item):
                await self._send(payload)

    async def _send(self, payload: dict[str, Any]) -> bool:
        if self._gone:
            return False
        try:
            await self.websocket.send_text(json.dumps(payload, ensure_ascii=False))
            return True
        except Exception:  # the connection is gone (the exact type depends on the server)
            self._gone = True
            return False

    async def _close(self, code: int) -> None:
        if self._gone:
            return
        try:
            await self.websocket.close(code)
        except Exception:
            self._gone = True


def new_session_id() -> str:
    return "sess_" + secrets.token_hex(11)
