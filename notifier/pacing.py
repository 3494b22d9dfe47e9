"""Send-rate limits per channel and per SMTP server or push service, shared by every worker.

Channels ask before each send: `delay = pacer.reserve(key)` books one send on `key` and
says how many seconds to wait before making it (0.0: now). Keys are "email" (the SMTP
server), "push" (every push service together) and "push:<origin>" (one push service).
A key with no configured rate costs nothing and always answers 0.0.
"""

from __future__ import annotations

from typing import Protocol


class Pacer(Protocol):
    def reserve(self, key: str, count: int = 1) -> float:
        """Book `count` sends on `key`; seconds the caller must wait before sending them."""
        ...


class Unlimited:
    """No configured rate: every send may go now."""

    def reserve(self, key: str, count: int = 1) -> float:
        return 0.0
