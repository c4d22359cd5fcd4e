"""The admin endpoints behind the console (models, usage, keys), in process with a fake recogniser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

from app.api.auth import hash_key, new_secret
from app.main import create_app
from app.settings import ApiKeyRecord
from tests.audio import SYNTH_SENTENCE, espeak
from tests.inprocess import FakeLoader, fake_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Admin:
    http: httpx.AsyncClient
    key: str
    admin_key: str

    def as_user(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def as_admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Admin]:
    key, admin_key = new_secret(), new_secret()
    keys = [
        ApiKeyRecord(name="test", sha256=hash_key(key)),
        ApiKeyRecord(name="ops", sha256=hash_key(admin_key), admin=True),
    ]
    app = create_app(fake_settings(tmp_path, key, api_keys=keys), loader=FakeLoader())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=30) as http:
            yield Admin(http, key, admin_key)


# --- admin endpoints ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/admin/models"), ("GET", "/admin/usage"), ("GET", "/admin/keys"), ("POST", "/admin/keys"),
     ("DELETE", "/admin/keys/test")],
)  # fmt: skip
async def test_admin_endpoints_refuse_other_keys(setup: Admin, method: str, path: str) -> None:
    anonymous = await setup.http.request(method, path)
    assert anonymous.status_code == 401
    plain = await setup.http.request(method, path, headers=setup.as_user(), json={"name": "x"})
    assert plain.status_code == 403
    assert plain.json()["error"]["code"] == "admin_required"


async def test_models_view_lists_memory_queue_and_sessions(setup: Admin) -> None:
    rows = (await setup.http.get("/admin/models", headers=setup.as_admin())).json()["data"]
    assert [row["name"] for row in rows] == ["fake"]
    assert {"loaded", "memory_bytes", "running", "queued", "realtime_sessions"} <= set(rows[0])


async def test_keys_are_created_once_listed_and_revoked(setup: Admin) -> None:
    listed = (await setup.http.get("/admin/keys", headers=setup.as_admin())).json()["data"]
    expected = [("test", "config", False), ("ops", "config", True)]
    assert [(k["name"], k["source"], k["admin"]) for k in listed] == expected
    assert all(len(k["sha256_prefix"]) == 12 for k in listed)

    created = await setup.http.post("/admin/keys", headers=setup.as_admin(), json={"name": "ci-bot"})
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    secret = created.json()["secret"]
    assert secret.startswith("sk-gateway-") and created.json()["admin"] is False
    bearer = {"Authorization": f"Bearer {secret}"}
    assert (await setup.http.get("/v1/models", headers=bearer)).status_code == 200
    assert (await setup.http.get("/admin/models", headers=bearer)).status_code == 403

    listed = (await setup.http.get("/admin/keys", headers=setup.as_admin())).json()["data"]
    assert ("ci-bot", "file") in [(k["name"], k["source"]) for k in listed]
    assert secret not in str(listed)

    again = await setup.http.post("/admin/keys", headers=setup.as_admin(), json={"name": "ci-bot"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "key_exists"
    clash = await setup.http.post("/admin/keys", headers=setup.as_admin(), json={"name": "test"})
    assert clash.status_code == 409

    revoked = await setup.http.delete("/admin/keys/ci-bot", headers=setup.as_admin())
    assert revoked.status_code == 200 and revoked.json()["deleted"] is True
    assert (await setup.http.get("/v1/models", headers=bearer)).status_code == 401
    assert (await setup.http.delete("/admin/keys/ci-bot", headers=setup.as_admin())).status_code == 404
    from_config = await setup.http.delete("/admin/keys/test", headers=setup.as_admin())
    assert from_config.status_code == 409 and from_config.json()["error"]["code"] == "key_not_revocable"


async def test_an_admin_key_can_be_created(setup: Admin) -> None:
    created = await setup.http.post("/admin/keys", headers=setup.as_admin(), json={"name": "ops-2", "admin": True})
    bearer = {"Authorization": f"Bearer {created.json()['secret']}"}
    assert (await setup.http.get("/admin/models", headers=bearer)).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [({"name": ""}, "name"), ({"name": "has space"}, "name"), ({"name": "x" * 65}, "name"), ({}, "name"),
     ({"name": "ok", "admin": "yes"}, "admin"), ([1, 2], "body")],
)  # fmt: skip
async def test_bad_key_requests_get_400_with_param(setup: Admin, body: object, param: str) -> None:
    response = await setup.http.post("/admin/keys", headers=setup.as_admin(), json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


async def test_usage_per_key_over_a_window(setup: Admin, tmp_path: Path) -> None:
    audio = espeak(tmp_path / "s.wav", SYNTH_SENTENCE)
    files = {"file": ("s.wav", audio.read_bytes(), "audio/wav")}
    answer = await setup.http.post(
        "/v1/audio/transcriptions", headers=setup.as_user(), files=files, data={"model": "whisper-1"}
    )
    assert answer.status_code == 200
    for _ in range(100):  # the ledger row is written by a background thread
        if (await setup.http.get("/admin/usage", headers=setup.as_admin())).json()["data"]:
            break
        await anyio.sleep(0.05)
    for query in ("", "?window=24h", "?window=30d", "?since=2020-01-01"):
        body = (await setup.http.get(f"/admin/usage{query}", headers=setup.as_admin())).json()
        rows = {row["key"]: row for row in body["data"]}
        assert rows["test"]["requests"] == 1, query
        assert rows["test"]["audio_seconds"] > 3
        assert set(rows["test"]) == {"key", "requests", "audio_seconds", "audio_hours", "input_tokens", "output_tokens"}
        assert (body["since"] is None) == (query == "")
    future = (await setup.http.get("/admin/usage?since=2999-01-01", headers=setup.as_admin())).json()
    assert future["data"] == []


@pytest.mark.parametrize(
    ("query", "param"),
    [("window=1w", "window"), ("window=24", "window"), ("window=99999d", "window"), ("since=yesterday", "since"),
     ("window=1h&since=2020-01-01", "window")],
)  # fmt: skip
async def test_bad_usage_queries_get_400(setup: Admin, query: str, param: str) -> None:
    response = await setup.http.get(f"/admin/usage?{query}", headers=setup.as_admin())
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
