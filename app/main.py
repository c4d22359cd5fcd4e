"""The app factory: builds a FastAPI app from Settings, with everything it needs on ``app.state``."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from app.auth import Authenticator, KeyFile
from app.errors import install_error_handlers
from app.middleware import RequestContextMiddleware
from app.routes import api, public
from app.service import TranscriptionService
from app.settings import Settings
from engines.models import ModelRegistry, WhisperSpec

log = logging.getLogger(__name__)

# Room for the form fields that travel beside the audio file in the same body.
FORM_OVERHEAD_BYTES = 1024 * 1024


def build_registry(settings: Settings) -> ModelRegistry:
    specs = {
        name: WhisperSpec(
            name=name,
            source=cfg.source,
            device=cfg.device,
            compute_type=cfg.compute_type,
            cpu_threads=cfg.cpu_threads,
            num_workers=cfg.max_concurrency,
            beam_size=cfg.beam_size,
        )
        for name, cfg in settings.models.items()
    }
    return ModelRegistry(specs, cache_dir=settings.model_cache_dir, offline=settings.offline)


def create_app(settings: Settings) -> FastAPI:
    registry = build_registry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for name in settings.preload_models:
            model_id = app.state.service.resolve(name).model_id
            await anyio.to_thread.run_sync(registry.get, model_id)
        yield

    app = FastAPI(title="Local OpenAI-compatible transcription", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.started_at = int(time.time())
    app.state.service = TranscriptionService(settings, registry)
    app.state.authenticator = Authenticator(
        KeyFile(settings.keys_file), settings.api_keys, allow_unauthenticated=settings.allow_unauthenticated
    )
    install_error_handlers(app)
    app.include_router(api)
    app.include_router(public)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES + settings.max_form_field_bytes,
        upload_limit=settings.max_upload_bytes,
    )
    return app
