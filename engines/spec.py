"""What the server knows of a configured model before loading it: its family, source and how to run it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engines.batching import BatchObserver

EMBEDDED_PREFIX = "embedded:"


@dataclass(frozen=True)
class ModelSpec:
    """One configured model. ``kind`` names its engine family (engines/families.py).

    ``source`` is ``embedded:<name>`` (weights that ship in a registry package), a local model
    directory, or a hub id / size name that the family downloads when the deployment has network.
    The batching fields apply to families whose capabilities include batching.
    """

    name: str
    source: str
    kind: str = "whisper"
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0
    num_workers: int = 1
    beam_size: int = 5
    # The batching engine (engines/batching.py): requests' model calls run together as batched calls
    # on ``batch_workers`` workers instead of each request calling the model alone.
    batching: bool = False
    max_batch_size: int = 8
    max_encoder_batch_size: int | None = None  # None: max_batch_size on CUDA, 1 on CPU
    batch_wait_ms: float = 5.0
    batch_workers: int = 1

    @property
    def model_workers(self) -> int:
        """Model workers (each with its own threads): one per batch worker, else one per inference."""
        return self.batch_workers if self.batching else self.num_workers

    @property
    def embedded_name(self) -> str | None:
        """The name after ``embedded:``, or None for a directory or hub id."""
        return self.source.removeprefix(EMBEDDED_PREFIX) if self.source.startswith(EMBEDDED_PREFIX) else None


@dataclass(frozen=True)
class LoadContext:
    """What every family's loader gets besides the spec."""

    cache_dir: Path  # where unpacked embedded weights and downloads are kept
    offline: bool  # no hub: only embedded weights and local directories load
    observer: BatchObserver | None = None  # where a batching engine reports its batches
