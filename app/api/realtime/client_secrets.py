"""Ephemeral client secrets: short-lived, realtime-only credentials a browser may hold instead of an API key.

``POST /v1/realtime/client_secrets`` (with a real key) returns ``ek_...`` and the session it
configures. The secret opens realtime sessions, as many as wanted until it expires, on behalf of
the key that created it (its limits and ledger rows are that key's); no HTTP endpoint accepts it.
Revoking the key revokes its secrets. Secrets are stored hashed: in this process's memory (one
replica honours only its own), or in Redis with ``shared_state_url`` (app/api/realtime/shared_secrets.py),
where every replica honours them. The store's methods block: call them off the event loop.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.api.auth import hash_key
from app.api.errors import APIError, invalid_value
from app.api.realtime import client_events as wire
from app.serving.realtime import SessionConfig

SECRET_PREFIX = "ek_"
MAX_SECRETS = 10_000
MAX_LIFETIME_SECONDS = 7200


@dataclass(frozen=True)
class ClientSecret:
    key_name: str
    expires_at: float
    config: SessionConfig | None  # None: the server's default session


class ClientSecrets(Protocol):
    def create(self, key_name: str, config: SessionConfig | None, seconds: int) -> tuple[str, int]:
        """A new secret for ``key_name`` and its expiry (Unix seconds)."""
        ...

    def lookup(self, value: str) -> ClientSecret | None:
        """The live secret ``value`` names, or None (unknown, expired or revoked)."""
        ...

    def revoke_key(self, key_name: str) -> None:
        """Forget every secret the key created (the key was revoked)."""
        ...


def new_secret_value() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class ClientSecretStore:
    """Secrets in this process's memory (the default, one replica)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._secrets: dict[str, ClientSecret] = {}

    def create(self, key_name: str, config: SessionConfig | None, seconds: int) -> tuple[str, int]:
        value = new_secret_value()
        expires_at = int(self._clock()) + seconds
        with self._lock:
            self._expire()
            if len(self._secrets) >= MAX_SECRETS:
                raise APIError(429, "Too many live client secrets; try again later.", type="server_overloaded",
                               code="too_many_client_secrets")  # fmt: skip
            self._secrets[hash_key(value)] = ClientSecret(key_name, expires_at, config)
        return value, expires_at

    def lookup(self, value: str) -> ClientSecret | None:
        with self._lock:
            self._expire()
            return self._secrets.get(hash_key(value))

    def revoke_key(self, key_name: str) -> None:
        with self._lock:
            for digest in [d for d, s in self._secrets.items() if s.key_name == key_name]:
                del self._secrets[digest]

    def _expire(self) -> None:
        now = self._clock()
        for digest in [d for d, s in self._secrets.items() if s.expires_at <= now]:
            del self._secrets[digest]


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    anchor: str = "created_at"
    seconds: int = Field(600, ge=10, le=MAX_LIFETIME_SECONDS)


class SecretRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    expires_after: ExpiresAfter | None = None
    session: dict[str, Any] | None = None


def invalid_request(exc: ValidationError, prefix: str = "") -> APIError:
    """A secret request's first validation error as a 400 naming its parameter (under ``prefix``)."""
    first = exc.errors()[0]
    param = ".".join([prefix, *(str(p) for p in first.get("loc", ()))]).strip(".")
    return invalid_value(param or "body", f"Invalid '{param}': {first.get('msg', '')}.")


def secret_request(body: object) -> tuple[SecretRequest, int | None]:
    """A client-secret request (either kind of session) and the lifetime it asks for, checked."""
    try:
        request = SecretRequest.model_validate(body)
    except ValidationError as exc:
        raise invalid_request(exc) from None
    if request.expires_after is None:
        return request, None
    if request.expires_after.anchor != "created_at":
        raise invalid_value("expires_after.anchor", "expires_after.anchor must be 'created_at'.")
    return request, request.expires_after.seconds


def parse_secret_request(body: object) -> tuple[int | None, wire.TranscriptionSession | None]:
    """The requested lifetime and transcription session; conversation sessions are refused."""
    request, seconds = secret_request(body)
    session = request.session
    if session is not None and session.get("type") != "transcription":
        raise invalid_value(
            "session.type",
            "This server only serves transcription sessions: set session.type to 'transcription'.",
            code="unsupported_value",
        )
    try:
        parsed = None if session is None else wire.TranscriptionSession.model_validate(session)
    except ValidationError as exc:
        raise invalid_request(exc) from None
    return seconds, parsed
