"""The SSRF guard over real sockets, all on loopback: local HTTP servers on 127.0.0.1 (and 127.0.0.2, which Linux
routes to lo too) record every request, so a refused fetch is shown to have sent nothing.

Tests send traffic only to loopback; targets outside it are reached through a fake resolver that maps names to
127.0.0.1 (see test_connector_seam_keeps_tests_on_loopback for the pattern)."""

from __future__ import annotations

import ipaddress
import random
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import pytest

from app.jobs.outbound import GuardedClient, OutboundPolicy, OutboundRefused, system_resolver

LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8"])
NO_ALLOW = OutboundPolicy()

Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a dripping handler must not hold up the test's end

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the tests' clients give up mid-request on purpose; no tracebacks for that


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        server = cast(_Server, self.server)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with server.lock:
            server.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        route = server.routes.get(self.path)
        try:
            if route is None:
                self.send_error(404)
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up, as these tests want it to

    do_GET = _handle
    do_POST = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


class LocalServer:
    def __init__(self, server: _Server) -> None:
        self._server = server
        self.host, self.port = cast(str, server.server_address[0]), server.server_address[1]

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def route(self, path: str, handler: Route) -> None:
        self._server.routes[path] = handler

    @property
    def seen(self) -> list[Seen]:
        with self._server.lock:
            return list(self._server.seen)


@contextmanager
def serving(host: str = "127.0.0.1", port: int = 0) -> Iterator[LocalServer]:
    server = _Server((host, port))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LocalServer(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@pytest.fixture
def local() -> Iterator[LocalServer]:
    with serving() as server:
        yield server


@pytest.fixture
def other() -> Iterator[LocalServer]:
    with serving("127.0.0.2") as server:
        yield server


def body(data: bytes, content_type: str = "audio/wav") -> Route:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return handle


def status(code: int, headers: dict[str, str] | None = None) -> Route:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return handle


def redirect(location: str, code: int = 302, close: bool = False) -> Route:
    return status(code, {"Location": location} | ({"Connection": "close"} if close else {}))


def chunked(total: int, chunk: int = 64 * 1024) -> Route:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        sent = 0
        while sent < total:
            h.wfile.write(b"%x\r\n%s\r\n" % (chunk, b"x" * chunk))
            sent += chunk
        h.wfile.write(b"0\r\n\r\n")

    return handle


def drip(total: int, interval: float) -> Route:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(total))
        h.end_headers()
        for _ in range(total):
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(interval)

    return handle


def refused(call: Callable[[], object]) -> OutboundRefused:
    with pytest.raises(OutboundRefused) as caught:
        call()
    return caught.value


def test_download_lands_byte_identical(local: LocalServer, tmp_path: Path) -> None:
    data = random.Random(7).randbytes(300_000)
    local.route("/a.wav", body(data))
    got = GuardedClient(LOOPBACK).download(local.url("/a.wav"), tmp_path / "a.wav")
    assert got.path.read_bytes() == data
    assert (got.size, got.content_type, got.final_url) == (len(data), "audio/wav", local.url("/a.wav"))
    assert local.seen[0].headers["accept-encoding"] == "identity"


def test_declared_length_over_the_limit_is_refused_at_once(local: LocalServer, tmp_path: Path) -> None:
    local.route("/big", body(b"x" * 200_000))
    dest = tmp_path / "big"
    error = refused(
        lambda: GuardedClient(OutboundPolicy.from_strings(["127.0.0.0/8"], max_bytes=100_000)).download(
            local.url("/big"), dest
        )
    )
    assert error.code == "download_too_large"
    assert not dest.exists()


def test_chunked_body_over_the_limit_is_cut_mid_stream(local: LocalServer, tmp_path: Path) -> None:
    local.route("/stream", chunked(4_000_000))
    dest = tmp_path / "stream"
    client = GuardedClient(OutboundPolicy.from_strings(["127.0.0.0/8"], max_bytes=100_000))
    error = refused(lambda: client.download(local.url("/stream"), dest))
    assert error.code == "download_too_large"
    assert not dest.exists()


def test_a_slow_drip_stops_at_the_deadline(local: LocalServer, tmp_path: Path) -> None:
    local.route("/drip", drip(400, 0.02))  # a byte every 20 ms: each read is quick, the whole is 8 s
    dest = tmp_path / "drip"
    client = GuardedClient(OutboundPolicy.from_strings(["127.0.0.0/8"], timeout_seconds=0.5))
    started = time.monotonic()
    error = refused(lambda: client.download(local.url("/drip"), dest))
    assert error.code == "download_timeout"
    assert time.monotonic() - started < 1.2
    assert not dest.exists()


def test_not_found_is_an_http_error(local: LocalServer, tmp_path: Path) -> None:
    error = refused(lambda: GuardedClient(LOOPBACK).download(local.url("/missing"), tmp_path / "m"))
    assert error.code == "download_http_error"
    assert "404" in error.message


def test_redirect_chain_to_another_allowed_host(local: LocalServer, other: LocalServer, tmp_path: Path) -> None:
    other.route("/final.wav", body(b"RIFF-final"))
    local.route("/start", redirect("/hop", 301))  # relative, resolved against the current URL
    local.route("/hop", redirect(other.url("/final.wav"), 307))
    got = GuardedClient(LOOPBACK).download(local.url("/start"), tmp_path / "f")
    assert got.path.read_bytes() == b"RIFF-final"
    assert got.final_url == other.url("/final.wav")
    assert [s.path for s in local.seen] == ["/start", "/hop"]


def test_redirect_to_a_host_outside_the_allow_list_sends_it_nothing(
    local: LocalServer, other: LocalServer, tmp_path: Path
) -> None:
    other.route("/final.wav", body(b"secret"))
    local.route("/start", redirect(other.url("/final.wav")))
    dest = tmp_path / "f"
    error = refused(
        lambda: GuardedClient(OutboundPolicy.from_strings(["127.0.0.1/32"])).download(local.url("/start"), dest)
    )
    assert error.code == "url_forbidden"
    assert other.seen == []
    assert not dest.exists()


def test_a_name_rebinding_between_connections_is_refused(local: LocalServer, tmp_path: Path) -> None:
    # The same name and port first reach 127.0.0.1 (allowed), then 127.0.0.2 (not): each connection is judged anew.
    with ExitStack() as stack:
        try:
            second = stack.enter_context(serving("127.0.0.2", local.port))
        except OSError:
            pytest.skip("that port is taken on 127.0.0.2")
        second.route("/next", body(b"inside"))
        local.route("/first", redirect("/next", close=True))  # close: the follow-up needs a new connection
        answers = iter([["127.0.0.1"], ["127.0.0.2"]])
        client = GuardedClient(OutboundPolicy.from_strings(["127.0.0.1/32"]), resolver=lambda host, port: next(answers))
        error = refused(lambda: client.download(f"http://rebind.example:{local.port}/first", tmp_path / "r"))
        assert error.code == "url_forbidden"
        assert [s.path for s in local.seen] == ["/first"]
        assert second.seen == []


def test_too_many_redirects(local: LocalServer, tmp_path: Path) -> None:
    local.route("/loop", redirect("/loop"))
    client = GuardedClient(OutboundPolicy.from_strings(["127.0.0.0/8"], max_redirects=3))
    error = refused(lambda: client.download(local.url("/loop"), tmp_path / "l"))
    assert error.code == "too_many_redirects"
    assert len(local.seen) == 4  # the request and three redirects followed


def test_redirect_to_a_file_url_is_invalid(local: LocalServer, tmp_path: Path) -> None:
    local.route("/start", redirect("file:///etc/passwd"))
    error = refused(lambda: GuardedClient(LOOPBACK).download(local.url("/start"), tmp_path / "p"))
    assert error.code == "url_invalid"


def test_loopback_is_refused_without_the_allow_list(local: LocalServer, tmp_path: Path) -> None:
    local.route("/a.wav", body(b"data"))
    local.route("/hook", status(204))
    client = GuardedClient(NO_ALLOW)
    assert refused(lambda: client.download(local.url("/a.wav"), tmp_path / "a")).code == "url_forbidden"
    assert refused(lambda: client.post(local.url("/hook"), b"{}", {})).code == "url_forbidden"
    assert refused(lambda: client.download(local.url("/a.wav", host="localhost"), tmp_path / "a")).code == (
        "url_forbidden"
    )
    assert local.seen == []


def test_post_returns_the_status_and_delivers_body_and_headers(local: LocalServer) -> None:
    local.route("/hook", status(204))
    local.route("/broken", status(500))
    client = GuardedClient(LOOPBACK)
    headers = {"Content-Type": "application/json", "X-Signature": "sha256=abc"}
    assert client.post(local.url("/hook"), b'{"id": "job_1"}', headers) == 204
    assert client.post(local.url("/broken"), b"{}", headers) == 500
    first = local.seen[0]
    assert (first.method, first.body) == ("POST", b'{"id": "job_1"}')
    assert first.headers["x-signature"] == "sha256=abc"
    assert first.headers["content-type"] == "application/json"


def test_post_does_not_follow_redirects(local: LocalServer, other: LocalServer) -> None:
    local.route("/hook", redirect(other.url("/elsewhere")))
    assert GuardedClient(LOOPBACK).post(local.url("/hook"), b"{}", {}) == 302
    assert other.seen == []


def test_post_to_nothing_listening_fails(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port certainly free: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        error = refused(lambda: GuardedClient(LOOPBACK).post(f"http://127.0.0.1:{port}/hook", b"{}", {}))
    assert error.code == "post_failed"


def _loopback_only(ip: str, port: int, timeout: float | None) -> socket.socket:
    """The connector for tests: anything outside loopback is a test bug, and fails instead of connecting."""
    address = ipaddress.ip_address(ip)
    if not (address in ipaddress.ip_network("127.0.0.0/8") or address == ipaddress.ip_address("::1")):
        raise AssertionError(f"a test tried to connect to {ip}")
    return socket.create_connection((ip, port), timeout)


def _public_example(host: str, port: int) -> list[str]:
    return ["127.0.0.1"] if host == "public.example" else system_resolver(host, port)


def test_connector_seam_keeps_tests_on_loopback(local: LocalServer, tmp_path: Path) -> None:
    local.route("/a.wav", body(b"public audio"))
    client = GuardedClient(LOOPBACK, resolver=_public_example, connector=_loopback_only)
    got = client.download(f"http://public.example:{local.port}/a.wav", tmp_path / "a")
    assert got.path.read_bytes() == b"public audio"
    assert local.seen[0].headers["host"] == f"public.example:{local.port}"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[LocalServer, Path, list[str | None]]]:
    """A TLS server on 127.0.0.1 with a self-signed certificate for public.example; records each SNI name."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=public.example",
         "-addext", "subjectAltName=DNS:public.example", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def record_sni(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record_sni
    with serving() as server:
        raw = server._server
        raw.socket = context.wrap_socket(raw.socket, server_side=True, do_handshake_on_connect=False)
        yield server, cert, names


def test_tls_uses_the_host_name_for_sni_and_certificate(
    tls_server: tuple[LocalServer, Path, list[str | None]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert, names = tls_server
    server.route("/a.wav", body(b"over tls"))
    # Not trusted: the certificate is checked although the socket underneath goes to 127.0.0.1.
    untrusting = GuardedClient(LOOPBACK, resolver=_public_example, connector=_loopback_only)
    url = f"https://public.example:{server.port}/a.wav"
    assert refused(lambda: untrusting.download(url, tmp_path / "a")).code == "download_failed"
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read when the client is made
    trusting = GuardedClient(LOOPBACK, resolver=_public_example, connector=_loopback_only)
    assert trusting.download(url, tmp_path / "a").path.read_bytes() == b"over tls"
    assert names[:2] == ["public.example", "public.example"]
    # A name the certificate does not carry fails even though it reaches the same server.
    wrong = GuardedClient(LOOPBACK, resolver=lambda host, port: ["127.0.0.1"], connector=_loopback_only)
    assert refused(lambda: wrong.download(f"https://other.example:{server.port}/a.wav", tmp_path / "b")).code == (
        "download_failed"
    )
