"""app.api.auth: the key file (create, list, revoke) and bearer-token authentication."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from app.api.auth import KEY_PREFIX, Authenticator, KeyFile, hash_key
from app.api.errors import APIError
from app.settings import ApiKeyRecord


@pytest.fixture
def key_file(tmp_path: Path) -> KeyFile:
    return KeyFile(tmp_path / "nested" / "keys.json")


def refused(auth: Authenticator, header: str | None) -> APIError:
    with pytest.raises(APIError) as caught:
        auth.authenticate(header)
    return caught.value


# --- KeyFile --------------------------------------------------------------------------------


def test_missing_file_has_no_records(key_file: KeyFile) -> None:
    assert not key_file.path.exists()
    assert key_file.records() == []


def test_create_stores_only_the_hash(key_file: KeyFile) -> None:
    secret = key_file.create("alice")
    assert secret.startswith(KEY_PREFIX)
    assert KEY_PREFIX == "sk-gateway-"
    assert len(secret) > len(KEY_PREFIX) + 32
    text = key_file.path.read_text()
    assert secret not in text
    assert secret[len(KEY_PREFIX) :] not in text
    data = json.loads(text)
    assert [(r["name"], r["sha256"]) for r in data["keys"]] == [("alice", hash_key(secret))]
    assert data["keys"][0]["created"]


def test_file_mode_is_0600(key_file: KeyFile) -> None:
    key_file.create("alice")
    assert stat.S_IMODE(key_file.path.stat().st_mode) == 0o600
    key_file.create("bob")
    key_file.revoke("alice")
    assert stat.S_IMODE(key_file.path.stat().st_mode) == 0o600


def test_secrets_are_unique(key_file: KeyFile) -> None:
    first = key_file.create("a")
    second = key_file.create("b")
    assert first != second
    assert hash_key(first) != hash_key(second)


def test_list_and_revoke(key_file: KeyFile) -> None:
    key_file.create("alice")
    key_file.create("bob")
    assert [r.name for r in key_file.records()] == ["alice", "bob"]
    assert key_file.revoke("alice") is True
    assert [r.name for r in key_file.records()] == ["bob"]
    assert key_file.revoke("alice") is False
    assert key_file.revoke("nobody") is False
    assert [r.name for r in KeyFile(key_file.path).records()] == ["bob"]


def test_duplicate_and_empty_name_refused(key_file: KeyFile) -> None:
    key_file.create("alice")
    with pytest.raises(ValueError, match="already exists"):
        key_file.create("alice")
    with pytest.raises(ValueError):
        key_file.create("")
    assert [r.name for r in key_file.records()] == ["alice"]


def test_no_temp_files_left_behind(key_file: KeyFile) -> None:
    key_file.create("alice")
    key_file.create("bob")
    key_file.revoke("bob")
    assert sorted(p.name for p in key_file.path.parent.iterdir()) == ["keys.json"]


def test_hash_key_is_sha256_hex() -> None:
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --- Authenticator --------------------------------------------------------------------------


def test_missing_header(key_file: KeyFile) -> None:
    key_file.create("alice")
    auth = Authenticator(key_file, [], allow_unauthenticated=False)
    for header in (None, "", "Bearer", "Bearer   "):
        error = refused(auth, header)
        assert (error.status, error.code, error.type) == (401, "invalid_api_key", "invalid_request_error")
        assert error.headers.get("www-authenticate") == "Bearer"


def test_wrong_scheme(key_file: KeyFile) -> None:
    secret = key_file.create("alice")
    auth = Authenticator(key_file, [], allow_unauthenticated=False)
    for header in (f"Basic {secret}", secret, f"Token {secret}"):
        error = refused(auth, header)
        assert (error.status, error.code) == (401, "invalid_api_key")


def test_wrong_key(key_file: KeyFile) -> None:
    secret = key_file.create("alice")
    auth = Authenticator(key_file, [], allow_unauthenticated=False)
    for wrong in (secret + "x", secret[:-1], KEY_PREFIX + "nope", secret.upper()):
        error = refused(auth, f"Bearer {wrong}")
        assert (error.status, error.code) == (401, "invalid_api_key")


def test_right_key_gives_name(key_file: KeyFile) -> None:
    alice = key_file.create("alice")
    bob = key_file.create("bob")
    auth = Authenticator(key_file, [], allow_unauthenticated=False)
    assert auth.authenticate(f"Bearer {alice}").name == "alice"
    assert auth.authenticate(f"Bearer {bob}").name == "bob"
    assert auth.authenticate(f"bearer {bob}").name == "bob"
    assert auth.authenticate(f"Bearer  {bob} ").name == "bob"
    assert auth.has_keys() is True


def test_revoked_key_refused_without_restart(key_file: KeyFile) -> None:
    auth = Authenticator(KeyFile(key_file.path), [], allow_unauthenticated=False)
    assert auth.has_keys() is False
    # Another process (the CLI) manages the file; the server's KeyFile instance must notice.
    alice = key_file.create("alice")
    bob = key_file.create("bob")
    assert auth.authenticate(f"Bearer {alice}").name == "alice"
    assert key_file.revoke("alice") is True
    assert refused(auth, f"Bearer {alice}").status == 401
    assert auth.authenticate(f"Bearer {bob}").name == "bob"
    key_file.path.unlink()
    assert refused(auth, f"Bearer {bob}").status == 401


def test_extra_records_from_settings(key_file: KeyFile) -> None:
    extra = [ApiKeyRecord(name="from-env", sha256=hash_key("sk-gateway-env-secret"))]
    auth = Authenticator(key_file, extra, allow_unauthenticated=False)
    assert auth.has_keys() is True
    assert auth.authenticate("Bearer sk-gateway-env-secret").name == "from-env"
    file_secret = key_file.create("from-file")
    assert auth.authenticate(f"Bearer {file_secret}").name == "from-file"
    assert refused(auth, "Bearer sk-gateway-other").status == 401


def test_allow_unauthenticated(key_file: KeyFile) -> None:
    auth = Authenticator(key_file, [], allow_unauthenticated=True)
    assert auth.authenticate(None).name == "anonymous"
    assert auth.authenticate("Bearer whatever").name == "anonymous"
    assert auth.has_keys() is False


def test_no_keys_refuses_everything(key_file: KeyFile) -> None:
    auth = Authenticator(key_file, [], allow_unauthenticated=False)
    assert refused(auth, "Bearer sk-gateway-anything").status == 401
