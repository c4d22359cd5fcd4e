"""The app factory: builds a FastAPI app from Settings, with everything its routes share in one typed
``ServerState`` on ``app.state.server`` (app/api/state.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from fastapi import FastAPI

from app.accounting.ledger import UsageLedger
from app.accounting.ledger_hooks import LedgerHooks
from app.accounting.metrics import Metrics
from app.accounting.quotas import KeyQuotas
from app.accounting.request_windows import RedisRequestWindow, RequestWindow
from app.accounting.shared_sessions import SharedSessionRegistry
from app.accounting.shared_state import SharedState
from app.api.admin import admin
from app.api.admin_jobs import admin_jobs
from app.api.auth import Authenticator, KeyFile
from app.api.errors import install_error_handlers, to_api_error
from app.api.jobs import jobs_api
from app.api.middleware import BodyLimits, RequestContextMiddleware
from app.api.presenters import API_PRESENTERS
from app.api.realtime import ClientSecrets, ClientSecretStore, realtime_http, realtime_socket
from app.api.realtime.shared_secrets import RedisClientSecretStore
from app.api.routes import api, public
from app.api.state import Readiness, ServerState
from app.jobs.system import JobSystem
from app.serving.factory import Loader, build_service
from app.serving.realtime import SessionRegistry
from app.serving.service import TranscriptionService
from app.settings import Settings
from app.web import web
from engines.errors import ModelLoadError
from engines.manager import ModelManager

log = logging.getLogger(__name__)

# Room for the form fields that travel beside the audio file in the same body.
FORM_OVERHEAD_BYTES = 1024 * 1024
IDLE_CHECK_SECONDS = 5.0


async def _preload(manager: ModelManager, names: list[str], readiness: Readiness) -> None:
    for name in names:
        try:
            await anyio.to_thread.run_sync(manager.preload, name)
        except ModelLoadError as exc:
            log.error("could not preload model %s: %s", name, exc)
            readiness.failed[name] = str(exc)
        finally:
            readiness.pending.discard(name)


async def _preload_diarizer(service: TranscriptionService, readiness: Readiness) -> None:
    try:
        await anyio.to_thread.run_sync(service.diarizers.get)
    except ModelLoadError as exc:
        log.error("could not load the diarizer: %s", exc)
        readiness.failed["diarizer"] = str(exc)
    finally:
        readiness.pending.discard("diarizer")


async def _renew_session_leases(registry: SharedSessionRegistry) -> None:
    while True:
        await anyio.sleep(registry.lease_seconds / 3)
        await anyio.to_thread.run_sync(registry.renew)


async def _unload_idle_models(manager: ModelManager, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        await anyio.to_thread.run_sync(manager.unload_idle)


def job_error(exc: BaseException) -> tuple[str, str]:
    """A job's error (code, message): what the synchronous endpoint would have answered."""
    error = to_api_error(exc)
    return error.code or error.type, error.message


def create_app(
    settings: Settings, *, loader: Loader | None = None, job_workers: int | None = None, job_worker: bool = False
) -> FastAPI:
    """The whole server; ``loader`` replaces the Whisper loader (the in-process test seam). ``job_worker``: the
    app of a dedicated worker process (``python -m app worker``), running ``job_workers`` jobs at once."""
    metrics = Metrics()
    service = build_service(
        settings, API_PRESENTERS, loader=loader, events=metrics, batch_events=metrics.batch_observer
    )
    manager = service.manager
    metrics.watch_slots(service.slots)
    preload = [service.resolve(name).model_id for name in settings.preload_models]
    readiness = Readiness(pending=set(preload) | ({"diarizer"} if settings.diarization.preload else set()))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Listen at once; /ready says when the preloaded models are in memory.
        async with anyio.create_task_group() as background:
            background.start_soon(_preload, manager, preload, readiness)
            if settings.diarization.preload:
                background.start_soon(_preload_diarizer, service, readiness)
            idle_limits = [cfg.idle_unload_seconds for cfg in settings.models.values() if cfg.idle_unload_seconds]
            if idle_limits:
                interval = min(IDLE_CHECK_SECONDS, min(idle_limits) / 2)
                background.start_soon(_unload_idle_models, manager, interval)
            if isinstance(sessions, SharedSessionRegistry):
                background.start_soon(_renew_session_leases, sessions)
            if jobs is not None:
                background.start_soon(jobs.serve)
            yield
            background.cancel_scope.cancel()
        if jobs is not None:
            jobs.close()
        await anyio.to_thread.run_sync(hooks.close)
        ledger.close()
        if isinstance(sessions, SharedSessionRegistry):
            await anyio.to_thread.run_sync(sessions.close)
        if shared is not None:
            shared.close()

    app = FastAPI(title="Local OpenAI-compatible transcription", lifespan=lifespan, docs_url=None, redoc_url=None)
    ledger = UsageLedger(settings.ledger)
    # State that must hold across replicas: in this process by default, in Redis with shared_state_url.
    shared = SharedState(settings.shared_state_url) if settings.shared_state_url else None
    window: RequestWindow | None = None  # KeyQuotas' own, in process
    secrets: ClientSecrets = ClientSecretStore()
    sessions = SessionRegistry(settings.realtime)
    if shared is not None:
        window, secrets = RedisRequestWindow(shared), RedisClientSecretStore(shared)
        sessions = SharedSessionRegistry(settings.realtime, shared)
    hooks = LedgerHooks(ledger, KeyQuotas(settings.key_limits, settings.default_limits, ledger, window=window))
    jobs = (
        JobSystem(
            settings.jobs,
            service,
            record_usage=hooks.record_event,
            describe_error=job_error,
            workers=job_workers,
            dedicated=job_worker,
        )
        if settings.jobs.enabled
        else None
    )
    app.state.server = ServerState(
        settings=settings,
        started_at=int(time.time()),
        service=service,
        metrics=metrics,
        readiness=readiness,
        ledger=ledger,
        hooks=hooks,
        authenticator=Authenticator(
            KeyFile(settings.keys_path), settings.api_keys, allow_unauthenticated=settings.allow_unauthenticated
        ),
        client_secrets=secrets,
        realtime_sessions=sessions,
        shared_state=shared,
        jobs=jobs,
    )
    install_error_handlers(app)
    app.include_router(api)
    app.include_router(jobs_api)
    app.include_router(realtime_http)
    app.include_router(realtime_socket)
    app.include_router(admin)
    app.include_router(admin_jobs)
    app.include_router(public)
    app.include_router(web)
    limits = BodyLimits(
        max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES + settings.max_form_field_bytes,
        upload_limit=settings.max_upload_bytes,
        idle_timeout=settings.body_idle_timeout_seconds,
        min_rate=settings.min_upload_bytes_per_second,
        grace=settings.upload_rate_grace_seconds,
        job_max_bytes=settings.jobs.max_upload_bytes,
    )
    app.add_middleware(RequestContextMiddleware, limits=limits)
    return app
