"""One error type for every failure the API reports, the one mapping from domain errors onto it, and the
handlers that render OpenAI's envelope."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.accounting.shared_state import SharedStateUnavailable
from app.serving.errors import (
    ClientGone,
    InvalidInput,
    ModelNotFound,
    QueueFull,
    RateLimited,
    ServingError,
    SessionLimitReached,
    TimedOut,
)
from engines.errors import AudioDecodeError, AudioTooLongError, DecodingCancelled, EngineError

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid_value(param: str, message: str, *, code: str = "invalid_value") -> APIError:
    return APIError(400, message, code=code, param=param)


def internal_error() -> APIError:
    """A failure that a retry would only repeat: the SDKs honour x-should-retry."""
    return APIError(
        500,
        "The server had an internal error while processing the request.",
        type="server_error",
        headers={"x-should-retry": "false"},
    )


# OpenAI's SDKs wait out a Retry-After only up to this long; beyond it they fall back to short backoff.
SDK_MAX_RETRY_AFTER_SECONDS = 60


def to_api_error(exc: BaseException) -> APIError:
    """The one place where domain and engine failures become OpenAI-shaped answers; anything else is a 500.

    Every error class of app.serving.errors, engines.errors and the accounting layer has its answer here
    (tests/unit/test_api_errors.py checks it); the server's own failures (ModelUnavailable, ModelLoadError, a
    bare ServingError or EngineError) stay 500s, with their message.
    """
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, StarletteHTTPException):
        return _from_http_exception(exc)
    if isinstance(exc, InvalidInput):
        return invalid_value(exc.param, exc.message, code=exc.code)
    if isinstance(exc, ModelNotFound):
        return APIError(400, str(exc), code="model_not_found", param="model")
    if isinstance(exc, QueueFull):
        return APIError(
            429, str(exc), type="server_overloaded", code="queue_full", headers={"Retry-After": str(exc.retry_after)}
        )
    if isinstance(exc, RateLimited):
        retry_after = max(1, math.ceil(exc.wait_seconds))
        headers = {"retry-after": str(retry_after)}
        if retry_after > SDK_MAX_RETRY_AFTER_SECONDS:
            headers["x-should-retry"] = "false"  # the window frees only long after the SDK's retries
        return APIError(429, str(exc), type=exc.limit_type, code="rate_limit_exceeded", headers=headers)
    if isinstance(exc, SessionLimitReached):
        return APIError(429, str(exc), type="server_overloaded", code="session_limit_reached")
    if isinstance(exc, SharedStateUnavailable):  # the SDKs retry a 503 after Retry-After
        return APIError(
            503,
            str(exc),
            type="server_error",
            code="shared_state_unavailable",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, TimedOut):
        return APIError(504, str(exc), type="server_error", code="timeout", headers={"x-should-retry": "false"})
    if isinstance(exc, ClientGone | DecodingCancelled):
        return APIError(499, str(exc) if isinstance(exc, ClientGone) else "The request was cancelled.")
    if isinstance(exc, AudioTooLongError):
        return invalid_value("file", str(exc), code="audio_too_long")
    if isinstance(exc, AudioDecodeError):
        return invalid_value("file", str(exc))
    error = internal_error()
    if isinstance(exc, ServingError | EngineError):
        error.message = str(exc)
    return error


def _respond(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


_STATUS_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error"}


def _from_http_exception(exc: StarletteHTTPException) -> APIError:
    """The framework's own errors (404, 405, a malformed multipart body's 400) in the envelope."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return APIError(
        exc.status_code,
        str(exc.detail),
        type="server_error" if exc.status_code >= 500 else _STATUS_TYPES.get(exc.status_code, "invalid_request_error"),
        code=code,
        headers=dict(exc.headers or {}),
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return _respond(exc)

    @app.exception_handler(ServingError)
    async def _serving_error(_: Request, exc: ServingError) -> JSONResponse:
        return _respond(to_api_error(exc))

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError) -> JSONResponse:
        return _respond(to_api_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _respond(_from_http_exception(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
        error = APIError(
            400,
            str(first.get("msg", "Invalid request.")),
            code="invalid_value",
            param=".".join(location) or None,
        )
        return _respond(error)
