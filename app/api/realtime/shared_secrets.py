"""Client secrets in Redis (``shared_state_url``): minted on one replica, honoured by every replica until they
expire (Redis drops each at its expiry) or their key is revoked. Stored under the secret's hash, never itself."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import cast

from pydantic import TypeAdapter

from app.accounting.shared_state import SharedState
from app.api.auth import hash_key
from app.api.realtime.client_secrets import MAX_LIFETIME_SECONDS, ClientSecret, new_secret_value
from app.serving.realtime import SessionConfig

_CONFIG: TypeAdapter[SessionConfig | None] = TypeAdapter(SessionConfig | None)


class RedisClientSecretStore:
    """The ``ClientSecrets`` of every replica; each call raises SharedStateUnavailable while Redis is unreachable."""

    def __init__(self, shared: SharedState, clock: Callable[[], float] = time.time) -> None:
        self._shared = shared
        self._clock = clock

    def _secret_key(self, digest: str) -> str:
        return self._shared.key("ek", digest)

    def _index_key(self, key_name: str) -> str:
        """The set of a key's secret hashes, so that revoking the key finds them."""
        return self._shared.key("ek-of", key_name)

    def create(self, key_name: str, config: SessionConfig | None, seconds: int) -> tuple[str, int]:
        value = new_secret_value()
        expires_at = int(self._clock()) + seconds
        digest = hash_key(value)
        record = {"key_name": key_name, "expires_at": expires_at, "config": _CONFIG.dump_python(config, mode="json")}
        index = self._index_key(key_name)
        with self._shared.guard():
            pipe = self._shared.client.pipeline(transaction=True)
            pipe.set(self._secret_key(digest), json.dumps(record), exat=expires_at)
            pipe.sadd(index, digest)
            pipe.expire(index, MAX_LIFETIME_SECONDS + 60)  # outlives every secret listed in it
            pipe.execute()
        return value, expires_at

    def lookup(self, value: str) -> ClientSecret | None:
        with self._shared.guard():
            raw = cast(bytes | None, self._shared.client.get(self._secret_key(hash_key(value))))
        if raw is None:
            return None
        record = json.loads(raw)
        if record["expires_at"] <= self._clock():  # Redis expires to the second; this is exact
            return None
        return ClientSecret(record["key_name"], record["expires_at"], _CONFIG.validate_python(record["config"]))

    def revoke_key(self, key_name: str) -> None:
        index = self._index_key(key_name)
        with self._shared.guard():
            digests = cast(set[bytes], self._shared.client.smembers(index))
            self._shared.client.delete(index, *(self._secret_key(d.decode()) for d in digests))
