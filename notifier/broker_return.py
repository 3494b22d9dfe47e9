"""A worker outlives its broker going away, is back within seconds of the broker's return,
and hands it at once what it did not take meanwhile.

Celery retries a lost broker connection at growing intervals, up to 30 s apart: after a
long outage a worker could sit idle for half a minute while the broker answered again. It
retries every BROKER_RECONNECT_SECONDS at most instead. And each time its consumer
(re)connects, before it takes any task, it hands over the tasks the broker did not take
(notifier.delivery.unsent), so none waits for the next BROKER_CHECK_SECONDS tick, nor is
found by the sweeper first.
"""

from __future__ import annotations

import functools
import logging

from celery import bootsteps
from celery.worker.consumer import Consumer

from notifier.broker_marker import is_redis
from notifier.celery_app import settings_of

log = logging.getLogger(__name__)


class ReconnectingConsumer(Consumer):
    """Celery's consumer, trying a lost broker again every BROKER_RECONNECT_SECONDS, and not
    dying of a connection that cannot be closed cleanly."""

    def on_connection_error_after_connected(self, exc):
        """Celery closes the lost connection here. A Redis broker that went away while this
        worker held unacknowledged tasks and waited for more (a free pool slot: a BRPOP in
        flight) leaves kombu's channel half-closed by Connection.collect(), which releases
        the transport (its client becomes None). Closing the channel again, and later the
        acknowledgement of a task that was running meanwhile, then tripped over it
        (AttributeError), which Celery takes for an unrecoverable error: the whole worker
        exited and nothing was sent after the broker came back. The transport keeps its
        client here, so the close completes and those acknowledgements reach the broker
        once it answers (until then they fail as connection errors, logged by kombu)."""
        connection = self.connection
        transport = getattr(connection, "_transport", None)
        if (
            connection is not None
            and transport is not None
            and is_redis(settings_of(self.app).broker_url)
        ):
            close = connection.close

            def close_keeping_the_client() -> None:
                transport.client = connection
                try:
                    close()
                except AttributeError as error:
                    log.warning("the lost broker connection did not close cleanly (%s); "
                                "reconnecting all the same", error)  # fmt: skip
                finally:
                    transport.client = connection

            connection.close = close_keeping_the_client  # type: ignore[method-assign]
        super().on_connection_error_after_connected(exc)

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
