"""The kill -9 scenarios with RabbitMQ as the broker (a vhost of our own on the local
server), every setting at its default: the same targets and bounds as on Redis."""

from __future__ import annotations

import subprocess

from tests.fault.harness import RABBITMQCTL, OwnVhost
from tests.fault.scenarios import (
    CHILD_KILL_TARGET,
    KILL_TARGET,
    pool_child_killed,
    worker_killed,
)
from tests.fault.test_worker_killed import BOUND_PER_PROCESS, CONCURRENCY, CONNECTIONS

RECORD_BATCH = 10
RECIPIENTS = 2000


def test_sigkilled_worker_on_rabbitmq_is_taken_over_within_a_minute(tmp_path, pg_database_url):
    figures = worker_killed(tmp_path, pg_database_url, RECIPIENTS, CONCURRENCY, RECORD_BATCH,
                            CONNECTIONS, broker="rabbitmq")  # fmt: skip
    print(figures.line())
    notes = figures.notes
    assert notes["sending_at_kill"] > 0 and not notes["sweeper_requeued"]
    assert figures.seconds <= KILL_TARGET
    assert (figures.delivered, figures.lost, notes["strangers"]) == (RECIPIENTS, 0, 0)
    assert figures.duplicates == notes["unmarked_at_kill"] <= CONCURRENCY * BOUND_PER_PROCESS
    assert notes["final"] == {"sent": RECIPIENTS}


def test_sigkilled_pool_child_on_rabbitmq_is_taken_over(tmp_path, pg_database_url):
    figures = pool_child_killed(tmp_path, pg_database_url, RECIPIENTS, CONCURRENCY,
                                RECORD_BATCH, CONNECTIONS, broker="rabbitmq")  # fmt: skip
    print(figures.line())
    notes = figures.notes
    assert notes["main_alive"] and notes["taken_over"] and not notes["sweeper_requeued"]
    assert figures.seconds <= CHILD_KILL_TARGET
    assert (figures.delivered, figures.lost, notes["strangers"]) == (RECIPIENTS, 0, 0)
    assert figures.duplicates <= BOUND_PER_PROCESS
    assert notes["final"] == {"sent": RECIPIENTS}


def test_the_task_queue_is_durable_and_messages_persistent(tmp_path):
    """What makes a RabbitMQ restart lose nothing: a durable queue, persistent messages."""
    from notifier.celery_app import make_celery
    from tests.fault.harness import _settings

    vhost = OwnVhost().start()
    try:
        settings = _settings(tmp_path, {"CELERY_BROKER_URL": vhost.url})
        with make_celery(settings) as app:
            app.send_task("notifier.tasks.sweep")
            with app.connection_for_read() as connection:
                message = connection.default_channel.basic_get("celery", no_ack=True)
        assert message.delivery_info["routing_key"] == "celery"
        assert message.properties["delivery_mode"] == 2, "persistent"
        queues = subprocess.run(
            [RABBITMQCTL, "-q", "list_queues", "-p", vhost.name, "name", "durable"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "celery\ttrue" in queues
    finally:
        vhost.stop()
