"""Fault scenarios as plain functions: the tests run them small and assert on the figures,
bench/faults.py runs scenarios 1, 2, 3 and 6 large and prints the same figures.

Each function owns everything it breaks (Redis, proxies, worker and beat processes, SMTP and
push servers) and returns Figures: recipients / delivered / duplicates / lost / seconds from
the fan-out being queued until the last recipient had the message, plus scenario notes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from sqlalchemy import func, select, text

from notifier.db import engine_for, session_scope
from notifier.delivery.unsent import UnsentSummary, unsent_summary
from notifier.models import Delivery, DeliveryStatus, Feed, PushSubscription, Subscriber
from notifier.timeutil import utcnow
from notifier.web import create_app
from tests.fault.harness import (
    SHORT_RETRIES,
    Figures,
    Stack,
    Tally,
    article_id_by_guid,
    delivery_states,
    errors_like,
    expired_leases,
    open_stack,
    seed_article,
    seed_digest_readers,
    seed_email_subscribers,
    seed_push_subscriptions,
    settled,
    tally,
    wait_for,
    wait_for_everyone,
)
from tests.support.feed_server import FeedServer
from tests.support.ops_views import feed_in_status
from tests.support.processes import web_server
from tests.support.push_service import Reply
from tests.support.rss import Item, rss
from tests.support.smtp import free_port


def deadline(recipients: int) -> float:
    """Generous time for a fan-out plus its recovery (2 busy cores send ~50-100 emails/s)."""
    return 60 + recipients / 25


def _wait_for_messages(stack: Stack, count: int, recipients: int) -> None:
    smtp = stack.smtp.handler
    wait_for(lambda: smtp.message_count() >= count, deadline(recipients),
             lambda: f"fan-out stalled at {smtp.message_count()}\n{stack.logs()}")  # fmt: skip


def _stall_senders(stack: Stack, count: int) -> None:
    """Let `count` workers' next messages reach the SMTP server and stay unacknowledged."""
    smtp = stack.smtp.handler
    smtp.stalling = True
    wait_for(lambda: smtp.data_waiting >= count, 20,
             lambda: f"only {smtp.data_waiting} sends in flight\n{stack.logs()}")  # fmt: skip


def _grouped_stack(tmp: Path, database_url: str, record_batch: int, connections: int, **env: str):
    """A stack whose workers record outcomes `record_batch` at a time over `connections`
    SMTP connections: what bounds the messages a killed process sent but did not record.
    (The defaults are 50 and 4; smaller here so the test's bound is tight.)"""
    return open_stack(tmp, database_url, DELIVERY_RECORD_BATCH=str(record_batch),
                      SMTP_CONNECTIONS=str(connections), **env)  # fmt: skip


def _email_figures(
    name: str, stack: Stack, emails: list[str], article: int, seconds: float, **notes
) -> Figures:
    counts = tally(emails, stack.smtp.handler.by_recipient())
    notes["strangers"] = counts.strangers
    notes["final"] = dict(delivery_states(stack.database_url, article))
    return Figures(
        name, len(emails), counts.delivered, counts.duplicates, counts.lost, seconds, notes
    )


# 1 ------------------------------------------------------------------------------------------


KILL_TARGET = 60.0  # issue 12: everyone within 60 s of a kill -9 of the whole worker
CHILD_KILL_TARGET = 30.0  # and within 30 s of a kill -9 of one pool child


def worker_killed(
    tmp: Path, database_url: str, recipients: int = 3000, concurrency: int = 2,
    record_batch: int = 10, connections: int = 2, within: float | None = KILL_TARGET,
    same_name: bool = False, **env: str,
):  # fmt: skip
    """SIGKILL the whole worker (prefork parent and children) a third of the way through a
    fan-out, at a moment when each child has messages accepted by the SMTP server but not
    yet acknowledged, then start a new worker at once. Every recipient gets the article;
    the only duplicates are the messages sent but not marked: per killed process at most a
    group being recorded and what its SMTP connections had sent and not handed back (see
    notifier.channels.smtp.accepted_not_handed_at_most). Seconds are counted from the kill;
    the wait fails past `within`. With `same_name` the new worker has the dead one's node
    name, as a restarted service does."""
    with _grouped_stack(tmp, database_url, record_batch, connections, **env) as stack:
        emails = seed_email_subscribers(database_url, recipients)
        article = seed_article(database_url)
        stack.beat()
        first = stack.worker("worker-1", concurrency)
        group = first.group()
        stack.fan_out(article)
        _wait_for_messages(stack, recipients // 3, recipients)
        _stall_senders(stack, concurrency)
        first.kill_group(signal.SIGKILL)
        killed, killed_at = time.monotonic(), datetime.now(UTC)
        first.wait(10)
        wait_for(lambda: not first.group(), 10, "killed processes are still alive")
        stack.smtp.handler.stalling = False
        time.sleep(0.3)
        at_kill = stack.smtp.handler.message_count()
        states = delivery_states(database_url, article)
        noted = _noted_unclaimed(database_url, article)
        second = stack.worker("worker-2", concurrency, node="worker-1" if same_name else "")
        seconds = _wait_since(stack, article, emails, killed, within, recipients)
        return _email_figures(
            "1 worker SIGKILL" + (", restarted under its name" if same_name else ""),
            stack, emails, article, seconds,
            processes_killed=len(group), sent_before_kill=at_kill,
            sweeper_requeued=stack.logged("sweep re-queued"),
            taken_over=stack.logged("took over"),
            sending_at_kill=states["sending"], unmarked_at_kill=at_kill - states["sent"],
            noted_at_kill=noted, takeover_seconds=_took_over_after(second.output(), killed_at),
        )  # fmt: skip


def _took_over_after(log: str, killed_at: datetime) -> float | None:
    """Seconds from the kill to the new worker's first "took over" log line; None if none."""
    for line in log.splitlines():
        if "took over" in line and line.startswith("{"):
            logged_at = datetime.fromisoformat(json.loads(line)["time"].replace("Z", "+00:00"))
            return (logged_at - killed_at).total_seconds()
    return None


def _noted_unclaimed(database_url: str, article: int) -> int:
    """The article's rows noted queued by a worker process and not claimed yet: a chunk
    planned and handed to the broker that no process had started. A takeover queues them
    again and counts them with the claimed ones (notifier.delivery.takeover)."""
    with session_scope(database_url) as session:
        return session.scalar(
            select(func.count()).where(
                Delivery.article_id == article,
                Delivery.status == DeliveryStatus.PENDING,
                Delivery.queued_by.is_not(None),
            )
        )


def digest_worker_killed(
    tmp: Path, database_url: str, readers: int = 2000, concurrency: int = 2,
    record_batch: int = 10, connections: int = 2, within: float | None = KILL_TARGET,
):  # fmt: skip
    """The morning digest: `readers` daily digests due at once, beat ticking, planned in small
    batches by the beat's planner and its helpers; the whole worker SIGKILLed while they
    plan (some digests planned, some schedules still due) and send the first ones, a new
    worker started at once. Seconds are counted from the kill."""
    # Batches of 5 schedules (not 500): planning lasts long enough to be caught at it. Beat
    # ticks every 2 s (not 60): the next tick plans what the killed planners left, without
    # the test waiting a minute; each tick while planning adds a planner, as a beat firing
    # twice does.
    with _grouped_stack(tmp, database_url, record_batch, connections, DIGEST_PLAN_BATCH="5",
                        DIGEST_PLANNER_SECONDS="2") as stack:  # fmt: skip
        article = seed_article(database_url, "Morning story", "economy")
        emails = seed_digest_readers(database_url, readers, article)
        first = stack.worker("worker-1", concurrency)
        group = first.group()
        stack.beat()

        def planning() -> bool:
            states = digest_states(database_url)
            return states["digests"] >= readers // 4 and states["schedules due"] > 0

        wait_for(planning, deadline(readers), lambda: f"never caught planning\n{stack.logs()}")
        first.kill_group(signal.SIGKILL)
        killed = time.monotonic()
        first.wait(10)
        wait_for(lambda: not first.group(), 10, "killed processes are still alive")
        at_kill = stack.smtp.handler.message_count()
        states = digest_states(database_url)
        stack.worker("worker-2", concurrency)
        received = stack.smtp.handler.by_recipient
        limit = deadline(readers) if within is None else within
        wait_for(lambda: tally(emails, received()).lost == 0
                 and digest_states(database_url)["deliveries sent"] == readers,
                 limit, lambda: f"{tally(emails, received())} {digest_states(database_url)}"
                 f" {delivery_rows(database_url)}\n{stack.logs()}")  # fmt: skip
        seconds = time.monotonic() - killed
        time.sleep(1.0)  # a late duplicate would arrive now
        counts = tally(emails, received())
        return Figures(
            "1 worker SIGKILL, morning digest", readers, counts.delivered, counts.duplicates,
            counts.lost, seconds,
            {"processes_killed": len(group), "sent_before_kill": at_kill,
             "unmarked_at_kill": at_kill - states["deliveries sent"], "at_kill": dict(states),
             "final": dict(digest_states(database_url)), "strangers": counts.strangers},
        )  # fmt: skip


def delivery_rows(url: str) -> list:
    """The digest deliveries not sent: how each stands (for a failure's message)."""
    with engine_for(url).connect() as conn:
        return list(conn.execute(text(
            "SELECT id, status, attempts, queued_at, next_attempt_at, claimed_by, lease_until"
            " FROM deliveries WHERE digest_id IS NOT NULL AND status <> 'sent' ORDER BY id"
        )))  # fmt: skip


def digest_states(url: str) -> Counter:
    """Digests planned, per reader at most one, their deliveries by status, and schedules
    still due."""
    with engine_for(url).connect() as conn:
        counts = Counter({
            f"deliveries {status}": n for status, n in conn.execute(text(
                "SELECT status, count(*) FROM deliveries WHERE digest_id IS NOT NULL"
                " GROUP BY status"))
        })  # fmt: skip
        counts["digests"], counts["readers with a digest"] = conn.execute(
            text("SELECT count(*), count(DISTINCT subscriber_id) FROM digests")
        ).one()
        counts["schedules due"] = conn.execute(text(
            "SELECT count(*) FROM digest_schedules WHERE next_at <= now() AT TIME ZONE 'utc'"
        )).scalar_one()  # fmt: skip
    return counts


def pool_child_killed(
    tmp: Path, database_url: str, recipients: int = 2000, concurrency: int = 2,
    record_batch: int = 10, connections: int = 2, within: float | None = CHILD_KILL_TARGET,
    **env: str,
):  # fmt: skip
    """SIGKILL one pool child that holds claimed rows, mid fan-out, while its main process
    lives on (and starts a new child). Seconds are counted from the kill."""
    with _grouped_stack(tmp, database_url, record_batch, connections, **env) as stack:
        emails = seed_email_subscribers(database_url, recipients)
        article = seed_article(database_url)
        stack.beat()
        worker = stack.worker("worker-1", concurrency)
        stack.fan_out(article)
        _wait_for_messages(stack, recipients // 3, recipients)
        _stall_senders(stack, concurrency)
        victim = _a_claiming_child(database_url, worker)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: victim not in worker.group(), 10, "the killed child is still alive")
        stack.smtp.handler.stalling = False
        time.sleep(0.3)
        at_kill = stack.smtp.handler.message_count()
        states = delivery_states(database_url, article)
        noted = _noted_unclaimed(database_url, article)
        seconds = _wait_since(stack, article, emails, killed, within, recipients)
        return _email_figures(
            "pool child SIGKILL", stack, emails, article, seconds,
            main_alive=worker.alive(), sent_before_kill=at_kill,
            sweeper_requeued=stack.logged("sweep re-queued"),
            taken_over=stack.logged("took over"),
            sending_at_kill=states["sending"], unmarked_at_kill=at_kill - states["sent"],
            noted_at_kill=noted,
        )  # fmt: skip


def worker_killed_holding_retries(
    tmp: Path, database_url: str, subscriptions: int = 100, retry_after: int = 20,
    concurrency: int = 2, within: float = 30.0, **env: str,
):  # fmt: skip
    """The push service answers the first request 429 Retry-After; the worker holds the
    retries as ETA tasks (in its memory: no claim) when it is SIGKILLed, and a fresh worker
    starts at once. Seconds are counted from when the retries were due; the wait fails
    `within` seconds after that."""
    with open_stack(tmp, database_url, **env) as stack:
        push = stack.push
        browsers = [push.new_subscription() for _ in range(subscriptions)]
        seed_push_subscriptions(database_url, browsers)
        push.fail_all(Reply(429, retry_after=retry_after), count=1)
        article = seed_article(database_url)
        stack.beat()
        first = stack.worker("worker-1", concurrency)
        stack.fan_out(article)
        # Its chunks go at once on two processes: one that sent before the 429 was known
        # has its pushes delivered; every other push waits for the retry.
        wait_for(lambda: _only_retries_wait(database_url, article, subscriptions), 30,
                 lambda: f"no retries waiting\n{stack.logs()}")  # fmt: skip
        due = time.monotonic() + retry_after
        time.sleep(1)  # the retry tasks reach worker-1 and wait there for their ETA
        first.kill_group(signal.SIGKILL)
        first.wait(10)
        stack.worker("worker-2", concurrency)
        endpoints = [b.endpoint for b in browsers]

        def received() -> Counter:
            return Counter({b.endpoint: len(b.received) for b in browsers if b.received})

        wait_for_everyone(stack, article, endpoints, received, due,
                          max(1.0, due + within - time.monotonic()))  # fmt: skip
        last = max(p.monotonic for b in browsers for p in b.received)
        counts = tally(endpoints, received())
        early, _ = _retry_after_violations(push.requests, retry_after)
        return Figures(
            "retries held by a killed worker", subscriptions, counts.delivered,
            counts.duplicates, counts.lost, last - due,
            {"retried_before_retry_after": early,
             "sweeper_requeued": stack.logged("sweep re-queued"),
             "final": dict(delivery_states(database_url, article))},
        )  # fmt: skip


def _only_retries_wait(database_url: str, article: int, planned: int) -> bool:
    """Every delivery of the article planned, and each either sent or waiting (pending, due
    seconds from now, not before), at least one of them waiting: what a worker holds then
    is only retries for later."""
    soon = utcnow() + timedelta(seconds=5)
    with session_scope(database_url) as session:
        rows = session.execute(
            select(Delivery.status, Delivery.next_attempt_at).where(Delivery.article_id == article)
        ).all()
    waiting = [
        s for s, due in rows if s == DeliveryStatus.PENDING and due is not None and due > soon
    ]
    sent = [s for s, _ in rows if s == DeliveryStatus.SENT]
    return len(rows) == planned and len(waiting) > 0 and len(waiting) + len(sent) == planned


def _a_claiming_child(database_url: str, worker) -> int:
    """The pid of a pool child of `worker` that holds claimed rows right now."""
    children = set(worker.group()) - {worker.pid}
    with session_scope(database_url) as session:
        holders = session.scalars(
            select(Delivery.claimed_by)
            .where(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_by.is_not(None))
            .distinct()
        ).all()
    pids = [int(h.rsplit("/", 1)[1]) for h in holders]
    found = [pid for pid in pids if pid in children]
    assert found, f"no child of {worker.pid} ({children}) holds claims: {holders}"
    return found[0]


def _wait_since(stack, article, emails, since, within, recipients) -> float:
    """Seconds from `since` until everyone has the message; fails past `within` seconds
    from `since` (or the generous fan-out deadline when `within` is None)."""
    limit = deadline(recipients) if within is None else within
    timeout = max(1.0, limit - (time.monotonic() - since))
    return wait_for_everyone(stack, article, emails, stack.smtp.handler.by_recipient, since,
                             timeout)  # fmt: skip


# 2 ------------------------------------------------------------------------------------------


BROKER_LOST_TARGET = 30.0  # issue 12: everyone within 30 s of the broker answering again


def redis_flushed(
    tmp: Path, database_url: str, recipients: int = 400, restart: bool = False,
    within: float | None = BROKER_LOST_TARGET, concurrency: int = 2, **env: str,
):  # fmt: skip
    """FLUSHALL on the broker a third of the way through a fan-out (or, with `restart`, the
    broker stopped and started again empty, as without persistence): every queued and
    unacknowledged task is gone. The workers notice the missing marker and queue the work
    again from the database. Seconds are counted from the broker answering again."""
    with open_stack(tmp, database_url, **env) as stack:
        emails = seed_email_subscribers(database_url, recipients)
        article = seed_article(database_url)
        stack.beat()
        stack.worker(concurrency=concurrency)
        stack.fan_out(article)
        _wait_for_messages(stack, recipients // 3, recipients)
        if restart:
            with stack.redis.client() as client:
                tasks_lost = client.llen("celery") + client.hlen("unacked")
            stack.redis.restart()
        else:
            tasks_lost = stack.redis.flushall()
        answering = time.monotonic()
        at_flush = stack.smtp.handler.message_count()
        seconds = _wait_since(stack, article, emails, answering, within, recipients)
        return _email_figures(
            "2 Redis " + ("restarted empty" if restart else "FLUSHALL"), stack, emails,
            article, seconds, sent_before_flush=at_flush, tasks_flushed=tasks_lost,
            sweeper_requeued=stack.logged("sweep re-queued"),
            marker_noticed=stack.logged("the broker lost its queues"),
        )  # fmt: skip


def rabbitmq_restarted(
    tmp: Path, database_url: str, recipients: int = 3000, pause: float = 0.0,
    within: float | None = BROKER_LOST_TARGET, concurrency: int = 2, **env: str,
):  # fmt: skip
    """RabbitMQ (a node of our own) is shut down a third of the way through a fan-out, while
    chunks wait in its queue and others run unacknowledged (their sends held up by the SMTP
    server until the broker is down), and started again on the same data after `pause`
    seconds. Nothing is re-queued from the database (no marker on
    RabbitMQ): the durable queue and its persistent messages must bring every chunk back.
    Seconds are counted from the broker answering again."""
    with open_stack(tmp, database_url, broker="own-rabbitmq", **env) as stack:
        emails = seed_email_subscribers(database_url, recipients)
        article = seed_article(database_url)
        stack.beat()
        worker = stack.worker(concurrency=concurrency)
        stack.fan_out(article)
        _wait_for_messages(stack, recipients // 3, recipients)
        smtp = stack.smtp.handler
        smtp.holding = True  # the running chunks wait, so the restart finds work in the broker
        wait_for(lambda: smtp.data_waiting >= concurrency, 20,
                 lambda: f"only {smtp.data_waiting} sends in flight\n{stack.logs()}")  # fmt: skip
        before = stack.rabbit.queues()
        at_stop = smtp.message_count()
        stack.rabbit.stop()
        smtp.holding = False  # the running chunks finish while the broker is down
        time.sleep(pause)
        stack.rabbit.start()
        answering = time.monotonic()
        after = stack.rabbit.queues()  # before the worker is back (it retries every few s)
        seconds = _wait_since(stack, article, emails, answering, within, recipients)
        celery = before.get("celery", {})
        return _email_figures(
            "RabbitMQ restarted", stack, emails, article, seconds,
            sent_before_restart=at_stop, queue_durable=celery.get("durable") == "true",
            ready_at_stop=int(celery.get("messages_ready", 0)),
            unacked_at_stop=int(celery.get("messages_unacknowledged", 0)),
            ready_after_start=int(after.get("celery", {}).get("messages_ready", 0)),
            worker_alive=worker.alive(),
            worker_saw_loss="Connection to broker lost" in worker.output(),
            sweeper_requeued=stack.logged("sweep re-queued"),
        )  # fmt: skip


def broker_down(
    tmp: Path, database_url: str, readers: int = 250, subscriptions: int = 200,
    broker: str = "redis", outage: float = 5.0, within: float | None = BROKER_LOST_TARGET,
    concurrency: int = 2, **env: str,
):  # fmt: skip
    """The broker is stopped while an article's fan-out is mid-way (its first chunk queued,
    the planner at the next one: `readers` email readers, more than a chunk) and while a
    second article is announced through the webhook (to `subscriptions` push readers), then
    started again `outage` seconds after it stopped, with its data: Redis from its
    append-only file (so no marker goes missing), or RabbitMQ (a node of our own) on its
    data directory. What the broker refused meanwhile (the second chunk, the webhook's
    fan-out) must not wait for the sweeper. Seconds are counted from the broker answering
    again; the wait fails `within` seconds after that."""
    port = free_port()
    rabbit = broker == "rabbitmq"
    options = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "PUBLIC_URL": f"http://127.0.0.1:{port}", **env}
    with open_stack(tmp, database_url, broker="own-rabbitmq" if rabbit else "redis",
                    redis_persistent=not rabbit, **options) as stack:  # fmt: skip
        chunk = min(stack.settings.delivery_first_chunk_size, stack.settings.delivery_chunk_size)
        assert readers > chunk, "the fan-out must need a second chunk"
        emails = seed_email_subscribers(database_url, readers)
        browsers = [stack.push.new_subscription() for _ in range(subscriptions)]
        seed_push_subscriptions(database_url, browsers, category="science")
        article = seed_article(database_url)
        stack.beat()
        worker = stack.worker(concurrency=concurrency)
        smtp = stack.smtp.handler
        with web_server(create_app(stack.settings), port) as base:
            with _planner_held_at(database_url, article, emails[chunk]) as release:
                stack.fan_out(article)
                wait_for(lambda: _planned(database_url, article) >= chunk
                         and smtp.message_count() > 0, 60,
                         lambda: f"the first chunk never went\n{stack.logs()}")  # fmt: skip
                stopped = time.monotonic()
                (stack.rabbit.stop if rabbit else stack.redis.stop)()
                release()  # the planner goes on to the next chunk, with the broker down
            guid = _announce_through_webhook(base, ["Science"])
            wait_for(lambda: _planned(database_url, article) == readers
                     and _unsent(database_url).waiting >= 2, deadline(readers),
                     lambda: f"the refused chunk and fan-out were not kept: "
                     f"{_unsent(database_url)}\n{stack.logs()}")  # fmt: skip
            webhook_article = article_id_by_guid(database_url, guid)
            sent_while_down = smtp.message_count()
            kept = _unsent(database_url)
            time.sleep(max(0.0, stopped + outage - time.monotonic()))
            (stack.rabbit.start if rabbit else stack.redis.start)()
            answering = time.monotonic()
            endpoints = [b.endpoint for b in browsers]

            def received() -> Counter:
                return Counter({b.endpoint: len(b.received) for b in browsers if b.received})

            def tallies() -> tuple[Tally, Tally]:
                return tally(emails, smtp.by_recipient()), tally(endpoints, received())

            handed_over: list[float] = []  # when no kept task waited any more

            def done() -> bool:
                if not handed_over and _unsent(database_url).waiting == 0:
                    handed_over.append(time.monotonic() - answering)
                return (sum(t.lost for t in tallies()) == 0 and settled(database_url, article)
                        and settled(database_url, webhook_article))  # fmt: skip

            limit = deadline(readers + subscriptions) if within is None else within
            wait_for(done, max(1.0, answering + limit - time.monotonic()),
                     lambda: f"not everyone {limit}s after the broker answered: {tallies()}, "
                     f"{dict(delivery_states(database_url))}\n{stack.logs()}",
                     interval=0.25)  # fmt: skip
            seconds = time.monotonic() - answering
            email_tally, push_tally = tallies()
            return Figures(
                f"broker down ({'RabbitMQ' if rabbit else 'Redis'})", readers + subscriptions,
                email_tally.delivered + push_tally.delivered,
                email_tally.duplicates + push_tally.duplicates,
                email_tally.lost + push_tally.lost, seconds,
                {"outage_seconds": round(answering - stopped, 1),
                 "sent_while_down": sent_while_down, "kept_while_down": kept.kept_last_day,
                 "kept_deliveries": kept.waiting_deliveries,
                 "handed_over_seconds": round(handed_over[0], 1) if handed_over else None,
                 "waiting_at_end": _unsent(database_url).waiting,
                 "strangers": email_tally.strangers + push_tally.strangers,
                 "sweeper_requeued": stack.logged("sweep re-queued"),
                 "worker_alive": worker.alive(),
                 "fan_out_final": dict(delivery_states(database_url, article)),
                 "webhook_final": dict(delivery_states(database_url, webhook_article))},
            )  # fmt: skip


def _planned(database_url: str, article: int) -> int:
    return sum(delivery_states(database_url, article).values())


def _unsent(database_url: str) -> UnsentSummary:
    with session_scope(database_url) as session:
        return unsent_summary(session, utcnow())


@contextmanager
def _planner_held_at(database_url: str, article: int, email: str) -> Iterator[Callable]:
    """Hold an article's fan-out at the chunk that plans `email`'s delivery: an uncommitted
    row with the same unique key makes the planner's INSERT wait for this transaction. The
    caller releases it (a rollback: the planner then inserts the row itself)."""
    connection = engine_for(database_url).connect()
    transaction = connection.begin()
    connection.execute(
        text(
            "INSERT INTO deliveries (article_id, subscriber_id, channel, status, attempts,"
            " created_at, next_attempt_at) SELECT :a, id, 'email', 'pending', 0,"
            " now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'"
            " FROM subscribers WHERE email = :e"
        ),
        {"a": article, "e": email},
    )
    try:
        yield transaction.rollback
    finally:
        if transaction.is_active:
            transaction.rollback()
        connection.close()


# 3 ------------------------------------------------------------------------------------------

BOUNCE_REPLY = "550 5.1.1 <{}>: no such mailbox here"


def smtp_outage(
    tmp: Path, database_url: str, recipients: int = 300, refused: float = 3.0,
    closing: float = 3.0,
):  # fmt: skip
    """The SMTP port is closed (connections refused) for `refused` seconds, then the server
    answers 421 for `closing` seconds, then recovers. One extra recipient is answered 550."""
    with open_stack(tmp, database_url, smtp_proxy=True, smtp_proxy_up=False,
                    **SHORT_RETRIES) as stack:  # fmt: skip
        smtp = stack.smtp.handler
        emails = seed_email_subscribers(database_url, recipients)
        [bounced] = seed_email_subscribers(database_url, 1, prefix="bounce")
        smtp.refuse[bounced] = BOUNCE_REPLY.format(bounced)
        article = seed_article(database_url)
        stack.beat()
        stack.worker()
        started = time.monotonic()
        stack.fan_out(article)
        wait_for(lambda: errors_like(database_url, "temporary: SMTP server unreachable%"),
                 30, lambda: f"no refused connection recorded\n{stack.logs()}")  # fmt: skip
        time.sleep(max(0.0, refused - (time.monotonic() - started)))
        smtp.closing = True
        stack.smtp_proxy.start()
        wait_for(lambda: errors_like(database_url, "temporary: SMTP 421%"), 30,
                 lambda: f"no 421 recorded\n{stack.logs()}")  # fmt: skip
        time.sleep(closing)
        during_outage = smtp.message_count()
        smtp.closing = False
        recovered = time.monotonic()
        seconds = wait_for_everyone(stack, article, emails, smtp.by_recipient, started,
                                    deadline(recipients))  # fmt: skip
        bounce = _delivery_of(stack, article, bounced)
        return _email_figures(
            "3 SMTP refused/421", stack, emails, article, seconds,
            outage_seconds=round(recovered - started, 1), sent_during_outage=during_outage,
            bounce_rcpt_attempts=smtp.rcpt_seen[bounced], bounce_status=bounce.status.value,
            bounce_error=bounce.last_error, max_attempts=_max_attempts(stack, article),
        )  # fmt: skip


def _delivery_of(stack: Stack, article: int, email: str) -> Delivery:
    with session_scope(stack.database_url) as session:
        return session.scalars(
            select(Delivery)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.article_id == article, Subscriber.email == email)
        ).one()


def _max_attempts(stack: Stack, article: int) -> int:
    with session_scope(stack.database_url) as session:
        return session.scalar(
            select(func.max(Delivery.attempts)).where(Delivery.article_id == article)
        )


# 4 ------------------------------------------------------------------------------------------


def push_throttled(
    tmp: Path, database_url: str, subscriptions: int = 200, retry_after: int = 2,
    throttled: int = 3, errors: int = 40,
):  # fmt: skip
    """The push service answers 429 (Retry-After) to the first requests, then 500s, then
    recovers. One more subscription is answered 410 and must be marked gone."""
    with open_stack(tmp, database_url, **SHORT_RETRIES) as stack:
        push = stack.push
        browsers = [push.new_subscription() for _ in range(subscriptions)]
        gone = push.new_subscription()
        push.script(gone, Reply(410))
        seed_push_subscriptions(database_url, [*browsers, gone])
        push.fail_all(Reply(429, retry_after=retry_after), count=throttled)
        push.fail_all(Reply(500), count=errors)
        article = seed_article(database_url)
        stack.beat()
        stack.worker()
        everyone = [*browsers, gone]
        endpoints = [b.endpoint for b in browsers]

        def received() -> Counter:
            return Counter({b.endpoint: len(b.received) for b in everyone if b.received})

        started = time.monotonic()
        stack.fan_out(article)
        seconds = wait_for_everyone(stack, article, endpoints, received, started,
                                    deadline(subscriptions))  # fmt: skip
        first = tally(endpoints, received())
        requests_for_gone = _requests_for(push, gone.endpoint)

        second = seed_article(database_url, "Second story")
        stack.fan_out(second)
        wait_for(lambda: all(len(b.received) >= 2 for b in browsers)
                 and settled(database_url, second), deadline(subscriptions),
                 lambda: f"second article not delivered\n{stack.logs()}")  # fmt: skip
        time.sleep(1)
        later = Counter({e: n - 1 for e, n in received().items()})
        second_tally = tally(endpoints, later)
        early, origin_wide = _retry_after_violations(push.requests, retry_after)
        return Figures(
            "4 push 429/500", subscriptions, first.delivered, first.duplicates, first.lost,
            seconds,
            {"throttled_answers": sum(r.status == 429 for r in push.requests),
             "error_answers": sum(r.status >= 500 for r in push.requests),
             "retried_before_retry_after": early,
             "origin_requests_during_backoff": origin_wide,
             "gone_status": _push_status(stack, gone.endpoint),
             "gone_delivery": _push_delivery_error(stack, article, gone.endpoint),
             "gone_requests_first": requests_for_gone,
             "gone_requests_total": _requests_for(push, gone.endpoint),
             "gone_received": len(gone.received),
             "second_delivered": second_tally.delivered,
             "second_duplicates": second_tally.duplicates,
             "second_final": dict(delivery_states(database_url, second)),
             "final": dict(delivery_states(database_url, article))},
        )  # fmt: skip


def push_throttled_for(
    tmp: Path, database_url: str, subscriptions: int = 300, retry_after: int = 5,
    throttle_seconds: float = 10.0, concurrency: int = 2,
):  # fmt: skip
    """The push service answers every request 429 with Retry-After for `throttle_seconds`
    from the moment the fan-out is queued; every setting at its default. Seconds are
    counted from the end of the 429s to the last push."""
    with open_stack(tmp, database_url) as stack:
        push = stack.push
        browsers = [push.new_subscription() for _ in range(subscriptions)]
        seed_push_subscriptions(database_url, browsers)
        article = seed_article(database_url)
        stack.beat()
        stack.worker(concurrency=concurrency)
        endpoints = [b.endpoint for b in browsers]

        def received() -> Counter:
            return Counter({b.endpoint: len(b.received) for b in browsers if b.received})

        ends = push.fail_for(Reply(429, retry_after=retry_after), throttle_seconds)
        stack.fan_out(article)
        wait_for_everyone(stack, article, endpoints, received, time.monotonic(),
                          deadline(subscriptions) + throttle_seconds)  # fmt: skip
        last = max(p.monotonic for b in browsers for p in b.received)
        counts = tally(endpoints, received())
        early, origin_wide = _retry_after_violations(push.requests, retry_after)
        return Figures(
            "push 429 Retry-After", subscriptions, counts.delivered, counts.duplicates,
            counts.lost, last - ends,
            {"throttled_answers": sum(r.status == 429 for r in push.requests),
             "retried_before_retry_after": early,
             "origin_requests_during_backoff": origin_wide,
             "sweeper_requeued": stack.logged("sweep re-queued"),
             "final": dict(delivery_states(database_url, article))},
        )  # fmt: skip


def _requests_for(push, endpoint: str) -> int:
    path = "/push/" + endpoint.rsplit("/", 1)[1]
    return sum(1 for r in push.requests if r.path == path)


def _retry_after_violations(
    requests: list, retry_after: float, grace: float = 0.5
) -> tuple[int, int]:
    """(requests for a subscription answered 429 that came back before its Retry-After,
    requests to the push service from anyone between 429 + grace and 429 + Retry-After).

    A request counts from when it reached the service (`arrived`), the 429 from when it was
    answered: the grace leaves out requests that were already on their way then.
    """
    ordered = sorted(requests, key=lambda r: r.arrived)
    refusals = [r for r in ordered if r.status == 429]
    early = 0
    for refused in refusals:
        again = next((r for r in ordered if r.arrived > refused.monotonic
                      and r.path == refused.path), None)  # fmt: skip
        if again is not None and again.arrived < refused.monotonic + retry_after:
            early += 1
    during = sum(
        1 for r in ordered
        if any(t.monotonic + grace <= r.arrived < t.monotonic + retry_after for t in refusals)
    )  # fmt: skip
    return early, during


def _push_status(stack: Stack, endpoint: str) -> str:
    with session_scope(stack.database_url) as session:
        row = session.scalars(
            select(PushSubscription).where(PushSubscription.endpoint == endpoint)
        ).one()
        return row.status.value


def _push_delivery_error(stack: Stack, article: int, endpoint: str) -> tuple[str, str | None]:
    with session_scope(stack.database_url) as session:
        row = session.scalars(
            select(Delivery)
            .join(PushSubscription, PushSubscription.id == Delivery.push_subscription_id)
            .where(Delivery.article_id == article, PushSubscription.endpoint == endpoint)
        ).one()
        return row.status.value, row.last_error


# 5 ------------------------------------------------------------------------------------------


def redis_restarted(tmp: Path, database_url: str, recipients: int = 50, pause: float = 1.0):
    """Redis is stopped and a new, empty one started on the same port while the workers are
    idle; then the feed publishes an article. Beat polls it and the same worker delivers it."""
    feed = FeedServer().start()
    try:
        old = Item("https://aze.media/?p=old", "Old story", datetime.now(UTC) - timedelta(9))
        feed.body = rss(old)
        options = {"FEED_URLS": feed.url, "FEED_POLL_SECONDS": "1"}
        with open_stack(tmp, database_url, **options) as stack:
            emails = seed_email_subscribers(database_url, recipients)
            beat = stack.beat()
            worker = stack.worker()
            wait_for(lambda: article_id_by_guid(database_url, old.guid), 30,
                     lambda: f"the feed was never polled\n{stack.logs()}")  # fmt: skip
            group = worker.group()
            stack.redis.restart(pause)
            started = time.monotonic()
            fresh = Item("https://aze.media/?p=fresh", "Fresh story", datetime.now(UTC))
            feed.body = rss(fresh, old)
            wait_for(lambda: article_id_by_guid(database_url, fresh.guid), 60,
                     lambda: f"no poll after the Redis restart\n{stack.logs()}")  # fmt: skip
            article = article_id_by_guid(database_url, fresh.guid)
            seconds = wait_for_everyone(stack, article, emails, stack.smtp.handler.by_recipient,
                                        started, deadline(recipients))  # fmt: skip
            return _email_figures(
                "5 Redis restarted", stack, emails, article, seconds,
                worker_alive=worker.alive(), beat_alive=beat.alive(),
                pool_children_replaced=worker.group() != group,
                worker_saw_loss="Connection to broker lost" in worker.output(),
            )  # fmt: skip
    finally:
        feed.stop()


# 6 ------------------------------------------------------------------------------------------


def database_outage(
    tmp: Path, database_url: str, recipients: int = 400, outage: float = 3.0,
    in_flight: bool = False, concurrency: int = 2,
):  # fmt: skip
    """The workers' PostgreSQL connection (through a proxy we own) is cut for `outage` seconds
    a third of the way through a fan-out. With `in_flight`, the cut comes while each worker
    process has a message on the wire, which the SMTP server accepts during the outage."""
    with open_stack(tmp, database_url, db_proxy=True, **SHORT_RETRIES) as stack:
        smtp = stack.smtp.handler
        emails = seed_email_subscribers(database_url, recipients)
        article = seed_article(database_url)
        stack.beat()
        stack.worker(concurrency=concurrency)
        started = time.monotonic()
        stack.fan_out(article)
        _wait_for_messages(stack, recipients // 3, recipients)
        if in_flight:
            smtp.holding = True
            wait_for(lambda: smtp.data_waiting >= concurrency, 20, "no sends in flight")
        stack.db_proxy.stop()
        smtp.holding = False
        at_cut = smtp.message_count()
        time.sleep(outage)
        stack.db_proxy.start()
        seconds = wait_for_everyone(stack, article, emails, smtp.by_recipient, started,
                                    deadline(recipients))  # fmt: skip
        return _email_figures(
            "6 database outage" + (" (sends in flight)" if in_flight else ""),
            stack, emails, article, seconds, sent_before_cut=at_cut, outage_seconds=outage,
            workers_saw_outage=stack.logged(": outage (")
            or stack.logged("database unavailable while recording"),
        )  # fmt: skip


# 7 ------------------------------------------------------------------------------------------


def worker_terminated(
    tmp: Path, database_url: str, recipients: int = 300, concurrency: int = 2,
    whole_group: bool = False, record_batch: int = 10, connections: int = 2,
):  # fmt: skip
    """SIGTERM mid fan-out, while each worker process has a message on the wire. To the main
    process only (what `docker stop` sends to the container's PID 1): a warm shutdown finishes
    the batches in progress and hands the prefetched ones back. With `whole_group`, to every
    process of the worker (systemd's default KillMode=control-group, `kill -TERM -PGID`): the
    pool children die at once, as if killed. A new worker then delivers the rest."""
    with _grouped_stack(tmp, database_url, record_batch, connections) as stack:
        emails = seed_email_subscribers(database_url, recipients)
        article = seed_article(database_url)
        stack.beat()
        first = stack.worker("worker-1", concurrency)
        started = time.monotonic()
        stack.fan_out(article)
        _wait_for_messages(stack, recipients // 3, recipients)
        _stall_senders(stack, concurrency)
        stopping = time.monotonic()
        if whole_group:
            first.kill_group(signal.SIGTERM)
        else:
            first.signal(signal.SIGTERM)
        time.sleep(0.5)  # the signal is handled while those messages wait for their reply
        stack.smtp.handler.stalling = False
        code = first.wait(60)
        stopped_in = time.monotonic() - stopping
        wait_for(lambda: not first.group(), 10, "worker children outlived their parent")
        time.sleep(0.3)
        at_stop = stack.smtp.handler.message_count()
        states = delivery_states(database_url, article)
        stuck = expired_leases(database_url)
        stack.worker("worker-2", concurrency)
        seconds = wait_for_everyone(stack, article, emails, stack.smtp.handler.by_recipient,
                                    started, deadline(recipients))  # fmt: skip
        return _email_figures(
            "7 worker SIGTERM " + ("(whole group)" if whole_group else "(main process)"),
            stack, emails, article, seconds,
            exit_code=code, shutdown_seconds=round(stopped_in, 1), sent_before_stop=at_stop,
            unmarked_at_stop=at_stop - states["sent"], sending_at_stop=states["sending"],
            expired_leases_at_stop=stuck, expired_leases_at_end=expired_leases(database_url),
            children_killed_by_sigterm="exited with 'signal 15 (SIGTERM)'" in first.output(),
        )  # fmt: skip


# 8 ------------------------------------------------------------------------------------------


FIRST_PUSH_TARGET = 1.0  # issue 12: first push of a webhook article within 1 s of the webhook
WEBHOOK_SECRET = "fault-webhook-secret"


def slow_feed(
    tmp: Path, database_url: str, subscriptions: int = 200, slow: bool = True,
    concurrency: int = 2,
):  # fmt: skip
    """One feed in FEED_URLS answers one byte every 5 s (with `slow`; without, no feed at all:
    the control). While its fetch is under way, an article is announced through the webhook
    to `subscriptions` push readers. Seconds are counted from the webhook request to the last
    push; notes say when the first push came, and whether the slow feed then shows as failing
    in `notifier status --json` and on /ops/. Every setting at its default."""
    feed = FeedServer(drip_seconds=5).start()  # the slow feed: a byte every 5 s
    feed.body = rss(Item("https://aze.media/?p=slow", "Never complete", datetime.now(UTC)))
    port = free_port()
    options = {"WEBHOOK_SECRET": WEBHOOK_SECRET, "PUBLIC_URL": f"http://127.0.0.1:{port}",
               "FEED_URLS": feed.url if slow else ""}  # fmt: skip
    try:
        with open_stack(tmp, database_url, **options) as stack:
            push = stack.push
            browsers = [push.new_subscription() for _ in range(subscriptions)]
            seed_push_subscriptions(database_url, browsers)
            stack.beat()
            stack.worker(concurrency=concurrency)
            if slow:
                stack.send_task("notifier.tasks.poll_feeds")  # what beat sends every 300 s
                wait_for(lambda: feed.in_progress, 60,
                         lambda: f"the slow feed is not being fetched\n{stack.logs()}")  # fmt: skip
            endpoints = [b.endpoint for b in browsers]

            def received() -> Counter:
                return Counter({b.endpoint: len(b.received) for b in browsers if b.received})

            with web_server(create_app(stack.settings), port) as base:
                announced = time.monotonic()
                guid = _announce_through_webhook(base)
            push.wait_for(1, timeout=deadline(subscriptions))
            first = min(p.monotonic for p in push.all_received)
            fetching_at_first = feed.in_progress > 0
            article = article_id_by_guid(database_url, guid)
            wait_for_everyone(stack, article, endpoints, received, announced,
                              deadline(subscriptions))  # fmt: skip
            last = max(p.monotonic for b in browsers for p in b.received)
            counts = tally(endpoints, received())
            notes = {"first_push_seconds": round(first - announced, 2),
                     "fetching_at_first_push": fetching_at_first,
                     "sweeper_requeued": stack.logged("sweep re-queued"),
                     "final": dict(delivery_states(database_url, article))}  # fmt: skip
            if slow:
                wait_for(lambda: _feed_error(database_url, feed.url),
                         stack.settings.feed_timeout_seconds + 30,
                         lambda: f"the slow feed never failed\n{stack.logs()}")  # fmt: skip
                shown = feed_in_status(stack.settings, feed.url)
                notes.update(feed_failing_in_status=not shown.healthy, feed_error=shown.error,
                             feed_error_on_ops=shown.error_on_ops)  # fmt: skip
            return Figures("8 slow feed" if slow else "8 webhook, no slow feed",
                           subscriptions, counts.delivered, counts.duplicates, counts.lost,
                           last - announced, notes)  # fmt: skip
    finally:
        feed.stop()


def _feed_error(database_url: str, url: str) -> str | None:
    with session_scope(database_url) as session:
        return session.scalar(select(Feed.last_error).where(Feed.url == url))


def _announce_through_webhook(base: str, categories: list[str] | None = None) -> str:
    """POST a published post to /api/v1/articles, signed as WordPress does; its guid."""
    guid = f"https://aze.media/?p=webhook-{time.time_ns()}"
    post = {
        "guid": guid,
        "url": "https://aze.media/breaking/",
        "title": "Breaking, via the webhook",
        "categories": categories or ["News"],
        "published_at": datetime.now(UTC).isoformat(),
    }
    raw = json.dumps(post).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    headers = {"X-Notifier-Signature": f"sha256={signature}", "Content-Type": "application/json"}
    answer = requests.post(f"{base}/api/v1/articles", data=raw, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text
    return guid


# extra --------------------------------------------------------------------------------------


def lease_outlived(
    tmp: Path, database_url: str, recipients: int = 12, per_message: float = 0.4,
    lease_seconds: int = 1,
):  # fmt: skip
    """One batch that takes longer than its lease (a slow SMTP server): the sweeper hands the
    rows the first worker process has not reached yet to the second one. Does the first
    process notice it lost them, or do both send?"""
    # The lease must differ here: this scenario is about a batch outliving its lease.
    with open_stack(
        tmp, database_url, data_delay=per_message,
        DELIVERY_LEASE_SECONDS=str(lease_seconds), DELIVERY_CHUNK_SIZE=str(recipients),
    ) as stack:  # fmt: skip
        emails = seed_email_subscribers(database_url, recipients)
        article = seed_article(database_url)
        stack.beat()
        stack.worker()
        started = time.monotonic()
        stack.fan_out(article)
        seconds = wait_for_everyone(stack, article, emails, stack.smtp.handler.by_recipient,
                                    started, deadline(recipients))  # fmt: skip
        return _email_figures(
            "lease shorter than a batch", stack, emails, article, seconds,
            batch_seconds=round(recipients * per_message, 1), lease_seconds=lease_seconds,
        )  # fmt: skip
