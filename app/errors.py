"""One error type for every failure the API reports, and the handlers that render OpenAI's envelope."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def _respond(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


_STATUS_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return _respond(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        error = APIError(
            exc.status_code,
            str(exc.detail),
            type="server_error"
            if exc.status_code >= 500
            else _STATUS_TYPES.get(exc.status_code, "invalid_request_error"),
            code=code,
            headers=dict(exc.headers or {}),
        )
        return _respond(error)

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
