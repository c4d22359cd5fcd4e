"""Prometheus metrics for one app instance (its own registry: no process-wide globals)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
REALTIME_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)


class _Slots(Protocol):
    @property
    def waiting(self) -> int: ...

    @property
    def running(self) -> int: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stt_requests_total",
            "Audio requests answered, by model, response format and HTTP status.",
            ["model", "response_format", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stt_request_duration_seconds",
            "Wall time from request to complete answer.",
            ["model", "response_format"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_delta = Histogram(
            "stt_time_to_first_delta_seconds",
            "Streaming: wall time from request to the first text delta.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.audio_seconds = Counter(
            "stt_audio_seconds_total", "Seconds of audio transcribed.", ["model"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "stt_queue_depth", "Requests waiting for an inference slot.", ["model"], registry=self.registry
        )
        self.in_flight = Gauge("stt_in_flight", "Inferences running now.", ["model"], registry=self.registry)
        self.model_loads = Counter("stt_model_loads_total", "Models loaded.", ["model"], registry=self.registry)
        self.model_load_seconds = Histogram(
            "stt_model_load_duration_seconds", "Time to load a model.", ["model"], registry=self.registry
        )
        self.model_unloads = Counter(
            "stt_model_unloads_total", "Models unloaded after idling.", ["model"], registry=self.registry
        )
        self.models_loaded = Gauge("stt_models_loaded", "Models in memory now.", registry=self.registry)
        self.realtime_sessions = Gauge(
            "stt_realtime_sessions_active", "Realtime transcription sessions open now.", registry=self.registry
        )
        self.realtime_sessions_total = Counter(
            "stt_realtime_sessions_total",
            "Realtime sessions ended, by model and WebSocket close code.",
            ["model", "close_code"],
            registry=self.registry,
        )
        self.realtime_turn_latency = Histogram(
            "stt_realtime_turn_latency_seconds",
            "Realtime: wall time from a turn's end (speech_stopped or commit) to its completed transcript.",
            ["model"],
            buckets=REALTIME_BUCKETS,
            registry=self.registry,
        )
        self.realtime_first_delta = Histogram(
            "stt_realtime_first_delta_seconds",
            "Realtime: wall time from a turn's start (speech_started) to its first transcript delta.",
            ["model"],
            buckets=REALTIME_BUCKETS,
            registry=self.registry,
        )
        self.realtime_audio_seconds = Counter(
            "stt_realtime_audio_seconds_total", "Seconds of audio received by realtime sessions.", ["model"],
            registry=self.registry,
        )  # fmt: skip

        self.batch_size = Histogram(
            "stt_batch_size",
            "Batching engine: items per batched model call, by model and operation.",
            ["model", "op"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_busy_seconds = Counter(
            "stt_batch_busy_seconds_total",
            "Batching engine: seconds its workers spent in model calls, by model and operation "
            "(encode, generate, detect_language, align): where the time goes.",
            ["model", "op"],
            registry=self.registry,
        )

    def batch_observer(self, model: str) -> BatchMetrics:
        """What one model's batching engine reports to."""
        return BatchMetrics(self, model)

    def watch_slots(self, slots: Mapping[str, _Slots]) -> None:
        """Report each model's queue depth and running inferences whenever metrics are scraped."""
        for model_id, model_slots in slots.items():
            self.queue_depth.labels(model_id).set_function(partial(getattr, model_slots, "waiting"))
            self.in_flight.labels(model_id).set_function(partial(getattr, model_slots, "running"))

    # ModelEvents, called from worker threads (prometheus_client is thread-safe).
    def model_loaded(self, name: str, seconds: float) -> None:
        self.model_loads.labels(name).inc()
        self.model_load_seconds.labels(name).observe(seconds)
        self.models_loaded.inc()

    def model_unloaded(self, name: str) -> None:
        self.model_unloads.labels(name).inc()
        self.models_loaded.dec()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class BatchMetrics:
    """One model's batching engine, reporting into Metrics (called from its worker threads)."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._metrics = metrics
        self._model = model

    def batch_ran(self, op: str, size: int, seconds: float) -> None:
        self._metrics.batch_size.labels(self._model, op).observe(size)
        self._metrics.batch_busy_seconds.labels(self._model, op).inc(seconds)
