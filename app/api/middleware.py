"""ASGI middleware: request ids on every response, the upload size cap, and a last-resort 500."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, replace

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import APIError, internal_error

log = logging.getLogger(__name__)

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class BodyLimits:
    """What a request body may cost: its size, and how slowly it may arrive."""

    max_bytes: int  # the whole body: the upload plus the form fields beside it
    upload_limit: int  # the upload alone, as reported in the 413
    idle_timeout: float  # longest wait for the next piece of the body
    min_rate: float  # bytes per second on average, checked once ``grace`` seconds have passed
    grace: float
    job_max_bytes: int | None = None  # job submissions (``POST …/jobs``) may carry larger uploads

    def for_path(self, method: str, path: str) -> BodyLimits:
        if self.job_max_bytes is None or method != "POST" or not path.endswith("/jobs"):
            return self
        upload = self.job_max_bytes
        return replace(self, max_bytes=self.max_bytes - self.upload_limit + upload, upload_limit=upload)


class BodyRejected(APIError):
    """Raised from ``receive`` when the body is too large or too slow; the connection is then closed."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(status, message, code=code, param=param, headers={"connection": "close"})


def body_too_large(limit: int) -> BodyRejected:
    message = f"Request body too large: the maximum upload size is {limit} bytes."
    return BodyRejected(413, message, "request_too_large", param="file")


def body_too_slow(received: int, seconds: float) -> BodyRejected:
    return BodyRejected(
        408,
        f"The request body arrived too slowly ({received} bytes in {seconds:.0f} s); the server stopped waiting.",
        "request_timeout",
    )


class RequestContextMiddleware:
    """Tags each request with an id, caps the body's size and slowness, and answers crashes with the envelope."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        limits = self.limits.for_path(scope.get("method", ""), scope.get("path", ""))
        try:
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
                await _send_error(send_with_id, body_too_large(limits.upload_limit))
                return
            await self.app(scope, self._guarded(receive, limits), send_with_id)
        except BodyRejected as rejected:
            if not started:
                await _send_error(send_with_id, rejected)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send_error(send_with_id, internal_error())
        finally:
            request_id_var.reset(token)

    def _guarded(self, receive: Receive, limits: BodyLimits) -> Receive:
        """``receive`` that refuses a body past the size cap, or one trickling in below the minimum rate."""
        received = 0
        body_done = False
        started = time.monotonic()

        async def guarded_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # afterwards receive only reports a disconnect, which may rightly take long
                return await receive()
            try:
                with anyio.fail_after(limits.idle_timeout):
                    message = await receive()
            except TimeoutError:
                raise body_too_slow(received, time.monotonic() - started) from None
            if message["type"] != "http.request":
                return message
            received += len(message.get("body", b""))
            if received > limits.max_bytes:
                raise body_too_large(limits.upload_limit)
            body_done = not message.get("more_body", False)
            elapsed = time.monotonic() - started
            if not body_done and elapsed > limits.grace and received < limits.min_rate * elapsed:
                raise body_too_slow(received, elapsed)
            return message

        return guarded_receive


async def _send_error(send: Send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
