"""Admin views of every key's async jobs (admin keys only): what the console's jobs table calls."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from app.api.errors import APIError
from app.api.jobs import MAX_PAGE, JobsDep, job_list
from app.api.routes import require_admin

admin_jobs = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


@admin_jobs.get("/jobs")
async def all_jobs(
    request: Request,
    jobs: JobsDep,
    key: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    after: str | None = None,
) -> JSONResponse:
    """Every key's jobs newest first (or one key's), each with the key's name."""
    rows, has_more = await anyio.to_thread.run_sync(lambda: jobs.store.page(key, limit=limit, after=after))
    body = job_list(rows, has_more)
    for row, shown in zip(rows, body["data"], strict=True):
        shown["key_name"] = row.key_name
    return JSONResponse(body)


@admin_jobs.get("/jobs/{job_id}")
async def one_job(job_id: str, jobs: JobsDep) -> JSONResponse:
    """A job with its key's name, its attempts, and every delivery attempt of its webhook."""
    job = await anyio.to_thread.run_sync(jobs.store.get, job_id)
    if job is None:
        raise APIError(404, f"No job found with id '{job_id}'.", code="job_not_found", param="id")
    attempts = await anyio.to_thread.run_sync(jobs.store.attempts, job_id)
    body = job.as_object() | {
        "key_name": job.key_name,
        "attempts": job.attempt,
        "webhook_deliveries": [asdict(attempt) for attempt in attempts],
    }
    return JSONResponse(body)
