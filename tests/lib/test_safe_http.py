"""The SSRF guard (lab.lib.safe_http.check_url) judges every address a host resolves to, IPv6 included."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from lab.lib import safe_http
from lab.lib.errors import CommonError


def _resolving_to(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    """The host's DNS answers with this one address (an AAAA or A record)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[Any, ...]]:
        sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]

    monkeypatch.setattr("lab.lib.safe_http.socket.getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    "address",
    [
        # Outside global unicast (2000::/3), and each called global by Python: were let through
        pytest.param("::ffff:0:a9fe:a9fe", id="siit-translated-metadata"),
        pytest.param("::ffff:0:7f00:1", id="siit-translated-loopback"),
        pytest.param("fec0::1", id="site-local"),
        pytest.param("ff02::1", id="multicast"),
        # Refused before too, and still
        pytest.param("fc00::1", id="unique-local"),
        pytest.param("100::1", id="discard-only"),
        pytest.param("fe80::1", id="link-local"),
        pytest.param("::1", id="loopback"),
        pytest.param("64:ff9b::a9fe:a9fe", id="nat64-metadata"),
        pytest.param("2002:a9fe:a9fe::1", id="6to4-metadata"),
        pytest.param("::ffff:10.0.0.8", id="ipv4-mapped-private"),
        pytest.param("2001:db8::1", id="documentation"),
        pytest.param("169.254.169.254", id="ipv4-metadata"),
    ],
)
def test_a_host_resolving_to_a_non_public_address_is_refused(monkeypatch, address):
    _resolving_to(monkeypatch, address)

    with pytest.raises(safe_http.UnsafeUrl) as refused:
        safe_http.check_url("https://hooks.example.net/lab", allow_private=False, allow_http=False)

    assert refused.value.code == CommonError.URL_TARGET_NOT_ALLOWED


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("2606:4700:4700::1111", id="global-unicast"),
        pytest.param("2002:101:101::1", id="6to4-public"),
        pytest.param("64:ff9b::101:101", id="nat64-public"),
        pytest.param("::ffff:1.1.1.1", id="ipv4-mapped-public"),
        pytest.param("1.1.1.1", id="ipv4-public"),
    ],
)
def test_a_host_resolving_to_a_public_address_is_let_through_to_that_address(monkeypatch, address):
    _resolving_to(monkeypatch, address)

    target = safe_http.check_url("https://hooks.example.net/lab", allow_private=False, allow_http=False)

    assert (target.host, target.port, target.address) == ("hooks.example.net", 443, address)


def test_the_allow_private_flag_lets_a_non_public_address_through(monkeypatch):
    _resolving_to(monkeypatch, "fec0::1")

    target = safe_http.check_url("https://hooks.example.net/lab", allow_private=True, allow_http=False)

    assert target.address == "fec0::1"
