"""The browser pages: their security headers, their assets, and what the policy demands of their HTML."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.api.auth import new_secret
from app.main import create_app
from app.web import content_security_policy
from tests.inprocess import FakeLoader, fake_settings

pytestmark = pytest.mark.anyio

STATIC = Path(__file__).resolve().parents[2] / "app" / "web" / "static"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(fake_settings(tmp_path, new_secret()), loader=FakeLoader())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", timeout=30) as client:
            yield client


# --- the content security policy ----------------------------------------------------------------------------


def _directives(policy: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in policy.split("; ")}


def test_policy_allows_only_this_origin_and_its_websocket() -> None:
    policy = _directives(content_security_policy("127.0.0.1:8000"))
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'", "ws://127.0.0.1:8000", "wss://127.0.0.1:8000"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["media-src"] == ["'self'", "blob:"]  # playback of the file about to be uploaded
    assert not any("unsafe" in value or value == "*" for values in policy.values() for value in values)


@pytest.mark.parametrize("host", ["[::1]:8000", "stt.example.org", "localhost"])
def test_policy_names_the_host_it_was_reached_at(host: str) -> None:
    assert _directives(content_security_policy(host))["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"]


@pytest.mark.parametrize("host", [None, "", "evil.org; script-src *", "a b", "x'y", "host:8000/path"])
def test_a_strange_host_header_adds_nothing_to_the_policy(host: str | None) -> None:
    policy = content_security_policy(host)
    assert _directives(policy)["connect-src"] == ["'self'"]
    assert "script-src *" not in policy and policy.count("script-src") == 1


# --- pages and assets -----------------------------------------------------------------------------------------


def _assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    policy = _directives(response.headers["content-security-policy"])
    assert policy["connect-src"] == ["'self'", "ws://127.0.0.1:8000", "wss://127.0.0.1:8000"]
    assert policy["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize("path", ["/playground", "/console"])
async def test_pages_are_html_with_security_headers_and_need_no_key(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<main>" in response.text
    _assert_security_headers(response)


def _referenced_assets() -> set[str]:
    found: set[str] = set()
    for path in STATIC.iterdir():
        if path.suffix in (".html", ".js"):
            found |= set(re.findall(r"""["'](/web/[a-z0-9.-]+)["']""", path.read_text()))
    return found


async def test_every_asset_the_pages_use_is_served_with_its_type(http: httpx.AsyncClient) -> None:
    assets = _referenced_assets()
    assert {"/web/style.css", "/web/playground.js", "/web/console.js", "/web/pcm-worklet.js"} <= assets
    for asset in sorted(assets):
        response = await http.get(asset)
        assert response.status_code == 200, asset
        expected = "text/css" if asset.endswith(".css") else "text/javascript"
        assert response.headers["content-type"].startswith(expected), asset
        _assert_security_headers(response)


def test_pages_have_no_inline_script_style_or_handlers() -> None:
    # The policy blocks them, so they would silently not work.
    for page in STATIC.glob("*.html"):
        html = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page.name
        assert "<style" not in html and " style=" not in html, page.name
        assert not re.search(r"\son[a-z]+=", html), page.name


def test_every_control_has_a_label() -> None:
    for page in STATIC.glob("*.html"):
        html = page.read_text()
        labelled = set(re.findall(r'<label for="([^"]+)"', html))
        wrapped = set(re.findall(r'<label class="check"><input id="([^"]+)"', html))
        for control in re.findall(r'<(?:input|select|textarea) id="([^"]+)"', html):
            assert control in labelled | wrapped, f"{page.name}: #{control} has no label"


@pytest.mark.parametrize("path", ["/web/missing.js", "/web/pages.py", "/web/..%2Fpages.py", "/web/%2Fetc%2Fpasswd"])
async def test_only_static_assets_are_served(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
