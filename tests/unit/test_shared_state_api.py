"""``shared_state_url`` through the real app (fake recogniser, real redis-server): two apps stand for two replicas."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
from pytest_redis.executor import RedisExecutor

from app.api.auth import hash_key, new_secret
from app.api.state import app_state
from app.settings import ApiKeyRecord
from tests.audio import silence
from tests.inprocess import InProcess, in_process
from tests.services import redis_server, redis_url

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return silence(tmp_path_factory.mktemp("audio") / "one.wav", 1.0).read_bytes()


@pytest.fixture
def own_redis() -> Iterator[RedisExecutor]:
    with redis_server() as running:
        yield running


async def _status(setup: InProcess, audio: bytes) -> int:
    try:
        await setup.client.audio.transcriptions.create(model="whisper-1", file=audio)
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


async def test_two_apps_share_a_keys_limit_and_its_client_secrets(
    tmp_path: Path, redis_service: RedisExecutor, audio: bytes
) -> None:
    url = redis_url(redis_service, db=1)
    redis.Redis.from_url(url).flushdb()
    limits = {"requests_per_minute": 3}
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(in_process(tmp_path / "a", shared_state_url=url, default_limits=limits))
        # The same key on the second replica (its secret is the first's).
        second = await stack.enter_async_context(
            in_process(tmp_path / "b", shared_state_url=url, default_limits=limits, api_keys=_keys_of(first))
        )
        second.client.api_key = first.key
        statuses = [await _status(first, audio), await _status(second, audio), await _status(first, audio)]
        assert statuses == [200, 200, 200]
        assert [await _status(second, audio), await _status(first, audio)] == [429, 429]

        minted = await first.http.post(
            "/v1/realtime/client_secrets", headers={"Authorization": f"Bearer {first.key}"}, json={}
        )
        assert minted.status_code == 200
        secret = app_state(second.app).client_secrets.lookup(minted.json()["value"])
        assert secret is not None and secret.key_name == "test"


def _keys_of(setup: InProcess) -> list[ApiKeyRecord]:
    return list(app_state(setup.app).settings.api_keys)


async def test_redis_outage_gives_503_and_not_ready_then_service_resumes(
    tmp_path: Path, own_redis: RedisExecutor, audio: bytes
) -> None:
    limits = {"requests_per_minute": 100}
    async with in_process(tmp_path, shared_state_url=redis_url(own_redis), default_limits=limits) as setup:
        auth = {"Authorization": f"Bearer {setup.key}"}
        ready = await setup.http.get("/ready")
        assert ready.status_code == 200 and ready.json()["shared_state"] == "ok"
        assert await _status(setup, audio) == 200

        own_redis.stop()
        ready = await setup.http.get("/ready")
        assert ready.status_code == 503 and ready.json()["shared_state"] == "unreachable"
        assert (await setup.http.get("/health")).status_code == 200
        with pytest.raises(openai.APIStatusError) as refused:
            await setup.client.audio.transcriptions.create(model="whisper-1", file=audio)
        assert refused.value.status_code == 503 and refused.value.response.headers["retry-after"] == "2"
        assert refused.value.body["code"] == "shared_state_unavailable"  # type: ignore[index]
        minted = await setup.http.post("/v1/realtime/client_secrets", headers=auth, json={})
        assert minted.status_code == 503 and minted.headers["retry-after"] == "2"

        own_redis.start()
        assert (await setup.http.get("/ready")).status_code == 200
        assert await _status(setup, audio) == 200
        assert (await setup.http.post("/v1/realtime/client_secrets", headers=auth, json={})).status_code == 200


async def test_without_shared_state_ready_says_nothing_of_it(tmp_path: Path) -> None:
    async with in_process(tmp_path) as setup:
        ready = await setup.http.get("/ready")
        assert ready.status_code == 200 and "shared_state" not in ready.json()
        assert app_state(setup.app).shared_state is None


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
async def test_revoking_a_key_revokes_its_client_secrets(
    tmp_path: Path, redis_service: RedisExecutor, shared: bool
) -> None:
    admin_key = new_secret()
    overrides: dict[str, Any] = {"api_keys": [ApiKeyRecord(name="ops", sha256=hash_key(admin_key), admin=True)]}
    if shared:
        overrides["shared_state_url"] = redis_url(redis_service, db=2)
    async with in_process(tmp_path, **overrides) as setup:
        as_admin = {"Authorization": f"Bearer {admin_key}"}
        created = await setup.http.post("/admin/keys", headers=as_admin, json={"name": "alice", "admin": False})
        as_alice = {"Authorization": f"Bearer {created.json()['secret']}"}
        minted = await setup.http.post("/v1/realtime/client_secrets", headers=as_alice, json={})
        store = app_state(setup.app).client_secrets
        assert store.lookup(minted.json()["value"]) is not None
        assert (await setup.http.delete("/admin/keys/alice", headers=as_admin)).status_code == 200
        assert store.lookup(minted.json()["value"]) is None
