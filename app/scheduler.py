"""Per-model inference slots with a bounded queue: back-pressure answered with 429 and Retry-After."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from app.errors import APIError

MAX_RETRY_AFTER_SECONDS = 60


class ModelSlots:
    """``concurrency`` inferences at once for one model; at most ``max_queue`` waiting behind them."""

    def __init__(self, model_id: str, concurrency: int, max_queue: int) -> None:
        self.model_id = model_id
        self.concurrency = concurrency
        self.max_queue = max_queue
        self.waiting = 0
        self.running = 0
        self._semaphore: anyio.Semaphore | None = None
        self._mean_run_seconds = 5.0  # a guess until real runs have been timed

    @property
    def semaphore(self) -> anyio.Semaphore:
        # Created on first use, inside the event loop that will use it. A semaphore rather than a
        # capacity limiter: a stream may be finished by a different task than the one that started it.
        if self._semaphore is None:
            self._semaphore = anyio.Semaphore(self.concurrency)
        return self._semaphore

    def retry_after(self) -> int:
        """Seconds until a queue place is likely free, from the recent mean run time."""
        rounds = (self.waiting + 1) / self.concurrency
        return max(1, min(MAX_RETRY_AFTER_SECONDS, math.ceil(self._mean_run_seconds * rounds)))

    def admit(self) -> None:
        """Refuse at once when every slot is busy and the queue is full."""
        if self.running >= self.concurrency and self.waiting >= self.max_queue:
            raise APIError(
                429,
                f"Model '{self.model_id}' is busy: {self.running} running and {self.waiting} queued. "
                "Retry after the indicated delay.",
                type="server_overloaded",
                code="queue_full",
                headers={"Retry-After": str(self.retry_after())},
            )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a slot (cancellable: a client that leaves is taken out of the queue)."""
        self.waiting += 1
        try:
            await self.semaphore.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self.running -= 1
            self.semaphore.release()
            elapsed = time.monotonic() - started
            self._mean_run_seconds = 0.8 * self._mean_run_seconds + 0.2 * elapsed
