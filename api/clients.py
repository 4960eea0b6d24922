"""Where a request comes from: the peer's address, or, when the peer is a
trusted proxy (PM_ORDER_TRUSTED_PROXIES: addresses or networks), the address it
names in X-Forwarded-For.

Only the proxies listed are believed: any client can send X-Forwarded-For. The
header is read from its end (the address the last proxy saw), skipping the
trusted proxies themselves, so a client cannot pick its address by prefixing
the header with one of its own.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Final

from aiohttp import web

from api.context import CONFIG

UNKNOWN: Final = "-"
_ADDRESS: Final = web.RequestKey("client_address", str)


def client_address(request: web.Request) -> str:
    """The client's IP address as `ipaddress` writes it; "-" when unknown."""
    known = request.get(_ADDRESS)
    if known is None:
        known = _address_of(request, request.app[CONFIG].trusted_proxies)
        request[_ADDRESS] = known
    return known


def _address_of(request: web.Request, trusted: frozenset[str]) -> str:
    peer = _address(request.remote)
    if peer is None:
        return UNKNOWN
    proxies = _networks(trusted)
    if not _among(peer, proxies):
        return str(peer)
    address = peer
    for header in reversed(request.headers.getall("X-Forwarded-For", [])):
        for hop in reversed(header.split(",")):
            named = _address(hop.strip())
            if named is None:
                return str(address)  # a garbled hop: the last address believed
            address = named
            if not _among(named, proxies):
                return str(named)
    return str(address)


def address_group(address: str, ipv6_prefix: int) -> str:
    """The group `address` is limited with: an IPv4 address alone, an IPv6 one
    with its /`ipv6_prefix` network (a host gets a whole /64 and may use any
    address in it), an IPv4-mapped IPv6 address as the IPv4 address it is."""
    parsed = _address(address)
    if parsed is None:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, ipv6_prefix), strict=False))
    return str(parsed)


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _networks(trusted: frozenset[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n) for n in trusted)


def _among(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def _address(text: str | None) -> Address | None:
    """An address as a peer or a hop gives it: bare, `ip:port` or `[v6]:port`
    (as several load balancers write X-Forwarded-For); None if garbled."""
    text = text or ""
    if text.startswith("["):
        inside, bracket, port = text[1:].partition("]")
        if not bracket or (port and not _is_port(port)):
            return None
        text = inside
    elif text.count(":") == 1:
        host, _colon, port = text.partition(":")
        if not _is_port(":" + port):
            return None
        text = host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_port(text: str) -> bool:
    """`text` is ":" and a port number."""
    digits = text[1:]
    return (
        text.startswith(":")
        and digits.isascii()
        and digits.isdigit()
        and len(digits) <= 5
        and int(digits) <= 65535
    )
