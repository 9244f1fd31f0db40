"""A client's address, the same for the API and the hub: for per-address limits and for logs.

The address of the connection's other end is the client's, unless that end is one of our own
reverse proxies (TRUSTED_PROXIES, loopback by default): then the proxy's IP_HEADER names it. A
header from anyone else is ignored, since anyone can write one. In a chain such as
X-Forwarded-For (``client, proxy1, proxy2``) each proxy appends the address it saw, so the hops
are read from the nearest back, and the first that is not one of our proxies is the client; what
lies left of it was written by the client and proves nothing.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from core.config import Config

__all__ = ["client_address", "from_proxy"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(peer: str | None, headers: Mapping[str, str] | Any, config: Config) -> str:
    """The client's address: ``peer`` (the connection's own), or what a trusted proxy passed in
    IP_HEADER; "unknown" when there is no peer address (a Unix socket)."""
    address = _address(peer)
    if address is None:
        return peer or "unknown"
    if config.ip_header is None or not _trusted(address, config.trusted_proxies):
        return str(address)
    for hop in reversed(_header_values(headers, config.ip_header.lower())):
        claimed = _address(hop)
        if claimed is None:
            break  # not an address: nothing further from it can be believed
        address = claimed
        if not _trusted(claimed, config.trusted_proxies):
            break
    return str(address)


def from_proxy(peer: str | None, config: Config) -> bool:
    """Whether the connection's other end is one of our proxies, so that only its request can name
    the client; otherwise the peer is the client."""
    address = _address(peer)
    return address is not None and config.ip_header is not None and _trusted(address, config.trusted_proxies)


def _address(text: str | None) -> IPAddress | None:
    if not text:
        return None
    text = text.strip()
    # no address is longer (an IPv6 one with a zone: 45 + the zone's name): nothing longer is kept
    return _parsed(text) if len(text) <= 64 else None


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> IPAddress | None:
    # remembered: a connection asks for its peer's two or three times, and a proxy's comes often
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # an IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, proxies: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    return any(address in network for network in proxies)


def _header_values(headers: Mapping[str, str] | Any, name: str) -> list[str]:
    """Every comma-separated entry of the header, in order, over all its lines, by any case."""
    return [part for key, value in headers.items() if key.lower() == name for part in value.split(",")]
