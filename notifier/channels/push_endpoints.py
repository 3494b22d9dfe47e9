"""Which push services we POST to: the guard against a caller-supplied endpoint pointing the
server at itself or its network (SSRF).

An endpoint is a URL whoever calls the API supplies, so it is accepted only on a known push
service (PUSH_ALLOWED_ORIGINS) when a browser subscribes, and checked again before every
send, DNS included: a name can change what it resolves to after subscription time.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit


class EndpointRefused(ValueError):
    """We do not post to this endpoint; the message says why, in a sentence."""


class EndpointPolicy:
    """Which push-service origins we POST to. Patterns: 'https://fcm.googleapis.com',
    'https://*.notify.windows.com'. Private, loopback and link-local addresses are refused
    unless an allowed origin names that address literally (as tests do with 127.0.0.1)."""

    def __init__(self, allowed_origins: Sequence[str]) -> None:
        self.patterns = tuple(o.rstrip("/").lower() for o in allowed_origins)

    def origin_of(self, endpoint: str) -> str:
        """The endpoint's origin if it is allowed; raises EndpointRefused otherwise."""
        try:
            parts = urlsplit(endpoint)
            port = parts.port
        except ValueError:
            raise EndpointRefused("The push endpoint is not a valid URL.") from None
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.username:
            raise EndpointRefused("The push endpoint must be an https URL.")
        default = 443 if parts.scheme == "https" else 80
        host = parts.hostname.lower()
        origin = f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")
        if not any(fnmatch.fnmatchcase(origin, pattern) for pattern in self.patterns):
            raise EndpointRefused(
                f"Push endpoints on {origin} are not accepted: it is not a known push service."
            )
        return origin

    def check_addresses(self, endpoint: str) -> None:
        """At send time: the name must still resolve to public addresses only (a DNS name can
        change after subscription time), unless the allowed origin is itself an address."""
        origin = self.origin_of(endpoint)
        host = urlsplit(endpoint).hostname or ""
        if origin in self.patterns and _is_ip(host):
            return
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError as error:
            raise EndpointRefused(f"cannot resolve {host}: {error}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise EndpointRefused(f"{host} resolves to non-public address {address}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
