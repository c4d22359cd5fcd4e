"""The Redis-backed shared state against a real redis-server: two SharedState objects stand for two replicas."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import anyio
import pytest
from pytest_redis.executor import RedisExecutor

from app.accounting.ledger import UsageLedger
from app.accounting.quotas import KeyQuotas
from app.accounting.request_windows import RedisRequestWindow
from app.accounting.shared_sessions import SharedSessionRegistry, admit_session
from app.accounting.shared_state import SharedState, SharedStateUnavailable
from app.api.errors import to_api_error
from app.api.realtime.shared_secrets import RedisClientSecretStore
from app.serving.errors import RateLimited, SessionLimitReached
from app.serving.realtime import SessionConfig, TranscriptionConfig
from app.settings import KeyLimitConfig, RealtimeConfig
from tests.ledger_urls import sqlite_url
from tests.services import redis_server, redis_url

Replicas = tuple[SharedState, SharedState]


def _replicas(url: str) -> Iterator[Replicas]:
    first, second = SharedState(url), SharedState(url)
    first.client.flushdb()
    yield first, second
    first.close()
    second.close()


@pytest.fixture
def replicas(redis_service: RedisExecutor) -> Iterator[Replicas]:
    yield from _replicas(redis_url(redis_service))


@pytest.fixture
def own_redis() -> Iterator[RedisExecutor]:
    """A redis-server of this test alone, which it may stop and start."""
    with redis_server() as running:
        yield running


# --- requests per minute ------------------------------------------------------------------------------------------


def test_a_keys_window_is_one_across_replicas(replicas: Replicas) -> None:
    first, second = (RedisRequestWindow(shared) for shared in replicas)
    assert first.hit("alice", 3) is None
    assert second.hit("alice", 3) is None
    assert first.hit("alice", 3) is None
    for window in (first, second):
        full = window.hit("alice", 3)
        assert full is not None and full.used == 3 and 59.0 < full.wait <= 60.0
    assert second.hit("bob", 3) is None  # another key has its own window


def test_concurrent_hits_on_two_replicas_pass_the_limit_exactly(replicas: Replicas) -> None:
    windows = [RedisRequestWindow(shared) for shared in replicas]
    admitted: list[bool] = []
    lock = threading.Lock()

    def hit(window: RedisRequestWindow) -> None:
        result = window.hit("carol", 5) is None
        with lock:
            admitted.append(result)

    threads = [threading.Thread(target=hit, args=(windows[i % 2],)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 5 and len(admitted) == 24


def test_quotas_refuse_with_openais_429_from_the_shared_window(replicas: Replicas, tmp_path: Path) -> None:
    ledger = UsageLedger(sqlite_url(tmp_path / "usage.db"))
    limits = KeyLimitConfig(requests_per_minute=2)
    quotas = [KeyQuotas({}, limits, ledger, window=RedisRequestWindow(shared)) for shared in replicas]
    quotas[0].admit("dave")
    quotas[1].admit("dave")
    with pytest.raises(RateLimited) as refused:
        quotas[0].admit("dave")
    error = to_api_error(refused.value)
    assert error.status == 429 and error.code == "rate_limit_exceeded" and error.type == "requests"
    assert "Limit 2, Used 2" in error.message and error.headers["retry-after"] == "60"
    ledger.close()


# --- client secrets -----------------------------------------------------------------------------------------------

CONFIG = SessionConfig(transcription=TranscriptionConfig(model="base", language="fr", keywords=("Zoë",)))


def test_a_secret_minted_on_one_replica_opens_on_the_other(replicas: Replicas) -> None:
    mint, other = (RedisClientSecretStore(shared) for shared in replicas)
    value, expires_at = mint.create("alice", CONFIG, 120)
    assert value.startswith("ek_") and abs(expires_at - (time.time() + 120)) < 2
    found = other.lookup(value)
    assert found is not None and found.key_name == "alice" and found.config == CONFIG
    assert found.expires_at == expires_at
    assert other.lookup(value + "x") is None
    plain, _ = mint.create("alice", None, 60)
    found_plain = other.lookup(plain)
    assert found_plain is not None and found_plain.config is None


def test_secrets_are_stored_hashed_with_their_ttl(replicas: Replicas) -> None:
    store = RedisClientSecretStore(replicas[0])
    value, _ = store.create("alice", CONFIG, 100)
    client = replicas[0].client
    keys = [k.decode() for k in cast(list[bytes], client.keys("stt:ek:*"))]
    assert len(keys) == 1 and value not in keys[0] and value.encode() not in cast(bytes, client.get(keys[0]))
    assert 98 <= cast(int, client.ttl(keys[0])) <= 100


def test_an_expired_secret_is_refused_to_the_second(replicas: Replicas) -> None:
    skew = [0.0]  # both replicas' clocks, moved forward by hand

    def clock() -> float:
        return time.time() + skew[0]

    mint, other = (RedisClientSecretStore(shared, clock=clock) for shared in replicas)
    value, _ = mint.create("alice", None, 30)
    assert other.lookup(value) is not None
    skew[0] = 31.0  # past its expiry, though Redis still holds it
    assert other.lookup(value) is None


def test_revoking_a_key_revokes_its_secrets_everywhere(replicas: Replicas) -> None:
    mint, other = (RedisClientSecretStore(shared) for shared in replicas)
    alices = [mint.create("alice", None, 60)[0] for _ in range(3)]
    bobs, _ = mint.create("bob", None, 60)
    other.revoke_key("alice")
    assert all(mint.lookup(v) is None for v in alices)
    assert mint.lookup(bobs) is not None


# --- realtime sessions --------------------------------------------------------------------------------------------


def test_sessions_per_key_count_across_replicas(replicas: Replicas) -> None:
    limits = RealtimeConfig(max_sessions_per_key=2, max_sessions_per_model=5)
    first, second = (SharedSessionRegistry(limits, shared) for shared in replicas)

    async def scenario() -> None:
        one = await admit_session(first, "alice", "base")
        await admit_session(second, "alice", "base")
        for registry in (first, second):
            with pytest.raises(SessionLimitReached):
                await admit_session(registry, "alice", "base")
        await admit_session(second, "bob", "base")  # another key
        one.release()
        first.close()  # waits for the release to reach Redis
        await admit_session(second, "alice", "base")

    anyio.run(scenario)
    assert second.by_key["alice"] == 2 and first.by_key["alice"] == 0
    second.close()


def test_the_model_limit_stays_per_replica(replicas: Replicas) -> None:
    limits = RealtimeConfig(max_sessions_per_key=10, max_sessions_per_model=1)
    first, second = (SharedSessionRegistry(limits, shared) for shared in replicas)

    async def scenario() -> None:
        await admit_session(first, "alice", "base")
        await admit_session(second, "alice", "base")  # its own copy of the model
        with pytest.raises(SessionLimitReached):
            await admit_session(first, "alice", "base")

    anyio.run(scenario)
    first.close()
    assert replicas[0].client.zcard("stt:sessions:alice") == 2  # the refused one gave its lease back
    second.close()


def test_a_dead_replicas_sessions_lapse_and_live_ones_are_renewed(replicas: Replicas) -> None:
    limits = RealtimeConfig(max_sessions_per_key=1)
    crashed = SharedSessionRegistry(limits, replicas[0], lease_seconds=1)
    alive = SharedSessionRegistry(limits, replicas[1], lease_seconds=1)

    async def scenario() -> None:
        await admit_session(crashed, "alice", "base")  # never released, never renewed
        with pytest.raises(SessionLimitReached):
            await admit_session(alive, "alice", "base")
        await anyio.sleep(1.2)
        await admit_session(alive, "alice", "base")
        for _ in range(3):  # renewed, it outlives its lease
            await anyio.sleep(0.4)
            alive.renew()
        with pytest.raises(SessionLimitReached):
            await admit_session(crashed, "alice", "base")

    anyio.run(scenario)
    crashed.close()
    alive.close()


# --- Redis outage -------------------------------------------------------------------------------------------------


def test_an_outage_refuses_with_503_and_service_resumes_when_redis_returns(own_redis: RedisExecutor) -> None:
    shared = SharedState(redis_url(own_redis))
    window, secrets = RedisRequestWindow(shared), RedisClientSecretStore(shared)
    registry = SharedSessionRegistry(RealtimeConfig(max_sessions_per_key=2), shared)
    assert window.hit("alice", 10) is None
    value, _ = secrets.create("alice", None, 600)
    assert shared.reachable()

    own_redis.stop()
    assert not shared.reachable()
    for call in (lambda: window.hit("alice", 10), lambda: secrets.lookup(value), lambda: secrets.create("a", None, 60)):
        started = time.monotonic()
        with pytest.raises(SharedStateUnavailable) as refused:
            call()
        assert time.monotonic() - started < 1.5  # answered at once, not hung
    with pytest.raises(SharedStateUnavailable):
        anyio.run(admit_session, registry, "alice", "base")
    error = to_api_error(refused.value)
    assert error.status == 503 and error.code == "shared_state_unavailable" and error.headers["Retry-After"] == "2"

    own_redis.start()  # empty: this redis-server keeps nothing on disk
    assert shared.reachable()
    assert window.hit("alice", 10) is None
    renewed, _ = secrets.create("alice", None, 600)
    assert secrets.lookup(renewed) is not None
    anyio.run(admit_session, registry, "alice", "base")
    registry.close()
    shared.close()
