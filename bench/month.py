"""A month of history, retention, and one fan-out on top: does the ledger's size slow news down?

    .venv/bin/python bench/month.py                                # 128 M rows: ~30 minutes
    .venv/bin/python bench/month.py --history-readers 10000        # a smaller history
    .venv/bin/python bench/month.py --readers 20000 --history-readers 2000 --pairs 1

Needs what bench/fanout.py needs (PostgreSQL, Redis, its sinks) and reuses its seeding, sinks
and one-article fan-out (real `notifier worker` processes, the web app, the CMS webhook).

1. Seeds the readers (half email, half push) and times one fan-out to all of them on an
   empty ledger.
2. Seeds, in SQL, DAYS+2 days of history: STORIES articles a day, each to HISTORY_READERS
   readers (half by email, half by push; of a browser's day the first PUSH_DAILY_CAP pushes
   sent and counted, the rest skipped by the cap, as the default cap leaves them), oldest
   first, so the ledger holds what it holds in steady state plus the two days retention is
   about to remove. Prints how many rows, how long it took, and the database size.
3. Runs retention for the oldest day (DELIVERY_RETENTION_DAYS = DAYS+1) at the same moment as
   a fan-out: the retention run's time, and the fan-out's time against 4.
4. Runs retention alone for the next day (DELIVERY_RETENTION_DAYS = DAYS): its time, rows
   removed, the database size after it (PostgreSQL reuses the space of removed rows for new
   ones: files do not shrink, they stop growing).
5. One fan-out on the retained month-long ledger: its time against the empty ledger's.
6. PAIRS more fan-outs on the month, each next to one on an empty ledger (a second database
   with the same readers), order alternating: this machine's speed drifts by tens of percent
   over minutes, and a pair run back to back is the fairer comparison.

Then, per fan-out, where its time went: the workers' and PostgreSQL's CPU, and PostgreSQL's
own counters for the deliveries table and each index (scans, entries read, pages read from
outside shared_buffers), so a slower fan-out on the month shows which part grew.

Targets (issue 18): the fan-out on a month of history at most 10 % slower than on an empty
ledger; the fan-out during retention at most 10 % slower than without it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bench import fanout  # noqa: E402
from bench.sinks import PushSink, SmtpSink, make_key_pool  # noqa: E402
from notifier.config import Settings  # noqa: E402
from notifier.retention import run_retention  # noqa: E402
from notifier.timeutil import utcnow  # noqa: E402
from notifier.vapid import generate_keypair  # noqa: E402
from notifier.wording import plural  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.support.databases import scratch_database  # noqa: E402
from tests.support.smtp import free_port  # noqa: E402

say = fanout.say

ARTICLES = text(
    "INSERT INTO articles (guid, link, title, summary, announce, first_seen_at, published_at, "
    "fanned_out_at) SELECT 'bench-month-' || :day || '-' || s, "
    "'https://aze.media/month/' || :day || '/' || s, 'History ' || :day || '/' || s, '', true, "
    ":start + s * (interval '1 day' / :stories), :start + s * (interval '1 day' / :stories), "
    ":start + s * (interval '1 day' / :stories) + interval '1 minute' "
    "FROM generate_series(0, :stories - 1) AS s"
)
# One day's deliveries of one channel: every article of the day to every history reader.
# Pushes as PUSH_DAILY_CAP (default 5) leaves them: the first CAP of a browser's day sent and
# counted on it (push_day), the rest skipped with the cap's reason.
DELIVERIES = text(
    "INSERT INTO deliveries ({recipient}, article_id, channel, status, outcome, attempts, "
    "created_at, next_attempt_at, queued_at, sent_at, push_day, last_error) "
    "SELECT r, a.id, :channel, d.status, d.status, 1, a.first_seen_at, a.first_seen_at, "
    "a.first_seen_at, "
    "CASE WHEN d.status = 'sent' THEN a.first_seen_at + interval '30 seconds' END, "
    "CASE WHEN :channel = 'push' AND d.status = 'sent' "
    "THEN to_char(a.first_seen_at, 'YYYY-MM-DD') END, "
    "CASE WHEN d.status = 'skipped' THEN 'daily cap' END "
    "FROM articles a CROSS JOIN generate_series(1, CAST(:readers AS integer)) AS r "
    "CROSS JOIN LATERAL (SELECT CASE WHEN :channel = 'push' AND "
    "CAST(split_part(a.guid, '-', 4) AS integer) >= :cap THEN 'skipped' ELSE 'sent' END "
    "AS status) AS d "
    "WHERE a.guid LIKE 'bench-month-' || :day || '-%' ORDER BY a.id, r"
)
SECONDARY_INDEXES = text(
    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'deliveries' "
    "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE contype = 'p')"
)


def seed_history(
    url: str, days: int, stories: int, emails: int, pushes: int, cap: int
) -> dict:  # fmt: skip
    """Days of finished deliveries, oldest day first (ids follow time, as in production).

    Written the way a bulk load is, not the way the service writes: the table's secondary
    indexes are dropped and built again afterwards, and foreign keys are not checked row by
    row (the rows name readers and articles that exist), so a hundred million rows take
    minutes, not hours. The indexes come out as compact as the service's own (its inserts
    go to their right edge: ids and times grow)."""
    started = time.monotonic()
    # The history ends at today's midnight (UTC, the readers' zone): no push of it counts on
    # today, so PUSH_DAILY_CAP leaves today's pushes to the bench's own fan-outs.
    midnight = utcnow().replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    engine = create_engine(url)
    rows = 0
    with engine.begin() as conn:
        indexes = conn.execute(SECONDARY_INDEXES).all()
        for name, _ in indexes:
            conn.execute(text(f'DROP INDEX "{name}"'))
    for day in range(days, 0, -1):  # `day` days ago
        start = midnight - timedelta(days=day)
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # no FK checks
            conn.execute(ARTICLES, {"day": day, "start": start, "stories": stories})
            channels = (
                ("subscriber_id", "email", emails),
                ("push_subscription_id", "push", pushes),
            )
            for recipient, channel, readers in channels:
                if readers:
                    result = conn.execute(
                        text(DELIVERIES.text.format(recipient=recipient)),
                        {"day": day, "channel": channel, "readers": readers, "cap": cap},
                    )
                    rows += result.rowcount
        say(f"  history: {day} days ago seeded ({rows:,} rows so far, "
            f"{time.monotonic() - started:.0f} s)")  # fmt: skip
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SET maintenance_work_mem = '1GB'"))
        for name, definition in indexes:
            conn.execute(text(definition))
            say(f"  history: index {name} built ({time.monotonic() - started:.0f} s)")
        conn.execute(text("VACUUM ANALYZE deliveries"))
        conn.execute(text("ANALYZE"))
        # A month's writes are spread over the month; here they all wait in shared_buffers
        # and the WAL at once. Written out now, so the next fan-out does not pay for them
        # (commits of 300 ms while the checkpointer flushed the load, seen in the first run).
        conn.execute(text("CHECKPOINT"))
    engine.dispose()
    return {"rows": rows, "seconds": time.monotonic() - started}


def forget_deliveries(url: str) -> None:
    """Back to an empty ledger (the empty side of a pair), with fresh statistics."""
    engine = create_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("TRUNCATE deliveries, delivery_summaries CASCADE"))
        conn.execute(text("ANALYZE deliveries"))
    engine.dispose()


def sizes(url: str) -> dict:
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT pg_database_size(current_database()), "
                "pg_total_relation_size('deliveries'), pg_relation_size('deliveries'), "
                "(SELECT count(*) FROM deliveries), "
                "(SELECT count(*) FROM delivery_summaries)"
            )
        ).one()
    engine.dispose()
    return dict(zip(("database", "deliveries_total", "deliveries_heap", "rows", "summaries"),
                    row, strict=True))  # fmt: skip


TABLE_STATS = text(
    "SELECT t.seq_scan, t.seq_tup_read, t.idx_scan, t.idx_tup_fetch, t.n_tup_ins, t.n_tup_upd, "
    "t.n_tup_hot_upd, t.n_tup_del, t.autovacuum_count, t.autoanalyze_count, io.heap_blks_read, "
    "io.heap_blks_hit, io.idx_blks_read, io.idx_blks_hit FROM pg_stat_user_tables t "
    "JOIN pg_statio_user_tables io USING (relid) WHERE t.relname = 'deliveries'"
)
INDEX_STATS = text(
    "SELECT s.indexrelname, s.idx_scan, s.idx_tup_read, io.idx_blks_read, io.idx_blks_hit "
    "FROM pg_stat_user_indexes s JOIN pg_statio_user_indexes io USING (indexrelid) "
    "WHERE s.relname = 'deliveries'"
)


def ledger_stats(url: str) -> dict:
    """PostgreSQL's own counters for the deliveries table and each of its indexes: what a
    fan-out read and wrote there (the difference of two snapshots), to show where a bigger
    ledger costs time."""
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        table = conn.execute(TABLE_STATS).mappings().one()
        indexes = {row[0]: row[1:] for row in conn.execute(INDEX_STATS)}
    engine.dispose()
    return {"table": dict(table), "indexes": indexes}


def stats_delta(before: dict, after: dict) -> dict:
    table = {k: (after["table"][k] or 0) - (before["table"][k] or 0) for k in after["table"]}
    indexes = {
        name: tuple((a or 0) - (b or 0) for a, b in zip(values, before["indexes"].get(
            name, (0,) * len(values)), strict=True))
        for name, values in after["indexes"].items()
    }  # fmt: skip
    return {"table": table, "indexes": indexes}


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


class Retention(threading.Thread):
    """A retention run in the background, timed."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.removed = 0
        self.batches = 0
        self.seconds = 0.0
        self.started_at = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            run = run_retention(self.settings)
            self.removed, self.batches = run.removed, run.batches
        except BaseException as error:  # reported by the main thread
            self.error = error
        self.seconds = time.monotonic() - self.started_at


def fan_out(args, settings, url, smtp, push, seeded, logs, cleanup, during=None) -> dict:
    """bench/fanout.py's one-article fan-out on its own web port; `during` (a Retention) is
    started the moment the article is published."""
    settings = settings.with_overrides(public_url=f"http://127.0.0.1:{free_port()}")
    original = fanout.publish

    def publish(base: str, token: str):
        if during is not None:
            during.start()
        return original(base, token)

    fanout.publish = publish
    before = ledger_stats(url)
    try:
        figures = fanout.run_fast(args, settings, url, smtp, push, seeded, logs, cleanup)
    finally:
        fanout.publish = original
    if figures["timed_out"]:
        raise SystemExit(f"the fan-out did not finish: {figures['timed_out']}")
    time.sleep(1.0)  # backends report their counters at most once a second
    figures["ledger"] = stats_delta(before, ledger_stats(url))
    return figures


def costs(figures: dict) -> dict:
    """What one fan-out cost: CPU seconds of the workers and of PostgreSQL, and what
    PostgreSQL read in the deliveries table and its indexes."""
    cpu = figures["cpu_seconds"]
    return {"workers": cpu["workers"], "postgres": cpu.get("postgres", 0.0), **figures["ledger"]}


def cost_lines(f: dict) -> list[str]:
    """Per fan-out: CPU, table scans and index reads (entries read, and pages that were not
    in shared_buffers), so a slower fan-out on the month shows which statement kind grew."""
    lines = ["  where each fan-out's time went (PostgreSQL's counters for `deliveries`):"]
    for name, c in f["costs"].items():
        t = c["table"]
        lines.append(
            f"    {name:<7} CPU: workers {c['workers']:.1f} s, postgres {c['postgres']:.1f} s; "
            f"seq scans {t['seq_scan']} ({t['seq_tup_read']:,} rows); index scans "
            f"{t['idx_scan']:,}; pages read {t['heap_blks_read']:,} heap + "
            f"{t['idx_blks_read']:,} index (hit {t['heap_blks_hit']:,} + {t['idx_blks_hit']:,}); "
            f"updates {t['n_tup_upd']:,} ({t['n_tup_hot_upd']:,} HOT); autovacuums "
            f"{t['autovacuum_count']}"
        )
        for index, (scans, entries, read, hit) in sorted(c["indexes"].items()):
            if scans or read:
                lines.append(f"            {index:<36} {scans:>7,} scans {entries:>13,} entries "
                             f"{read:>9,} pages read {hit:>11,} hit")  # fmt: skip
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=100_000,
                        help="readers of the fan-outs (half email, half push)")  # fmt: skip
    parser.add_argument("--history-readers", type=int, default=None,
                        help="readers of each history article (default: --readers)")  # fmt: skip
    parser.add_argument("--stories", type=int, default=40, help="history articles a day")
    parser.add_argument("--days", type=int, default=Settings.delivery_retention_days,
                        help="the retention window (history: this + 2 days)")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=Settings.worker_concurrency)
    parser.add_argument("--redis-url",
                        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
                        help="broker; this Redis database is flushed")  # fmt: skip
    parser.add_argument("--stall-timeout", type=float, default=300)
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--smtp-sink", choices=("auto", "smtp-sink", "aiosmtpd"), default="auto")
    parser.add_argument("--decrypt-every", type=int, default=1000)
    parser.add_argument(
        "--pairs",
        type=int,
        default=2,
        help="fan-outs on the month and on an empty ledger, interleaved",
    )
    args = parser.parse_args(argv)
    if args.history_readers is None:
        args.history_readers = args.readers
    args.history_readers = min(args.history_readers, args.readers)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cleanup = ExitStack()
    tmp = Path(tempfile.mkdtemp(prefix="notifier-month-"))
    logs = tmp / "logs"
    logs.mkdir()
    emails, pushes = args.readers // 2, args.readers - args.readers // 2
    h_emails = args.history_readers // 2
    h_pushes = args.history_readers - h_emails
    fan_outs = 3 + args.pairs  # on the month's database today: PUSH_DAILY_CAP pushes a day
    if fan_outs > Settings.push_daily_cap:
        raise SystemExit(f"--pairs {args.pairs}: the month's readers would get {fan_outs} "
                         f"pushes today, past PUSH_DAILY_CAP ({Settings.push_daily_cap}); "
                         f"at most {Settings.push_daily_cap - 3} pairs")  # fmt: skip
    figures: dict = {}
    with cleanup:
        broker = redis.Redis.from_url(args.redis_url)
        broker.flushdb()
        cleanup.callback(broker.close)
        cleanup.callback(broker.flushdb)
        url = cleanup.enter_context(scratch_database("notifier_bench"))
        smtp = SmtpSink(tmp, not args.no_install, say, args.smtp_sink).start()
        cleanup.callback(smtp.stop)
        pool, p256dh, auth = make_key_pool(max(1, min(fanout.KEY_POOL, pushes)))
        vapid_private, vapid_public = generate_keypair()
        push = PushSink(tmp, pool, vapid_public, args.decrypt_every).start()
        cleanup.callback(push.stop)
        settings = make_settings(
            tmp, DATABASE_URL=url, CELERY_BROKER_URL=args.redis_url, SMTP_URL=smtp.url,
            PUBLIC_URL=f"http://127.0.0.1:{free_port()}", PUSH_ALLOWED_ORIGINS=push.origin,
            VAPID_PRIVATE_KEY=vapid_private, VAPID_PUBLIC_KEY=vapid_public,
            FEED_POLL_SECONDS="3600", WORKER_CONCURRENCY=str(args.concurrency),
        )  # fmt: skip
        say(f"seeding {emails:,} email and {pushes:,} push readers")
        seeded = fanout.seed(url, emails, pushes, push, p256dh, auth)

        say("1. one fan-out on an empty ledger")
        empty = fan_out(args, settings, url, smtp, push, seeded, logs, cleanup)
        figures["empty"] = empty["seconds_to_last"]
        figures["costs"] = {"empty": costs(empty)}
        figures["planning"] = {"empty": empty["fanout_task_seconds"]}

        days = args.days + 2
        say(f"2. seeding {days} days x {args.stories} stories x {args.history_readers:,} readers")
        history = seed_history(url, days, args.stories, h_emails, h_pushes, settings.push_daily_cap)
        figures["history"] = history
        figures["size_seeded"] = sizes(url)
        say(f"   {history['rows']:,} rows in {history['seconds']:.0f} s; database "
            f"{_gb(figures['size_seeded']['database'])}")  # fmt: skip

        say("3. retention of the oldest day during a fan-out")
        oldest = Retention(settings.with_overrides(delivery_retention_days=args.days + 1))
        during = fan_out(args, settings, url, smtp, push, seeded, logs, cleanup, during=oldest)
        oldest.join()
        if oldest.error:
            raise oldest.error
        figures["during"] = during["seconds_to_last"]
        figures["costs"]["during"] = costs(during)
        figures["planning"]["during"] = during["fanout_task_seconds"]
        figures["retention_during"] = (oldest.removed, oldest.seconds)

        say("4. retention of the next day alone")
        alone = Retention(settings.with_overrides(delivery_retention_days=args.days))
        alone.start()
        alone.join()
        if alone.error:
            raise alone.error
        figures["retention_alone"] = (alone.removed, alone.seconds, alone.batches)
        figures["size_retained"] = sizes(url)

        say("5. one fan-out on the retained month")
        month = fan_out(args, settings, url, smtp, push, seeded, logs, cleanup)
        figures["month"] = month["seconds_to_last"]
        figures["costs"]["month"] = costs(month)
        figures["planning"]["month"] = month["fanout_task_seconds"]

        # This machine's speed drifts by tens of percent over minutes: the month's fan-outs
        # are also timed against ones on an empty ledger run just before or after them (a
        # second database with the same readers and no history), order alternating.
        say(f"6. {args.pairs} interleaved pairs: the month and an empty ledger")
        empty_url = cleanup.enter_context(scratch_database("notifier_bench"))
        fanout.seed(empty_url, emails, pushes, push, p256dh, auth)
        empty_settings = settings.with_overrides(database_url=empty_url)
        figures["pairs"] = []
        for pair in range(args.pairs):
            times = {}
            for ledger in ("empty", "month") if pair % 2 == 0 else ("month", "empty"):
                if ledger == "empty":
                    forget_deliveries(empty_url)
                    run = fan_out(args, empty_settings, empty_url, smtp, push, seeded, logs,
                                  cleanup)  # fmt: skip
                else:
                    run = fan_out(args, settings, url, smtp, push, seeded, logs, cleanup)
                times[ledger] = run["seconds_to_last"]
            figures["pairs"].append((times["empty"], times["month"]))
    print(report(args, figures))
    return 0


def report(args, f: dict) -> str:
    empty, month, during = f["empty"], f["month"], f["during"]
    seeded, retained = f["size_seeded"], f["size_retained"]
    removed_during, seconds_during = f["retention_during"]
    removed, seconds, batches = f["retention_alone"]
    lines = [
        f"bench/month.py: {args.readers:,} readers (half email, half push), history of "
        f"{args.days + 2} days x {args.stories} stories x {args.history_readers:,} readers",
        f"  history seeded            {f['history']['rows']:,} delivery rows in "
        f"{f['history']['seconds']:.0f} s; database {_gb(seeded['database'])}, deliveries "
        f"{_gb(seeded['deliveries_total'])} with indexes",
        f"  fan-out, empty ledger     {empty:.2f} s webhook to last message",
        f"  fan-out, month of ledger  {month:.2f} s ({100 * (month / empty - 1):+.1f} % vs empty;"
        f" target <= +10 %) on {retained['rows']:,} rows",
        f"  fan-out during retention  {during:.2f} s ({100 * (during / month - 1):+.1f} % vs the "
        f"month without it; target <= +10 %); that retention removed {removed_during:,} rows "
        f"in {seconds_during:.1f} s",
        "  fan-out task (planning)   "
        + ", ".join(f"{name} {_s(value)}" for name, value in f["planning"].items())
        + " (the part that writes the ledger: what a bigger table or a retention run slows)",
        f"  retention alone           {removed:,} rows in {seconds:.1f} s "
        f"({plural(batches, 'batch', 'batches')}, "
        f"{removed / max(seconds, 1e-9):,.0f} rows/s with RETENTION_BATCH_PAUSE_SECONDS pauses)",
        f"  after retention           database {_gb(retained['database'])}, deliveries "
        f"{_gb(retained['deliveries_total'])} ({retained['rows']:,} rows; the space of removed "
        f"rows is reused, files do not shrink), {retained['summaries']:,} summary rows",
    ]
    if f.get("pairs"):
        ratios = [100 * (month / empty - 1) for empty, month in f["pairs"]]
        lines.append(
            "  interleaved pairs         "
            + "; ".join(f"empty {e:.2f} s, month {m:.2f} s ({r:+.1f} %)"
                        for (e, m), r in zip(f["pairs"], ratios, strict=True))
            + f"; median {statistics.median(ratios):+.1f} % (target <= +10 %)"
        )  # fmt: skip
    return "\n".join(lines + cost_lines(f))


if __name__ == "__main__":
    sys.exit(main())
