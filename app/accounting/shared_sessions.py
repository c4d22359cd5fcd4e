"""Realtime sessions per API key counted across replicas, in Redis (``shared_state_url``).

Each open session holds a lease in its key's sorted set (member: the lease id, score: when it lapses, on
Redis's clock). The replica renews its leases while the sessions live, so a crashed replica's sessions stop
counting within ``LEASE_SECONDS``. The per-model limit stays per replica: it guards one replica's copy of
the model (its CPU or GPU), and N replicas hold N copies.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import anyio.to_thread

from app.accounting.shared_state import SharedState
from app.serving.errors import SessionLimitReached
from app.serving.realtime import SessionRegistry, SessionTicket
from app.settings import RealtimeConfig

log = logging.getLogger(__name__)

LEASE_SECONDS = 30

# Drop lapsed leases, then add this one if the key has room: one step on Redis, whichever replica asks.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return 1
"""

# Renew leases (KEYS[i] holds ARGV[i + 1]); one that lapsed during an outage comes back.
_RENEW = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, until_, ARGV[i + 1])
  redis.call('EXPIRE', key, 2 * tonumber(ARGV[1]))
end
return #KEYS
"""


@dataclass
class SharedSessionTicket(SessionTicket):
    lease: str = ""

    def release(self) -> None:
        first = not self.released
        super().release()
        if first and isinstance(self.registry, SharedSessionRegistry):
            self.registry.release_lease(self)


class SharedSessionRegistry(SessionRegistry):
    """The per-replica registry, plus a lease in Redis for every session of a key with a session limit."""

    def __init__(self, limits: RealtimeConfig, shared: SharedState, *, lease_seconds: int = LEASE_SECONDS) -> None:
        super().__init__(limits)
        self._shared = shared
        self.lease_seconds = lease_seconds
        self._acquire = shared.client.register_script(_ACQUIRE)
        self._renew = shared.client.register_script(_RENEW)
        self._leases: dict[str, str] = {}  # lease id -> key name, for the sessions open here
        # Releases leave the event loop at once; one worker keeps them in order.
        self._releaser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-leases")

    def _set_key(self, key_name: str) -> str:
        return self._shared.key("sessions", key_name)

    async def admit_shared(self, key_name: str, model_id: str) -> SessionTicket:
        """Admit a session against the key's limit on every replica (raises SessionLimitReached, or
        SharedStateUnavailable while Redis is unreachable), then against this replica's model limit."""
        limit = self.limits.max_sessions_per_key
        if limit is None:
            return self.admit(key_name, model_id)
        lease = uuid.uuid4().hex
        admitted = await anyio.to_thread.run_sync(self._take, key_name, limit, lease)
        if not admitted:
            raise SessionLimitReached(f"This API key already has {limit} open realtime sessions, its limit.")
        try:
            self._check_model(model_id)
        except SessionLimitReached:
            self._release_later(key_name, lease)
            raise
        self.by_key[key_name] += 1
        self.by_model[model_id] += 1
        self._leases[lease] = key_name
        return SharedSessionTicket(self, key_name, model_id, lease=lease)

    def _take(self, key_name: str, limit: int, lease: str) -> bool:
        with self._shared.guard():
            return bool(self._acquire(keys=[self._set_key(key_name)], args=[limit, self.lease_seconds, lease]))

    def release_lease(self, ticket: SharedSessionTicket) -> None:
        if self._leases.pop(ticket.lease, None) is not None:
            self._release_later(ticket.key_name, ticket.lease)

    def _release_later(self, key_name: str, lease: str) -> None:
        future = self._releaser.submit(self._shared.client.zrem, self._set_key(key_name), lease)
        future.add_done_callback(_log_failure)

    def renew(self) -> None:
        """Renew the leases of the sessions open here (blocking; call it every third of ``lease_seconds``)."""
        leases = dict(self._leases)
        if not leases:
            return
        keys = [self._set_key(key_name) for key_name in leases.values()]
        try:
            self._renew(keys=keys, args=[self.lease_seconds, *leases])
        except Exception as exc:  # an outage: the leases come back with the first renewal after it
            log.warning("could not renew %d realtime session leases: %s", len(leases), exc)

    def close(self) -> None:
        self._releaser.shutdown(wait=True)


def _log_failure(future: Future[object]) -> None:
    error = future.exception()
    if error is not None:  # the lease lapses by itself within LEASE_SECONDS
        log.warning("could not release a realtime session lease: %s", error)


async def admit_session(registry: SessionRegistry, key_name: str, model_id: str) -> SessionTicket:
    """A session's ticket from either registry (the shared one asks Redis, off the event loop)."""
    if isinstance(registry, SharedSessionRegistry):
        return await registry.admit_shared(key_name, model_id)
    return registry.admit(key_name, model_id)
