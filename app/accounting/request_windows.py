"""Sliding 60-s request windows per key: in this process (one replica), or in Redis (all replicas together).

``hit`` checks and counts in one step, so concurrent requests cannot all take one free slot; a refusal counts
nothing. The Redis window is the ``limits`` library's moving window, whose check-and-count is one Lua script.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from app.accounting.shared_state import SharedState

RPM_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class WindowFull:
    """A refusal: requests in the window now, and the seconds until the next slot frees."""

    used: int
    wait: float


class RequestWindow(Protocol):
    def hit(self, key_name: str, limit: int) -> WindowFull | None:
        """Count one request of ``key_name`` if fewer than ``limit`` are in its window, else say why not."""
        ...


class LocalRequestWindow:
    """Windows in this process's memory: each replica counts only its own requests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = {}

    def hit(self, key_name: str, limit: int) -> WindowFull | None:
        with self._lock:
            now = self._clock()
            window = self._recent.setdefault(key_name, deque())
            while window and window[0] <= now - RPM_WINDOW_SECONDS:
                window.popleft()
            if len(window) >= limit:
                # The slot frees when the request that is `limit`-th from the newest leaves the window.
                return WindowFull(len(window), window[-limit] + RPM_WINDOW_SECONDS - now)
            window.append(now)
            return None


class RedisRequestWindow:
    """Windows in Redis: a key's limit holds across every replica. Raises SharedStateUnavailable without Redis."""

    def __init__(self, shared: SharedState) -> None:
        self._shared = shared
        storage = RedisStorage(shared.url, connection_pool=shared.pool, key_prefix=shared.key("rpm"))
        self._limiter = MovingWindowRateLimiter(storage)

    def hit(self, key_name: str, limit: int) -> WindowFull | None:
        item = RateLimitItemPerMinute(limit)
        with self._shared.guard():
            if self._limiter.hit(item, key_name):
                return None
            stats = self._limiter.get_window_stats(item, key_name)
        return WindowFull(limit - stats.remaining, max(stats.reset_time - time.time(), 0.0))
