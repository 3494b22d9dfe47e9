"""The SQLite broker of `notifier dev`: web, worker and beat start at one moment and each
sends its first task to queues that another process may be creating."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

from notifier.celery_app import declare_queues, make_celery
from notifier.polling.node import FEEDS_QUEUE, SENDING_QUEUE
from tests.conftest import make_settings

FIRST_TASK_AT = """
import sys, time
from notifier.celery_app import make_celery
from notifier.config import load_settings
app = make_celery(load_settings({"NOTIFIER_DATA_DIR": sys.argv[1], "CELERY_BROKER_URL": sys.argv[2],
                                 "SECRET_KEY": "k", "PUBLIC_URL": "http://127.0.0.1"}))
with app.connection_for_write() as connection:
    connection.default_channel  # connected: the race is only in the first send
    time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
    app.send_task("notifier.tasks.sweep", connection=connection)
    app.send_task("notifier.tasks.poll_feed", args=(1,), connection=connection)
"""


def test_processes_sending_their_first_tasks_at_once_all_succeed(tmp_path):
    """The queues exist before any process sends: kombu's SQLite transport creates a
    missing queue's row with a lock of one process only, so without them two first tasks at
    once could both insert it and one process fail (the web answered 500): six
    processes without them failed in 7 trials of 8."""
    broker_file = tmp_path / "broker.sqlite"
    broker = f"sqla+sqlite:///{broker_file}"
    declare_queues(make_celery(make_settings(tmp_path, CELERY_BROKER_URL=broker)))
    with sqlite3.connect(broker_file) as db:
        assert {n for (n,) in db.execute("SELECT name FROM kombu_queue")} == {
            SENDING_QUEUE,
            FEEDS_QUEUE,
        }

    at = time.time() + 4  # every process imported and connected by then, on a slow machine
    command = [sys.executable, "-c", FIRST_TASK_AT]
    senders = [
        subprocess.Popen(
            [*command, str(tmp_path / f"var{n}"), broker, str(at)], stderr=subprocess.PIPE
        )
        for n in range(6)
    ]
    errors = [sender.communicate(timeout=60)[1].decode() for sender in senders]
    assert [sender.returncode for sender in senders] == [0] * 6, errors
    with sqlite3.connect(broker_file) as db:
        per_queue = dict(
            db.execute(
                "SELECT q.name, count(*) FROM kombu_message m"
                " JOIN kombu_queue q ON q.id = m.queue_id GROUP BY q.name"
            )
        )
    assert per_queue == {SENDING_QUEUE: 6, FEEDS_QUEUE: 6}


def test_migrate_makes_the_queues_for_processes_started_apart(tmp_path):
    """web, worker and beat started on their own (not by `notifier dev`) after `notifier
    migrate` find the queues made too."""
    from click.testing import CliRunner

    from notifier.cli import cli

    broker_file = tmp_path / "broker.sqlite"
    env = {"NOTIFIER_DATA_DIR": str(tmp_path / "var"), "SECRET_KEY": "k",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'notifier.sqlite'}",
           "CELERY_BROKER_URL": f"sqla+sqlite:///{broker_file}", "FEED_URLS": ""}  # fmt: skip
    result = CliRunner().invoke(cli, ["migrate"], env=env)
    assert result.exit_code == 0, result.output
    with sqlite3.connect(broker_file) as db:
        assert {n for (n,) in db.execute("SELECT name FROM kombu_queue")} == {
            SENDING_QUEUE,
            FEEDS_QUEUE,
        }
