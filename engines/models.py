"""Load Whisper models from embedded packages, local directories or hub ids, once each."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from faster_whisper import WhisperModel

from engines import batch_ops
from engines.batch_ops import WhisperBatchOps
from engines.batching import Batcher, BatchObserver
from engines.bundled_weights import embedded_model_dir
from engines.cores import available_cores as available_cores  # re-exported for the benchmarks
from engines.errors import ModelLoadError
from engines.whisper import WhisperEngine, cuda_available

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"


@dataclass(frozen=True)
class WhisperSpec:
    """Where a model comes from and how to run it.

    ``source`` is ``embedded:<name>``, a local CTranslate2 directory, or a faster-whisper size
    name / hub id (e.g. ``large-v3`` or ``Systran/faster-whisper-large-v3``) downloaded by
    faster-whisper when the deployment has network and ``offline`` is false.
    """

    name: str
    source: str
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0
    num_workers: int = 1
    beam_size: int = 5
    # The batching engine (engines/batching.py): requests' model calls run together as batched calls
    # on ``batch_workers`` CTranslate2 workers instead of each request calling the model alone.
    batching: bool = False
    max_batch_size: int = 8
    max_encoder_batch_size: int | None = None  # None: max_batch_size on CUDA, 1 on CPU
    batch_wait_ms: float = 5.0
    batch_workers: int = 1

    @property
    def model_workers(self) -> int:
        """CTranslate2 workers (each with its own threads): one per batch worker, else one per inference."""
        return self.batch_workers if self.batching else self.num_workers


def thread_budget(device: str, cpu_threads: int, workers: int, cores: int) -> tuple[int, int]:
    """CTranslate2 workers and intra-op threads per worker that fit in ``cores``.

    On CPU a worker is a set of threads: more workers than cores only makes them wait for each
    other, so extra concurrent calls queue for a worker instead. ``cpu_threads`` 0 shares the cores
    among the workers. On CUDA the workers are streams and keep their number.
    """
    if device == "cpu":
        workers = max(1, min(workers, cores))
        if cpu_threads and cpu_threads * workers > cores:
            log.warning(
                "cpu_threads %d x %d workers asks for more than the %d cores available", cpu_threads, workers, cores
            )
    return workers, cpu_threads or max(1, cores // workers)


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """auto → CUDA with float16 when a GPU is visible, else CPU with int8."""
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def load_whisper(
    spec: WhisperSpec, *, cache_dir: Path, offline: bool, observer: BatchObserver | None = None
) -> WhisperEngine:
    """Load the model; with ``spec.batching`` it gets its batching engine (reporting to ``observer``)."""
    device, compute_type = resolve_device(spec.device, spec.compute_type)
    workers, threads = thread_budget(device, spec.cpu_threads, spec.model_workers, available_cores())
    if spec.source.startswith(EMBEDDED_PREFIX):
        location = str(embedded_model_dir(spec.source.removeprefix(EMBEDDED_PREFIX), cache_dir))
    else:
        location = spec.source
    try:
        model = WhisperModel(
            location,
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=workers,
            download_root=str(cache_dir / "hub"),
            local_files_only=offline,
        )
    except Exception as exc:  # faster-whisper raises many types for a missing/broken model
        hint = " (offline: only local directories and embedded models load)" if offline else ""
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
            observer=observer,
            name=spec.name,
        )
    return WhisperEngine(model, name=spec.name, batcher=batcher)
