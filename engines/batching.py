"""One batching engine per model: the calls of concurrent requests run together as batched calls.

Every request (file window or live decode) hands its model calls to the model's Batcher and blocks
until its own result is back. A worker takes the most urgent pending item, gathers the compatible
items of other requests (same operation and key) up to ``max_batch_size``, runs them as one call,
and hands each request its share. Rules:

- **Fairness.** A request has at most one item pending (its thread waits for it), so a 3-hour
  file adds one window per batch like everyone else; the most urgent item (priority, then age)
  leads each batch, so a live turn's final decode goes ahead of speculative partial decodes.
- **No wait when alone.** The worker waits up to ``wait_seconds`` for more items only while some
  other request is between two of its calls (it will submit soon); a lone request never waits.
- **Cancellation.** A cancelled request's pending item leaves the queue at once; an item already
  in a running batch finishes with it (one step), then the request sees the cancellation.
- **Isolation.** When a batched call fails, its items run again one by one, so only the item
  that really fails gets the error.

The batcher knows nothing about Whisper: ``run`` (engines/whisper/batch_ops.py for CTranslate2) turns one
operation and a list of payloads into a list of results.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engines.errors import DecodingCancelled
from engines.types import BatchPriority

log = logging.getLogger(__name__)

RunBatch = Callable[[str, Hashable, Sequence[Any]], Sequence[Any]]
CANCEL_POLL_SECONDS = 0.02
# A request that has not called the model for this long is not waited for (it was abandoned
# without being closed, or is busy outside the model, e.g. decoding audio).
ACTIVE_SECONDS = 1.0


class BatchObserver(Protocol):
    """Told about each batch run (the web layer turns this into metrics)."""

    def batch_ran(self, op: str, size: int, seconds: float) -> None: ...


@dataclass
class _Item:
    owner: object
    op: str
    key: Hashable
    payload: Any
    priority: int
    order: int
    cancel: threading.Event | None
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


@dataclass
class _Owner:
    last_seen: float
    pending: bool = False
    running: bool = False


class Batcher:
    """Runs compatible calls of concurrent requests as batched calls, on ``workers`` threads."""

    def __init__(
        self,
        run: RunBatch,
        *,
        max_batch_size: int = 8,
        wait_seconds: float = 0.005,
        workers: int = 1,
        max_batch_sizes: dict[str, int] | None = None,
        observer: BatchObserver | None = None,
        name: str = "model",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch_size < 1 or workers < 1 or wait_seconds < 0:
            raise ValueError("max_batch_size and workers must be >= 1, wait_seconds >= 0")
        self._run = run
        self.max_batch_size = max_batch_size
        self.wait_seconds = wait_seconds
        self._max_batch_sizes = max_batch_sizes or {}
        self.observer = observer
        self._clock = clock
        self._pending: list[_Item] = []
        self._owners: dict[int, _Owner] = {}
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batcher-{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # --- the request side ---------------------------------------------------------------------

    def submit(
        self,
        op: str,
        key: Hashable,
        payload: Any,
        *,
        owner: object,
        priority: int = BatchPriority.NORMAL,
        cancel: threading.Event | None = None,
    ) -> Any:
        """Blocking: the result of ``op`` on ``payload``, run in a batch with compatible items."""
        if cancel is not None and cancel.is_set():
            raise DecodingCancelled("decoding was cancelled")
        item = _Item(owner, op, key, payload, int(priority), next(self._order), cancel)
        with self._cond:
            if self._closed:
                raise RuntimeError("the model's batcher was closed")
            state = self._owners.setdefault(id(owner), _Owner(self._clock()))
            state.pending, state.last_seen = True, self._clock()
            self._pending.append(item)
            self._cond.notify_all()
        while not item.done.wait(CANCEL_POLL_SECONDS if cancel is not None else None):
            if cancel is not None and cancel.is_set() and self._withdraw(item):
                raise DecodingCancelled("decoding was cancelled")
        if cancel is not None and cancel.is_set():
            raise DecodingCancelled("decoding was cancelled")
        if item.error is not None:
            raise item.error
        return item.result

    def leave(self, owner: object) -> None:
        """``owner`` makes no more calls: nobody waits for it any longer."""
        with self._cond:
            self._owners.pop(id(owner), None)
            self._cond.notify_all()

    def _withdraw(self, item: _Item) -> bool:
        """Take a still-pending item out of the queue; False once a worker has taken it."""
        with self._cond:
            if item not in self._pending:
                return False
            self._pending.remove(item)
            self._settle(item.owner)
            self._cond.notify_all()
            return True

    def _settle(self, owner: object) -> None:
        state = self._owners.get(id(owner))
        if state is not None:
            state.pending = state.running = False
            state.last_seen = self._clock()

    # --- the worker side ----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the workers; pending items fail. Safe to call more than once."""
        with self._cond:
            self._closed = True
            pending, self._pending = self._pending, []
            self._cond.notify_all()
        for item in pending:
            item.finish(error=RuntimeError("the model's batcher was closed"))
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)
            with self._cond:
                for item in batch:
                    self._settle(item.owner)
                self._cond.notify_all()

    def _next_batch(self) -> list[_Item] | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                self._drop_cancelled()
                if not self._pending:
                    self._cond.wait()
                    continue
                head = min(self._pending, key=lambda item: (item.priority, item.order))
                batch = self._compatible(head)
                deadline = self._clock() + self.wait_seconds
                while len(batch) < self._limit(head.op) and self._others_coming(batch):
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                    if self._closed or head not in self._pending:
                        break
                    batch = self._compatible(head)
                if self._closed:
                    return None
                if head not in self._pending:  # withdrawn while gathering: start over
                    continue
                batch = self._compatible(head)
                for item in batch:
                    self._pending.remove(item)
                    state = self._owners.get(id(item.owner))
                    if state is not None:
                        state.pending, state.running = False, True
                return batch

    def _limit(self, op: str) -> int:
        return min(self.max_batch_size, self._max_batch_sizes.get(op, self.max_batch_size))

    def _compatible(self, head: _Item) -> list[_Item]:
        """The head and the most urgent items of other owners with the same operation and key."""
        candidates = sorted(
            (i for i in self._pending if i.op == head.op and i.key == head.key and i is not head),
            key=lambda item: (item.priority, item.order),
        )
        batch, owners = [head], {id(head.owner)}
        for item in candidates:
            if len(batch) >= self._limit(head.op):
                break
            if id(item.owner) not in owners:  # one item per request per batch
                batch.append(item)
                owners.add(id(item.owner))
        return batch

    def _others_coming(self, batch: list[_Item]) -> bool:
        """Some other active request is between two calls, so it will likely submit soon."""
        in_batch = {id(item.owner) for item in batch}
        now = self._clock()
        return any(
            key not in in_batch and not state.pending and not state.running and now - state.last_seen < ACTIVE_SECONDS
            for key, state in self._owners.items()
        )

    def _drop_cancelled(self) -> None:
        for item in [i for i in self._pending if i.cancel is not None and i.cancel.is_set()]:
            self._pending.remove(item)
            self._settle(item.owner)
            item.finish(error=DecodingCancelled("decoding was cancelled"))

    def _execute(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        try:
            results = self._call(batch[0].op, batch[0].key, [item.payload for item in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].finish(error=exc)
            else:  # find the item that fails: the others still get their results
                log.warning("a batch of %d %s calls failed (%s); running them one by one", len(batch), batch[0].op, exc)
                for item in batch:
                    self._execute_alone(item)
        else:
            for item, result in zip(batch, results, strict=True):
                item.finish(result)
        finally:
            if self.observer is not None:
                self.observer.batch_ran(batch[0].op, len(batch), time.perf_counter() - started)

    def _execute_alone(self, item: _Item) -> None:
        try:
            item.finish(self._call(item.op, item.key, [item.payload])[0])
        except Exception as exc:
            item.finish(error=exc)

    def _call(self, op: str, key: Hashable, payloads: list[Any]) -> Sequence[Any]:
        results = self._run(op, key, payloads)
        if len(results) != len(payloads):
            raise RuntimeError(f"{op} returned {len(results)} results for {len(payloads)} items")
        return results
