"""The Celery app, configured for at-least-once work: the database says what is owed."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from celery import Celery

from notifier.config import Settings, load_settings
from notifier.polling.node import FEEDS_QUEUE, SENDING_QUEUE, feed_routes

log = logging.getLogger(__name__)


def is_amqp(url: str) -> bool:
    return url.startswith(("amqp://", "amqps://", "pyamqp://"))


def _amqp_options(settings: Settings) -> dict:
    """RabbitMQ: durable queues (classic, or quorum with AMQP_QUORUM_QUEUES), persistent
    messages and late acknowledgement (set for every broker below): a killed worker's
    unacknowledged tasks return as soon as its connection drops, and a broker restart loses
    nothing. Countdowns stay below BROKER_ETA_MAX_SECONDS, well within RabbitMQ's consumer
    timeout (30 min) for unacknowledged ETA tasks."""
    if not is_amqp(settings.broker_url):
        return {}
    from kombu import Queue

    arguments = {"x-queue-type": "quorum"} if settings.amqp_quorum_queues else None
    return {
        "task_queues": tuple(
            Queue(name, routing_key=name, durable=True, queue_arguments=arguments)
            for name in (SENDING_QUEUE, FEEDS_QUEUE)
        ),
        "task_default_delivery_mode": "persistent",
        "broker_heartbeat": 10,  # notice a dead broker connection within seconds
    }


def _transport_options(settings: Settings) -> dict:
    """Redis redelivers unacknowledged tasks after visibility_timeout: longer than any task."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return {
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
            # Notice a dead connection (Redis restarted) instead of waiting on it forever.
            "health_check_interval": 10,
            "socket_keepalive": True,
            "socket_timeout": 30,
            "socket_connect_timeout": 10,
            "retry_on_timeout": True,
        }
    return {}


def _mailbox_schedule(settings: Settings) -> dict:
    """The bounce mailbox is read only when there is one (IMAP_HOST)."""
    if not settings.imap_host:
        return {}
    return {
        "read-bounce-mailbox": {
            "task": "notifier.tasks.read_bounce_mailbox",
            "schedule": timedelta(seconds=settings.imap_poll_seconds),
        }
    }


class NotifierCelery(Celery):
    """The Celery app, carrying the Settings it was made from: tasks and worker steps read
    theirs from it rather than from the environment again."""

    notifier_settings: Settings


def settings_of(app: Celery) -> Settings:
    """The Settings of an app make_celery made (a worker's steps get the app as a Celery)."""
    if not isinstance(app, NotifierCelery):
        raise TypeError(f"{app!r} was not made by notifier.celery_app.make_celery")
    return app.notifier_settings


def make_celery(settings: Settings | None = None) -> NotifierCelery:
    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # beat keeps its schedule there
    app = NotifierCelery("notifier", broker=settings.broker_url, include=["notifier.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged after it ran, and handed back if its worker dies mid-way.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,  # keep reconnecting: never give up on the broker
        # After a lost broker connection the running batches finish: claims already keep a
        # redelivered copy from sending their rows twice, while cancelling them would kill
        # pool children mid-send (messages out, outcomes unrecorded: duplicates).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Back on a returning broker within BROKER_RECONNECT_SECONDS (notifier.broker_return).
        worker_consumer="notifier.broker_return:ReconnectingConsumer",
        broker_transport_options=_transport_options(settings),
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        # Events give worker heartbeats (our dashboard, Flower); nobody stores task events.
        worker_send_task_events=True,
        # Feed fetches have their own queue and node (notifier.polling.node): never a sending slot.
        task_routes=feed_routes(),
        **_amqp_options(settings),
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
        beat_schedule={
            "poll-feeds": {
                "task": "notifier.tasks.poll_feeds",
                "schedule": timedelta(seconds=settings.feed_poll_seconds),
            },
            "release-alerts": {
                "task": "notifier.tasks.release_alerts",
                "schedule": timedelta(seconds=settings.alert_scheduler_seconds),
            },
            "plan-digests": {
                "task": "notifier.tasks.plan_digests",
                "schedule": timedelta(seconds=settings.digest_planner_seconds),
            },
            "sweep": {
                "task": "notifier.tasks.sweep",
                "schedule": timedelta(seconds=settings.sweep_seconds),
            },
            "retain-deliveries": {
                "task": "notifier.tasks.retain_deliveries",
                "schedule": timedelta(seconds=settings.retention_seconds),
            },
            **_mailbox_schedule(settings),
        },
    )
    app.notifier_settings = settings
    _record_heartbeats(app, settings)
    _record_task_failures()
    return app


def declare_queues(app: Celery) -> None:
    """The SQLite broker's queues, made before web, worker and beat start. Its transport adds
    a queue's row at the first task, locked only within one process: two processes' first
    tasks at once both insert it, and one fails (UNIQUE constraint failed: kombu_queue.name),
    leaving that process's broker session unusable. Other brokers declare their own."""
    if not app.conf.broker_url.startswith("sqla+"):
        return
    from kombu import Queue

    with app.connection_for_write() as connection:
        for name in (SENDING_QUEUE, FEEDS_QUEUE):
            Queue(name).bind(connection.default_channel).queue_declare()


def _record_task_failures() -> None:
    """Every task that fails for good is kept with its cause and counted, whatever the task:
    nothing fails silently (retries are not failures; their last attempt may be)."""
    from celery.signals import task_failure

    task_failure.connect(_task_failed, weak=False, dispatch_uid="notifier.task_failed")


def _task_failed(sender=None, task_id=None, exception=None, args=None, kwargs=None, **_) -> None:
    from notifier import metrics
    from notifier.ops.task_failures import record_task_failure
    from notifier.timeutil import utcnow

    settings = getattr(getattr(sender, "app", None), "notifier_settings", None)
    name = getattr(sender, "name", None) or "unknown"
    metrics.task_failed(name)
    if settings is not None and exception is not None:
        arguments = {"args": list(args or ()), "kwargs": dict(kwargs or {})}
        record_task_failure(settings.database_url, name, task_id or "", exception, arguments,
                            utcnow())  # fmt: skip


def _record_heartbeats(app: Celery, settings: Settings) -> None:
    """Every worker writes its heartbeat row on a timer of its own, whatever the broker
    (event heartbeats need a fanout exchange, which the embedded SQLite broker lacks)."""
    from celery import bootsteps
    from celery.signals import worker_init, worker_process_init
    from celery.worker import state

    from notifier.broker_return import HandOverOnConnect
    from notifier.ops.workers import forget_heartbeat, record_heartbeat
    from notifier.timeutil import utcnow

    class DatabaseHeartbeat(bootsteps.StartStopStep):
        requires = ("celery.worker.components:Timer",)

        def start(self, worker) -> None:
            self.started_at = utcnow()
            self.refuse_a_taken_name(worker)
            self.beat(worker)
            self.tref = worker.timer.call_repeatedly(
                settings.worker_heartbeat_seconds, self.beat, (worker,)
            )

        def refuse_a_taken_name(self, worker) -> None:
            """Two live workers under one name would hand each other's messages over while
            they are being sent: the second one does not start (exit code 1, and why)."""
            from sqlalchemy.exc import SQLAlchemyError

            from notifier.ops.workers import name_in_use

            try:
                problem = name_in_use(settings.database_url, worker.hostname,
                                      settings.worker_stale_seconds,
                                      settings.worker_heartbeat_seconds)  # fmt: skip
            except SQLAlchemyError as error:  # the database's outage is not ours to stop on
                log.warning("could not check that no other worker is named %s: %s",
                            worker.hostname, error)  # fmt: skip
                return
            if problem is not None:
                log.error("not starting: %s", problem)
                raise SystemExit(1)

        def beat(self, worker) -> None:
            record_heartbeat(
                settings.database_url, worker.hostname, worker.concurrency or 0,
                len(state.active_requests), self.started_at,
            )  # fmt: skip

        def stop(self, worker) -> None:
            if getattr(self, "tref", None) is not None:
                worker.timer.cancel(self.tref)
            forget_heartbeat(settings.database_url, worker.hostname)  # a clean stop

    class Takeover(bootsteps.StartStopStep):
        """Every TAKEOVER_CHECK_SECONDS: hand the claims of dead worker processes (stale
        heartbeat, or one of our own pool children gone) to live workers at once."""

        requires = (DatabaseHeartbeat,)

        def start(self, worker) -> None:
            self.handled: set = set()  # dead workers this process already handled
            self.starting = True
            self.tref = worker.timer.call_repeatedly(
                settings.takeover_check_seconds, self.check, (worker,)
            )

        def check(self, worker) -> None:
            from notifier.delivery.takeover import LocalPool
            from notifier.recovery import take_over_dead_workers

            local = LocalPool(worker.hostname, os.getpid(), _pool_children(worker))
            take_over_dead_workers(settings, local, self.handled, self.starting)
            self.starting = False

        def stop(self, worker) -> None:
            if getattr(self, "tref", None) is not None:
                worker.timer.cancel(self.tref)

    class BrokerCheck(bootsteps.StartStopStep):
        """Every BROKER_CHECK_SECONDS: has the (Redis) broker lost its queues? And, on any
        broker, hand it what it did not take while it was down or unreachable. (The timer
        runs while this worker is connected to the broker, so within seconds of its return.)"""

        requires = (Takeover,)

        def start(self, worker) -> None:
            from notifier.broker_marker import BrokerMarker, is_redis

            # RabbitMQ's durable queues survive a restart: no marker there.
            redis = is_redis(settings.broker_url)
            self.marker = BrokerMarker(settings.broker_url) if redis else None
            self.check()
            self.tref = worker.timer.call_repeatedly(settings.broker_check_seconds, self.check, ())

        def check(self) -> None:
            from notifier.recovery import check_broker, hand_over_unsent

            if self.marker is not None:
                check_broker(settings, self.marker)
            hand_over_unsent(settings)

        def stop(self, worker) -> None:
            if getattr(self, "tref", None) is not None:
                worker.timer.cancel(self.tref)
            marker = getattr(self, "marker", None)
            if marker is not None:
                marker.close()

    app.steps["worker"].add(DatabaseHeartbeat)
    app.steps["worker"].add(Takeover)
    app.steps["worker"].add(BrokerCheck)
    app.steps["consumer"].add(HandOverOnConnect)
    worker_process_init.connect(_forget_inherited_connections, weak=False)

    def warm_up_this_process(**_kwargs) -> None:
        """In a thread: the pool process reports ready at once (Celery gives it a few
        seconds), whatever the database does meanwhile."""
        import threading

        from notifier.tasks import warm_up

        threading.Thread(target=warm_up, args=(settings,), name="warm-up", daemon=True).start()

    # After the line above (signal receivers run in the order connected): new connections.
    worker_process_init.connect(warm_up_this_process, weak=False)
    worker_init.connect(_name_this_worker, weak=False)


def _name_this_worker(sender=None, **_kwargs) -> None:
    """Before the pool forks: the name claims of this worker's processes carry."""
    from notifier import holders

    holders.became_worker(sender.hostname)


def _pool_children(worker) -> set[int] | None:
    """Pids of the prefork pool's live children; None for pools that do not fork."""
    processes = getattr(getattr(getattr(worker, "pool", None), "_pool", None), "_pool", None)
    if processes is None:
        return None
    return {process.pid for process in list(processes) if process.pid}


def _forget_inherited_connections(**_kwargs) -> None:
    from notifier.db import forget_inherited_connections

    forget_inherited_connections()
