"""The layouts: how the model under test runs (in this process or in the server, batched or not, on how many
threads), the configured default's layout, and the server config each server layout starts with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from app.settings import ModelConfig, Settings

BATCHED_MAX_CONCURRENCY = 16  # with batching, requests decoding at once: at least the most clients
DEFAULT_ENCODER_BATCH = 8  # the -enc layouts without --max-batch-size
IN_PROCESS_KEYS = ("floor", "floor-wide", "side")
SERVER_KEYS = (
    "unbatched-wide",
    "unbatched-split",
    "unbatched-split-30s",
    "batched-wide",
    "batched-split",
    "batched-wide-enc",
    "batched-split-enc",
)
MIXED = "mixed"
SELECTABLE = (*IN_PROCESS_KEYS[1:], *SERVER_KEYS, MIXED)  # the 1-thread floor always runs: it is the reference
# The server settings a layout's config keeps from --config (the models, aliases and ledger are its own).
KEPT_SETTINGS = {
    "log_level",
    "log_format",
    "local_model_usage",
    "model_cache_dir",
    "offline",
    "max_upload_bytes",
    "max_form_field_bytes",
    "max_audio_seconds",
    "default_chunking_strategy",
    "vad_threshold",
    "vad_silence_duration_ms",
    "vad_prefix_padding_ms",
    "vad_max_chunk_seconds",
    "block_seconds",
    "request_timeout_seconds",
    "sse_keepalive_seconds",
}


@dataclass(frozen=True)
class Layout:
    """How the model under test runs: in this process or in the server, batched or not, on how many threads."""

    key: str
    label: str
    batching: bool
    workers: int  # slots (max_concurrency) or, batched, batch workers
    threads: int  # CTranslate2 threads of each
    encoder_batched: bool = False  # batched: encoder forwards batched too (the CPU default batches decoding only)
    full_window: bool = False  # every window encoded at 30 s, whatever the model's encoder_padding_seconds

    def model_settings(self, max_batch_size: int | None, batch_wait_ms: float | None) -> dict[str, object]:
        """The ``models.<id>`` keys this layout sets in the config (the rest as configured)."""
        if not self.batching:
            # batching off even where the configured model batches by default
            unbatched: dict[str, object] = {
                "batching": False,
                "max_concurrency": self.workers,
                "cpu_threads": self.threads,
            }
            if self.full_window:
                unbatched["encoder_padding_seconds"] = None
            return unbatched
        batched: dict[str, object] = {
            "batching": True,
            "max_concurrency": BATCHED_MAX_CONCURRENCY,
            "batch_workers": self.workers,
            "cpu_threads": self.threads,
        }
        if max_batch_size is not None:
            batched["max_batch_size"] = max_batch_size
        if self.encoder_batched:
            batched["max_encoder_batch_size"] = max_batch_size or DEFAULT_ENCODER_BATCH
        if batch_wait_ms is not None:
            batched["batch_wait_ms"] = batch_wait_ms
        return batched


def layouts(threads: int) -> dict[str, Layout]:
    """Every layout for ``threads`` CPU threads in all."""
    t = threads
    plural = "s" if t > 1 else ""
    return {
        "floor": Layout("floor", "floor: in-process, 1 thread", False, 1, 1),
        "floor-wide": Layout("floor-wide", f"floor: in-process, {t} thread{plural}", False, 1, t),
        "side": Layout("side", f"in-process: {t} worker{plural} x 1 thread, side by side", False, t, 1),
        "unbatched-wide": Layout("unbatched-wide", f"server unbatched: 1 slot x {t} thread{plural}", False, 1, t),
        "unbatched-split": Layout("unbatched-split", f"server unbatched: {t} slot{plural} x 1 thread", False, t, 1),
        "unbatched-split-30s": Layout(
            "unbatched-split-30s",
            f"server unbatched: {t} slot{plural} x 1 thread, 30-s windows",
            False,
            t,
            1,
            full_window=True,
        ),
        "batched-wide": Layout("batched-wide", f"server batched: 1 worker x {t} thread{plural}", True, 1, t),
        "batched-split": Layout("batched-split", f"server batched: {t} worker{plural} x 1 thread", True, t, 1),
        "batched-wide-enc": Layout(
            "batched-wide-enc", f"server batched + encoder: 1 worker x {t} thread{plural}", True, 1, t, True
        ),
        "batched-split-enc": Layout(
            "batched-split-enc", f"server batched + encoder: {t} worker{plural} x 1 thread", True, t, 1, True
        ),
    }


def configured_layout(model: ModelConfig, threads: int, cores: int) -> str | None:
    """The key of the layout the configured model runs in (its default), if it is one of this benchmark's."""
    workers = model.batch_workers if model.batching else model.max_concurrency
    per_worker = model.cpu_threads or max(1, cores // workers)
    prefix = "batched" if model.batching else "unbatched"
    suffix = "-enc" if model.batching and (model.max_encoder_batch_size or 1) > 1 else ""
    if workers == 1 and per_worker == threads:
        return f"{prefix}-wide{suffix}"
    if workers == threads and per_worker == 1:
        return f"{prefix}-split{suffix}"
    return None


def write_server_config(
    settings: Settings, model_id: str, model_settings: Mapping[str, object], max_queue: int, workdir: Path
) -> Path:
    """A YAML config with the model under test alone (and the aliases that point at it), preloaded.

    The usage ledger goes to the temporary folder, not to the checkout's var/usage.db.
    """
    model = {**settings.models[model_id].model_dump(mode="json"), **model_settings, "max_queue": max_queue}
    config = {
        **settings.model_dump(mode="json", include=KEPT_SETTINGS),
        "models": {model_id: model},
        "aliases": {
            name: alias.model_dump(mode="json") for name, alias in settings.aliases.items() if alias.model == model_id
        },
        "preload_models": [model_id],
        "ledger_url": f"sqlite:///{workdir / 'usage.db'}",
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
