"""How many tasks wait in each broker queue (Redis or the embedded SQLite broker alike)."""

from __future__ import annotations

from typing import Protocol, cast

from celery import Celery
from kombu.exceptions import ChannelError

QUEUES = ("celery", "feeds")  # sending, and feed fetches (notifier.polling.node)


class _DeclareOk(Protocol):
    message_count: int


class _QueueDeclaring(Protocol):
    """What the channel of every kombu transport offers (AMQP's queue.declare), though
    kombu's base channel type does not say so."""

    def queue_declare(self, queue: str, passive: bool) -> _DeclareOk: ...


def queue_depths(app: Celery, names: tuple[str, ...] = QUEUES) -> dict[str, int]:
    """Messages waiting per queue. Raises the broker's connection error when it is down."""
    depths = {}
    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, timeout=3)
        channel = cast(_QueueDeclaring, connection.default_channel)
        for name in names:
            try:
                depths[name] = channel.queue_declare(queue=name, passive=True).message_count
            except ChannelError:  # never declared yet: nothing waits there
                depths[name] = 0
    return depths
