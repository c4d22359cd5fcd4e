"""The connection to the Redis that holds what must be global across replicas (``shared_state_url``).

Without ``shared_state_url`` nothing here is used: each limit and client secret lives in the process, as on
one replica. With it, every replica reads and writes the same Redis, and an operation that needs it while it
is unreachable raises ``SharedStateUnavailable`` (a 503 with ``Retry-After`` on the wire) instead of
guessing. Nothing is cached: the next call after Redis returns simply works (redis-py reconnects).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.serving.errors import ServingError

log = logging.getLogger(__name__)

KEY_PREFIX = "stt:"
# A shared store on the same network answers in milliseconds; an outage should cost a request little.
SOCKET_TIMEOUT_SECONDS = 0.5
# What a refused caller is told to wait: about how long a restarted Redis needs to be back.
RETRY_AFTER_SECONDS = 2


class SharedStateUnavailable(ServingError):
    """The shared store (Redis) did not answer, so a limit or a client secret cannot be checked (503)."""

    def __init__(self, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(
            "The server's shared state store is unreachable, so this request cannot be checked against its limits. "
            "Retry after the indicated delay."
        )
        self.retry_after = retry_after


class SharedState:
    """One Redis connection pool per process, shared by every store that uses it (thread-safe, blocking)."""

    def __init__(self, url: str) -> None:
        # One immediate retry: after Redis restarts, a pooled connection fails once before a fresh one works.
        self.pool = redis.ConnectionPool.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1),
        )
        self.url = url
        self.client = redis.Redis(connection_pool=self.pool)

    def key(self, *parts: str) -> str:
        return KEY_PREFIX + ":".join(parts)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Turn Redis's connection failures into SharedStateUnavailable (other errors are bugs and propagate)."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("shared state store unreachable: %s", exc)
            raise SharedStateUnavailable() from exc

    def reachable(self) -> bool:
        """Whether Redis answers a PING now (for /ready)."""
        try:
            return bool(self.client.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False

    def close(self) -> None:
        self.pool.disconnect()
