"""A worker is back on its broker within seconds of the broker's return, and hands it at once
what it did not take meanwhile.

Celery retries a lost broker connection at growing intervals, up to 30 s apart: after a
long outage a worker could sit idle for half a minute while the broker answered again. It
retries every BROKER_RECONNECT_SECONDS at most instead. And each time its consumer
(re)connects, before it takes any task, it hands over the tasks the broker did not take
(notifier.delivery.unsent), so none waits for the next BROKER_CHECK_SECONDS tick, nor is
found by the sweeper first.
"""

from __future__ import annotations

import functools

from celery import bootsteps
from celery.worker.consumer import Consumer

from notifier.celery_app import settings_of


class ReconnectingConsumer(Consumer):
    """Celery's consumer, trying a lost broker again every BROKER_RECONNECT_SECONDS."""

    def ensure_connected(self, conn):
        most = settings_of(self.app).broker_reconnect_seconds
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=min(1.0, most), interval_step=1.0,
            interval_max=most,
        )  # fmt: skip
        return super().ensure_connected(conn)


class HandOverOnConnect(bootsteps.StartStopStep):
    """Runs each time the consumer has (re)connected, before it consumes."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, consumer) -> None:
        from notifier.recovery import hand_over_unsent

        hand_over_unsent(settings_of(consumer.app))
