"""HTTP routes: the OpenAI audio endpoints, the model list, and health."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.auth import Authenticator
from app.errors import APIError
from app.form import parse_audio_form
from app.render import render
from app.service import TranscriptionService, engine_error_to_api
from app.settings import Settings
from app.streaming import transcript_events


def _service(request: Request) -> TranscriptionService:
    service: TranscriptionService = request.app.state.service
    return service


def require_key(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    authenticator: Authenticator = request.app.state.authenticator
    key_name = authenticator.authenticate(authorization)
    request.state.key_name = key_name
    return key_name


api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
public = APIRouter()


async def _audio(request: Request, task: str) -> Response:
    settings: Settings = request.app.state.settings
    form = await request.form(max_files=8, max_fields=256, max_part_size=settings.max_form_field_bytes)
    try:
        audio_request = await parse_audio_form(form, task=task, max_upload_bytes=settings.max_upload_bytes)
    finally:
        await form.close()
    job, route = await _service(request).start(audio_request)
    if audio_request.stream:
        events = transcript_events(job, audio_request, route.usage)
        return EventSourceResponse(
            (ServerSentEvent(data=json.dumps(event, ensure_ascii=False)) async for event in events),
            ping=settings.sse_keepalive_seconds,
            ping_message_factory=lambda: ServerSentEvent(comment="ping"),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        transcript = await job.collect(request.is_disconnected)
    except Exception as exc:
        raise engine_error_to_api(exc) from exc
    rendered = render(transcript, audio_request, route.usage)
    return Response(rendered.body, media_type=rendered.media_type)


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


@public.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok", "time": str(int(time.time()))}
