"""Per-model inference slots with a bounded queue: a place is reserved at admission, or QueueFull is raised."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel

from app.serving.deadline import Deadline
from app.serving.errors import QueueFull, TimedOut

MAX_RETRY_AFTER_SECONDS = 60
STEP_ASIDE_POLL_SECONDS = 0.05


class Reservation:
    """A request's place with one model, from admission until it has run (or given up)."""

    def __init__(self, slots: ModelSlots, *, batch: bool = False) -> None:
        self._slots: ModelSlots | None = slots
        self._batch = batch

    @asynccontextmanager
    async def running(self, deadline: Deadline | None = None) -> AsyncIterator[None]:
        """Wait for a slot, run, then give the place back; waiting stops at ``deadline``."""
        slots = self._slots
        if slots is None:
            raise RuntimeError("this reservation was already used or released")
        try:
            async with slots.run(deadline, batch=self._batch):
                yield
        finally:
            self.release()

    @property
    def batch(self) -> bool:
        return self._batch

    def release(self) -> None:
        """Give the place back without running; safe to call more than once."""
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.reserved -= 1


class SlotQueue:
    """A counting semaphore with three classes of waiters: normal ones, then urgent background ones, then the
    other background ones (FIFO in each).

    Background work (a live turn's speculative decodes) so only ever gets a slot nobody else wants,
    and sessions waiting for one take turns. Urgent background work (a turn that has shown no words
    yet) goes before the rest: a first word is worth more than the next words of a turn already
    showing some. The other background work holds at most ``background_limit`` slots at once: a
    decode cannot be stopped once it runs, so a slot kept from it is one a final or a first word
    finds free, on cores that are not all busy. Ownerless, like a semaphore: any task may release.
    """

    def __init__(self, value: int, background_limit: int | None = None) -> None:
        self._value = value
        self._background_limit = value if background_limit is None else background_limit
        self._background_running = 0  # slots held by (capped) background work
        self._normal: deque[anyio.Event] = deque()
        self._urgent: deque[anyio.Event] = deque()
        self._background: deque[anyio.Event] = deque()

    async def acquire(self, *, background: bool = False, urgent: bool = False) -> None:
        """Wait for a slot; the caller then releases it with ``release(capped=...)`` as it says."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        capped = self.capped(background=background, urgent=urgent)
        # A free slot means nobody who could take it waits: releases hand slots to waiters first.
        if self._value > 0 and not (capped and self._background_running >= self._background_limit):
            self._value -= 1
            self._background_running += capped
            return
        event = anyio.Event()
        queue = (self._background if capped else self._urgent) if background else self._normal
        queue.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release(capped=capped)  # handed a slot just as the wait was cancelled: pass it on
            else:
                queue.remove(event)
            raise

    @property
    def waiters(self) -> int:
        """Normal and urgent waiters: work that a batch job should step aside for."""
        return len(self._normal) + len(self._urgent)

    @staticmethod
    def capped(*, background: bool, urgent: bool) -> bool:
        """Whether work of this class counts against the background limit (what ``release`` must be told)."""
        return background and not urgent

    def release(self, *, capped: bool = False) -> None:
        self._background_running -= capped
        for queue in (self._normal, self._urgent):
            if queue:
                queue.popleft().set()
                return
        if self._background and self._background_running < self._background_limit:
            self._background_running += 1
            self._background.popleft().set()
            return
        self._value += 1


class ModelSlots:
    """``concurrency`` inferences at once for one model; at most ``max_queue`` admitted requests behind them.

    ``reserved`` counts every admitted request that has not finished (waiting for its audio, its
    model, or a slot, or running), so the limit holds across the awaits between admission and slot.
    """

    def __init__(self, model_id: str, concurrency: int, max_queue: int) -> None:
        self.model_id = model_id
        self.concurrency = concurrency
        self.max_queue = max_queue
        self.reserved = 0
        self.running = 0
        self.batch_running = 0  # of ``running``: async jobs
        self._semaphore: SlotQueue | None = None
        self._mean_run_seconds = 5.0  # a guess until real runs have been timed

    @property
    def waiting(self) -> int:
        """Admitted requests that are not running (yet)."""
        return self.reserved - self.running

    @property
    def semaphore(self) -> SlotQueue:
        # Created on first use, inside the event loop that will use it. A semaphore rather than a
        # capacity limiter: a stream may be finished by a different task than the one that started it.
        if self._semaphore is None:
            # Background work beyond a turn's first words leaves one slot to finals and first words.
            self._semaphore = SlotQueue(self.concurrency, background_limit=max(1, self.concurrency - 1))
        return self._semaphore

    def retry_after(self) -> int:
        """Seconds until a queue place is likely free, from the recent mean run time."""
        rounds = (self.waiting + 1) / self.concurrency
        return max(1, min(MAX_RETRY_AFTER_SECONDS, math.ceil(self._mean_run_seconds * rounds)))

    def reserve(self, *, admitted: bool = False, batch: bool = False) -> Reservation:
        """Take a place at once, or raise QueueFull when every slot and queue place is taken.

        ``admitted`` work (a realtime session's turn, an async job) was limited when its session or
        job was admitted and is never refused here; it still waits for a slot in order. ``batch``
        work waits as background work does (capped): a job never holds every slot.
        """
        if not admitted and self.reserved >= self.concurrency + self.max_queue:
            raise QueueFull(self.model_id, self.running, self.waiting, self.retry_after())
        self.reserved += 1
        return Reservation(self, batch=batch)

    @asynccontextmanager
    async def run_in_background(self, *, urgent: bool = False) -> AsyncIterator[None]:
        """Wait for a slot behind every normal waiter, then run (a live turn's speculative decodes).

        Whatever else waits for a slot, a turn's final decode or a file request, goes first; the
        background waiters take turns among themselves, ``urgent`` ones (a turn's first words)
        before the others. Cancel the wait to give up.
        """
        await self.semaphore.acquire(background=True, urgent=urgent)
        self.reserved += 1
        try:
            async with self._running(capped=SlotQueue.capped(background=True, urgent=urgent)):
                yield
        finally:
            self.reserved -= 1

    @asynccontextmanager
    async def run(self, deadline: Deadline | None, *, batch: bool = False) -> AsyncIterator[None]:
        """Wait for a slot (``batch`` work: behind every other waiter, and never in every slot), then run."""
        try:
            with anyio.fail_after(math.inf if deadline is None else deadline.remaining()):
                await self.semaphore.acquire(background=batch)
        except TimeoutError:
            assert deadline is not None
            raise TimedOut(deadline.limit) from None
        self.batch_running += batch
        try:
            async with self._running(capped=SlotQueue.capped(background=batch, urgent=False)):
                yield
        finally:
            self.batch_running -= batch

    def interactive_busy(self) -> bool:
        """Whether anything but async jobs runs or waits on this model (read from any thread)."""
        semaphore = self._semaphore
        return self.running > self.batch_running or (semaphore is not None and semaphore.waiters > 0)

    def step_aside(self, cancel: threading.Event) -> None:
        """Block a batch job's decoder thread while interactive work runs or waits on this model.

        Called between a job's windows, so an interactive request shares the cores with at most the
        one window a job is decoding when it arrives.
        """
        while self.interactive_busy() and not cancel.is_set():
            cancel.wait(STEP_ASIDE_POLL_SECONDS)

    @asynccontextmanager
    async def _running(self, *, capped: bool = False) -> AsyncIterator[None]:
        """Hold the acquired slot while running; give it back afterwards."""
        self.running += 1
        started = time.monotonic()
        try:
            yield
        finally:
            self.running -= 1
            self.semaphore.release(capped=capped)
            elapsed = time.monotonic() - started
            self._mean_run_seconds = 0.8 * self._mean_run_seconds + 0.2 * elapsed
