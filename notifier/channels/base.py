"""The channel interface every transport implements, and the outcomes it reports.

Transport exceptions never leak past a channel, and a channel never swallows one: each
becomes an outcome with a detail string that is recorded on the delivery and counted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, TypeVar

MessageT = TypeVar("MessageT", contravariant=True)


class Outcome(enum.StrEnum):
    SENT = "sent"  # the server accepted it
    RETRY = "retry"  # temporary: try again later (SMTP 4xx, refused connection, timeout)
    GONE = "gone"  # the recipient no longer exists: never retry (SMTP 5xx at RCPT, push 404/410)
    FAILED = "failed"  # this message was refused for good, the recipient stays (push 400/403)


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str = ""
    retry_after: float | None = None

    @classmethod
    def sent(cls, detail: str = "accepted") -> SendResult:
        return cls(Outcome.SENT, detail)


class ChannelSession(Protocol[MessageT]):
    """An open connection to a transport; send many messages through it, then close."""

    def send(self, message: MessageT) -> SendResult: ...

    def close(self) -> None: ...


class Channel(Protocol[MessageT]):
    name: str

    def open(self) -> ChannelSession[MessageT]: ...
