"""Load Whisper models (faster-whisper / CTranslate2) from embedded packages, local directories or hub ids."""

from __future__ import annotations

import logging

from faster_whisper import WhisperModel

from engines.batching import Batcher
from engines.cores import available_cores, thread_budget
from engines.errors import ModelLoadError
from engines.spec import LoadContext, ModelSpec
from engines.whisper import batch_ops
from engines.whisper.batch_ops import WhisperBatchOps
from engines.whisper.engine import WhisperEngine, cuda_available
from engines.whisper.family import CAPABILITIES
from engines.whisper.weights import embedded_model_dir

log = logging.getLogger(__name__)


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """auto → CUDA with float16 when a GPU is visible, else CPU with int8."""
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def load_whisper(spec: ModelSpec, context: LoadContext) -> WhisperEngine:
    """Load the model; with ``spec.batching`` it gets its batching engine (reporting to ``observer``)."""
    device, compute_type = resolve_device(spec.device, spec.compute_type)
    workers, threads = thread_budget(device, spec.cpu_threads, spec.model_workers, available_cores())
    embedded = spec.embedded_name
    location = spec.source if embedded is None else str(embedded_model_dir(embedded, context.cache_dir))
    try:
        model = WhisperModel(
            location,
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=workers,
            download_root=str(context.cache_dir / "hub"),
            local_files_only=context.offline,
        )
    except Exception as exc:  # faster-whisper raises many types for a missing/broken model
        hint = " (offline: only local directories and embedded models load)" if context.offline else ""
        raise ModelLoadError(f"Could not load model {spec.name!r} from {spec.source!r}{hint}: {exc}") from exc
    log.info(
        "loaded model %s from %s on %s/%s, %d worker(s) of %d thread(s)%s",
        spec.name, spec.source, device, compute_type, workers, threads,
        f", batching up to {spec.max_batch_size}" if spec.batching else "",
    )  # fmt: skip
    batcher = None
    if spec.batching:
        encoder_batch = spec.max_encoder_batch_size or (1 if device == "cpu" else spec.max_batch_size)
        batcher = Batcher(
            WhisperBatchOps(model.model),
            max_batch_size=spec.max_batch_size,
            max_batch_sizes={**batch_ops.OP_LIMITS, batch_ops.ENCODE: encoder_batch},
            wait_seconds=spec.batch_wait_ms / 1000,
            workers=workers,
            observer=context.observer,
            name=spec.name,
        )
    return WhisperEngine(model, name=spec.name, capabilities=CAPABILITIES, batcher=batcher)
