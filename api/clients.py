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


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _networks(trusted: frozenset[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n) for n in trusted)


def _among(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def _address(text: str | None) -> Address | None:
    try:
        return ipaddress.ip_address(text or "")
    except ValueError:
        return None
