"""The channel interface every transport implements (the values it takes and the outcomes it
reports live in notifier.messages).

Transport exceptions never leak past a channel, and a channel never swallows one: each
becomes an outcome with a detail string that is recorded on the delivery and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

from notifier.messages import SendResult

MessageT = TypeVar("MessageT", contravariant=True)


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
