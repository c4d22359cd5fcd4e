"""One realtime translation connection (``/v1/realtime/translations``): a transcription connection whose
session decodes every turn with Whisper's ``translate`` task, spoken in the translation protocol.

Limits, admission, the ledger row, metrics and close codes are the transcription connection's. What
differs: the client events (``session.update``, ``session.input_audio_buffer.append``,
``session.close``), the server events (``session.output_transcript.delta`` from the translated
turns' agreed words; nothing per turn or item), and the optional source-language transcript: a
second session on the same audio whose turns are transcribed once each, when they end, and sent
as ``session.input_transcript.delta``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Any

import anyio

from app.api.realtime.client_events import EventError
from app.api.realtime.connection import CLOSE_NORMAL, Closing, RealtimeConnection
from app.api.realtime.server_events import (
    EventRenderer,
    event_error,
    exception_error,
    server_event,
)
from app.api.realtime.translation_events import (
    Append,
    Close,
    TranslationConfig,
    apply_translation_update,
    default_translation,
    parse_translation_event,
    translation_session_body,
)
from app.serving.errors import InvalidInput, ModelNotFound, ServingError
from app.serving.realtime import RealtimeSession, SessionConfig, TranscriptionConfig
from app.serving.realtime.config import Task
from app.serving.realtime.events import (
    SessionChanged,
    SessionEvent,
    TranscriptCompleted,
    TranscriptDelta,
    TranscriptFailed,
)
from engines.errors import EngineError

INPUT_MODEL_PARAM = "session.audio.input.transcription.model"
CLOSE_DRAIN_SECONDS = 30.0  # how long session.close waits for the last turn's translation


class DeltaJoiner:
    """Append-only text across turns: a turn's first words get a space before them unless they start the stream."""

    def __init__(self) -> None:
        self._started = False

    def __call__(self, event: TranscriptDelta) -> str:
        new_turn = event.first_after is not None
        text = " " + event.delta if new_turn and self._started else event.delta
        self._started = True
        return text


class TranslationRenderer(EventRenderer):
    """The session's events in the translation protocol; turn-level events have no counterpart there."""

    def __init__(self, session_id: str, expires_at: int) -> None:
        super().__init__(beta=False, session_id=session_id, expires_at=expires_at)
        self.translation: TranslationConfig | None = None
        self._output = DeltaJoiner()

    def render(self, event: SessionEvent) -> list[dict[str, Any]]:
        if isinstance(event, SessionChanged):
            kind = self._session_kind()
            config = self.translation or TranslationConfig(event.config)
            body = translation_session_body(config, self.session_id, self.expires_at)
            return [server_event(f"session.{kind}", session=body)]
        if isinstance(event, TranscriptDelta):
            return [server_event("session.output_transcript.delta", delta=self._output(event))]
        if isinstance(event, TranscriptFailed):
            return [exception_error(event.error, None)]
        return []


class TranslationConnection(RealtimeConnection):
    task: Task = "translate"
    other_kind = "transcription sessions (/v1/realtime?intent=transcription)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        expires_at = int(time.time() + self.settings.realtime.max_session_seconds)
        self.renderer = self._translation_renderer = TranslationRenderer(self.record.session_id, expires_at)
        self._source: RealtimeSession | None = None  # the source-language transcript's session
        self._source_joiner = DeltaJoiner()
        self._extras: anyio.abc.TaskGroup | None = None
        self._turns_done = 0  # translated turns whose final is out (session.close waits for them)

    # --- opening ---------------------------------------------------------------------------------------

    def _refusal(self) -> Closing | None:
        return self._secret_of_other_kind()  # no intent to check: the path says what the session is

    def _initial_config(self) -> SessionConfig:
        if self.grant.config is not None:
            config = self.grant.config
        else:  # the URL names the model (the SDK requires it); an unknown one is refused as model_not_found
            config = default_translation(self.websocket.query_params.get("model") or "").decode
        self._translation_renderer.translation = TranslationConfig(config)
        return config

    async def _run(self, session: RealtimeSession) -> Closing | None:
        closing: Closing | None = None
        async with anyio.create_task_group() as extras:  # the source transcript's session runs in here
            self._extras = extras
            try:
                closing = await super()._run(session)
            finally:
                extras.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    await self._stop_source()
        return closing

    # --- client events -----------------------------------------------------------------------------------

    async def _handle(self, session: RealtimeSession, data: str | bytes) -> Closing | None:
        event_id: str | None = None
        try:
            event = parse_translation_event(data)
            event_id = event.event_id
            if isinstance(event, Append):
                audio = self._audio(event)
                session.append(audio)
                if self._source is not None:
                    self._source.append(audio)
            elif isinstance(event, Close):
                return await self._drain(session)
            else:
                current = self._translation_renderer.translation or TranslationConfig(session.config)
                await self._update_translation(session, apply_translation_update(current, event.session, event_id),
                                               event_id)  # fmt: skip
        except EventError as exc:
            self._out.send_nowait(event_error(exc))
        except (ServingError, EngineError) as exc:
            self._out.send_nowait(exception_error(exc, event_id))
        return None

    async def _update_translation(
        self, session: RealtimeSession, config: TranslationConfig, event_id: str | None
    ) -> None:
        previous = self._translation_renderer.translation
        if config.input_model != (previous.input_model if previous else None) or (
            self._source is not None and config.decode.noise_reduction != session.config.noise_reduction
        ):
            await self._start_source(config, event_id)
        self._translation_renderer.translation = config
        await super()._update(session, config.decode, event_id)

    async def _drain(self, session: RealtimeSession) -> Closing:
        """session.close: end the turn being spoken, wait for its translation, then say session.closed."""
        for current in (session, self._source):
            if current is not None and current.open is not None and current.open.speech.heard:
                with contextlib.suppress(InvalidInput):  # under 100 ms of audio: nothing worth translating
                    current.commit()
        with anyio.move_on_after(CLOSE_DRAIN_SECONDS):
            while self._turns_done < session.turns_committed:
                await anyio.sleep(0.05)
        await anyio.sleep(0.05)  # the sender passes on the last deltas first
        return Closing(CLOSE_NORMAL, server_event("session.closed"))

    # --- the source-language transcript ----------------------------------------------------------------

    async def _start_source(self, config: TranslationConfig, event_id: str | None) -> None:
        """(Re)start the source transcript's session for ``config``; its turns are transcribed when they end."""
        await self._stop_source()
        if config.input_model is None:
            return
        source_config = replace(
            config.decode,
            # xhigh: no live decodes, one final per turn (the translation's live decodes keep the model busy)
            transcription=TranscriptionConfig(model=config.input_model, delay="xhigh"),
            task="transcribe",
        )
        try:
            source = RealtimeSession(
                self.service, self.settings.realtime, source_config, self._emit_source, self.scorer
            )
            await source.start()
        except ModelNotFound as exc:
            raise EventError(str(exc), code="model_not_found", param=INPUT_MODEL_PARAM, event_id=event_id) from None
        assert self._extras is not None
        self._source = source
        self._source_joiner = DeltaJoiner()
        self._extras.start_soon(source.run)

    async def _stop_source(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            await source.aclose()

    def _emit_source(self, event: SessionEvent) -> None:
        if isinstance(event, TranscriptDelta):
            self._out.send_nowait(server_event("session.input_transcript.delta", delta=self._source_joiner(event)))

    # --- sending ----------------------------------------------------------------------------------------

    def _payloads(self, item: Any) -> list[dict[str, Any]]:
        payloads = super()._payloads(item)
        if isinstance(item, TranscriptCompleted | TranscriptFailed):
            self._turns_done += 1
        return payloads
