"""Webhook delivery: one event per job's final state, signed, retried with backoff, every attempt recorded.

A delivery holds its event through a short lease, so two workers never post one event at the same
time; the same ``webhook-id`` and body go out on every retry, so a receiver can drop repeats.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from app.jobs.outbound import GuardedClient, OutboundRefused
from app.jobs.signing import signed_headers
from app.jobs.store import EventRow, JobStore

log = logging.getLogger(__name__)

MAX_RETRY_DELAY_SECONDS = 3600.0


def event_body(event: EventRow) -> bytes:
    return json.dumps(
        {
            "id": event.id,
            "object": "event",
            "type": event.type,
            "created_at": int(event.created_at),
            "data": {"id": event.job_id},
        }
    ).encode()


def retry_delay(attempts: int, first_delay: float) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: doubling, at most an hour."""
    return float(min(MAX_RETRY_DELAY_SECONDS, first_delay * 2 ** max(0, attempts - 1)))


class WebhookSender:
    """Posts one event per call; blocking (it runs on the webhook queue's worker thread)."""

    def __init__(
        self,
        store: JobStore,
        client: GuardedClient,
        *,
        timeout_seconds: float,
        max_attempts: int,
        first_retry_seconds: float,
        schedule_retry: Callable[[str, float], None],
    ) -> None:
        self.store = store
        self.client = client
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.first_retry_seconds = first_retry_seconds
        self.schedule_retry = schedule_retry

    def deliver(self, event_id: str) -> None:
        event = self.store.claim_event(event_id, lease_seconds=self.timeout_seconds + 30)
        if event is None:
            return  # delivered, given up, not due yet, or being delivered elsewhere
        body = event_body(event)
        status: int | None = None
        error: str | None = None
        started = time.monotonic()
        secret = self.store.secret(event.key_name)
        if secret is None:
            error = "the key has no webhook secret (POST /v1/audio/jobs/webhook_secret)"
        else:
            headers = signed_headers(secret, event.id, int(time.time()), body)
            try:
                status = self.client.post(event.url, body, headers)
            except OutboundRefused as refused:
                error = f"{refused.code}: {refused.message}"
            except Exception as exc:  # whatever else the connection raised: an attempt that failed
                error = f"delivery_failed: {exc}"
        seconds = time.monotonic() - started
        delivered = status is not None and 200 <= status < 300
        attempts = event.attempts + 1
        retry_at = None
        if not delivered and attempts < self.max_attempts:
            delay = retry_delay(attempts, self.first_retry_seconds)
            retry_at = time.time() + delay
        self.store.record_attempt(
            event, status=status, error=error, seconds=seconds, delivered=delivered, retry_at=retry_at
        )
        if delivered:
            log.info("webhook %s for %s delivered (attempt %d, %d)", event.id, event.job_id, attempts, status)
        elif retry_at is None:
            log.warning("webhook %s for %s: giving up after %d attempts", event.id, event.job_id, attempts)
        else:
            log.info("webhook %s attempt %d failed (%s); retrying", event.id, attempts, error or status)
            self.schedule_retry(event.id, retry_at - time.time())
