"""Build the serving layer from settings alone: the model manager, the diarizer holder, the service."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from app.serving.diarizers import DiarizerHolder
from app.serving.jobs import Presenters
from app.serving.service import TranscriptionService
from app.settings import Settings
from engines.batching import BatchObserver
from engines.cores import limit_blas_threads
from engines.families import family, load_model
from engines.manager import ModelEvents, ModelManager
from engines.spec import LoadContext, ModelSpec
from engines.types import Transcriber

Loader = Callable[[ModelSpec], Transcriber]
BatchEvents = Callable[[str], BatchObserver]  # a model's name → what its batching engine reports to


def model_specs(settings: Settings) -> dict[str, ModelSpec]:
    """Every configured model's spec; a setting its family cannot honour is a start-up error."""
    for name, cfg in settings.models.items():
        if cfg.batching and not family(cfg.engine).capabilities.batching:
            raise ValueError(f"models.{name}: the {cfg.engine} engine has no batching engine; set batching: false")
    return {
        name: ModelSpec(
            name=name,
            source=cfg.source,
            kind=cfg.engine,
            device=cfg.device,
            compute_type=cfg.compute_type,
            cpu_threads=cfg.cpu_threads,
            num_workers=cfg.max_concurrency,
            beam_size=cfg.beam_size,
            batching=cfg.batching,
            max_batch_size=cfg.max_batch_size,
            max_encoder_batch_size=cfg.max_encoder_batch_size,
            batch_wait_ms=cfg.batch_wait_ms,
            batch_workers=cfg.batch_workers,
        )
        for name, cfg in settings.models.items()
    }


def build_manager(
    settings: Settings,
    *,
    loader: Loader | None = None,
    events: ModelEvents | None = None,
    batch_events: BatchEvents | None = None,
) -> ModelManager:
    """``loader`` defaults to each model's family loader (engines/families.py); tests pass a fake one."""
    return ModelManager(
        model_specs(settings),
        loader=loader or partial(_load_real, settings=settings, batch_events=batch_events),
        idle_unload={name: cfg.idle_unload_seconds for name, cfg in settings.models.items()},
        events=events,
    )


def _load_real(spec: ModelSpec, *, settings: Settings, batch_events: BatchEvents | None) -> Transcriber:
    observer = batch_events(spec.name) if batch_events is not None else None
    return load_model(spec, LoadContext(cache_dir=settings.model_cache, offline=settings.offline, observer=observer))


def build_service(
    settings: Settings,
    presenters: Presenters,
    *,
    loader: Loader | None = None,
    events: ModelEvents | None = None,
    batch_events: BatchEvents | None = None,
) -> TranscriptionService:
    """The service without any HTTP around it (benchmarks, and the app factory itself)."""
    if settings.blas_threads is not None:
        limit_blas_threads(settings.blas_threads)
    manager = build_manager(settings, loader=loader, events=events, batch_events=batch_events)
    return TranscriptionService(settings, manager, DiarizerHolder(settings.diarization), presenters)
