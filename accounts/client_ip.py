"""The client address the login lockout records and locks (django-axes' ``AXES_CLIENT_IP_CALLABLE``).

The connecting peer (``REMOTE_ADDR``) is the client, unless that peer is one of ``TRUSTED_PROXIES``: then
``X-Forwarded-For`` is read from the right, past the trusted proxies, to the first address none of them is.
A header sent by anyone else is ignored, so a client cannot pick the address it is counted under. uvicorn
does the same before Django sees the request when the launcher passes it the same list; this keeps the
answer right under any other server (runserver, daphne) too.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from django.conf import settings

Network = IPv4Network | IPv6Network


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ip_network(p, strict=False) for p in proxies)


def _address(value: str) -> IPv4Address | IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ip_address(value)
    except ValueError:
        return None


def _trusted(addr: IPv4Address | IPv6Address, networks: tuple[Network, ...]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)


def client_ip_get(request: Any) -> str | None:
    """The address to count ``request`` under: the peer, or the client a trusted proxy forwarded."""
    peer = request.META.get("REMOTE_ADDR") or None
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    peer_addr = _address(peer) if peer else None
    if peer_addr is None or not networks or not _trusted(peer_addr, networks):
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    client = str(peer_addr)
    for hop in reversed([h for h in forwarded.split(",") if h.strip()]):
        addr = _address(hop)
        if addr is None:
            break  # not an address: what is left of the header cannot be trusted either
        client = str(addr)
        if not _trusted(addr, networks):
            break
    return client
