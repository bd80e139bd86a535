"""The client's address: one answer for throttles, audit records and logs.

Forwarded headers count only when the TCP peer is one of settings.TRUSTED_PROXIES; from anyone else they are
the client's own words and are ignored.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4)
def _trusted(entries: tuple[str, ...]) -> tuple[Network, ...]:
    # settings validated every entry at startup
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def parse_address(text: str) -> IPAddress | None:
    """An address as proxies write it: bare, `[v6]:port`, `v4:port`; IPv4-mapped IPv6 as IPv4."""
    candidate = text.strip()
    if candidate.startswith("["):
        candidate = candidate[1:].partition("]")[0]
    elif candidate.count(":") == 1:
        candidate = candidate.partition(":")[0]
    try:
        address = ipaddress.ip_address(candidate.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted_proxy(text: str) -> bool:
    address = parse_address(text)
    networks = _trusted(tuple(settings.TRUSTED_PROXIES))
    return address is not None and any(address in network for network in networks)


def is_from_trusted_proxy(request: HttpRequest) -> bool:
    """The TCP peer is one of our proxies, so its forwarded headers may be believed."""
    return is_trusted_proxy(request.META.get("REMOTE_ADDR", ""))


def client_ip(request: HttpRequest) -> str:
    """The peer's address; behind trusted proxies, the rightmost X-Forwarded-For hop that is not one of them.

    Walking from the right matters: each proxy appends the address it saw, so everything left of the first
    untrusted hop was written by the client and may be anything.
    """
    peer: str = request.META.get("REMOTE_ADDR", "")
    if not is_trusted_proxy(peer):
        return peer
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    nearest = str(parse_address(peer))
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            # One of our own proxies passed on garbage: the last address we can vouch for is that proxy.
            return nearest
        nearest = str(address)
        if not is_trusted_proxy(nearest):
            return nearest
    return nearest  # every hop is one of ours: the request started at the leftmost


# What one subscriber holds: an ISP delegates at least a /64 (RFC 6177), and every address in it is theirs
# to use, a new one per request if they like (privacy addresses, RFC 8981).
IPV6_SUBSCRIBER_PREFIX = 64


def address_for_limits(address: str) -> str:
    """The part of a client's address that rate limits count (sign-in failures, DRF throttles): an IPv4
    address as it is, an IPv6 address's /64. Counted per full IPv6 address, one client walked through its
    /64 and got a fresh count per request. Text that is no address is counted as it is."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_SUBSCRIBER_PREFIX), strict=False))
    return str(parsed) if parsed is not None else address


# What a log line says of where a request came from: its network, not the subscriber. An address is personal
# data (README, "No personal data in logs"), and logs outlive an erasure; a /24 or a /48 still shows which
# network a burst came from. A 6to4 address (2002::/16, RFC 3056) carries its client's IPv4 address in the
# next 32 bits, whole in its /48: it is cut after 16 + 24 bits, the IPv4 address's /24.
LOG_IPV4_PREFIX, LOG_IPV6_PREFIX = 24, 48
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
LOG_SIX_TO_FOUR_PREFIX = SIX_TO_FOUR.prefixlen + LOG_IPV4_PREFIX


def address_for_logs(address: str) -> str:
    """The network of an address for log lines and the access log ("203.0.113.0/24", "2001:db8:1::/48");
    "-" for text that is no address."""
    parsed = parse_address(address)
    if parsed is None:
        return "-"
    if isinstance(parsed, ipaddress.IPv4Address):
        prefix = LOG_IPV4_PREFIX
    else:
        prefix = LOG_SIX_TO_FOUR_PREFIX if parsed in SIX_TO_FOUR else LOG_IPV6_PREFIX
    return str(ipaddress.ip_network((parsed, prefix), strict=False))
