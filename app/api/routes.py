"""HTTP routes: the OpenAI audio endpoints, models, health/readiness/metrics, and the key checks (admin: admin.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from app.accounting.request_record import RequestRecord
from app.api.auth import Principal
from app.api.errors import APIError, to_api_error
from app.api.form import parse_audio_form
from app.api.state import server_state
from app.serving.deadline import Deadline
from app.serving.jobs import TranscriptionJob
from app.settings import Settings


def require_key(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    principal = server_state(request).authenticator.authenticate(authorization)
    request.state.principal = principal
    return principal


def require_admin(principal: Annotated[Principal, Depends(require_key)]) -> Principal:
    if not principal.admin:
        raise APIError(403, "This endpoint needs an admin key.", code="admin_required")
    return principal


api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
public = APIRouter()


async def _audio(request: Request, task: str) -> Response:
    state = server_state(request)
    settings, service, hooks = state.settings, state.service, state.hooks
    # The time limit counts from here: parsing, opening the audio and loading the model included.
    deadline = Deadline(settings.request_timeout_seconds)
    principal: Principal = request.state.principal
    record = RequestRecord(state.metrics, endpoint=task, key_name=principal.name)
    hooks.attach(record)
    try:
        form = await request.form(max_files=8, max_fields=256, max_part_size=settings.max_form_field_bytes)
        try:
            audio_request = await parse_audio_form(form, task=task, max_upload_bytes=settings.max_upload_bytes)
        finally:
            await form.close()
        record.model, record.response_format = audio_request.model, audio_request.response_format.value
        record.stream = audio_request.stream
        admission = service.admit(audio_request)  # a full queue refuses before the key's quota is charged
        try:
            await anyio.to_thread.run_sync(hooks.admit, record)
        except BaseException:
            admission.release()
            raise
        job = await service.start(admission, deadline)
    except Exception as exc:  # every failure is accounted for, not only the expected ones
        error = to_api_error(exc)
        record.finish(error.status)
        raise error from exc
    if audio_request.stream:
        return _stream(job, record, settings)
    try:
        segments = await job.collect(request.is_disconnected)
    except Exception as exc:
        error = to_api_error(exc)
        record.finish(error.status)
        raise error from exc
    finally:
        job.close()
    rendered = job.render(segments)
    record.finish(200, job.result(segments))
    return Response(rendered.body, media_type=rendered.media_type)


class _JobStream(EventSourceResponse):
    """An SSE response that releases its job even when it is torn down before its first frame."""

    def __init__(self, frames: AsyncIterator[ServerSentEvent], on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(frames, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _stream(job: TranscriptionJob[Any], record: RequestRecord, settings: Settings) -> EventSourceResponse:
    async def frames() -> AsyncIterator[ServerSentEvent]:
        status, transcript = 499, None  # unless the stream runs to its end
        events = job.events()
        try:
            async for event in events:
                if event.status is not None:
                    status, transcript = event.status, event.transcript
                else:
                    record.mark_first_delta()
                yield ServerSentEvent(data=json.dumps(event.payload, ensure_ascii=False))
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            job.close()
            record.finish(status, transcript)

    def closed() -> None:
        # Both are idempotent: after a normal end they have already run with the real status.
        job.close()
        record.finish(499)

    return _JobStream(
        frames(),
        closed,
        ping=settings.sse_keepalive_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@api.post("/audio/transcriptions")
async def create_transcription(request: Request) -> Response:
    return await _audio(request, "transcribe")


@api.post("/audio/translations")
async def create_translation(request: Request) -> Response:
    return await _audio(request, "translate")


def _model_card(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "local"}


@api.get("/models")
async def list_models(request: Request) -> JSONResponse:
    state = server_state(request)
    ids = [*state.settings.aliases, *state.settings.models]
    return JSONResponse({"object": "list", "data": [_model_card(i, state.started_at) for i in ids]})


@api.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> JSONResponse:
    state = server_state(request)
    if model_id not in state.settings.aliases and model_id not in state.settings.models:
        raise APIError(404, f"The model '{model_id}' does not exist.", code="model_not_found", param="model")
    return JSONResponse(_model_card(model_id, state.started_at))


@public.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@public.get("/ready")
async def ready(request: Request) -> JSONResponse:
    state = server_state(request)
    readiness = state.readiness
    body: dict[str, Any] = {"ready": readiness.ready, "loading": sorted(readiness.pending), "failed": readiness.failed}
    if state.shared_state is not None:  # a replica that cannot reach the shared Redis should get no traffic
        reachable = await anyio.to_thread.run_sync(state.shared_state.reachable)
        body["shared_state"] = "ok" if reachable else "unreachable"
        body["ready"] = readiness.ready and reachable
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@public.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(server_state(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
