"""Whether this request's client is on one of a set of networks (after ProxyFix, the real
client behind TRUSTED_PROXIES)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from flask import request

from notifier.config import IpNetwork


def client_in(networks: Iterable[IpNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
