"""Where the time goes: CTranslate2's calls timed in this process, and the server batch workers' /metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.concurrency.rows import Profile
from engines.whisper.engine import WhisperEngine

# The CTranslate2 calls faster-whisper makes, timed in-process and counted by the server's batch workers.
OPS = ("encode", "generate", "align", "detect_language")
BATCH_SIZE_SUM = "stt_batch_size_sum"
BATCH_SIZE_COUNT = "stt_batch_size_count"
BATCH_BUSY = "stt_batch_busy_seconds_total"

Metrics = dict[str, dict[str, float]]


class TimedModel:
    """The CTranslate2 model with its ``OPS`` calls timed; everything else passes through."""

    def __init__(self, inner: Any, busy: dict[str, float], lock: threading.Lock) -> None:
        self._inner = inner
        self._busy = busy
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in OPS or not callable(value):
            return value

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                with self._lock:
                    self._busy[name] += elapsed

        return timed


@contextmanager
def timed_ops(engine: WhisperEngine) -> Iterator[dict[str, float]]:
    """Seconds spent in each CTranslate2 call of ``engine`` while the block runs (all threads together)."""
    busy = dict.fromkeys(OPS, 0.0)
    original = engine.model.model
    engine.model.model = TimedModel(original, busy, threading.Lock())
    try:
        yield busy
    finally:
        engine.model.model = original


def parse_batch_metrics(text: str) -> Metrics:
    """The batch workers' samples in a /metrics answer: {sample name: {op: value}}, summed over the models."""
    found: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in (BATCH_SIZE_SUM, BATCH_SIZE_COUNT, BATCH_BUSY):
                by_op = found.setdefault(sample.name, {})
                op = sample.labels.get("op", "")
                by_op[op] = by_op.get(op, 0.0) + float(sample.value)
    return found


def batch_profile(before: Metrics, after: Metrics) -> Profile | None:
    """What the batch workers did between two /metrics readings; None when the server has no batch metrics."""
    if BATCH_BUSY not in after:
        return None

    def delta(name: str, op: str) -> float:
        return after.get(name, {}).get(op, 0.0) - before.get(name, {}).get(op, 0.0)

    ops = [*OPS, *sorted(set(after[BATCH_BUSY]) - set(OPS))]
    busy = {op: delta(BATCH_BUSY, op) for op in ops}
    means = {op: delta(BATCH_SIZE_SUM, op) / delta(BATCH_SIZE_COUNT, op) for op in ops if delta(BATCH_SIZE_COUNT, op)}
    return Profile(busy, means)


def read_batch_metrics(base_url: str) -> Metrics:
    """The server's batch metrics now; empty when it has none (or no /metrics)."""
    try:
        answer = httpx.get(f"{base_url}/metrics", timeout=10)
    except httpx.HTTPError:
        return {}
    return parse_batch_metrics(answer.text) if answer.status_code == 200 else {}
