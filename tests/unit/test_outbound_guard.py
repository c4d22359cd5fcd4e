"""The SSRF guard without a single connection: which addresses are allowed, which URLs parse, and that a
forbidden answer from the resolver (first or on a later lookup) never reaches the connector."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from app.jobs.outbound import (
    GuardedClient,
    OutboundPolicy,
    OutboundRefused,
    address_allowed,
    check_url,
    system_resolver,
)

NO_ALLOW = OutboundPolicy()

FORBIDDEN = [
    "127.0.0.1",
    "127.255.255.254",
    "::1",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.1.1",
    "169.254.169.254",  # cloud metadata
    "fe80::1",
    "fe80::1%1",  # scoped, as getaddrinfo writes link-local answers
    "fc00::1",
    "fd00:ec2::254",  # AWS IPv6 metadata
    "0.0.0.0",
    "0.1.2.3",
    "::",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "100.64.0.1",  # CGNAT
    "198.18.0.1",  # benchmarking
    "192.0.2.1",  # documentation
    "198.51.100.1",
    "203.0.113.1",
    "2001:db8::1",
    "192.0.0.9",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "::7f00:1",
    "2002:7f00:1::",  # 6to4 around 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 around 169.254.169.254
    "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
    "64:ff9b::7f00:1",
    "64:ff9b:1::808:808",  # local-use NAT64
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "fec0::1",
    "4000::1",  # outside global unicast 2000::/3
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("text", FORBIDDEN)
def test_forbidden_addresses(text: str) -> None:
    assert not address_allowed(ipaddress.ip_address(text), NO_ALLOW)


@pytest.mark.parametrize("text", ALLOWED)
def test_global_unicast_is_allowed(text: str) -> None:
    assert address_allowed(ipaddress.ip_address(text), NO_ALLOW)


def test_nat64_of_a_public_address_is_judged_by_it() -> None:
    assert address_allowed(ipaddress.ip_address("64:ff9b::808:808"), NO_ALLOW)
    assert address_allowed(ipaddress.ip_address("2002:808:808::1"), NO_ALLOW)


def test_allow_networks_let_loopback_through_including_mapped() -> None:
    policy = OutboundPolicy.from_strings(["127.0.0.0/8"])
    for text in ("127.0.0.1", "127.0.0.2", "::ffff:127.0.0.1"):
        assert address_allowed(ipaddress.ip_address(text), policy), text
    for text in ("::1", "10.0.0.1", "::ffff:10.0.0.1", "169.254.169.254"):
        assert not address_allowed(ipaddress.ip_address(text), policy), text


def test_allow_networks_for_one_host_and_ipv6() -> None:
    policy = OutboundPolicy.from_strings(["127.0.0.1", " ::1/128 ", ""])
    assert policy.allow_networks == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    assert address_allowed(ipaddress.ip_address("::1"), policy)
    assert not address_allowed(ipaddress.ip_address("127.0.0.2"), policy)


@pytest.mark.parametrize("bad", ["not-an-address", "10.0.0.1/8", "127.0.0.0/33"])
def test_from_strings_refuses_bad_entries(bad: str) -> None:
    with pytest.raises(ValueError):
        OutboundPolicy.from_strings([bad])


def test_policy_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        OutboundPolicy(max_bytes=0)
    with pytest.raises(ValueError):
        OutboundPolicy(max_redirects=-1)


@pytest.mark.parametrize("host", ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "0x7f.1"])
def test_odd_loopback_spellings_resolve_to_loopback_and_are_refused(host: str) -> None:
    # getaddrinfo parses numeric hosts itself (inet_aton): no DNS query leaves the machine.
    resolved = system_resolver(host, 80)
    assert resolved == ["127.0.0.1"]
    assert not any(address_allowed(ipaddress.ip_address(a), NO_ALLOW) for a in resolved)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.wav",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http:///path-only",
        "http://",
        "https://user:secret@example.com/a.wav",
        "https://user@example.com/a.wav",
        "http://example.com\\@127.0.0.1/",
        "http://example.com/a b",
        "http://example.com:99999/",
        "example.com/a.wav",
        "http://example.com/" + "a" * 2048,
    ],
)
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(OutboundRefused) as refused:
        check_url(url)
    assert refused.value.code == "url_invalid"


@pytest.mark.parametrize(
    "url", ["http://example.com/a.wav", "https://example.com:8443/x?y=1#z", "HTTPS://Example.COM/", "http://[::1]/"]
)
def test_check_url_accepts(url: str) -> None:
    assert check_url(url) == url


class Connections:
    """A connector that opens nothing: it records what it was asked for and fails."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def __call__(self, ip: str, port: int, timeout: float | None) -> socket.socket:
        self.asked.append((ip, port))
        raise ConnectionRefusedError(f"test connector: no connection to {ip}")


def _never_connect(ip: str, port: int, timeout: float | None) -> socket.socket:
    pytest.fail(f"the guard let a connection to {ip}:{port} through")


@pytest.mark.parametrize(
    "answer",
    [
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["::1"],
        ["fd00:ec2::254"],
        ["::ffff:10.0.0.1"],
        ["8.8.8.8", "10.0.0.1"],  # one bad answer refuses the host, even after a good one
    ],
)
def test_forbidden_answers_never_reach_the_connector(answer: list[str], tmp_path: Path) -> None:
    client = GuardedClient(NO_ALLOW, resolver=lambda host, port: answer, connector=_never_connect)
    dest = tmp_path / "audio"
    with pytest.raises(OutboundRefused) as refused:
        client.download("http://victim.example/audio.wav", dest)
    assert refused.value.code == "url_forbidden"
    assert not dest.exists()
    with pytest.raises(OutboundRefused) as refused:
        client.post("https://victim.example/hook", b"{}", {"Content-Type": "application/json"})
    assert refused.value.code == "url_forbidden"


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://[::1]/", "http://2130706433/", "http://0x7f.1:8080/"])
def test_literal_addresses_go_through_the_same_check(url: str, tmp_path: Path) -> None:
    client = GuardedClient(NO_ALLOW, connector=_never_connect)  # the real resolver: numeric, so no DNS
    with pytest.raises(OutboundRefused) as refused:
        client.download(url, tmp_path / "audio")
    assert refused.value.code == "url_forbidden"


def test_a_name_that_rebinds_to_loopback_is_refused_at_connect(tmp_path: Path) -> None:
    answers = iter([["93.184.215.14"], ["127.0.0.1"], ["127.0.0.1"]])
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    connections = Connections()
    client = GuardedClient(NO_ALLOW, resolver=rebinding, connector=connections)
    with pytest.raises(OutboundRefused) as first:
        client.download("http://rebind.example/a.wav", tmp_path / "a")
    assert first.value.code == "download_failed"  # the public answer was tried (and the fake refused it)
    with pytest.raises(OutboundRefused) as second:
        client.download("http://rebind.example/a.wav", tmp_path / "a")
    assert second.value.code == "url_forbidden"
    with pytest.raises(OutboundRefused) as third:
        client.post("http://rebind.example/hook", b"x", {})
    assert third.value.code == "url_forbidden"
    assert lookups == ["rebind.example"] * 3
    assert connections.asked == [("93.184.215.14", 80)]  # never the loopback answer


def test_nothing_resolved_is_unresolvable(tmp_path: Path) -> None:
    def nothing(host: str, port: int) -> list[str]:
        return []

    def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    for resolver in (nothing, failing):
        client = GuardedClient(NO_ALLOW, resolver=resolver, connector=_never_connect)
        with pytest.raises(OutboundRefused) as refused:
            client.download("http://nowhere.example/a.wav", tmp_path / "a")
        assert refused.value.code == "url_unresolvable"


def test_refused_carries_code_and_message() -> None:
    error = OutboundRefused("url_forbidden", "10.0.0.1 is private")
    assert (error.code, error.message) == ("url_forbidden", "10.0.0.1 is private")
    assert "url_forbidden" in str(error)
