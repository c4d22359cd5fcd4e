"""API keys: `sk-gateway-...` secrets stored only as SHA-256 hashes with a name, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.api.errors import APIError
from app.settings import ApiKeyRecord

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-gateway-"


def hash_key(secret: str) -> str:
    # Keys are 256-bit random strings, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyFile:
    """The JSON file of key records; re-read when it changes so revocation needs no restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one read-modify-write at a time (the admin endpoints run in threads)
        self._stamp: tuple[int, int, int] | None = None
        self._records: list[ApiKeyRecord] = []

    def records(self) -> list[ApiKeyRecord]:
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._records = None, []
                return []
            # The inode changes on every atomic rewrite, even within one mtime tick.
            stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    data = json.loads(self.path.read_text() or "{}")
                    self._records = [ApiKeyRecord.model_validate(r) for r in data.get("keys", [])]
                except (ValueError, AttributeError, TypeError):
                    # Fail closed: keys from a file we cannot read authenticate no one.
                    log.error("API key file %s is not valid; no key from it is accepted", self.path)
                    self._records = []
            return list(self._records)

    def _write(self, records: list[ApiKeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"keys": [r.model_dump() for r in records]}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys.")
        with os.fdopen(fd, "w") as out:
            out.write(payload + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def create(self, name: str, *, admin: bool = False) -> str:
        """Add a key called ``name``; returns the secret, which is never stored or shown again."""
        with self._write_lock:
            if not name or any(r.name == name for r in self.records()):
                raise ValueError(f"a key named {name!r} already exists" if name else "a key needs a name")
            secret = new_secret()
            record = ApiKeyRecord(
                name=name, sha256=hash_key(secret), created=datetime.now(UTC).isoformat(timespec="seconds"), admin=admin
            )
            self._write([*self.records(), record])
            return secret

    def revoke(self, name: str) -> bool:
        with self._write_lock:
            records = self.records()
            kept = [r for r in records if r.name != name]
            if len(kept) == len(records):
                return False
            self._write(kept)
            return True


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (safe to log) and whether it may use admin views."""

    name: str
    admin: bool = False


class Authenticator:
    """Maps a bearer token to the name of its key, or refuses with 401."""

    def __init__(self, key_file: KeyFile, extra: list[ApiKeyRecord], *, allow_unauthenticated: bool) -> None:
        self.key_file = key_file
        self.extra = extra
        self.allow_unauthenticated = allow_unauthenticated

    def has_keys(self) -> bool:
        return bool(self.extra or self.key_file.records())

    def authenticate(self, authorization: str | None) -> Principal:
        if self.allow_unauthenticated:
            return Principal("anonymous", admin=False)
        token = _bearer(authorization)
        if token is None:
            raise _unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer sk-gateway-...'.")
        digest = hash_key(token)
        found: ApiKeyRecord | None = None
        for record in [*self.extra, *self.key_file.records()]:
            # Compare against every record so timing does not reveal where a match is.
            if hmac.compare_digest(digest, record.sha256) and found is None:
                found = record
        if found is None:
            raise _unauthorized("Incorrect API key provided.")
        return Principal(found.name, admin=found.admin)


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _unauthorized(message: str) -> APIError:
    return APIError(401, message, code="invalid_api_key", headers={"www-authenticate": "Bearer"})
