"""Outbound HTTP to untrusted URLs (job audio downloads, webhook posts), guarded against SSRF.

Every address is judged where the socket is opened: a custom httpcore network backend resolves the host itself,
refuses the connection if any resolved address is forbidden, and connects to the very address it checked. So a
name that rebinds between a check and the connect, a redirect to an internal host, or an odd literal spelling
(``http://2130706433/``) all meet the same check.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpcore
import httpx

# httpcore exports no names for these; 1.0.x keeps them here.
from httpcore._backends.base import SOCKET_OPTION
from httpcore._backends.sync import SyncStream

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Resolver = Callable[[str, int], list[str]]
"""host, port -> IP address strings."""
Connector = Callable[[str, int, float | None], socket.socket]
"""ip, port, timeout -> a connected socket."""

MAX_URL_LENGTH = 2048
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
POST_RESPONSE_READ_BYTES = 4096
_CHUNK_BYTES = 64 * 1024


class OutboundRefused(Exception):
    """A fetch or post that was refused or failed; ``code`` is a stable snake_case string for the job error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OutboundPolicy:
    allow_networks: tuple[IPNetwork, ...] = ()  # reachable even when the rules below forbid them
    max_bytes: int = 1 << 30
    timeout_seconds: float = 300.0  # the whole download or post, wall clock
    connect_timeout_seconds: float = 10.0
    max_redirects: int = 5

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.timeout_seconds <= 0 or self.connect_timeout_seconds <= 0:
            raise ValueError("max_bytes and the timeouts must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must not be negative")

    @classmethod
    def from_strings(cls, networks: Iterable[str], **kwargs: Any) -> OutboundPolicy:
        """Parse CIDRs or single addresses (strictly: host bits set is a ValueError, as it is likely a typo)."""
        parsed = tuple(ipaddress.ip_network(text.strip()) for text in networks if text.strip())
        return cls(allow_networks=parsed, **kwargs)


# Forbidden whatever Python's ipaddress flags say: its is_global differs between versions and misses some
# (multicast, 192.0.0.0/24, 6to4 relay anycast are "global" on 3.11).
_FORBIDDEN_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", incl. 0.0.0.0 which Linux connects to localhost
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, incl. 169.254.169.254 cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. 255.255.255.255
    )
)
_FORBIDDEN_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215): translates to whatever the local network says
        "2001::/23",  # IETF protocol assignments, incl. Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "fc00::/7",  # unique local, incl. fd00:ec2::254 (AWS metadata)
        "fe80::/10",
        "fec0::/10",  # deprecated site-local
        "ff00::/8",
    )
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _v4_public(address: ipaddress.IPv4Address) -> bool:
    if any(address in network for network in _FORBIDDEN_V4):
        return False
    flags = (
        address.is_private,
        address.is_loopback,
        address.is_link_local,
        address.is_multicast,
        address.is_reserved,
        address.is_unspecified,
    )
    return address.is_global and not any(flags)


def _v6_public(address: ipaddress.IPv6Address) -> bool:
    # Forms that carry an IPv4 address are judged by it: the packet ends up there.
    if address.ipv4_mapped is not None:
        return _v4_public(address.ipv4_mapped)
    if address in _IPV4_COMPATIBLE or address in _NAT64:  # :: and ::1 land on 0.0.0.0/8, forbidden
        return _v4_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour is not None and not _v4_public(address.sixtofour):
        return False
    if address.teredo is not None and not all(_v4_public(v4) for v4 in address.teredo):
        return False
    if address not in _GLOBAL_UNICAST_V6 or any(address in network for network in _FORBIDDEN_V6):
        return False
    flags = (
        address.is_private,
        address.is_loopback,
        address.is_link_local,
        address.is_site_local,
        address.is_multicast,
        address.is_reserved,
        address.is_unspecified,
    )
    return address.is_global and not any(flags)


def _allow_listed(address: IPAddress, policy: OutboundPolicy) -> bool:
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)  # ::ffff:a.b.c.d reaches a.b.c.d, so an IPv4 entry covers it
    return any(
        candidate.version == network.version and candidate in network
        for candidate in candidates
        for network in policy.allow_networks
    )


def address_allowed(address: IPAddress, policy: OutboundPolicy) -> bool:
    """True for a global unicast address, or one inside an allow-listed network; pure, no I/O."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        address = ipaddress.IPv6Address(int(address))  # the scope (%eth0) does not change where it lands
    if _allow_listed(address, policy):
        return True
    if isinstance(address, ipaddress.IPv4Address):
        return _v4_public(address)
    return _v6_public(address)


def check_url(url: str) -> str:
    """Syntax only, no DNS: an http(s) URL with a host, no userinfo, at most MAX_URL_LENGTH characters."""
    if len(url) > MAX_URL_LENGTH:
        raise OutboundRefused("url_invalid", f"the URL is longer than {MAX_URL_LENGTH} characters")
    # Whitespace, controls and backslashes are where URL parsers disagree; none belong in a sane URL.
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        raise OutboundRefused("url_invalid", "the URL contains whitespace, control characters or backslashes")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise OutboundRefused("url_invalid", f"the URL does not parse: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise OutboundRefused("url_invalid", "only http and https URLs are fetched")
    if "@" in parts.netloc:
        raise OutboundRefused("url_invalid", "credentials in the URL are not accepted")
    if not parts.hostname:
        raise OutboundRefused("url_invalid", "the URL has no host")
    try:
        parsed = httpx.URL(url)  # what will actually be sent must parse too
    except httpx.InvalidURL as exc:
        raise OutboundRefused("url_invalid", f"the URL does not parse: {exc}") from None
    if not parsed.host or parsed.userinfo:
        raise OutboundRefused("url_invalid", "the URL has no host or has credentials")
    return url


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses getaddrinfo gives, in its order (numeric spellings like 0x7f.1 resolve without DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def system_connector(ip: str, port: int, timeout: float | None) -> socket.socket:
    return socket.create_connection((ip, port), timeout)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._at - time.monotonic()

    def cap(self, timeout: float | None, expired: type[Exception]) -> float:
        """``timeout`` shortened to what is left; raises ``expired`` once nothing is."""
        left = self.remaining()
        if left <= 0:
            raise expired("the operation's deadline has passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """Caps every socket wait at the operation's deadline, so a body dripping a byte at a time still ends."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.cap(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # server_hostname is the URL's host (httpcore passes it), so SNI and certificate checks use the name.
        timeout = self._deadline.cap(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, judges every address, and connects only to an address it judged."""

    def __init__(self, policy: OutboundPolicy, resolver: Resolver, connector: Connector, deadline: _Deadline) -> None:
        self._policy = policy
        self._resolver = resolver
        self._connector = connector
        self._deadline = deadline

    def _checked_addresses(self, host: str, port: int) -> list[str]:
        try:
            resolved = self._resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise OutboundRefused("url_unresolvable", f"{host} does not resolve: {exc}") from None
        if not resolved:
            raise OutboundRefused("url_unresolvable", f"{host} does not resolve")
        for text in resolved:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                raise OutboundRefused("url_unresolvable", f"{host} resolved to a non-address {text!r}") from None
            # Any forbidden answer refuses the host: skipping to a good one would still let a name probe inside.
            if not address_allowed(address, self._policy):
                raise OutboundRefused("url_forbidden", f"{host} resolves to a forbidden address {address}")
        return resolved

    def _refuse_unless_peer_allowed(self, sock: socket.socket, ip: str) -> None:
        # Defence in depth against a connector that connected somewhere other than asked.
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        peer = ipaddress.ip_address(sock.getpeername()[0])
        if not address_allowed(peer, self._policy):
            sock.close()
            raise OutboundRefused("url_forbidden", f"connected to a forbidden address {peer} (asked for {ip})")

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._checked_addresses(host, port)
        last_error: OSError | None = None
        for ip in addresses:
            limit = self._deadline.cap(timeout, httpcore.ConnectTimeout)
            try:
                sock = self._connector(ip, port, min(limit, self._policy.connect_timeout_seconds))
            except OSError as exc:
                last_error = exc
                continue
            try:
                self._refuse_unless_peer_allowed(sock, ip)
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for option in socket_options or ():
                    sock.setsockopt(*option)
            except OSError as exc:
                sock.close()
                raise httpcore.ConnectError(str(exc)) from exc
            return _DeadlineStream(SyncStream(sock), self._deadline)
        if isinstance(last_error, TimeoutError):
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out")
        raise httpcore.ConnectError(f"could not connect to {host}:{port}: {last_error}")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise OutboundRefused("url_invalid", "unix sockets are never used for outbound requests")


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, backend: _GuardedBackend, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx has no network_backend option; its request/response plumbing stays, only the pool is ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, max_connections=4, retries=0, network_backend=backend
        )


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    content_type: str | None
    final_url: str


class GuardedClient:
    """Downloads and posts that reach only allowed addresses; a fresh httpx client per call carries its deadline."""

    def __init__(
        self, policy: OutboundPolicy, *, resolver: Resolver | None = None, connector: Connector | None = None
    ) -> None:
        self._policy = policy
        self._resolver = resolver or system_resolver
        self._connector = connector or system_connector
        self._ssl_context = httpx.create_ssl_context()  # loading the CA bundle is slow: once per client

    def _client(self, deadline: _Deadline) -> httpx.Client:
        backend = _GuardedBackend(self._policy, self._resolver, self._connector, deadline)
        policy = self._policy
        return httpx.Client(
            transport=_GuardedTransport(backend, self._ssl_context),
            trust_env=False,  # no proxies from the environment: they would connect for us, unchecked
            follow_redirects=False,  # followed by hand, so each hop is checked
            timeout=httpx.Timeout(policy.timeout_seconds, connect=policy.connect_timeout_seconds),
        )

    def download(self, url: str, dest: Path) -> Downloaded:
        """GET ``url`` into ``dest``, following up to max_redirects redirects; a failed write leaves no dest."""
        current = check_url(url)
        deadline = _Deadline(self._policy.timeout_seconds)
        try:
            with self._client(deadline) as client:
                for _ in range(self._policy.max_redirects + 1):
                    # identity: the byte limit then counts what arrives, and no decompression bomb expands it
                    with client.stream("GET", current, headers={"Accept-Encoding": "identity"}) as response:
                        if response.status_code in REDIRECT_STATUSES:
                            current = _redirect_target(current, response)
                            continue
                        if not 200 <= response.status_code < 300:
                            raise OutboundRefused(
                                "download_http_error", f"the server answered HTTP {response.status_code}"
                            )
                        size = self._save(response, dest, deadline)
                        return Downloaded(dest, size, response.headers.get("content-type"), current)
                raise OutboundRefused("too_many_redirects", f"more than {self._policy.max_redirects} redirects")
        except httpx.TimeoutException:
            raise OutboundRefused(
                "download_timeout", f"the download took over {self._policy.timeout_seconds} s"
            ) from None
        except httpx.UnsupportedProtocol as exc:
            raise OutboundRefused("url_invalid", str(exc)) from None
        except httpx.InvalidURL as exc:
            raise OutboundRefused("url_invalid", str(exc)) from None
        except httpx.HTTPError as exc:
            raise OutboundRefused("download_failed", f"{type(exc).__name__}: {exc}") from None

    def _save(self, response: httpx.Response, dest: Path, deadline: _Deadline) -> int:
        limit = self._policy.max_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise OutboundRefused("download_too_large", f"the body is {int(declared)} bytes, over {limit}")
        size = 0
        try:
            with dest.open("wb") as out:
                for chunk in response.iter_bytes(_CHUNK_BYTES):
                    size += len(chunk)
                    if size > limit:
                        raise OutboundRefused("download_too_large", f"the body is over {limit} bytes")
                    if deadline.remaining() <= 0:
                        raise OutboundRefused("download_timeout", "the download ran past its deadline")
                    out.write(chunk)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return size

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST ``body`` and return the status; a redirect is returned, never followed."""
        current = check_url(url)
        deadline = _Deadline(self._policy.timeout_seconds)
        try:
            with (
                self._client(deadline) as client,
                client.stream("POST", current, content=body, headers=dict(headers)) as response,
            ):
                _drain_some(response, POST_RESPONSE_READ_BYTES)
                return response.status_code
        except httpx.TimeoutException:
            raise OutboundRefused("post_timeout", f"the post took over {self._policy.timeout_seconds} s") from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise OutboundRefused("url_invalid", str(exc)) from None
        except httpx.HTTPError as exc:
            raise OutboundRefused("post_failed", f"{type(exc).__name__}: {exc}") from None


def _redirect_target(current: str, response: httpx.Response) -> str:
    location = response.headers.get("location")
    if not location:
        raise OutboundRefused("download_http_error", f"HTTP {response.status_code} without a Location")
    try:
        target = str(httpx.URL(current).join(location))
    except httpx.InvalidURL as exc:
        raise OutboundRefused("url_invalid", f"the redirect Location does not parse: {exc}") from None
    return check_url(target)


def _drain_some(response: httpx.Response, limit: int) -> None:
    """Read at most ``limit`` bytes of a webhook's answer; its status is what counts, so a bad body is ignored."""
    got = 0
    with contextlib.suppress(httpx.HTTPError):
        for chunk in response.iter_raw():
            got += len(chunk)
            if got >= limit:
                break


__all__ = [
    "Connector",
    "Downloaded",
    "GuardedClient",
    "OutboundPolicy",
    "OutboundRefused",
    "Resolver",
    "address_allowed",
    "check_url",
    "system_connector",
    "system_resolver",
]
