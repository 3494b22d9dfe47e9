"""The kill -9 scenarios with RabbitMQ as the broker (a vhost of our own on the local
server), and a broker restart (a node of our own), every setting at its default: the same
targets and bounds as on Redis."""

from __future__ import annotations

import json
import subprocess

from tests.fault.harness import RABBITMQCTL, OwnVhost
from tests.fault.scenarios import (
    BROKER_LOST_TARGET,
    CHILD_KILL_TARGET,
    KILL_TARGET,
    pool_child_killed,
    rabbitmq_restarted,
    worker_killed,
)
from tests.fault.test_worker_killed import BOUND_PER_PROCESS, CONCURRENCY, CONNECTIONS

RECORD_BATCH = 10
RECIPIENTS = 2000
RESTART_RECIPIENTS = 3000  # a first chunk of 50, then three of the default 1,000: some still
# queued at the restart


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


def test_queued_tasks_survive_a_restart_of_the_broker(tmp_path):
    """The durable queue and persistent messages at work: tasks queued before a clean
    shutdown are there when the node comes back on its data."""
    from notifier.celery_app import make_celery
    from tests.fault.harness import OwnRabbitMQ, _settings

    rabbit = OwnRabbitMQ(tmp_path).start()
    try:
        settings = _settings(tmp_path, {"CELERY_BROKER_URL": rabbit.url})
        with make_celery(settings) as app:
            for delivery_ids in ([1, 2], [3]):
                app.send_task("notifier.tasks.send_deliveries", args=(delivery_ids,))
        assert rabbit.queues()["celery"] == {"durable": "true", "messages_ready": "2",
                                             "messages_unacknowledged": "0"}  # fmt: skip
        rabbit.restart()
        assert rabbit.queues()["celery"]["messages_ready"] == "2"
        with make_celery(settings) as app, app.connection_for_read() as connection:
            channel = connection.default_channel
            bodies = [channel.basic_get("celery", no_ack=True).body for _ in range(2)]
        assert [json.loads(body)[0] for body in bodies] == [[[1, 2]], [[3]]]
    finally:
        rabbit.stop()


def test_rabbitmq_restarted_mid_fan_out_loses_nothing(tmp_path, pg_database_url):
    """A RabbitMQ node of our own (the shared one on 5672 is others' to use) is shut down a
    third of the way through a fan-out and started again on its data: the durable queue and
    persistent messages bring every chunk back, nothing waits for the sweeper, and the
    claims keep the unacknowledged chunks it hands out again from going twice."""
    figures = rabbitmq_restarted(tmp_path, pg_database_url, RESTART_RECIPIENTS)
    print(figures.line())
    notes = figures.notes
    assert notes["queue_durable"]
    assert notes["ready_at_stop"] + notes["unacked_at_stop"] > 0, "work was in the broker"
    assert notes["sent_before_restart"] < RESTART_RECIPIENTS, "the restart landed mid fan-out"
    assert notes["worker_saw_loss"] and notes["worker_alive"], "the same worker carried on"
    assert not notes["sweeper_requeued"], "nothing waited for the sweeper"
    assert figures.seconds <= BROKER_LOST_TARGET
    assert (figures.delivered, figures.lost, figures.duplicates) == (RESTART_RECIPIENTS, 0, 0)
    assert notes["strangers"] == 0
    assert notes["final"] == {"sent": RESTART_RECIPIENTS}
