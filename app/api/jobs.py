"""The async job endpoints (CONTRACT §7): submit (a multipart upload, or JSON with ``audio_url``), get, list,
cancel, the rendered result, and the key's webhook signing secret."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from app.accounting.request_record import RequestRecord
from app.api.auth import Principal
from app.api.errors import APIError, invalid_value
from app.api.form import Fields, json_object, parse_audio_fields, required_upload
from app.api.middleware import body_too_large
from app.api.routes import require_key
from app.api.state import server_state
from app.jobs.audio_store import UploadTooLarge
from app.jobs.outbound import OutboundRefused, check_url
from app.jobs.request_codec import encode_request
from app.jobs.store import JobRow, NewJob
from app.jobs.system import JobSystem
from app.serving.protocol import AudioRequest

MAX_JSON_BODY_BYTES = 1024 * 1024
MAX_PAGE = 100


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def _jobs(request: Request) -> JobSystem:
    jobs = server_state(request).jobs
    if jobs is None:
        raise APIError(404, "Async jobs are turned off on this server (jobs.enabled).", code="jobs_disabled")
    return jobs


JobsDep = Annotated[JobSystem, Depends(_jobs)]
jobs_api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])


def _not_found(job_id: str) -> APIError:
    return APIError(404, f"No job found with id '{job_id}'.", code="job_not_found", param="id")


def _url(param: str, raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    try:
        return check_url(raw.strip())
    except OutboundRefused as refused:
        raise invalid_value(param, f"'{param}': {refused.message}", code=refused.code) from None


async def _fields(request: Request) -> tuple[Fields, Any]:
    """The submitted fields, and the multipart form to close afterwards (None for a JSON body)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        if len(await request.body()) > MAX_JSON_BODY_BYTES:  # read once; json_object reuses it
            raise invalid_value("audio_url", f"A JSON job request may be at most {MAX_JSON_BODY_BYTES} bytes.")
        return Fields.from_json(await json_object(request)), None
    settings = server_state(request).settings
    form = await request.form(max_files=8, max_fields=256, max_part_size=settings.max_form_field_bytes)
    return Fields(form), form


async def _submit(request: Request, jobs: JobSystem, task: str) -> JSONResponse:
    state = server_state(request)
    principal = _principal(request)
    config = state.settings.jobs
    fields, form = await _fields(request)
    audio_file: str | None = None
    try:
        audio_url = _url("audio_url", fields.text("audio_url"))
        upload = None
        if form is not None and audio_url is None:
            upload = required_upload(fields)
        elif audio_url is None:
            raise APIError(
                400, "Missing required parameter: 'audio_url'.", code="missing_required_parameter", param="audio_url"
            )
        elif fields.upload("file") is not None:
            raise invalid_value("audio_url", "Send either a file or an audio_url, not both.")
        audio_request = parse_audio_fields(fields, task=task)
        if audio_request.stream:
            raise invalid_value("stream", "stream is not available for jobs: fetch the result when the job is done.")
        webhook_url = _url("webhook_url", fields.text("webhook_url"))
        state.service.check(audio_request)  # a ServingError is answered by the app's error handlers
        if webhook_url is not None and await anyio.to_thread.run_sync(jobs.store.secret, principal.name) is None:
            raise invalid_value(
                "webhook_url",
                "This key has no webhook signing secret yet: create one with POST /v1/audio/jobs/webhook_secret.",
                code="webhook_secret_missing",
            )
        active = await anyio.to_thread.run_sync(jobs.store.active_count, principal.name)
        if active >= config.max_active_per_key:  # early, before the upload is stored
            raise _too_many_jobs(active, config.max_active_per_key)
        # The key's request rate and audio budget, as for a synchronous request.
        record = RequestRecord(state.metrics, endpoint=f"{task}_job", key_name=principal.name)
        await anyio.to_thread.run_sync(state.hooks.admit, record)
        if upload is not None:
            try:
                audio_file, size = await anyio.to_thread.run_sync(jobs.audio.save, upload.file, config.max_upload_bytes)
            except UploadTooLarge:
                raise body_too_large(config.max_upload_bytes) from None
            if size == 0:
                raise invalid_value("file", "The audio file is empty.")
        job = await anyio.to_thread.run_sync(
            jobs.store.create, _new_job(principal.name, audio_request, audio_url, audio_file, webhook_url)
        )
        # Counted again with the row written, so that simultaneous submits of one key see each other.
        ahead = await anyio.to_thread.run_sync(jobs.store.active_before, job)
        if ahead >= config.max_active_per_key:
            await anyio.to_thread.run_sync(jobs.store.discard, job.id)
            raise _too_many_jobs(ahead, config.max_active_per_key)
    except BaseException:
        jobs.audio.remove(audio_file)
        raise
    finally:
        if form is not None:
            await form.close()
    # A key's n-th waiting job goes behind every other key's earlier ones: one key cannot fill the queue.
    await anyio.to_thread.run_sync(lambda: jobs.dispatch(job.id, priority=-ahead))
    return JSONResponse(job.as_object(), status_code=202)


def _too_many_jobs(active: int, limit: int) -> APIError:
    return APIError(
        429,
        f"This key already has {active} queued or running jobs (limit {limit}).",
        type="rate_limit_exceeded",
        code="too_many_jobs",
    )


def _new_job(
    key_name: str, request: AudioRequest, audio_url: str | None, audio_file: str | None, webhook_url: str | None
) -> NewJob:
    return NewJob(
        key_name=key_name,
        task=request.task,
        model=request.model,
        response_format=request.response_format.value,
        options=encode_request(replace(request, file=b"")),
        audio_url=audio_url,
        audio_file=audio_file,
        webhook_url=webhook_url,
    )


@jobs_api.post("/audio/transcriptions/jobs")
async def submit_transcription(request: Request, jobs: JobsDep) -> JSONResponse:
    return await _submit(request, jobs, "transcribe")


@jobs_api.post("/audio/translations/jobs")
async def submit_translation(request: Request, jobs: JobsDep) -> JSONResponse:
    return await _submit(request, jobs, "translate")


@jobs_api.post("/audio/jobs/webhook_secret")
async def rotate_webhook_secret(request: Request, jobs: JobsDep) -> JSONResponse:
    """A new signing secret for this key's webhooks, shown only in this answer (the previous one stops)."""
    secret = await anyio.to_thread.run_sync(jobs.store.rotate_secret, _principal(request).name)
    return JSONResponse({"object": "audio.webhook_secret", "secret": secret}, status_code=201)


@jobs_api.get("/audio/jobs")
async def list_jobs(
    request: Request,
    jobs: JobsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    after: str | None = None,
) -> JSONResponse:
    rows, has_more = await anyio.to_thread.run_sync(
        lambda: jobs.store.page(_principal(request).name, limit=limit, after=after)
    )
    return JSONResponse(job_list(rows, has_more))


def job_list(rows: list[JobRow], has_more: bool) -> dict[str, Any]:
    """OpenAI's list shape."""
    return {
        "object": "list",
        "data": [row.as_object() for row in rows],
        "has_more": has_more,
        "first_id": rows[0].id if rows else None,
        "last_id": rows[-1].id if rows else None,
    }


async def _own_job(request: Request, jobs: JobSystem, job_id: str) -> JobRow:
    job = await anyio.to_thread.run_sync(jobs.store.get, job_id, _principal(request).name)
    if job is None:
        raise _not_found(job_id)
    return job


@jobs_api.get("/audio/jobs/{job_id}")
async def get_job(job_id: str, request: Request, jobs: JobsDep) -> JSONResponse:
    return JSONResponse((await _own_job(request, jobs, job_id)).as_object())


@jobs_api.get("/audio/jobs/{job_id}/result")
async def get_job_result(job_id: str, request: Request, jobs: JobsDep) -> Response:
    job = await _own_job(request, jobs, job_id)
    result = await anyio.to_thread.run_sync(jobs.store.result, job.id) if job.status == "succeeded" else None
    if result is None:
        raise APIError(
            409, f"The job is {job.status}; its result exists once it has succeeded.", code="job_not_succeeded"
        )
    body, media_type = result
    return Response(body, media_type=media_type)


@jobs_api.post("/audio/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request, jobs: JobsDep) -> JSONResponse:
    ttl = server_state(request).settings.jobs.result_ttl_seconds
    job = await anyio.to_thread.run_sync(jobs.store.cancel, job_id, _principal(request).name, ttl)
    if job is None:
        raise _not_found(job_id)
    if job.status == "cancelled" and job.webhook_url:
        await anyio.to_thread.run_sync(jobs.deliver_final, job)
    return JSONResponse(job.as_object())
