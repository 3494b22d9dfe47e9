"""Connect only to public addresses, checked on the addresses actually connected to.

Feed URLs and push endpoints come from outside (a redirect, an API call), so a name that
resolves to a loopback, private or link-local address must not be fetched: that is how a
stranger reaches the metadata service or the admin port next door. The check sits in the
resolver aiohttp connects with, so there is no gap between checking a name and using it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class NotPublicAddress(OSError):
    """The name resolves to an address we do not connect to."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)  # aiohttp shows strerror in its own error


def is_public(address: str, allowed: Iterable[IpNetwork] = ()) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global or any(ip in network for network in allowed)


def check_literal_host(host: str, trusted: Iterable[str] = (),
                       allowed_networks: Iterable[IpNetwork] = ()) -> None:  # fmt: skip
    """aiohttp never asks the resolver about an address written in the URL itself
    ("http://10.0.0.1/"), so such hosts are checked here before connecting."""
    bare = host.strip("[]").lower()
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    if bare not in {h.strip("[]").lower() for h in trusted} and not is_public(
        bare, allowed_networks
    ):
        raise NotPublicAddress(f"{host} is not a public address")


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp does, and refuses names whose addresses are not public, except
    the hosts the operator named themselves (a configured feed's own host) and the networks
    a setting allows."""

    def __init__(
        self, trusted_hosts: Iterable[str] = (), allowed_networks: Iterable[IpNetwork] = ()
    ) -> None:
        self._inner = DefaultResolver()
        self._trusted = frozenset(host.lower() for host in trusted_hosts if host)
        self._allowed = tuple(allowed_networks)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if host.lower() in self._trusted:
            return results
        for result in results:
            if not is_public(result["host"], self._allowed):
                raise NotPublicAddress(f"{host} resolves to {result['host']}, not a public address")
        return results

    async def close(self) -> None:
        await self._inner.close()
