"""Per-request accounting: metrics, one structured log line, and the usage hooks, written once at the end."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.accounting.metrics import Metrics
from engines.types import TranscriptResult

log = logging.getLogger("app.requests")


@dataclass
class RequestRecord:
    """Collects what one audio request did; ``finish`` reports it exactly once."""

    metrics: Metrics
    endpoint: str
    key_name: str
    model: str = "-"
    response_format: str = "-"
    stream: bool = False
    started: float = field(default_factory=time.perf_counter)
    first_delta_seconds: float | None = None
    on_finish: list[Callable[[RequestRecord, int, TranscriptResult | None], None]] = field(default_factory=list)
    _done: bool = False

    def mark_first_delta(self) -> None:
        if self.first_delta_seconds is None:
            self.first_delta_seconds = time.perf_counter() - self.started
            self.metrics.first_delta.labels(self.model).observe(self.first_delta_seconds)

    def finish(self, status: int, transcript: TranscriptResult | None = None) -> None:
        if self._done:
            return
        self._done = True
        elapsed = time.perf_counter() - self.started
        self.metrics.requests.labels(self.model, self.response_format, str(status)).inc()
        self.metrics.latency.labels(self.model, self.response_format).observe(elapsed)
        fields: dict[str, Any] = {
            "endpoint": self.endpoint,
            "key": self.key_name,
            "model": self.model,
            "response_format": self.response_format,
            "stream": self.stream,
            "status": status,
            "total_s": round(elapsed, 3),
        }
        if self.first_delta_seconds is not None:
            fields["first_delta_s"] = round(self.first_delta_seconds, 3)
        if transcript is not None:
            self.metrics.audio_seconds.labels(self.model).inc(transcript.info.duration)
            fields["audio_s"] = round(transcript.info.duration, 2)
            fields["rtf"] = round(transcript.info.duration / elapsed, 2) if elapsed > 0 else None
            fields["output_tokens"] = transcript.output_tokens
        for hook in self.on_finish:
            try:
                hook(self, status, transcript)
            except Exception:  # accounting must never break an answer that is already out
                log.exception("request accounting hook failed")
        log.info("request done", extra={"fields": fields})
