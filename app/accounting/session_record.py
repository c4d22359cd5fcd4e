"""Per-session accounting for realtime transcription: metrics, one log line, one usage-ledger row per session."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from app.accounting.ledger import UsageEvent
from app.accounting.ledger_hooks import LedgerHooks
from app.accounting.metrics import Metrics

log = logging.getLogger("app.requests")

ENDPOINT = "realtime"


@dataclass
class SessionRecord:
    """Collects what one realtime session did; ``finish`` reports it exactly once.

    The ledger row's ``status`` is the WebSocket close code (1000 normal, 1008 policy, 1011
    internal error, 1013 over capacity); ``audio_seconds`` is all audio the session received.
    """

    metrics: Metrics
    hooks: LedgerHooks
    key_name: str
    session_id: str
    model: str = "-"
    beta: bool = False
    started: float = field(default_factory=time.perf_counter)
    turns: int = 0
    failed_turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    turn_latencies: list[float] = field(default_factory=list)
    first_deltas: list[float] = field(default_factory=list)
    _open: bool = False
    _done: bool = False

    def opened(self) -> None:
        self._open = True
        self.metrics.realtime_sessions.inc()

    def first_delta(self, seconds: float) -> None:
        self.first_deltas.append(seconds)
        self.metrics.realtime_first_delta.labels(self.model).observe(seconds)

    def turn_completed(self, latency: float, input_tokens: int, output_tokens: int) -> None:
        self.turns += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.turn_latencies.append(latency)
        self.metrics.realtime_turn_latency.labels(self.model).observe(latency)

    def turn_failed(self) -> None:
        self.failed_turns += 1

    def finish(self, close_code: int, audio_seconds: float, extra: dict[str, Any] | None = None) -> None:
        if self._done:
            return
        self._done = True
        if self._open:
            self.metrics.realtime_sessions.dec()
        elapsed = time.perf_counter() - self.started
        self.metrics.realtime_sessions_total.labels(self.model, str(close_code)).inc()
        self.metrics.realtime_audio_seconds.labels(self.model).inc(audio_seconds)
        fields: dict[str, Any] = {
            "endpoint": ENDPOINT,
            "session": self.session_id,
            "key": self.key_name,
            "model": self.model,
            "protocol": "beta" if self.beta else "ga",
            "close_code": close_code,
            "total_s": round(elapsed, 3),
            "audio_s": round(audio_seconds, 2),
            "turns": self.turns,
            "failed_turns": self.failed_turns,
            "output_tokens": self.output_tokens,
        }
        if self.turn_latencies:
            ordered = sorted(self.turn_latencies)
            fields["turn_latency_p50_s"] = round(ordered[len(ordered) // 2], 3)
            fields["turn_latency_max_s"] = round(ordered[-1], 3)
        if self.first_deltas:
            fields["first_delta_p50_s"] = round(sorted(self.first_deltas)[len(self.first_deltas) // 2], 3)
        fields.update(extra or {})
        try:
            self.hooks.record_event(
                UsageEvent(
                    key_name=self.key_name,
                    model=self.model,
                    endpoint=ENDPOINT,
                    status=close_code,
                    audio_seconds=audio_seconds,
                    input_tokens=self.input_tokens,
                    output_tokens=self.output_tokens,
                )
            )
        except Exception:  # accounting must never break the session's close
            log.exception("realtime session accounting failed")
        log.info("realtime session done", extra={"fields": fields})
