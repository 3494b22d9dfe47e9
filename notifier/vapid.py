"""VAPID (RFC 8292): our key pair, and Authorization headers signed once per origin and period.

Keys travel as base64url: the private key as its 32-byte scalar, the public key as the
65-byte uncompressed point that browsers take as applicationServerKey.
"""

from __future__ import annotations

import base64
import threading
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02


class VapidKeyError(ValueError):
    pass


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Strict: characters outside the base64url alphabet are an error, not skipped."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def generate_keypair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    return b64url(private), public_key_of(key)


def public_key_of(key: ec.EllipticCurvePrivateKey) -> str:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(point)


def load_private_key(private_b64: str, public_b64: str) -> Vapid02:
    """Load our key and check that the public key given alongside belongs to it."""
    try:
        vapid = Vapid02.from_raw(private_b64.strip().encode())
    except (ValueError, TypeError) as error:
        raise VapidKeyError(f"VAPID_PRIVATE_KEY is not a base64url P-256 key: {error}") from None
    if public_key_of(vapid.private_key) != public_b64.strip().rstrip("="):
        raise VapidKeyError("VAPID_PUBLIC_KEY does not belong to VAPID_PRIVATE_KEY.")
    return vapid


class VapidSigner:
    """Signs one JWT per push-service origin and period (not one per message).

    A token is valid for 12 hours from the start of its period, well inside the 24 hours
    RFC 8292 allows, and is replaced every `period_seconds`.
    """

    def __init__(self, vapid: Vapid02, subject: str, period_seconds: int = 3600) -> None:
        self.vapid = vapid
        self.subject = subject
        self.period = period_seconds
        self._cache: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()
        self.signatures = 0  # how many JWTs were signed, for tests and metrics

    def authorization(self, origin: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        bucket = int(now // self.period)
        with self._lock:
            header = self._cache.get((origin, bucket))
            if header is None:
                claims = {"aud": origin, "exp": int(now) + 12 * 3600, "sub": self.subject}
                header = self.vapid.sign(claims)["Authorization"]
                self._cache = {k: v for k, v in self._cache.items() if k[1] == bucket}
                self._cache[(origin, bucket)] = header
                self.signatures += 1
            return header
