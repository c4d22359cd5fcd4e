"""Lanes of work run side by side: one thread per lane, all released at the same moment, each doing its items in
turn; what every row (in-process workers and server clients alike) is timed with."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from bench.concurrency.rows import ClipResult

Item = TypeVar("Item")
Started = TypeVar("Started")


def run_together(
    lanes: Sequence[Sequence[Item]],
    do: Callable[[int, Item, float], ClipResult],
    start: Callable[[], Started],
    name: str,
) -> tuple[list[ClipResult], float, Started]:
    """Thread k calls ``do(k, item, release)`` for each item of ``lanes[k]`` in turn, ``release`` being the
    ``perf_counter`` at which all threads were let go. The threads start first and wait; ``start`` runs just before
    the release (to read the counters the row is measured from).

    Returns the results in the order they came, the wall seconds from the release until the last thread finished,
    and what ``start`` returned. A thread that raises loses the rest of its lane (the caller counts the results).
    """
    barrier = threading.Barrier(len(lanes) + 1)
    lock = threading.Lock()
    results: list[ClipResult] = []
    release = [0.0]

    def lane(k: int) -> None:
        barrier.wait()
        for item in lanes[k]:
            result = do(k, item, release[0])
            with lock:
                results.append(result)

    threads = [threading.Thread(target=lane, args=(k,), name=f"{name}-{k}") for k in range(len(lanes))]
    for thread in threads:
        thread.start()
    started = start()
    release[0] = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - release[0], started
