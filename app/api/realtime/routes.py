"""The realtime routes: the WebSockets ``/v1/realtime`` (transcription) and ``/v1/realtime/translations``,
and their client secrets (``POST /v1/realtime/client_secrets``, ``POST /v1/realtime/translations/client_secrets``)."""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request, WebSocket
from fastapi.responses import JSONResponse

from app.accounting.session_record import SessionRecord
from app.accounting.shared_state import SharedStateUnavailable
from app.api.auth import Principal
from app.api.errors import APIError, invalid_value, to_api_error
from app.api.realtime.client_secrets import parse_secret_request
from app.api.realtime.connection import RealtimeConnection, default_model, new_session_id
from app.api.realtime.session_config import apply_update, default_config, session_body
from app.api.realtime.translation import TranslationConnection
from app.api.realtime.translation_events import translation_session_body
from app.api.realtime.translation_secrets import parse_translation_secret
from app.api.realtime.ws_auth import authenticate, chosen_subprotocol, wants_beta
from app.api.routes import require_key
from app.api.state import server_state
from app.serving.errors import ModelNotFound, ServingError
from engines.live.vad_stream import SileroScorer

realtime_socket = APIRouter()
realtime_http = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])


async def _deny(websocket: WebSocket, error: APIError) -> None:
    """Answer the upgrade request with a plain HTTP error (401 for a bad key), never upgrading."""
    response = JSONResponse(error.body(), status_code=error.status, headers=error.headers)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # a server without the denial-response extension: refuse the handshake (403)
        await websocket.close(1008)


@realtime_socket.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    await _serve(websocket, RealtimeConnection)


@realtime_socket.websocket("/v1/realtime/translations")
async def realtime_translation(websocket: WebSocket) -> None:
    await _serve(websocket, TranslationConnection)


async def _serve(websocket: WebSocket, kind: type[RealtimeConnection]) -> None:
    """Authenticate before the upgrade, then serve one session of ``kind`` (transcription or translation)."""
    state = server_state(websocket)
    try:  # off the event loop: a client secret may be looked up in the shared store
        grant = await anyio.to_thread.run_sync(authenticate, websocket, state.authenticator, state.client_secrets)
    except (APIError, SharedStateUnavailable) as exc:
        await _deny(websocket, to_api_error(exc))
        return
    beta = wants_beta(websocket)
    await websocket.accept(subprotocol=chosen_subprotocol(websocket))
    record = SessionRecord(state.metrics, state.hooks, grant.principal.name, new_session_id(), beta=beta)
    connection = kind(
        websocket,
        settings=state.settings,
        service=state.service,
        registry=state.realtime_sessions,
        hooks=state.hooks,
        record=record,
        scorer=SileroScorer(),
        grant=grant,
        beta=beta,
    )
    await connection.serve()


async def _json_body(request: Request) -> Any:
    """A client-secret request's JSON body (none: an empty object)."""
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError:
        raise invalid_value("body", "The request body must be JSON.") from None


@realtime_http.post("/realtime/client_secrets")
async def create_client_secret(request: Request) -> JSONResponse:
    state = server_state(request)
    settings, service, store = state.settings, state.service, state.client_secrets
    principal: Principal = request.state.principal
    seconds, session = parse_secret_request(await _json_body(request))
    config = default_config(default_model(settings))
    try:
        if session is not None:
            config = apply_update(config, session)
        service.resolve(config.transcription.model)
    except ModelNotFound as exc:
        raise APIError(400, str(exc), code="model_not_found", param="session.audio.input.transcription.model") from exc
    except ServingError as exc:
        raise to_api_error(exc) from exc
    lifetime = seconds or settings.realtime.client_secret_seconds
    value, expires_at = await anyio.to_thread.run_sync(store.create, principal.name, config, lifetime)
    return JSONResponse(
        {"value": value, "expires_at": expires_at, "session": session_body(config, new_session_id(), expires_at)}
    )


@realtime_http.post("/realtime/translations/client_secrets")
async def create_translation_secret(request: Request) -> JSONResponse:
    state = server_state(request)
    principal: Principal = request.state.principal
    seconds, config = parse_translation_secret(await _json_body(request))
    try:
        state.service.resolve(config.decode.transcription.model)
    except ModelNotFound as exc:
        raise APIError(400, str(exc), code="model_not_found", param="session.model") from exc
    lifetime = seconds or state.settings.realtime.client_secret_seconds
    value, expires_at = await anyio.to_thread.run_sync(state.client_secrets.create, principal.name, config.decode,
                                                       lifetime)  # fmt: skip
    return JSONResponse(
        {"value": value, "expires_at": expires_at,
         "session": translation_session_body(config, new_session_id(), expires_at)}
    )  # fmt: skip


__all__ = ["realtime_http", "realtime_socket"]
