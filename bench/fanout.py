"""One article to N readers through the real engine: throughput, latency, memory, SQL cost.

    .venv/bin/python bench/fanout.py                       # 100,000 readers
    .venv/bin/python bench/fanout.py --readers 1000000     # peak RSS at a million
    .venv/bin/python bench/fanout.py --readers 2000 --naive-sample 200 --json
    .venv/bin/python bench/fanout.py --channels push       # every reader a push subscriber

Needs what the tests need: PostgreSQL (TEST_DATABASE_URL, default postgres@127.0.0.1:5432/test;
a scratch database is created, seeded and dropped) and Redis (--redis-url, default database
13, flushed). Seeds N readers (half email, half push, or all of one channel with --channels
email|push; each following 1-3 of the site's categories, every one of them News or Economy),
starts an SMTP sink (Postfix's smtp-sink,
installed with apt-get when missing and running as root, else an aiosmtpd stand-in) and a
push sink (bench/sinks.py, its own process) on 127.0.0.1, real `notifier worker` processes
and the web app, then publishes one article in News + Economy through the CMS webhook
(POST /api/v1/articles with an API token) and waits until every reader's message is
accepted. Prints readers, emails/s, pushes/s, seconds from the webhook call to the first and
to the last message accepted, worker peak RSS, worker CPU ms per message (per email or per
push with --channels email|push), database statements per 1,000 deliveries, delivered /
lost / duplicated per channel (counted per recipient at the sinks). Then, on a sample of
readers, the naive way (bench/naive.py: one task per reader, a new SMTP connection
per email, `pywebpush.webpush()` per push) on the same sinks, and the ratio. Engine settings
(DELIVERY_CHUNK_SIZE, SMTP_CONNECTIONS, ...) set in the environment reach the workers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # this process counts in memory

import requests
from sqlalchemy import create_engine, make_url, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    Child,
    Sampler,
    bench_database,
    cpu_of_servers,
    cpu_seconds,
    finish,
    flushed_broker,
    insert_checked_once,
    interrupted,
    rate,
    redis_address,
    say,
)
from bench.harness import number as _n  # noqa: E402
from bench.harness import verdict as _verdict  # noqa: E402
from bench.sinks import PushSink, SmtpSink, make_key_pool  # noqa: E402
from notifier.config import Settings  # noqa: E402
from notifier.db import session_scope  # noqa: E402
from notifier.domain.api_tokens import issue_token  # noqa: E402
from notifier.timeutil import utcnow  # noqa: E402
from notifier.vapid import generate_keypair  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.support.processes import settings_env, web_server  # noqa: E402
from tests.support.smtp import free_port  # noqa: E402

ARTICLE_CATEGORIES = ("news", "economy")  # every seeded reader follows one of them at least
KEY_POOL = 1000  # browser key pairs shared by the push subscriptions (endpoints are unique)
TARGETS = {
    "emails_per_second": 5000,
    "pushes_per_second": 3000,
    "seconds_to_last": 20,  # at 100,000 readers, both channels (issue 18)
    "seconds_to_last_million": 150,  # at 1,000,000
    "first_message": 0.5,  # seconds from the webhook call, at any audience size
    "ratio": 20,
    "rss_mb": 250,
    "cpu_ms_per_email": 0.08,  # worker CPU per message, measured with --channels email
    "cpu_ms_per_push": 0.15,  # and with --channels push
}


# ---------------------------------------------------------------------------------------
# Processes we start, and what they cost
# ---------------------------------------------------------------------------------------


def cpu_now(sampler: Sampler, smtp: SmtpSink, push: PushSink, database: str,
            redis_address: str) -> dict:  # fmt: skip
    """Where CPU goes: the worker's processes (per pid), our PostgreSQL backends, Redis, the
    sinks, and this process (the web app's thread included)."""
    return {
        "workers": sampler.cpu_snapshot(),
        **cpu_of_servers(database, redis_address),
        "smtp-sink": cpu_seconds(smtp.process.pid) or 0.0,
        "push sink": cpu_seconds(push.process.pid) or 0.0,
        "bench+web": time.process_time(),
    }


# ---------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------

# Reader n follows News (n even) or Economy (n odd); one in three also follows one other
# category, one in three two others (picked by a multiplicative hash of n, so they spread
# evenly); every 7th's second category is the other of News and Economy (the article must
# still reach them once).
FOLLOWS = """
INSERT INTO {table} ({column}, category_id)
SELECT n, c FROM (
    SELECT n, (CAST(n AS bigint) * 2654435761) % 4294967296 AS h
    FROM generate_series(1, CAST(:count AS integer)) AS n
) AS readers, LATERAL unnest(ARRAY[
    CASE WHEN n % 2 = 0 THEN :first ELSE :second END,
    CASE WHEN n % 3 >= 1 THEN
        CASE WHEN n % 7 = 0 THEN (CASE WHEN n % 2 = 0 THEN :second ELSE :first END)
             ELSE (CAST(:others AS integer[]))[1 + h % :m] END
    END,
    CASE WHEN n % 3 = 2 THEN
        (CAST(:others AS integer[]))[1 + (h % :m + 1 + (h / :m) % (:m - 1)) % :m]
    END
]) AS c
WHERE c IS NOT NULL
"""


REACHED = """
SELECT count(DISTINCT f.{column}) FROM {table} f JOIN {recipients} r ON r.id = f.{column}
WHERE f.category_id IN (:first, :second) AND r.status = 'active'
"""


@dataclass
class Seeded:
    emails: int
    pushes: int
    seconds: float
    categories: int
    follows_per_reader: float
    per_category: dict[str, int]


def seed(
    url: str, emails: int, pushes: int, push: PushSink, p256dh: list[str], auth: list[str]
) -> Seeded:
    started = time.monotonic()
    now = utcnow().replace(tzinfo=None)
    engine = create_engine(url)
    with engine.begin() as conn:
        categories = dict(conn.execute(text("SELECT slug, id FROM categories ORDER BY id")).all())
        first, second = (categories[slug] for slug in ARTICLE_CATEGORIES)
        others = [i for slug, i in categories.items() if slug not in ARTICLE_CATEGORIES]
        conn.execute(
            text(
                "INSERT INTO subscribers (id, email, status, created_at, confirmed_at) "
                "SELECT n, 'r' || n || '@bench.test', 'active', :now, :now "
                "FROM generate_series(1, CAST(:count AS integer)) AS n"
            ),
            {"count": emails, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO push_subscriptions (id, endpoint, p256dh, auth, status, "
                "created_at, updated_at) SELECT n, :prefix || n, "
                "(CAST(:p256dh AS text[]))[1 + n % :pool], (CAST(:auth AS text[]))[1 + n % :pool],"
                " 'active', :now, :now FROM generate_series(1, CAST(:count AS integer)) AS n"
            ),
            {
                "count": pushes,
                "now": now,
                "prefix": push.endpoint(0)[:-1],
                "p256dh": p256dh,
                "auth": auth,
                "pool": len(p256dh),
            },
        )
        for table, count in (("subscribers", emails), ("push_subscriptions", pushes)):
            if count:
                conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), :n)"),
                    {"n": count},
                )
        params = {"first": first, "second": second, "others": others, "m": len(others)}
        follows = (
            ("subscriber_categories", "subscriber_id", "subscribers", emails),
            ("push_subscription_categories", "push_subscription_id", "push_subscriptions", pushes),
        )
        for table, column, _, count in follows:
            statement = FOLLOWS.format(table=table, column=column)
            insert_checked_once(conn, table, statement, {**params, "count": count})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
        reached = [
            conn.execute(
                text(REACHED.format(table=table, column=column, recipients=recipients)),
                {"first": first, "second": second},
            ).scalar_one()
            for table, column, recipients, _ in follows
        ]
        links = conn.execute(
            text(
                "SELECT c.name, count(*) FROM categories c JOIN (SELECT category_id FROM "
                "subscriber_categories UNION ALL SELECT category_id FROM "
                "push_subscription_categories) f ON f.category_id = c.id GROUP BY c.name"
            )
        ).all()
    engine.dispose()
    if reached != [emails, pushes]:
        raise SystemExit(f"seeding is wrong: {reached} readers reached, {emails, pushes} seeded")
    per_category = dict(sorted(links, key=lambda row: -row[1]))
    return Seeded(
        emails,
        pushes,
        time.monotonic() - started,
        len(categories),
        sum(per_category.values()) / max(1, emails + pushes),
        per_category,
    )


# ---------------------------------------------------------------------------------------
# Waiting and counting
# ---------------------------------------------------------------------------------------


@dataclass
class Arrivals:
    emails: int = 0
    pushes: int = 0
    first_email: float | None = None  # seconds after `started`
    first_push: float | None = None
    last_email: float | None = None
    last_push: float | None = None
    timed_out: str = ""
    smtp: object = None  # the sink's final snapshot / stats
    push: dict = field(default_factory=dict)

    @property
    def first(self) -> float | None:
        return min((t for t in (self.first_email, self.first_push) if t is not None), default=None)

    @property
    def last(self) -> float | None:
        return max((t for t in (self.last_email, self.last_push) if t is not None), default=None)


def wait_for_messages(
    smtp: SmtpSink,
    push: PushSink,
    emails: int,
    pushes: int,
    started: float,
    stall_timeout: float,
    watch: list[Child],
    label: str,
) -> Arrivals:
    """Poll the sinks until every message is accepted (or nothing moved for stall_timeout).
    A channel expecting nothing (emails or pushes 0) is neither waited for nor counted: its
    count is 0 and its times None (its sink's snapshot or stats still come back)."""
    moved, seen, report_at = time.monotonic(), -1, time.monotonic() + 5
    timed_out = ""
    while True:
        mail = smtp.snapshot().accepted if emails else 0
        pushed = push.stats()["accepted"] if pushes else 0
        now = time.monotonic()
        if mail >= emails and pushed >= pushes:
            break
        if mail + pushed != seen:
            seen, moved = mail + pushed, now
        if now - moved > stall_timeout:
            timed_out = f"nothing accepted for {stall_timeout:.0f} s"
        for child in watch:
            if child.popen.poll() is not None:
                timed_out = f"{child.name} exited ({child.popen.returncode})"
        if emails and (problem := smtp.died()):
            timed_out = problem
        if timed_out:
            say(f"{label}: giving up: {timed_out}")
            break
        if now >= report_at:
            counts = [f"{mail:,}/{emails:,} emails"] if emails else []
            counts += [f"{pushed:,}/{pushes:,} pushes"] if pushes else []
            say(f"{label}: {', '.join(counts)} accepted")
            report_at = now + 5
        time.sleep(0.1)  # the times come from the sinks: polling only notices the end
    time.sleep(1.0)  # late duplicates (a retried batch) would arrive now
    smtp.wait_for_dump()
    phase, stats = smtp.snapshot(), push.stats()

    def since(moment: float | None, wanted: int) -> float | None:
        return None if moment is None or not wanted else moment - started

    return Arrivals(
        emails=phase.accepted if emails else 0,
        pushes=stats["accepted"] if pushes else 0,
        first_email=since(phase.first, emails),
        first_push=since(stats["first"], pushes),
        last_email=since(phase.last, emails),
        last_push=since(stats["last"], pushes),
        timed_out=timed_out,
        smtp=phase,
        push=stats,
    )


def recorded(metrics_dir: Path) -> dict[str, float]:
    """Counters every worker process wrote (prometheus_client multiprocess files), summed."""
    from notifier.metrics import RecordedCollector

    values: dict[str, float] = {}
    if not metrics_dir.exists():
        return values
    for metric in RecordedCollector(metrics_dir).collect():
        for sample in metric.samples:
            if sample.name == "notifier_db_statements_total":
                values["statements"] = values.get("statements", 0) + sample.value
            elif sample.name == "notifier_deliveries_total":
                key = f"{sample.labels['channel']} {sample.labels['outcome']}"
                values[key] = values.get(key, 0) + sample.value
            elif sample.name == "notifier_fanout_seconds_sum":
                values["fanout seconds"] = values.get("fanout seconds", 0) + sample.value
    return values


def web_statements() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("notifier_db_statements_total") or 0.0


def deliveries_table(url: str, article_id: int, settle: float = 60.0) -> dict[str, int]:
    """Outcomes recorded for the article, once nothing is pending or being sent (or after
    `settle` seconds)."""
    engine = create_engine(url)
    deadline = time.monotonic() + settle
    try:
        while True:
            with engine.connect() as conn:
                # One count per recipient kind, each matching a partial unique index on
                # (article_id, recipient): without it a month-long ledger is read whole.
                rows = conn.execute(
                    text(
                        " UNION ALL ".join(
                            "SELECT channel, status, count(*) FROM deliveries WHERE "
                            f"article_id = :a AND {recipient} IS NOT NULL GROUP BY channel, status"
                            for recipient in ("subscriber_id", "push_subscription_id")
                        )
                    ),
                    {"a": article_id},
                ).all()
            counts: dict[str, int] = {}
            for channel, status, n in sorted(rows):
                counts[f"{channel} {status}"] = counts.get(f"{channel} {status}", 0) + n
            busy = any(status in ("pending", "sending") for _, status, _ in rows)
            if not busy or time.monotonic() > deadline:
                return counts
            time.sleep(0.5)
    finally:
        engine.dispose()


def channel_check(
    accepted: int, per_id: bytearray, duplicates: int, unknown: int, wanted: int
) -> dict[str, int]:
    lost = per_id[1 : wanted + 1].count(0)
    return {
        "readers": wanted,
        "delivered": wanted - lost,
        "lost": lost,
        "duplicates": duplicates,
        "unexpected": unknown,
        "accepted": accepted,
    }


# ---------------------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------------------


def worker_cpu_ms(seconds: float, messages: int) -> float | None:
    """Worker CPU per message accepted (all worker processes, planning included): the
    machine-independent cost of a message. Per channel when only one channel ran."""
    return seconds * 1000 / messages if messages else None


def publish(base: str, token: str) -> tuple[int, float]:
    body = {
        "guid": f"bench-fanout-{uuid.uuid4().hex}",
        "url": f"https://aze.media/bench/{uuid.uuid4().hex[:8]}",
        "title": "Bench fan-out: one article to every reader",
        "summary": "Published by bench/fanout.py to measure one real fan-out.",
        "categories": ["News", "Economy"],
        "published_at": datetime.now(UTC).isoformat(),
    }
    started = time.monotonic()
    answer = requests.post(
        f"{base}/api/v1/articles",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    if answer.status_code != 202:
        raise SystemExit(f"webhook answered {answer.status_code}: {answer.text}")
    return answer.json()["id"], time.monotonic() - started


def run_fast(
    args,
    settings,
    url: str,
    smtp: SmtpSink,
    push: PushSink,
    seeded: Seeded,
    logs: Path,
    cleanup: ExitStack,
) -> dict:
    with session_scope(url) as session:
        _, token = issue_token(session, "bench/fanout.py", None, utcnow())
        session.commit()
    port = int(settings.public_url.rsplit(":", 1)[1])
    from notifier.web import create_app

    base = cleanup.enter_context(web_server(create_app(settings), port))
    env = {**settings_env(settings), "WORKER_CONCURRENCY": str(args.concurrency)}
    command = [
        sys.executable,
        "-m",
        "notifier.cli",
        "worker",
        f"--concurrency={args.concurrency}",
        "-n",
        "bench-fanout@%h",
    ]
    say(f"starting notifier worker --concurrency={args.concurrency}")
    worker = Child("worker", command, env, logs)
    cleanup.callback(worker.stop)
    worker.wait_for_output("ready.")
    worker.wait_until_idle()  # the pool's children and the feed worker finish starting
    sampler = Sampler(worker)
    sampler.start()
    smtp.new_phase(seeded.emails)
    push.new_phase(seeded.pushes)
    before = recorded(settings.metrics_dir).get("statements", 0)
    web_before = web_statements()
    where = (make_url(url).database, redis_address(args.redis_url))
    cpu_before = cpu_now(sampler, smtp, push, *where)
    say(f"publishing one article in News + Economy to {seeded.emails + seeded.pushes:,} readers")
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    article_id, webhook_seconds = publish(base, token)
    web_count = web_statements() - web_before
    arrivals = wait_for_messages(
        smtp, push, seeded.emails, seeded.pushes, started, args.stall_timeout, [worker], "fan-out"
    )
    cpu_after = cpu_now(sampler, smtp, push, *where)
    machine = {"cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg()[0]}
    cpu_used = {
        "workers": sum(
            v - cpu_before["workers"].get(pid, 0) for pid, v in cpu_after.pop("workers").items()
        ),
        **{name: cpu_after[name] - cpu_before[name] for name in cpu_after},
    }
    table = deliveries_table(url, article_id)
    sampler.stop()
    after = recorded(settings.metrics_dir)
    say("stopping the worker")
    worker.stop()
    statements = after.get("statements", 0) - before + web_count
    delivered = arrivals.emails + arrivals.pushes
    smtp_phase, stats = arrivals.smtp, arrivals.push
    email = pushed = None  # a channel without readers (--channels) has no figures
    if seeded.emails:
        email = channel_check(
            arrivals.emails, smtp_phase.per_id, smtp_phase.duplicates, smtp_phase.unknown,
            seeded.emails,
        )  # fmt: skip
        email["average_bytes"] = round(smtp_phase.dump_bytes / max(1, smtp_phase.dumped))
    if seeded.pushes:
        pushed = {
            "readers": seeded.pushes,
            "delivered": seeded.pushes - stats["lost"],
            "lost": stats["lost"],
            "duplicates": stats["duplicates"],
            "unexpected": stats["unknown"],
            "accepted": arrivals.pushes,
        }
    # What the sink of a channel without readers took anyway: 0 unless something is wrong.
    stray = (0 if email else smtp_phase.accepted) + (0 if pushed else stats["unknown"])
    hwm = sorted(sampler.hwm_kb.values(), reverse=True)
    return {
        "article_id": article_id,
        "webhook_seconds": webhook_seconds,
        "emails": arrivals.emails,
        "pushes": arrivals.pushes,
        "emails_per_second": rate(arrivals.emails, arrivals.first_email, arrivals.last_email),
        "pushes_per_second": rate(arrivals.pushes, arrivals.first_push, arrivals.last_push),
        "messages_per_second": (delivered / arrivals.last) if arrivals.last else None,
        "seconds_to_first": arrivals.first,
        "seconds_to_first_email": arrivals.first_email,
        "seconds_to_first_push": arrivals.first_push,
        "seconds_to_last": arrivals.last,
        "seconds_to_last_email": arrivals.last_email,
        "seconds_to_last_push": arrivals.last_push,
        "timed_out": arrivals.timed_out,
        "worker_processes": len(hwm),
        "worker_peak_rss_mb": hwm[0] / 1024 if hwm else None,
        "worker_peak_rss_mb_sum": sum(hwm) / 1024,
        "worker_peak_total_rss_mb": sampler.peak_rss_kb / 1024,
        "worker_peak_total_pss_mb": sampler.peak_pss_kb / 1024,
        "db_statements": statements,
        "db_statements_web": web_count,
        "db_statements_per_1000": statements / (delivered / 1000) if delivered else None,
        "fanout_task_seconds": after.get("fanout seconds"),
        "recorded_outcomes": {k: v for k, v in after.items() if " " in k and "seconds" not in k},
        "deliveries_table": table,
        "email": email,
        "push": pushed,
        "stray_messages": stray,
        "cpu_seconds": cpu_used,
        "worker_cpu_ms_per_message": worker_cpu_ms(cpu_used["workers"], delivered),
        "machine": machine,
        "push_sink": {
            k: arrivals.push[k]
            for k in (
                "connections",
                "vapid_tokens",
                "decrypted",
                "decrypt_failed",
                "titles",
                "refused",
            )
        },
    }


def run_naive(
    args,
    settings,
    smtp: SmtpSink,
    push: PushSink,
    seeded: Seeded,
    article_id: int,
    logs: Path,
    cleanup: ExitStack,
) -> dict:
    from celery import Celery

    # Half and half, or all of the sample on the one channel seeded (--channels).
    emails = min(seeded.emails, args.naive_sample // 2 if seeded.pushes else args.naive_sample)
    pushes = min(seeded.pushes, args.naive_sample - emails)
    env = {**settings_env(settings), "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.naive",
        "worker",
        "-Q",
        "bench_naive",
        f"--concurrency={args.concurrency}",
        "-n",
        "bench-naive@%h",
        "--loglevel=INFO",
    ]
    say(f"naive way: {emails:,} emails + {pushes:,} pushes, one task each")
    worker = Child("naive-worker", command, env, logs)
    cleanup.callback(worker.stop)
    worker.wait_for_output("ready.")
    worker.wait_until_idle()
    smtp.new_phase(emails)
    push.new_phase(pushes)
    producer_app = Celery("bench_fanout", broker=settings.broker_url)
    started = time.monotonic()
    with producer_app.producer_or_acquire() as producer:
        for n in range(1, max(emails, pushes) + 1):
            if n <= emails:
                producer_app.send_task(
                    "bench.naive.send_email",
                    args=(n, article_id),
                    queue="bench_naive",
                    producer=producer,
                )
            if n <= pushes:
                producer_app.send_task(
                    "bench.naive.send_push",
                    args=(n, article_id),
                    queue="bench_naive",
                    producer=producer,
                )
    enqueued = time.monotonic() - started
    arrivals = wait_for_messages(
        smtp, push, emails, pushes, started, min(args.stall_timeout, 60), [worker], "naive"
    )
    worker.stop()
    producer_app.close()
    total = arrivals.emails + arrivals.pushes
    return {
        "sample": emails + pushes,
        "emails": arrivals.emails,
        "pushes": arrivals.pushes,
        "enqueue_seconds": enqueued,
        "seconds_to_last": arrivals.last,
        "messages_per_second": (total / arrivals.last) if arrivals.last else None,
        "emails_per_second": rate(arrivals.emails, arrivals.first_email, arrivals.last_email),
        "pushes_per_second": rate(arrivals.pushes, arrivals.first_push, arrivals.last_push),
        "timed_out": arrivals.timed_out,
        "lost": arrivals.smtp.lost() + arrivals.push["lost"],
        "duplicates": arrivals.smtp.duplicates + arrivals.push["duplicates"],
    }


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------


def table(figures: dict) -> str:
    fast, naive, seeded = figures["fast"], figures.get("naive"), figures["seeding"]
    machine = fast["machine"]
    readers = figures["readers"]
    email, push = fast["email"], fast["push"]  # None: the channel had no readers (--channels)
    present = [(name, c) for name, c in (("email", email), ("push", push)) if c is not None]
    only = "" if len(present) == 2 else f" (--channels {present[0][0]})"
    cpu = fast["cpu_seconds"]
    rows: list[tuple[str, str, str, str, str]] = []

    def row(name: str, value: str, detail: str = "", target: str = "", ok=None) -> None:
        rows.append((name, value, target, _verdict(ok) if target else "", detail))

    eps, pps = fast["emails_per_second"], fast["pushes_per_second"]
    span_e = (fast["seconds_to_last_email"] or 0) - (fast["seconds_to_first_email"] or 0)
    span_p = (fast["seconds_to_last_push"] or 0) - (fast["seconds_to_first_push"] or 0)
    row("readers", f"{readers:,}", f"{seeded['emails']:,} email, {seeded['pushes']:,} push")
    if email is None:
        row("emails/s", "-", f"no email readers{only}")
    else:
        row(
            "emails/s", _n(eps), f"{fast['emails']:,} accepted, first to last in {span_e:.2f} s;"
            f" {email['average_bytes'] / 1024:.1f} KiB each",
            f">= {TARGETS['emails_per_second']:,}",
            None if eps is None else eps >= TARGETS["emails_per_second"],
        )  # fmt: skip
    if push is None:
        row("pushes/s", "-", f"no push subscriptions{only}")
    else:
        row(
            "pushes/s", _n(pps), f"{fast['pushes']:,} accepted, first to last in {span_p:.2f} s",
            f">= {TARGETS['pushes_per_second']:,}",
            None if pps is None else pps >= TARGETS["pushes_per_second"],
        )  # fmt: skip
    row(
        "messages/s, webhook to last", _n(fast["messages_per_second"]),
        "both channels" if not only else f"{present[0][0]} only",
    )  # fmt: skip
    last = fast["seconds_to_last"]
    million = readers >= 1_000_000
    last_target = TARGETS["seconds_to_last_million" if million else "seconds_to_last"]
    row(
        "seconds, article to last accepted", _n(last, 2),
        ", ".join(f"last {name} {_n(fast[f'seconds_to_last_{name}'], 2)}" for name, _ in present),
        f"<= {last_target} ({'1,000,000' if million else '100,000'})",
        None if readers < 100_000 or last is None or only
        else last <= last_target and not fast["timed_out"],
    )  # fmt: skip
    first = fast["seconds_to_first"]
    row(
        "time to first message", _n(first, 3, " s"),
        ", ".join(f"first {name} {_n(fast[f'seconds_to_first_{name}'], 3)}" for name, _ in present)
        + f"; webhook answered in {fast['webhook_seconds']:.3f}",
        f"< {TARGETS['first_message']} s",
        None if first is None else first < TARGETS["first_message"],
    )  # fmt: skip
    peak = fast["worker_peak_rss_mb"]
    row(
        "worker peak RSS", _n(peak, 0, " MB"),
        f"largest of {fast['worker_processes']} processes (VmHWM); all together"
        f" {_n(fast['worker_peak_total_pss_mb'], 0, ' MB')} PSS,"
        f" {_n(fast['worker_peak_total_rss_mb'], 0, ' MB')} RSS",
        f"< {TARGETS['rss_mb']} MB (1,000,000)",
        None if peak is None or readers < 1_000_000 else peak < TARGETS["rss_mb"],
    )  # fmt: skip
    row(
        "DB statements per 1,000 deliveries", _n(fast["db_statements_per_1000"], 1),
        f"{fast['db_statements']:,.0f} statements, {fast['db_statements_web']:,.0f} of them"
        " in the web app",
    )  # fmt: skip
    lost = sum(c["lost"] for _, c in present)
    dups = sum(c["duplicates"] for _, c in present)
    # messages to unknown recipients, the sink of a channel without readers included
    unexpected = sum(c["unexpected"] for _, c in present) + fast["stray_messages"]
    row(
        "delivered / lost / duplicated",
        f"{sum(c['delivered'] for _, c in present):,} / {lost:,} / {dups:,}",
        ", ".join(f"{name} {c['delivered']:,}/{c['lost']:,}/{c['duplicates']:,}"
                  for name, c in present)
        + (f", {unexpected:,} to unknown recipients" if unexpected else ""),
        "each reader once", lost == 0 and dups == 0 and unexpected == 0,
    )  # fmt: skip
    table = fast["deliveries_table"]
    row(
        "deliveries table",
        f"{sum(table.values()):,}",
        ", ".join(f"{k} {v:,}" for k, v in table.items()),
    )
    sink = fast["push_sink"]
    if push is None:
        row("push sink", "-", f"no push subscriptions{only}")
    else:
        row(
            "push sink", f"{sink['connections']:,} conn.",
            f"{sink['vapid_tokens']} VAPID token(s) verified, {sink['decrypted']:,} sampled"
            f" payloads decrypted, {sink['decrypt_failed']} failed,"
            f" {sum(sink['refused'].values()):,} refused",
        )  # fmt: skip
    row(
        "CPU seconds during the fan-out",
        f"{sum(cpu.values()):.1f}",
        ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items()),
    )
    per_message = fast["worker_cpu_ms_per_message"]
    if only:  # one channel: the workers' CPU is that channel's
        name = present[0][0]
        plural = {"email": "emails", "push": "pushes"}[name]
        row(
            f"worker CPU per {name}", _n(per_message, 3, " ms"),
            f"{cpu['workers']:.2f} s of the worker processes' CPU / {fast[plural]:,}"
            f" {plural} (planning, claiming, composing, sending, recording)",
            f"<= {TARGETS[f'cpu_ms_per_{name}']} ms",
            None if per_message is None else per_message <= TARGETS[f"cpu_ms_per_{name}"],
        )  # fmt: skip
    else:
        row(
            "worker CPU per message", _n(per_message, 3, " ms"),
            "both channels together; run --channels email and --channels push for each alone",
        )  # fmt: skip
    if fast["fanout_task_seconds"] is not None:
        row("fan-out task", f"{fast['fanout_task_seconds']:.2f} s", "plan + queue (histogram sum)")
    if naive:
        row(
            "naive way, messages/s", _n(naive["messages_per_second"], 1),
            f"{naive['emails'] + naive['pushes']:,} of {naive['sample']:,} sampled readers in"
            f" {_n(naive['seconds_to_last'], 2)} s; lost {naive['lost']},"
            f" duplicated {naive['duplicates']}",
        )  # fmt: skip
        ratio = figures.get("ratio")
        row(
            "fast / naive", _n(ratio, 1, "x"), "messages/s, webhook or first task to last",
            f">= {TARGETS['ratio']}x", None if ratio is None else ratio >= TARGETS["ratio"],
        )  # fmt: skip
    problems = [f"fan-out did not complete: {fast['timed_out']}"] if fast["timed_out"] else []
    if naive and naive["timed_out"]:
        problems.append(f"naive way did not complete: {naive['timed_out']}")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        f"notifier fan-out: one article (News + Economy) to {readers:,} readers{only}",
        f"  SMTP sink  {figures['smtp_sink']}",
        f"  push sink  {figures['push_sink']}",
        f"  workers    notifier worker --concurrency={figures['concurrency']},"
        f" broker {figures['redis_url']}, database {figures['database']}",
        f"  machine    {machine['cpus']} CPUs, load average {machine['load_before']:.2f} when the"
        f" fan-out started, {machine['load_after']:.2f} when it ended"
        + ("  (other work is running here: lower figures)" if machine["load_before"] > 0.5 else ""),
        f"  seeded     {readers:,} readers in {seeded['seconds']:.1f} s, following"
        f" {seeded['follows_per_reader']:.2f} of {seeded['categories']} categories on average;"
        f" all follow News or Economy: {readers:,} should get the article",
        "",
        "  ".join(
            h.ljust(w) for h, w in zip(("figure", "value", "target", ""), widths, strict=True)
        )
        + "  detail",
    ]
    for cells in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + "  "
                     + cells[4])  # fmt: skip
    lines = [line.rstrip() for line in lines]
    lines += [f"!! {p}" for p in problems]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--readers", type=int, default=100_000, help="half email, half push (see --channels)"
    )
    parser.add_argument(
        "--channels", choices=("both", "email", "push"), default="both",
        help="both: half the readers email, half push; email or push: all of them on that"
        " channel, and only it is waited for, counted and sampled the naive way",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency",
        type=int,
        default=Settings.worker_concurrency,
        help="worker pool processes (both ways; default: WORKER_CONCURRENCY's default)",
    )
    parser.add_argument(
        "--naive-sample",
        type=int,
        default=1000,
        help="readers sent the naive way (half email, half push with --channels both)",
    )
    parser.add_argument("--skip-naive", action="store_true", help="do not time the naive way")
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch database and the process logs"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the figures as JSON on stdout (the table goes to stderr)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        help="broker; this Redis database is flushed (default redis://127.0.0.1:6379/13)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=300,
        help="give up after this many seconds without a message accepted",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get install postfix for smtp-sink"
    )
    parser.add_argument(
        "--smtp-sink", choices=("auto", "smtp-sink", "aiosmtpd"), default="auto",
        help="auto: Postfix's smtp-sink (found or installed), else the aiosmtpd stand-in",
    )  # fmt: skip
    parser.add_argument(
        "--decrypt-every",
        type=int,
        default=1000,
        help="the push sink decrypts the first push and every Nth",
    )
    args = parser.parse_args(argv)
    if args.channels == "both" and args.readers < 2:
        parser.error("--readers must be at least 2 (one email, one push)")
    if args.readers < 1:
        parser.error("--readers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
        signal.signal(signum, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line
    cleanup = ExitStack()
    tmp = Path(tempfile.mkdtemp(prefix="notifier-fanout-"))
    logs = tmp / "logs"
    logs.mkdir()
    emails = {"both": args.readers // 2, "email": args.readers, "push": 0}[args.channels]
    pushes = args.readers - emails  # a channel with no readers is neither waited for nor counted
    try:
        flushed_broker(cleanup, args.redis_url)
        url = bench_database(cleanup, args.keep)
        smtp = SmtpSink(tmp, not args.no_install, say, args.smtp_sink).start()
        cleanup.callback(smtp.stop)
        say(f"SMTP sink: {smtp.description}")
        pool, p256dh, auth = make_key_pool(max(1, min(KEY_POOL, pushes)))  # never empty
        vapid_private, vapid_public = generate_keypair()
        push = PushSink(tmp, pool, vapid_public, args.decrypt_every).start()
        cleanup.callback(push.stop)
        say(f"push sink: {push.description} on {push.origin}")
        settings = make_settings(
            tmp,
            DATABASE_URL=url,
            CELERY_BROKER_URL=args.redis_url,
            SMTP_URL=smtp.url,
            PUBLIC_URL=f"http://127.0.0.1:{free_port()}",
            PUSH_ALLOWED_ORIGINS=push.origin,
            VAPID_PRIVATE_KEY=vapid_private,
            VAPID_PUBLIC_KEY=vapid_public,
            FEED_POLL_SECONDS="3600",
            WORKER_CONCURRENCY=str(args.concurrency),
        )
        say(f"seeding {emails:,} email and {pushes:,} push readers")
        seeded = seed(url, emails, pushes, push, p256dh, auth)
        say(f"seeded in {seeded.seconds:.1f} s")
        fast = run_fast(args, settings, url, smtp, push, seeded, logs, cleanup)
        naive = None
        if not args.skip_naive and args.naive_sample > 1:
            naive = run_naive(args, settings, smtp, push, seeded, fast["article_id"], logs, cleanup)
        ratio = None
        if naive and naive["messages_per_second"] and fast["messages_per_second"]:
            ratio = fast["messages_per_second"] / naive["messages_per_second"]
        figures = {
            "readers": args.readers,
            "channels": args.channels,
            "concurrency": args.concurrency,
            "smtp_sink": smtp.description,
            "push_sink": f"{push.description} on {push.origin}",
            "redis_url": args.redis_url,
            "database": make_url(url).database,
            "seeding": {
                "emails": seeded.emails,
                "pushes": seeded.pushes,
                "seconds": seeded.seconds,
                "categories": seeded.categories,
                "follows_per_reader": seeded.follows_per_reader,
                "readers_per_category": seeded.per_category,
            },
            "fast": fast,
            "naive": naive,
            "ratio": ratio,
            "targets": TARGETS,
        }
        output = table(figures)
        if args.json:
            print(output, file=sys.stderr)
            print(json.dumps(figures, indent=2, default=str))
        else:
            print(output)
        lost = sum(fast[name]["lost"] for name in ("email", "push") if fast[name])
        failed = bool(fast["timed_out"]) or lost > 0
        return 1 if failed else 0
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        return 130
    except BaseException:
        args.keep = True  # the process logs say what went wrong
        raise
    finally:
        finish(cleanup, tmp, logs, args.keep)


if __name__ == "__main__":
    sys.exit(main())
