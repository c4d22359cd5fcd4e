"""Admin endpoints (admin keys only): loaded models, per-key usage from the ledger, and API key management.

They are what the `/console` page calls, and they are meant for scripts too (see the README).
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from app.accounting.usage_report import parse_since, totals_as_dicts
from app.api.auth import Authenticator
from app.api.errors import APIError, invalid_value
from app.api.form import json_object
from app.api.routes import require_admin
from app.api.state import server_state

admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

# Key names appear in logs and in the ledger: keep them short and plain.
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
WINDOW = re.compile(r"^(\d{1,5})([hd])$")
MAX_WINDOW = timedelta(days=3660)


@admin.get("/models")
async def loaded_models(request: Request) -> JSONResponse:
    """Each configured model, loaded or not: its memory, and its running and queued requests."""
    state = server_state(request)
    service, sessions = state.service, state.realtime_sessions
    rows = []
    for status in service.manager.status():
        slots = service.slots[status.name]
        rows.append(
            asdict(status)
            | {"running": slots.running, "queued": slots.waiting, "realtime_sessions": sessions.by_model[status.name]}
        )
    return JSONResponse({"object": "list", "data": rows})


def _since(window: str | None, since: str | None) -> datetime | None:
    if window is not None and since is not None:
        raise invalid_value("window", "Send either 'window' or 'since', not both.")
    if since is not None:
        try:
            return parse_since(since)
        except ValueError as exc:
            raise invalid_value("since", str(exc)) from None
    if window is None:
        return None
    found = WINDOW.match(window.strip())
    if found is None:
        raise invalid_value("window", "'window' must be a number of hours or days, such as 24h or 30d.")
    amount = int(found.group(1))
    span = timedelta(hours=amount) if found.group(2) == "h" else timedelta(days=amount)
    if span > MAX_WINDOW:
        raise invalid_value("window", "'window' may cover at most 3660 days.")
    return datetime.now(UTC) - span


@admin.get("/usage")
async def usage(request: Request, window: str | None = None, since: str | None = None) -> JSONResponse:
    """Per-key totals from the usage ledger: all time, the last ``window`` (``24h``, ``30d``), or ``since`` a date."""
    start = _since(window, since)
    ledger = server_state(request).ledger
    totals = await anyio.to_thread.run_sync(lambda: ledger.totals(since=start))
    body = {"object": "list", "since": start.isoformat(timespec="seconds") if start else None}
    return JSONResponse(body | {"data": totals_as_dicts(totals)})


def _key_rows(authenticator: Authenticator) -> list[dict[str, Any]]:
    rows = []
    for source, records in (("config", authenticator.extra), ("file", authenticator.key_file.records())):
        for record in records:
            rows.append(
                {
                    "name": record.name,
                    "created": record.created,
                    "admin": record.admin,
                    "sha256_prefix": record.sha256[:12],
                    "source": source,  # only keys from the key file can be revoked here
                }
            )
    return rows


@admin.get("/keys")
async def list_keys(request: Request) -> JSONResponse:
    """Key names, dates, admin flags and hash prefixes; never a secret."""
    rows = await anyio.to_thread.run_sync(_key_rows, server_state(request).authenticator)
    return JSONResponse({"object": "list", "data": rows})


@admin.post("/keys")
async def create_key(request: Request) -> JSONResponse:
    """A new key in the key file; the answer carries its secret, which is shown this once and never stored."""
    body = await json_object(request)
    name, is_admin = body.get("name"), body.get("admin", False)
    if not isinstance(name, str) or not KEY_NAME.match(name):
        raise invalid_value(
            "name", "'name' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
    if not isinstance(is_admin, bool):
        raise invalid_value("admin", "'admin' must be true or false.")
    authenticator = server_state(request).authenticator
    if any(record.name == name for record in authenticator.extra):
        raise APIError(409, f"A key named '{name}' already exists.", code="key_exists", param="name")
    try:
        secret = await anyio.to_thread.run_sync(lambda: authenticator.key_file.create(name, admin=is_admin))
    except ValueError:
        raise APIError(409, f"A key named '{name}' already exists.", code="key_exists", param="name") from None
    record = next(r for r in authenticator.key_file.records() if r.name == name)
    body = {"object": "api_key", "name": name, "admin": is_admin, "created": record.created, "secret": secret}
    return JSONResponse(body, status_code=201, headers={"cache-control": "no-store"})


@admin.delete("/keys/{name}")
async def revoke_key(request: Request, name: str) -> Response:
    """Revoke a key of the key file at once; keys from the configuration (`api_keys`) cannot be revoked here."""
    state = server_state(request)
    authenticator = state.authenticator
    if any(record.name == name for record in authenticator.extra):
        raise APIError(
            409,
            f"The key '{name}' comes from the server's configuration (api_keys); remove it there.",
            code="key_not_revocable",
            param="name",
        )
    # Its client secrets first: while the shared store is down this is a 503, and the key stays for a retry.
    await anyio.to_thread.run_sync(state.client_secrets.revoke_key, name)
    if not await anyio.to_thread.run_sync(authenticator.key_file.revoke, name):
        raise APIError(404, f"No key named '{name}'.", code="key_not_found", param="name")
    return JSONResponse({"object": "api_key.deleted", "name": name, "deleted": True})


__all__ = ["admin"]
