"""Who opens a realtime WebSocket: an API key (header or browser subprotocol) or an ephemeral client secret."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.websockets import WebSocket

from app.api.auth import Authenticator, Principal
from app.api.errors import APIError
from app.api.realtime.client_secrets import SECRET_PREFIX, ClientSecrets
from app.serving.realtime import SessionConfig

KEY_SUBPROTOCOL = "openai-insecure-api-key."
BETA_SUBPROTOCOL = "openai-beta.realtime-v1"
REALTIME_SUBPROTOCOL = "realtime"


@dataclass(frozen=True)
class Grant:
    principal: Principal
    config: SessionConfig | None = None  # preset by an ephemeral secret
    ephemeral: bool = False


def offered_subprotocols(websocket: WebSocket) -> list[str]:
    return [str(p) for p in websocket.scope.get("subprotocols", [])]


def chosen_subprotocol(websocket: WebSocket) -> str | None:
    """Browsers fail a connection whose server picks none of their subprotocols; pick ``realtime`` if offered."""
    return REALTIME_SUBPROTOCOL if REALTIME_SUBPROTOCOL in offered_subprotocols(websocket) else None


def wants_beta(websocket: WebSocket) -> bool:
    header = websocket.headers.get("openai-beta", "")
    return "realtime=v1" in header.replace(" ", "") or BETA_SUBPROTOCOL in offered_subprotocols(websocket)


def _token(websocket: WebSocket) -> str | None:
    authorization = websocket.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for protocol in offered_subprotocols(websocket):
        if protocol.startswith(KEY_SUBPROTOCOL) and len(protocol) > len(KEY_SUBPROTOCOL):
            return protocol[len(KEY_SUBPROTOCOL) :]
    return None


def authenticate(websocket: WebSocket, authenticator: Authenticator, client_secrets: ClientSecrets) -> Grant:
    """The caller's grant, or APIError 401 (answered before the upgrade). Tokens are never logged."""
    token = _token(websocket)
    if token is not None and token.startswith(SECRET_PREFIX):
        secret = client_secrets.lookup(token)
        if secret is None:
            raise APIError(401, "The client secret is invalid or has expired.", code="invalid_api_key")
        return Grant(Principal(secret.key_name), secret.config, ephemeral=True)
    principal = authenticator.authenticate(f"Bearer {token}" if token else None)
    return Grant(principal)
