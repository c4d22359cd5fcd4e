"""The batching engine with a fake model: grouping, splitting results back, errors, cancellation, order."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Sequence
from typing import Any

import pytest

from engines.batching import Batcher
from engines.errors import DecodingCancelled
from engines.types import BatchPriority


class FakeModel:
    """Doubles numbers; records each batch; can be held (to let items pile up) and told to fail."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, Hashable, list[Any]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail_on: set[Any] = set()
        self.lock = threading.Lock()

    def __call__(self, op: str, key: Hashable, payloads: Sequence[Any]) -> list[Any]:
        self.started.set()
        self.gate.wait(10)
        with self.lock:
            self.batches.append((op, key, list(payloads)))
        if self.fail_on.intersection(payloads):
            raise RuntimeError(f"bad item in {list(payloads)}")
        return [p * 2 for p in payloads]

    def sizes(self) -> list[int]:
        return [len(payloads) for _, _, payloads in self.batches]


def run_threads(batcher: Batcher, jobs: Sequence[tuple[str, Hashable, Any]], **kwargs: Any) -> list[Any]:
    """Submit each job from its own thread (own owner); the results (or exceptions) in job order."""
    results: list[Any] = [None] * len(jobs)

    def work(index: int) -> None:
        op, key, payload = jobs[index]
        try:
            results[index] = batcher.submit(op, key, payload, owner=object(), **kwargs)
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def held_batcher(model: FakeModel, **kwargs: Any) -> Batcher:
    """A batcher whose first batch (a lone item) blocks in the model until ``model.gate`` is set."""
    model.gate.clear()
    batcher = Batcher(model, **kwargs)
    threading.Thread(target=batcher.submit, args=("warm", "w", 0), kwargs={"owner": object()}, daemon=True).start()
    assert model.started.wait(5)
    return batcher


def wait_pending(batcher: Batcher, count: int) -> None:
    deadline = time.monotonic() + 5
    while batcher.pending < count:
        assert time.monotonic() < deadline, f"{batcher.pending} pending, wanted {count}"
        time.sleep(0.005)


def run_held(model: FakeModel, batcher: Batcher, jobs: Sequence[tuple[str, Hashable, Any]]) -> list[Any]:
    """Submit ``jobs`` while the model is held, let it go once all are pending, then close the batcher."""
    results: list[Any] = []
    runner = threading.Thread(target=lambda: results.extend(run_threads(batcher, jobs)))
    runner.start()
    wait_pending(batcher, len(jobs))
    model.gate.set()
    runner.join(10)
    batcher.close()
    return results


def test_compatible_items_run_as_one_batch_and_each_gets_its_own_result() -> None:
    model = FakeModel()
    batcher = held_batcher(model, max_batch_size=8, wait_seconds=0)
    jobs = [("generate", "k", i) for i in range(1, 6)]
    results = run_held(model, batcher, jobs)
    assert results == [2, 4, 6, 8, 10]
    assert model.sizes() == [1, 5]  # the held warm-up item, then all five together


def test_items_with_different_keys_or_ops_never_share_a_batch() -> None:
    model = FakeModel()
    batcher = held_batcher(model, max_batch_size=8, wait_seconds=0)
    jobs = [("generate", "a", 1), ("generate", "b", 2), ("encode", "a", 3), ("generate", "a", 4)]
    results = run_held(model, batcher, jobs)
    assert results == [2, 4, 6, 8]
    groups = sorted((op, key, sorted(p)) for op, key, p in model.batches[1:])
    assert groups == [("encode", "a", [3]), ("generate", "a", [1, 4]), ("generate", "b", [2])]


def test_batches_are_split_at_max_batch_size() -> None:
    model = FakeModel()
    batcher = held_batcher(model, max_batch_size=3, wait_seconds=0)
    results = run_held(model, batcher, [("g", "k", i) for i in range(7)])
    assert results == [2 * i for i in range(7)]
    assert model.sizes()[1:] == [3, 3, 1]


def test_one_item_per_request_per_batch() -> None:
    """A request never has two items in one batch (fairness: one window per request per step)."""
    model = FakeModel()
    batcher = held_batcher(model, max_batch_size=8, wait_seconds=0)
    owner = object()
    results: list[Any] = []

    def submit(value: int) -> None:
        results.append(batcher.submit("g", "k", value, owner=owner))

    threads = [threading.Thread(target=submit, args=(v,)) for v in (1, 2)]
    for thread in threads:
        thread.start()
    wait_pending(batcher, 2)
    model.gate.set()
    for thread in threads:
        thread.join(10)
    batcher.close()
    assert sorted(results) == [2, 4]
    assert model.sizes()[1:] == [1, 1]


def test_a_failing_item_gets_the_error_and_the_others_their_results() -> None:
    model = FakeModel()
    model.fail_on = {3}
    batcher = held_batcher(model, max_batch_size=8, wait_seconds=0)
    results = run_held(model, batcher, [("g", "k", i) for i in (1, 3, 5)])
    assert results[0] == 2 and results[2] == 10
    assert isinstance(results[1], RuntimeError)
    assert model.sizes()[1:] == [3, 1, 1, 1]  # the failed batch, then each item alone


def test_a_cancelled_request_leaves_the_pending_batch() -> None:
    model = FakeModel()
    batcher = held_batcher(model, max_batch_size=8, wait_seconds=0)
    cancel = threading.Event()
    outcome: list[Any] = []

    def cancelled_request() -> None:
        try:
            outcome.append(batcher.submit("g", "k", 100, owner=object(), cancel=cancel))
        except DecodingCancelled as exc:
            outcome.append(exc)

    others: list[Any] = []
    thread = threading.Thread(target=cancelled_request)
    thread.start()
    runner = threading.Thread(target=lambda: others.extend(run_threads(batcher, [("g", "k", 1), ("g", "k", 2)])))
    runner.start()
    wait_pending(batcher, 3)
    cancel.set()
    thread.join(5)
    assert not thread.is_alive(), "the cancelled request did not leave while the model was busy"
    assert isinstance(outcome[0], DecodingCancelled)
    model.gate.set()
    runner.join(10)
    batcher.close()
    assert others == [2, 4]
    assert all(100 not in payloads for _, _, payloads in model.batches)


def test_already_cancelled_request_never_reaches_the_model() -> None:
    model = FakeModel()
    batcher = Batcher(model)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(DecodingCancelled):
        batcher.submit("g", "k", 1, owner=object(), cancel=cancel)
    batcher.close()
    assert model.batches == []


def test_the_most_urgent_item_leads_and_background_work_goes_last() -> None:
    model = FakeModel()
    batcher = held_batcher(model, max_batch_size=1, wait_seconds=0)
    order: list[int] = []
    threads = []
    for value, priority in ((1, BatchPriority.BACKGROUND), (2, BatchPriority.NORMAL), (3, BatchPriority.FINAL)):
        thread = threading.Thread(
            target=lambda v=value, p=priority: order.append(batcher.submit("g", "k", v, owner=object(), priority=p))
        )
        thread.start()
        threads.append(thread)
        wait_pending(batcher, len(threads))
    model.gate.set()
    for thread in threads:
        thread.join(10)
    batcher.close()
    assert [p[0] for _, _, p in model.batches[1:]] == [3, 2, 1]


def test_a_long_request_does_not_starve_a_short_one() -> None:
    """A request with many calls and a request with one: the short one is in the next batch."""
    model = FakeModel()
    batcher = Batcher(model, max_batch_size=1, wait_seconds=0)
    long_owner, done = object(), threading.Event()
    finished: list[str] = []

    def long_request() -> None:
        for step in range(200):
            batcher.submit("g", "k", step, owner=long_owner)
            if step == 5:
                done.set()
        finished.append("long")

    thread = threading.Thread(target=long_request)
    thread.start()
    assert done.wait(5)
    assert batcher.submit("g", "k", 1000, owner=object()) == 2000
    finished.append("short")
    thread.join(10)
    batcher.close()
    assert finished == ["short", "long"]


def test_a_lone_request_does_not_wait_for_a_batch() -> None:
    model = FakeModel()
    batcher = Batcher(model, max_batch_size=8, wait_seconds=5.0)  # a wait would be obvious
    owner = object()
    started = time.monotonic()
    for value in range(3):
        assert batcher.submit("g", "k", value, owner=owner) == 2 * value
    batcher.close()
    assert time.monotonic() - started < 2.5


def test_a_batch_waits_briefly_for_an_active_request_between_calls() -> None:
    """Two requests in lockstep: with a gathering window their calls share batches."""
    model = FakeModel()
    batcher = Batcher(model, max_batch_size=8, wait_seconds=0.5)
    barrier = threading.Barrier(2)

    def request(offset: int) -> None:
        owner = object()
        barrier.wait()
        for step in range(3):
            batcher.submit("g", "k", offset + step, owner=owner)
            time.sleep(0.01)  # the work between two model calls
        batcher.leave(owner)

    threads = [threading.Thread(target=request, args=(o,)) for o in (0, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    batcher.close()
    assert max(model.sizes()) == 2


def test_close_fails_pending_items_and_refuses_new_ones() -> None:
    model = FakeModel()
    batcher = held_batcher(model, max_batch_size=1, wait_seconds=0)
    results: list[Any] = []
    runner = threading.Thread(target=lambda: results.extend(run_threads(batcher, [("g", "k", 1)])))
    runner.start()
    wait_pending(batcher, 1)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    runner.join(5)
    model.gate.set()
    closer.join(10)
    assert isinstance(results[0], RuntimeError)
    with pytest.raises(RuntimeError):
        batcher.submit("g", "k", 1, owner=object())


def test_observer_sees_each_batch() -> None:
    seen: list[tuple[str, int]] = []

    class Observer:
        def batch_ran(self, op: str, size: int, seconds: float) -> None:
            seen.append((op, size))

    batcher = Batcher(FakeModel(), observer=Observer())
    batcher.submit("encode", "k", 1, owner=object())
    batcher.close()
    assert seen == [("encode", 1)]


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Batcher(FakeModel(), max_batch_size=0)


def test_thread_budget_never_asks_for_more_cores_than_there_are() -> None:
    from engines.cores import thread_budget

    assert thread_budget("cpu", 0, 1, 2) == (1, 2)
    assert thread_budget("cpu", 0, 2, 2) == (2, 1)
    assert thread_budget("cpu", 0, 16, 2) == (2, 1)  # extra concurrent calls queue for a worker
    assert thread_budget("cpu", 0, 3, 8) == (3, 2)
    assert thread_budget("cpu", 4, 1, 8) == (1, 4)
    assert thread_budget("cuda", 0, 4, 2) == (4, 1)  # CUDA workers are streams, not cores


def test_alignments_never_share_a_batch() -> None:
    """Batched alignments of different texts changed word timings (bench.batching_check), so each runs alone."""
    from engines.whisper.batch_ops import ALIGN, OP_LIMITS

    model = FakeModel()
    batcher = held_batcher(model, max_batch_size=8, wait_seconds=0, max_batch_sizes=dict(OP_LIMITS))
    results = run_held(model, batcher, [(ALIGN, None, i) for i in (1, 2, 3)])
    assert results == [2, 4, 6]
    assert model.sizes()[1:] == [1, 1, 1]
