"""Relays' bounce and complaint webhooks (Amazon SES through SNS, Postmark, SendGrid,
Mailgun): one module each that proves a call came from the relay and reads its events into
ProviderReports for the one bounce processor. Pure functions of the request's bytes and
headers, testable without Flask."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable

MAX_EVENTS = 1000  # events read from one call; a relay batches far fewer


class WebhookRefused(Exception):
    """The call is not proven to come from the relay: answered 401/403, nothing changes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PayloadError(ValueError):
    """The call is authentic (or cannot be checked) but not readable: answered 400."""


def json_payload(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise PayloadError("The body is not JSON.") from None


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison; an empty expected secret matches nothing."""
    return (
        bool(expected)
        and given is not None
        and hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))
    )


def fields(value: object) -> dict:
    """A JSON object the relay may or may not have sent: {} when it is anything else."""
    return value if isinstance(value, dict) else {}


def text(value: object, limit: int = 500) -> str:
    """A field as one line of text, whatever JSON type the relay sent."""
    if value is None:
        return ""
    return " ".join(str(value).split())[:limit]


def our_message_id(value: object) -> str | None:
    """A Message-ID as relays echo it, with or without its angle brackets."""
    found = text(value, 300).strip()
    if not found:
        return None
    return found if found.startswith("<") else f"<{found}>"


def strings_in(values: Iterable[object], limit: int = 20) -> tuple[str, ...]:
    """The text values among a relay's custom fields: where a signed bounce address of ours
    may be echoed (Postmark metadata, Mailgun user variables, SendGrid custom args)."""
    found = [v.strip() for v in values if isinstance(v, str) and "@" in v and len(v) < 320]
    return tuple(found[:limit])
