"""The SSRF guard (lab.lib.safe_http.check_url) judges every address a host resolves to, IPv6 included; the
deadline of a fetch or POST covers the whole exchange, the lookup and the TLS handshake included."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
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


# --- the deadline covers the whole exchange: the lookup and the TLS handshake too --------------------------


def test_a_resolver_that_never_answers_in_time_is_cut_at_the_deadline(monkeypatch):
    # given a host whose lookup takes 3 s (then answers an address where nothing listens)
    def slow_getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[Any, ...]]:
        time.sleep(3)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 9))]

    monkeypatch.setattr("lab.lib.safe_http.socket.getaddrinfo", slow_getaddrinfo)
    started = time.monotonic()

    # when a POST to it is given 1 s
    with pytest.raises(safe_http.FetchFailed) as failed:
        safe_http.post(
            "https://hooks.example.net/lab",
            body=b"{}",
            headers={},
            timeout=1,
            allow_private=True,
            allow_http=False,
        )

    # then it fails once the second is up, not after the lookup (it waited the whole 3 s before)
    assert time.monotonic() - started < 2
    assert failed.value.code == CommonError.DELIVERY_FAILED


@pytest.fixture
def listener_that_never_answers() -> Iterator[tuple[int, threading.Event]]:
    """A TCP listener whose accept queue holds one connection (backlog 0), already taken by another client:
    a connection made now has its SYN dropped until the listener accepts that one, set() on the event, and
    is then accepted and never sent a byte (a TLS handshake with it never ends)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)
    release = threading.Event()
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        release.wait(10)
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield port, release
    stop.set()
    release.set()
    acceptor.join(5)
    for sock in (*held, filler, server):
        sock.close()


def test_a_tls_handshake_that_never_ends_is_cut_at_the_deadline_with_the_connect_s_time_counted(
    listener_that_never_answers,
):
    # given an endpoint whose connect takes about a second (its SYN is retried once the listener has room)
    # and that then never answers the TLS handshake
    port, release = listener_that_never_answers
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()

    # when a POST to it is given 2 s
    with pytest.raises(safe_http.FetchFailed) as failed:
        safe_http.post(
            f"https://127.0.0.1:{port}/lab",
            body=b"{}",
            headers={},
            timeout=2,
            allow_private=True,
            allow_http=False,
        )

    # then it fails when the 2 s are up: the handshake had 2 s of its own after the connect before (3 s)
    assert time.monotonic() - started < 2.5
    assert failed.value.code == CommonError.DELIVERY_FAILED
