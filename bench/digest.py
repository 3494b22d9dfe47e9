"""The morning digest at news scale: N daily-digest readers whose hour comes at once, through
the real planner and workers into a local SMTP sink.

    .venv/bin/python bench/digest.py                     # 100,000 readers
    .venv/bin/python bench/digest.py --readers 10000 --json > digest.json

Needs what the tests need: PostgreSQL (TEST_DATABASE_URL, default postgres@127.0.0.1:5432/test;
a scratch database is created, seeded and dropped) and Redis (--redis-url, default database
12, flushed). Seeds in SQL N confirmed readers in four time zones (UTC, London, Baku, New York)
whose daily digest hour is the same moment H (the last full UTC hour: 07:00 in one zone is
08:00 in another), each following 1-3 of the site's 15 categories at the daily cadence, and 20
articles announced over the day before H (one or two categories each). Starts Postfix's
smtp-sink (installed with apt-get when missing and running as root; its dump is needed to
check what each reader got) and `notifier worker` with every setting at its default
(WORKER_CONCURRENCY processes, DIGEST_PLAN_BATCH, DELIVERY_CHUNK_SIZE, ...), then sends the
digest planner's task to the broker as beat does at its tick (`notifier.tasks.plan_digests`;
beat ticks every DIGEST_PLANNER_SECONDS, so in production the hour comes up to that much
before the tick: the times here run from the tick).

Prints seconds from the tick to the first and last digest accepted, digests/s, how long the
planner task ran, worker peak RSS, delivered / lost / duplicated (per recipient at the sink)
and whether each digest holds exactly the articles of its reader's categories (read from the
text part of every message). Exits 1 when a digest is lost, sent twice, or wrong.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # this process counts in memory

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
    number,
    redis_address,
    say,
    verdict,
)
from bench.sinks import SmtpSink  # noqa: E402
from notifier.config import Settings, load_settings  # noqa: E402
from tests.support.processes import settings_env  # noqa: E402

ZONES = ("UTC", "Europe/London", "Asia/Baku", "America/New_York")
ARTICLES = 20
TARGET_SECONDS = 120  # all 100,000 digests within two minutes of the hour
PLANNER_TASK = "notifier.tasks.plan_digests"
ARTICLE_LINK = "https://aze.media/bench/digest/{}/"
_LINKED = re.compile(rb"https://aze\.media/bench/digest/(\d+)/")
_RCPT = re.compile(rb"X-Rcpt-Args: <r(\d+)@")
_TEXT_PART = re.compile(rb"Content-Type: text/plain[^\n]*\n(?:[^\n]+\n)*\n")


# ---------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------

# Reader n: zone n % 4, following 1 + n % 3 categories picked by a hash of (n, category).
READERS = """
INSERT INTO subscribers (id, email, status, created_at, confirmed_at, timezone, digest_hour)
SELECT n, 'r' || n || '@bench.test', 'active', :joined, :joined,
       (CAST(:zones AS text[]))[1 + n % 4], (CAST(:hours AS integer[]))[1 + n % 4]
FROM generate_series(1, CAST(:count AS integer)) AS n
"""
FOLLOWS = """
INSERT INTO subscriber_categories (subscriber_id, category_id, cadence)
SELECT n, c.id, 'daily' FROM generate_series(1, CAST(:count AS integer)) AS n,
LATERAL (SELECT id FROM categories ORDER BY md5(n || ':' || id) LIMIT 1 + n % 3) AS c
"""
SCHEDULES = """
INSERT INTO digest_schedules (subscriber_id, cadence, next_at, since)
SELECT n, 'daily', :hour, :previous FROM generate_series(1, CAST(:count AS integer)) AS n
"""


@dataclass
class Seeded:
    readers: int
    hour: datetime
    seconds: float
    expected: list[frozenset[int] | None]  # reader n -> the article numbers of their digest
    article_sets: int  # distinct digests (sets of articles) among the readers
    follows_per_reader: float


def seed(url: str, readers: int) -> Seeded:
    started = time.monotonic()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    naive = hour.replace(tzinfo=None)
    engine = create_engine(url)
    with engine.begin() as conn:
        categories = [row[0] for row in conn.execute(text("SELECT id FROM categories ORDER BY id"))]
        params = {
            "count": readers,
            "joined": naive - timedelta(days=30),
            "zones": list(ZONES),
            "hours": [hour.astimezone(ZoneInfo(zone)).hour for zone in ZONES],
        }
        conn.execute(text(READERS), params)
        conn.execute(
            text("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), :n)"), {"n": readers}
        )
        insert_checked_once(conn, "subscriber_categories", FOLLOWS, {"count": readers})
        previous = naive - timedelta(days=1)  # the day's digest covers the day before H
        insert_checked_once(
            conn,
            "digest_schedules",
            SCHEDULES,
            {"count": readers, "hour": naive, "previous": previous},
        )
        article_categories = _seed_articles(conn, categories, previous)
        follows: dict[int, list[int]] = {}
        for reader, category in conn.execute(
            text("SELECT subscriber_id, category_id FROM subscriber_categories")
        ):
            follows.setdefault(reader, []).append(category)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    expected: list[frozenset[int] | None] = [None] * (readers + 1)
    shared: dict[frozenset[int], frozenset[int]] = {}
    for reader, followed in follows.items():
        articles = frozenset(n for n, cats in article_categories.items() if cats & set(followed))
        expected[reader] = shared.setdefault(articles, articles)
    return Seeded(
        readers,
        hour,
        time.monotonic() - started,
        expected,
        len(shared),
        sum(map(len, follows.values())) / max(1, readers),
    )


def _seed_articles(conn, categories: list[int], previous: datetime) -> dict[int, set[int]]:
    """20 articles first seen over the day: article k in category k (of 15), every fifth
    also in a second one. Announced, already fanned out (no instant reader). Article number
    -> its categories."""
    placed: dict[int, set[int]] = {}
    for k in range(1, ARTICLES + 1):
        seen = previous + timedelta(minutes=70 * k)
        article_id = conn.execute(
            text(
                "INSERT INTO articles (guid, link, title, summary, published_at, first_seen_at,"
                " announce, fanned_out_at) VALUES (:guid, :link, :title, :summary, :seen,"
                " :seen, true, :seen) RETURNING id"
            ),
            {
                "guid": f"bench-digest-{k}",
                "link": ARTICLE_LINK.format(k),
                "title": f"Bench digest story {k}: what happened today",
                "summary": "Seeded by bench/digest.py.",
                "seen": seen,
            },
        ).scalar_one()
        placed[k] = {categories[(k - 1) % len(categories)]}
        if k % 5 == 0:
            placed[k].add(categories[(k + 6) % len(categories)])
        for category in placed[k]:
            conn.execute(
                text("INSERT INTO article_categories (article_id, category_id) VALUES (:a, :c)"),
                {"a": article_id, "c": category},
            )
    return placed


# ---------------------------------------------------------------------------------------
# What each reader got
# ---------------------------------------------------------------------------------------


@dataclass
class ContentCheck:
    """Reads the article links in the text part of every digest the sink accepted and
    compares them with what the reader's categories hold."""

    expected: list[frozenset[int] | None]
    right: int = 0
    wrong: int = 0
    unreadable: int = 0
    examples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, transaction: bytes) -> None:
        found = _RCPT.search(transaction)
        part = _TEXT_PART.search(transaction)
        if found is None or part is None:
            self._note("unreadable", f"no recipient or text part: {transaction[:200]!r}")
            return
        reader = int(found[1])
        body = transaction[part.end() : transaction.find(b"\n\n", part.end())]
        try:
            plain = base64.b64decode(body)
        except ValueError:
            self._note("unreadable", f"reader {reader}: text part not base64")
            return
        listed = [int(n) for n in _LINKED.findall(plain)]
        wanted = self.expected[reader] if 0 < reader < len(self.expected) else None
        if wanted is not None and len(listed) == len(wanted) and set(listed) == wanted:
            with self.lock:
                self.right += 1
        else:
            self._note(
                "wrong", f"reader {reader}: got {sorted(listed)}, wanted {sorted(wanted or ())}"
            )

    def _note(self, kind: str, example: str) -> None:
        with self.lock:
            setattr(self, kind, getattr(self, kind) + 1)
            if len(self.examples) < 5:
                self.examples.append(example)


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------


def wait_for_digests(smtp: SmtpSink, wanted: int, stall_timeout: float, worker: Child) -> str:
    """Until the sink accepted `wanted` messages; why it stopped waiting otherwise."""
    moved, seen, report_at = time.monotonic(), -1, time.monotonic() + 5
    while True:
        accepted, now = smtp.snapshot().accepted, time.monotonic()
        if accepted >= wanted:
            return ""
        if accepted != seen:
            seen, moved = accepted, now
        problem = smtp.died() or (
            f"worker exited ({worker.popen.returncode})"
            if worker.popen.poll() is not None
            else f"nothing accepted for {stall_timeout:.0f} s"
            if now - moved > stall_timeout
            else ""
        )
        if problem:
            say(f"giving up: {problem}")
            return problem
        if now >= report_at:
            say(f"{accepted:,}/{wanted:,} digests accepted")
            report_at = now + 5
        time.sleep(0.1)


def ledger(url: str, settle: float = 30.0) -> dict[str, int]:
    """Digests planned, their deliveries by status (once none is pending or sending), and
    schedules moved past the hour."""
    engine = create_engine(url)
    deadline = time.monotonic() + settle
    try:
        while True:
            with engine.connect() as conn:
                rows = dict(
                    conn.execute(
                        text(
                            "SELECT status, count(*) FROM deliveries WHERE digest_id IS NOT NULL"
                            " GROUP BY status"
                        )
                    ).all()
                )
                digests = conn.execute(text("SELECT count(*) FROM digests")).scalar_one()
                due = conn.execute(
                    text("SELECT count(*) FROM digest_schedules WHERE next_at <= :now"),
                    {"now": datetime.now(UTC).replace(tzinfo=None)},
                ).scalar_one()
            busy = rows.get("pending", 0) + rows.get("sending", 0)
            if not busy or time.monotonic() > deadline:
                return {
                    "digests": digests,
                    "schedules still due": due,
                    **{f"deliveries {k}": v for k, v in sorted(rows.items())},
                }
            time.sleep(0.5)
    finally:
        engine.dispose()


def planner_seconds(log: str) -> float | None:
    """How long the planner tasks ran (the longest, with DIGEST_PLANNERS of them), from
    Celery's "succeeded in" lines."""
    pattern = rf"Task {re.escape(PLANNER_TASK)}\[[^\]]*\] succeeded in ([\d.]+)s"
    return max((float(s) for s in re.findall(pattern, log)), default=None)


def run(
    args,
    settings: Settings,
    url: str,
    smtp: SmtpSink,
    seeded: Seeded,
    logs: Path,
    cleanup: ExitStack,
) -> dict:
    from notifier.celery_app import make_celery

    command = [
        sys.executable,
        "-m",
        "notifier.cli",
        "worker",
        f"--concurrency={args.concurrency}",
        "-n",
        "bench-digest@%h",
    ]
    env = {**settings_env(settings), "WORKER_CONCURRENCY": str(args.concurrency)}
    say(f"starting notifier worker --concurrency={args.concurrency}")
    worker = Child("worker", command, env, logs)
    cleanup.callback(worker.stop)
    worker.wait_for_output("ready.")
    worker.wait_until_idle()  # the pool's children and the feed worker finish starting
    sampler = Sampler(worker)
    sampler.start()
    smtp.new_phase(seeded.readers)
    where = (make_url(url).database, redis_address(args.redis_url))
    cpu_before = {
        **cpu_of_servers(*where),
        "workers": sum(sampler.cpu_snapshot().values()),
        "smtp-sink": cpu_seconds(smtp.process.pid) or 0.0,
    }
    app = make_celery(settings)
    load_before = os.getloadavg()[0]
    say(f"the hour: the planner's tick, {seeded.readers:,} digests due")
    started = time.monotonic()
    app.send_task(PLANNER_TASK)  # what beat sends at its tick
    problem = wait_for_digests(smtp, seeded.readers, args.stall_timeout, worker)
    time.sleep(1.0)  # late duplicates (a retried batch) would arrive now
    smtp.finish_inspection()
    phase = smtp.snapshot()
    cpu_after = {
        **cpu_of_servers(*where),
        "workers": sum(sampler.cpu_snapshot().values()),
        "smtp-sink": cpu_seconds(smtp.process.pid) or 0.0,
    }
    load_after = os.getloadavg()[0]
    table = ledger(url)
    sampler.stop()
    say("stopping the worker")
    worker.stop()
    app.close()
    hwm = sorted(sampler.hwm_kb.values(), reverse=True)
    first = None if phase.first is None else phase.first - started
    last = None if phase.last is None else phase.last - started
    lost = phase.lost(seeded.readers)
    return {
        "readers": seeded.readers,
        "accepted": phase.accepted,
        "delivered": seeded.readers - lost,
        "lost": lost,
        "duplicates": phase.duplicates,
        "unexpected": phase.unknown,
        "seconds_to_first": first,
        "seconds_to_last": last,
        "digests_per_second": (phase.accepted / last) if last else None,
        "planner_seconds": planner_seconds(worker.output()),
        "timed_out": problem,
        "worker_processes": len(hwm),
        "worker_peak_rss_mb": hwm[0] / 1024 if hwm else None,
        "worker_peak_total_pss_mb": sampler.peak_pss_kb / 1024,
        "cpu_seconds": {k: cpu_after[k] - cpu_before[k] for k in cpu_after},
        "ledger": table,
        "machine": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after},
    }


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------


def report(figures: dict) -> str:
    fast, seeded, content = figures["run"], figures["seeding"], figures["content"]
    readers, last = fast["readers"], fast["seconds_to_last"]
    rows: list[tuple[str, str, str, str, str]] = []

    def row(name: str, value: str, detail: str = "", target: str = "", ok=None) -> None:
        rows.append((name, value, target, verdict(ok) if target else "", detail))

    row(
        "readers",
        f"{readers:,}",
        f"{seeded['article_sets']:,} distinct digests (article sets);"
        f" {seeded['follows_per_reader']:.2f} categories per reader",
    )
    row(
        "seconds, the hour to the last digest",
        number(last, 1),
        f"first after {number(fast['seconds_to_first'], 2)} s; the planner task ran"
        f" {number(fast['planner_seconds'], 1)} s",
        f"<= {TARGET_SECONDS} (100,000)",
        None
        if readers < 100_000 or last is None
        else last <= TARGET_SECONDS and not fast["timed_out"],
    )
    row("digests/s", number(fast["digests_per_second"]), "accepted, from the hour to the last")
    row(
        "worker peak RSS",
        number(fast["worker_peak_rss_mb"], 0, " MB"),
        f"largest of {fast['worker_processes']} processes (VmHWM); all together"
        f" {number(fast['worker_peak_total_pss_mb'], 0, ' MB')} PSS",
    )
    unexpected = f", {fast['unexpected']:,} to unknown recipients" if fast["unexpected"] else ""
    row(
        "delivered / lost / duplicated",
        f"{fast['delivered']:,} / {fast['lost']:,} / {fast['duplicates']:,}",
        f"{fast['accepted']:,} accepted by the sink{unexpected}",
        "each reader once",
        fast["lost"] == 0 and fast["duplicates"] == 0 and not fast["unexpected"],
    )
    row(
        "content",
        f"{content['right']:,} right",
        f"{content['wrong']:,} wrong, {content['unreadable']:,} unreadable",
        "each its reader's articles",
        content["wrong"] == 0
        and content["unreadable"] == 0
        and content["right"] == fast["accepted"],
    )
    row(
        "ledger",
        f"{fast['ledger']['digests']:,} digests",
        ", ".join(f"{k} {v:,}" for k, v in fast["ledger"].items() if k != "digests"),
    )
    cpu = fast["cpu_seconds"]
    row(
        "CPU seconds",
        f"{sum(cpu.values()):.1f}",
        ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items()),
    )
    machine = fast["machine"]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        f"notifier digests: {readers:,} daily digests due at the same moment",
        f"  SMTP sink  {figures['smtp_sink']}",
        f"  workers    notifier worker --concurrency={figures['concurrency']}, every setting at"
        f" its default; broker {figures['redis_url']}, database {figures['database']}",
        f"  machine    {machine['cpus']} CPUs, load average {machine['load_before']:.2f} at the"
        f" hour, {machine['load_after']:.2f} at the end"
        + ("  (other work is running here: lower figures)" if machine["load_before"] > 0.5 else ""),
        f"  seeded     {readers:,} readers and {ARTICLES} articles in {seeded['seconds']:.1f} s;"
        f" the hour {seeded['hour']}",
        "",
        "  ".join(
            h.ljust(w) for h, w in zip(("figure", "value", "target", ""), widths, strict=True)
        )
        + "  detail",
    ]
    for cells in rows:
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) + "  " + cells[4]
        )
    lines = [line.rstrip() for line in lines]
    if fast["timed_out"]:
        lines.append(f"!! did not complete: {fast['timed_out']}")
    lines += [f"!! {example}" for example in content["examples"]]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=100_000, help="daily-digest readers")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=Settings.worker_concurrency,
        help="worker pool processes (default: WORKER_CONCURRENCY's default)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        help="broker; this Redis database is flushed (default redis://127.0.0.1:6379/12)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=120,
        help="give up after this many seconds without a digest accepted",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch database and the process logs"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get install postfix for smtp-sink"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the figures as JSON on stdout (the table goes to stderr)",
    )
    args = parser.parse_args(argv)
    if args.readers < 1:
        parser.error("--readers must be at least 1")
    return args


def bench_settings(tmp: Path, url: str, broker: str, smtp_url: str) -> Settings:
    """Every setting at its default but where things are (no test overrides)."""
    return load_settings(
        {
            "NOTIFIER_DATA_DIR": str(tmp / "var"),
            "SECRET_KEY": "bench-digest-secret-key",
            "PUBLIC_URL": "http://127.0.0.1:8000",
            "MAIL_FROM": "Aze.Media <news@aze.test>",
            "DATABASE_URL": url,
            "CELERY_BROKER_URL": broker,
            "SMTP_URL": smtp_url,
        }
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    cleanup = ExitStack()
    tmp = Path(tempfile.mkdtemp(prefix="notifier-digest-"))
    logs = tmp / "logs"
    logs.mkdir()
    try:
        flushed_broker(cleanup, args.redis_url)
        url = bench_database(cleanup, args.keep)
        say(f"seeding {args.readers:,} daily-digest readers")
        seeded = seed(url, args.readers)
        say(f"seeded in {seeded.seconds:.1f} s: {seeded.article_sets:,} distinct digests")
        content = ContentCheck(seeded.expected)
        smtp = SmtpSink(tmp, not args.no_install, say, "smtp-sink", inspect=content.take).start()
        cleanup.callback(smtp.stop)
        say(f"SMTP sink: {smtp.description}")
        settings = bench_settings(tmp, url, args.redis_url, smtp.url)
        fast = run(args, settings, url, smtp, seeded, logs, cleanup)
        figures = {
            "concurrency": args.concurrency,
            "smtp_sink": smtp.description,
            "redis_url": args.redis_url,
            "database": make_url(url).database,
            "seeding": {
                "readers": seeded.readers,
                "hour": seeded.hour.isoformat(),
                "seconds": seeded.seconds,
                "article_sets": seeded.article_sets,
                "follows_per_reader": seeded.follows_per_reader,
            },
            "run": fast,
            "content": {
                k: getattr(content, k) for k in ("right", "wrong", "unreadable", "examples")
            },
        }
        output = report(figures)
        print(output, file=sys.stderr if args.json else sys.stdout)
        if args.json:
            print(json.dumps(figures, indent=2, default=str))
        failed = (
            fast["timed_out"]
            or fast["lost"]
            or fast["duplicates"]
            or fast["unexpected"]
            or content.wrong
            or content.unreadable
            or content.right != fast["accepted"]
        )
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
