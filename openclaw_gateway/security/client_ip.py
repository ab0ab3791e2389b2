"""The client's IP behind trusted proxies (gunicorn's forwarded_allow_ips does nothing here)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

PEER_CACHE_SIZE = 4096
# Any mapping-like headers object with ``get(name, default)`` (Werkzeug's, or a dict).
HeaderLookup = Any


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class ClientIpResolver:
    def __init__(self, trusted_proxies: Iterable[str], allow_real_ip_fallback: bool) -> None:
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self._real_ip = allow_real_ip_fallback
        # peer -> (normalized address, is a trusted proxy): parsing it is most of the work,
        # and a process sees few distinct peers (a proxy, or the same clients again).
        self._peers: dict[str, tuple[str, bool]] = {}

    def _peer(self, peer: str) -> tuple[str, bool]:
        known = self._peers.get(peer)
        if known is None:
            address = _address(peer)
            known = (str(address) if address else peer, self._is_trusted(address))
            if len(self._peers) >= PEER_CACHE_SIZE:
                self._peers.clear()
            self._peers[peer] = known
        return known

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in net for net in self._trusted)

    def resolve(self, peer: str, headers: HeaderLookup) -> str:
        """The socket peer, unless it is a trusted proxy: then X-Forwarded-For, right to left."""
        normalized, trusted = self._peer(peer)
        if not trusted:
            return normalized
        forwarded = headers.get("X-Forwarded-For", "")
        hops = [h for h in (part.strip() for part in forwarded.split(",")) if h]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break  # a malformed hop: trust nothing to its left
            if not self._is_trusted(address):
                return str(address)
        if hops:
            first = _address(hops[0])
            if first is not None and all(_address(h) for h in hops):
                return str(first)
        if self._real_ip:
            real = _address(headers.get("X-Real-IP", ""))
            if real is not None:
                return str(real)
        return normalized
