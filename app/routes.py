"""HTTP routes: the OpenAI audio endpoints, models, health/readiness/metrics, admin views."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.auth import Authenticator, Principal
from app.errors import APIError
from app.form import parse_audio_form
from app.jobs import TranscriptionJob
from app.observe import RequestRecord
from app.protocol import AudioRequest
from app.render import render
from app.render_diarized import render_diarized
from app.service import ModelRoute, TranscriptionService, engine_error_to_api
from app.settings import Settings
from app.streaming import diarized_events, transcript_events
from engines.diarized import DiarizedRun, DiarizedTranscript
from engines.types import Transcript


def _service(request: Request) -> TranscriptionService:
    service: TranscriptionService = request.app.state.service
    return service


def require_key(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    principal = authenticator.authenticate(authorization)
    request.state.principal = principal
    return principal


def require_admin(principal: Annotated[Principal, Depends(require_key)]) -> Principal:
    if not principal.admin:
        raise APIError(403, "This endpoint needs an admin key.", code="admin_required")
    return principal


api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])
public = APIRouter()


async def _audio(request: Request, task: str) -> Response:
    settings: Settings = request.app.state.settings
    principal: Principal = request.state.principal
    record = RequestRecord(request.app.state.metrics, endpoint=task, key_name=principal.name)
    request.app.state.hooks.attach(record)
    try:
        form = await request.form(max_files=8, max_fields=256, max_part_size=settings.max_form_field_bytes)
        try:
            audio_request = await parse_audio_form(form, task=task, max_upload_bytes=settings.max_upload_bytes)
        finally:
            await form.close()
        record.model, record.response_format = audio_request.model, audio_request.response_format.value
        record.stream = audio_request.stream
        await anyio.to_thread.run_sync(request.app.state.hooks.admit, record)
        job, route = await _service(request).start(audio_request)
    except APIError as exc:
        record.finish(exc.status)
        raise
    if audio_request.stream:
        return _stream(job, audio_request, route, record, settings)
    try:
        segments = await job.collect(request.is_disconnected)
    except Exception as exc:
        error = engine_error_to_api(exc)
        record.finish(error.status)
        raise error from exc
    finally:
        job.close()
    info = job.run.info
    if isinstance(job.run, DiarizedRun):
        diarized = DiarizedTranscript(info, segments)
        rendered = render_diarized(diarized, audio_request, route.usage)
        record.finish(200, diarized)
    else:
        transcript = Transcript(info, segments)
        rendered = render(transcript, audio_request, route.usage)
        record.finish(200, transcript)
    return Response(rendered.body, media_type=rendered.media_type)


def _stream(
    job: TranscriptionJob[Any],
    audio_request: AudioRequest,
    route: ModelRoute,
    record: RequestRecord,
    settings: Settings,
) -> EventSourceResponse:
    async def frames() -> AsyncIterator[ServerSentEvent]:
        status, transcript = 499, None  # unless the stream runs to its end
        if isinstance(job.run, DiarizedRun):
            events = diarized_events(job, audio_request, route.usage)
        else:
            events = transcript_events(job, audio_request, route.usage)
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

    return EventSourceResponse(
        frames(),
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
    settings: Settings = request.app.state.settings
    created: int = request.app.state.started_at
    ids = [*settings.aliases, *settings.models]
    return JSONResponse({"object": "list", "data": [_model_card(i, created) for i in ids]})


@api.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    if model_id not in settings.aliases and model_id not in settings.models:
        raise APIError(404, f"The model '{model_id}' does not exist.", code="model_not_found", param="model")
    return JSONResponse(_model_card(model_id, request.app.state.started_at))


@admin.get("/models")
async def loaded_models(request: Request) -> JSONResponse:
    service = _service(request)
    rows = []
    for status in service.manager.status():
        slots = service.slots[status.name]
        rows.append(asdict(status) | {"running": slots.running, "queued": slots.waiting})
    return JSONResponse({"object": "list", "data": rows})


@public.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@public.get("/ready")
async def ready(request: Request) -> JSONResponse:
    readiness = request.app.state.readiness
    body = {"ready": readiness.ready, "loading": sorted(readiness.pending), "failed": readiness.failed}
    return JSONResponse(body, status_code=200 if readiness.ready else 503)


@public.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
