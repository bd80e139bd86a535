"""Outbound HTTP to addresses customers give us (photo URLs, webhook endpoints), with an SSRF guard.

The host is resolved once, every address must be public (unless settings allow private ones), and the
connection goes to the address that was checked, so a DNS answer cannot change between check and use.
A path or query in any script is sent percent-encoded, as a browser sends it: http.client writes the request
line in ASCII and raised UnicodeEncodeError (no OSError, so no caller saw a failed fetch or POST) for "/ü".
`timeout` bounds the whole exchange, the host's lookup to the answer's last byte: http.client's own timeout
bounds each socket read only, so a server dripping a byte every few seconds would hold a worker (and the queue
behind it) for as long as it liked. The lookup, the TCP connect and the TLS handshake get only the time left:
before, the lookup ran before the deadline started and the handshake had a whole timeout of its own (a
listener that took the connection and never answered the handshake held a 10 s POST for 15 s, a resolver that
never answered for 10 s before any connect).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from lab.lib.errors import CommonError, DomainError


class UnsafeUrl(DomainError):
    """The SSRF guard refused the URL before any connection was made."""


class FetchFailed(DomainError):
    """The URL was allowed but the fetch or the POST failed."""


# What RFC 3986 lets stand in a path (pchar and "/") and in a query or fragment (also "?"), with "%" so that
# an escape already there is kept, not escaped again; everything else (non-ASCII as UTF-8, spaces, controls,
# double quotes, backslashes, backticks, ^, | and the brackets <>[]{}) is percent-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=%"
_QUERY_SAFE = _PATH_SAFE + "?"


def url_percent_encoded(url: str) -> str:
    """The URL with its path, query and fragment percent-encoded as a browser would send them; the scheme and
    host as given (the host is IDNA-encoded where it is resolved). Idempotent: an encoded URL is unchanged."""
    parts = urlsplit(url)
    return urlunsplit(
        (
            parts.scheme,
            parts.netloc,
            quote(parts.path, safe=_PATH_SAFE),
            quote(parts.query, safe=_QUERY_SAFE),
            quote(parts.fragment, safe=_QUERY_SAFE),
        )
    )


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str


# getaddrinfo's answer: (family, type, proto, canonname, sockaddr), the address first in sockaddr.
_AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


def _lookup(host: str, port: int, timeout: float | None) -> list[_AddressInfo]:
    """getaddrinfo, given at most `timeout` seconds (None: as long as the resolver takes). The resolver itself
    cannot be interrupted: it runs in a daemon thread, left to finish on its own if the time runs out."""
    if timeout is None:
        return list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    answer: list[list[_AddressInfo]] = []
    failure: list[BaseException] = []

    def resolve() -> None:
        try:
            answer.append(list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))
        except BaseException as error:  # handed to the caller, raised there as it would have been
            failure.append(error)

    resolver = threading.Thread(target=resolve, name="safe_http-lookup", daemon=True)
    resolver.start()
    resolver.join(timeout)
    if failure:
        raise failure[0]
    if not answer:
        raise TimeoutError("the host's lookup outlasted the deadline")
    return answer[0]


def check_url(url: str, *, allow_private: bool, allow_http: bool, timeout: float | None = None) -> Target:
    """The URL's target, every address its host resolves to judged; the lookup is given at most `timeout`
    seconds, and one that takes longer is a host that does not resolve (URL_HOST_UNRESOLVABLE). A check made
    while a person waits (a web request) passes a timeout: a resolver that never answered held the web
    worker for as long as it did not, and a few such requests every worker."""
    try:
        return _target(url, allow_private=allow_private, allow_http=allow_http, timeout=timeout)
    except TimeoutError as error:
        raise UnsafeUrl(
            CommonError.URL_HOST_UNRESOLVABLE, "The URL's host did not resolve in time."
        ) from error


def _target(url: str, *, allow_private: bool, allow_http: bool, timeout: float | None) -> Target:
    """check_url's work; a lookup that outlasts `timeout` raises TimeoutError (an OSError: within a fetch or
    a POST, a failed exchange that is tried again, not a refused URL)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not allow_http):
        raise UnsafeUrl(CommonError.URL_SCHEME_NOT_ALLOWED, "Only https:// URLs are accepted.")
    if not parts.hostname or parts.username or parts.password:
        raise UnsafeUrl(CommonError.URL_INVALID, "The URL needs a host and no credentials.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:  # a port out of range, or not a number
        raise UnsafeUrl(CommonError.URL_INVALID, "The URL's port is not valid.") from error
    try:
        infos = _lookup(parts.hostname, port, timeout)
    except socket.gaierror as error:
        raise UnsafeUrl(CommonError.URL_HOST_UNRESOLVABLE, "The URL's host does not resolve.") from error
    except UnicodeError as error:
        # An internationalised name IDNA cannot encode (a label over 63 characters once encoded, or empty):
        # the resolver refuses it before any lookup. It was a 500.
        raise UnsafeUrl(CommonError.URL_INVALID, "The URL's host name is not valid.") from error
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not allow_private and not _is_public(ip):
            raise UnsafeUrl(
                CommonError.URL_TARGET_NOT_ALLOWED,
                "The URL points to a private, loopback or link-local address.",
            )
    # Encoded here too, not only where a URL is registered: a row stored before that still goes out.
    path = quote(parts.path, safe=_PATH_SAFE) or "/"
    if parts.query:
        path += "?" + quote(parts.query, safe=_QUERY_SAFE)
    return Target(scheme=parts.scheme, host=parts.hostname, port=port, path=path, address=addresses[0])


# IPv6 is global unicast only inside 2000::/3: Python calls much outside it global too, such as site-local
# `fec0::1`, multicast `ff02::1` and the SIIT-translated `::ffff:0:a9fe:a9fe` (169.254.169.254), which were
# let through. Outside 2000::/3 only the forms below are accepted, and then as the IPv4 address they carry.
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
# IPv6 prefixes that carry an IPv4 address in their last 32 bits and reach it: NAT64's well-known and
# local-use prefixes (RFC 6052, RFC 8215), IPv4-mapped, IPv4-translated (RFC 2765 SIIT) and the deprecated
# IPv4-compatible form. 6to4 (2002::/16) and Teredo (2001::/32) carry theirs elsewhere, inside 2000::/3.
_IPV4_IN_LAST_32_BITS = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("::ffff:0:0/96"),
    ipaddress.ip_network("::ffff:0:0:0/96"),
    ipaddress.ip_network("::/96"),
)


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Global, and so is every IPv4 address it carries: Python calls `64:ff9b::a9fe:a9fe` (NAT64 for
    169.254.169.254), `2002:a9fe:a9fe::1` (6to4) and `::127.0.0.1` global, and on a network that routes
    them each reaches the IPv4 address inside. An IPv6 address outside global unicast (2000::/3) is refused
    unless it is one of the forms that carry an IPv4 address, and then judged by that address alone."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.is_global
    carries_ipv4 = any(ip in net for net in _IPV4_IN_LAST_32_BITS)
    if not (ip.is_global and ip in _GLOBAL_UNICAST) and not carries_ipv4:
        return False
    inside = [ip.sixtofour, *(ip.teredo or ())]
    if carries_ipv4:
        inside.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return all(v4.is_global for v4 in inside if v4 is not None)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, deadline: _Deadline) -> None:
        super().__init__(target.host, target.port, timeout=deadline.seconds)
        self._address = target.address
        self._deadline = deadline

    def connect(self) -> None:
        # To the address check_url judged, within the time left; then the deadline holds the socket.
        self.sock = socket.create_connection((self._address, self.port), self._deadline.remaining())
        self._deadline.hold(self.sock)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, deadline: _Deadline) -> None:
        super().__init__(
            target.host, target.port, timeout=deadline.seconds, context=ssl.create_default_context()
        )
        self._address = target.address
        self._deadline = deadline

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self._deadline.remaining())
        try:
            # Wrapped without its handshake, so the deadline holds the socket while the handshake runs
            # (wrap_socket's own ran on a socket nothing could cut, with a whole timeout of its own).
            tls = self._context.wrap_socket(  # type: ignore[attr-defined]
                raw, server_hostname=self.host, do_handshake_on_connect=False
            )
        except BaseException:
            raw.close()
            raise
        self.sock = tls
        self._deadline.hold(tls)
        tls.settimeout(self._deadline.remaining())
        tls.do_handshake()


def _connection(target: Target, deadline: _Deadline) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return _PinnedHTTPSConnection(target, deadline)
    return _PinnedHTTPConnection(target, deadline)


class _Deadline:
    """The whole exchange's time, from the host's lookup to the answer's last byte.

    Once `seconds` have passed, the connection's socket is shut down: a read blocked on it (the TLS
    handshake's too) returns at once; `check` then refuses what was read (a body read to the connection's
    end looks whole). What nothing can cut, the lookup and the TCP connect, is given only the time left
    (`remaining`). Closes the connection on the way out."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ends = time.monotonic() + seconds
        self._expired = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._connection: http.client.HTTPConnection | None = None
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        if self._connection is not None:
            self._connection.close()

    def remaining(self) -> float:
        """Seconds left, never 0 (a socket timeout of 0 would make it non-blocking): TimeoutError once none
        are."""
        left = self._ends - time.monotonic()
        if left <= 0 or self._expired.is_set():
            raise TimeoutError("the deadline passed")
        return left

    def connect(self, connection: http.client.HTTPConnection) -> None:
        self._connection = connection
        connection.connect()
        self.check()  # a connect that took the whole time left no socket to cut while it ran

    def hold(self, sock: socket.socket) -> None:
        """Our own hold on the connection's socket, as soon as it is connected: the connection lets go of it
        once a response will close it, while the response reads on from the same socket."""
        with self._lock:
            self._sock = sock
            expired = self._expired.is_set()
        if expired:
            raise TimeoutError("the deadline passed")

    def _cut(self) -> None:
        with self._lock:
            self._expired.set()
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                # The plain socket's shutdown, also under TLS: SSLSocket's own would drop its state under a
                # reader in the other thread; this one ends that read (or the handshake) with an EOF.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def check(self) -> None:
        if self._expired.is_set():
            raise OSError("the deadline passed")


def _open(
    deadline: _Deadline, url: str, *, allow_private: bool, allow_http: bool
) -> tuple[Target, http.client.HTTPConnection]:
    """The URL checked (its lookup within the deadline) and a connection to the address that was checked."""
    target = _target(url, allow_private=allow_private, allow_http=allow_http, timeout=deadline.remaining())
    connection = _connection(target, deadline)
    deadline.connect(connection)
    return target, connection


def fetch(url: str, *, max_bytes: int, timeout: float, allow_private: bool, allow_http: bool) -> bytes:
    """GET a URL, refusing redirects, non-200 answers and bodies over `max_bytes`."""
    try:
        with _Deadline(timeout) as deadline:
            target, connection = _open(deadline, url, allow_private=allow_private, allow_http=allow_http)
            return _fetch(connection, target, max_bytes=max_bytes, deadline=deadline)
    except (OSError, http.client.HTTPException) as error:
        raise FetchFailed(CommonError.URL_FETCH_FAILED, "The URL could not be fetched in time.") from error


def _fetch(
    connection: http.client.HTTPConnection, target: Target, *, max_bytes: int, deadline: _Deadline
) -> bytes:
    connection.request("GET", target.path, headers={"User-Agent": "printlab-fetch/1", "Accept": "image/*"})
    response = connection.getresponse()
    deadline.check()
    if response.status != 200:
        raise FetchFailed(
            CommonError.URL_FETCH_STATUS,
            f"The URL answered HTTP {response.status}.",
            status_code=response.status,
        )
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchFailed(CommonError.FILE_TOO_LARGE, f"The file is larger than {max_bytes} bytes.")
    body = response.read(max_bytes + 1)
    deadline.check()
    if len(body) > max_bytes:
        raise FetchFailed(CommonError.FILE_TOO_LARGE, f"The file is larger than {max_bytes} bytes.")
    return body


def post(
    url: str, *, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool, allow_http: bool
) -> int:
    """POST a body and return the status code; used for customer webhooks."""
    try:
        with _Deadline(timeout) as deadline:
            target, connection = _open(deadline, url, allow_private=allow_private, allow_http=allow_http)
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read(65536)
            deadline.check()
            return response.status
    except (OSError, http.client.HTTPException) as error:
        raise FetchFailed(CommonError.DELIVERY_FAILED, "The endpoint could not be reached.") from error
