"""The channel interface every transport implements, and the outcomes it reports.

Transport exceptions never leak past a channel, and a channel never swallows one: each
becomes an outcome with a detail string that is recorded on the delivery and counted.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
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
    retry_after: float | None = None  # seconds the server (or a hold on it) asked us to wait
    attempted: bool = True  # False: held back before any request went out (not a failure)

    @classmethod
    def sent(cls, detail: str = "accepted") -> SendResult:
        return cls(Outcome.SENT, detail)


@dataclass(frozen=True)
class EmailEnvelope:
    """An email ready for the wire: SMTP envelope addresses and the whole message as bytes
    (CRLF line ends, headers included). What the fast fan-out path hands to email channels."""

    mail_from: str  # bare address for MAIL FROM
    to: str  # bare address for RCPT TO
    data: bytes


class ChannelSession(Protocol[MessageT]):
    """An open connection to a transport; send many messages through it, then close."""

    def send(self, message: MessageT) -> SendResult: ...

    def send_many(
        self, messages: Iterable[tuple[int, MessageT]]
    ) -> Iterator[tuple[int, SendResult]]:
        """Send (key, message) pairs, several at once where the transport allows, and yield
        (key, result) as each completes, in any order. `messages` is iterated only in the
        caller's thread and lazily (at most a bounded number ahead of the results), so the
        caller can compose each message as it is pulled and stop a key it no longer holds."""
        ...

    def close(self) -> None: ...


class Channel(Protocol[MessageT]):
    name: str

    def open(self) -> ChannelSession[MessageT]: ...
