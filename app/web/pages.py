"""Serves the static pages and their assets from package data, each with a CSP that allows only this origin."""

from __future__ import annotations

import re
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api.errors import APIError

web = APIRouter(include_in_schema=False)

PAGES = {"/playground": "playground.html", "/console": "console.html"}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
# Asset names: one plain file in static/, never a path.
ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.(?:js|css|png|svg)$")
# A Host header that is safe to put into the policy (name or IPv4 or [IPv6], optional port).
SAFE_HOST = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


def content_security_policy(host: str | None) -> str:
    """Only this origin: scripts, styles, fetches and the realtime WebSocket (to this very host) included.

    ``blob:`` media lets the page play back the audio it is about to upload; ``data:`` images allow an
    inline favicon. Everything else, framing included, is refused.
    """
    sockets = f" ws://{host} wss://{host}" if host and SAFE_HOST.match(host) else ""
    directives = [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        f"connect-src 'self'{sockets}",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


def security_headers(host: str | None) -> dict[str, str]:
    return {
        "content-security-policy": content_security_policy(host),
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "microphone=(self), camera=(), geolocation=()",
        "cache-control": "no-cache",
    }


def _static(name: str, request: Request) -> Response:
    source = resources.files("app.web") / "static" / name
    if not source.is_file():
        raise APIError(404, f"No such file: {name}.", code="not_found")
    suffix = name[name.rfind(".") :]
    return Response(
        source.read_bytes(), media_type=MEDIA_TYPES[suffix], headers=security_headers(request.headers.get("host"))
    )


@web.get("/playground")
async def playground(request: Request) -> Response:
    return _static(PAGES["/playground"], request)


@web.get("/console")
async def console(request: Request) -> Response:
    return _static(PAGES["/console"], request)


@web.get("/web/{name}")
async def asset(name: str, request: Request) -> Response:
    if not ASSET_NAME.match(name):
        raise APIError(404, f"No such file: {name}.", code="not_found")
    return _static(name, request)
