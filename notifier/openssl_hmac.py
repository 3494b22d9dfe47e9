"""HMAC through OpenSSL's own HMAC object (CPython's `_hashlib`), where this Python has it.

`hmac.digest` sets up the key and looks the hash up in OpenSSL on every call; on these
machines `_hashlib.hmac_new(key, msg, digestmod).digest()` costs about 2.7 µs against 3.7,
and copying an HMAC keyed once costs 2.2 against 4.1. Both matter where every message
makes several: a push's RFC 8291 key derivation (five HMACs), a fan-out email's two signed
links. The answers are the same bytes; without `_hashlib` the standard functions do it.
"""

from __future__ import annotations

import hmac
from typing import Any

_hmac_new: Any
try:
    from _hashlib import hmac_new as _hmac_new
except ImportError:  # a Python built without OpenSSL's hashlib
    _hmac_new = None


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of `message` under `key`."""
    if _hmac_new is None:
        return hmac.digest(key, message, "sha256")
    return _hmac_new(key, message, digestmod="sha256").digest()


def keyed(key: bytes, algorithm: str) -> Any | None:
    """An HMAC object keyed once, to `.copy()`, `.update(...)` and `.digest()` per message;
    None where this Python cannot make one (use hmac.digest then)."""
    return None if _hmac_new is None else _hmac_new(key, digestmod=algorithm)
