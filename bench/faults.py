"""Fault scenarios at scale against the local PostgreSQL, with real worker/beat processes.

    .venv/bin/python bench/faults.py                     # every scenario, 20,000 readers
    .venv/bin/python bench/faults.py --recipients 5000 --scenarios kill-worker flushall

Runs the tests/fault scenarios of issue 12 with every setting at its default (the worker at
WORKER_CONCURRENCY's default of 4 processes, outcomes recorded DELIVERY_RECORD_BATCH=50 at a
time over SMTP_CONNECTIONS=4) on a scratch database created for the run (TEST_DATABASE_URL
names the server, as for the tests): a kill -9 of the whole worker tree and of one pool
child, on Redis and on RabbitMQ (a vhost of its own on 127.0.0.1:5672); the broker wiped
(FLUSHALL) or restarted empty; RabbitMQ (a node of its own, never the shared one) stopped
and started again on its data; a push service answering 429 Retry-After: 5 for 10 s; one
feed in FEED_URLS dripping a byte every 5 s while an article is announced through the
webhook to push readers (and the same article without the slow feed, for comparison). Also,
on request, the SMTP and PostgreSQL outage scenarios (smtp, database). Prints per scenario
and broker: delivered / lost / duplicated / seconds from the fault to the last message (for
the 429s: from the end of the 429s; for a restarted broker: from its answering again; for
the webhook: from the webhook request), and for the webhook scenarios the seconds to the
first push and whether the slow feed shows as failing in `notifier status --json` and on
/ops/. Each scenario starts its own Redis, proxies, SMTP and push servers, worker and beat
(and RabbitMQ node), and stops them afterwards. The broker-down scenarios stop the broker
(Redis keeping its data in an append-only file, or a RabbitMQ node of the bench's own) while
a fan-out to three quarters of the readers (by email) is at its second chunk and while an
article for the other quarter (by push) comes through the webhook, and start it again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from tests.conftest import _clean, _seeded_category_rows  # noqa: E402
from tests.fault import scenarios  # noqa: E402
from tests.fault.harness import Figures  # noqa: E402
from tests.support.databases import scratch_database  # noqa: E402

# The defaults of DELIVERY_RECORD_BATCH and SMTP_CONNECTIONS (the tests use smaller ones).
GROUPED = {"record_batch": 50, "connections": 4}

SCENARIOS: dict[str, tuple[str, str, Callable[..., Figures]]] = {
    "kill-worker": ("kill -9 of the whole worker", "Redis", lambda tmp, url, n, c:
        scenarios.worker_killed(tmp, url, n, c, within=None, **GROUPED)),
    "kill-child": ("kill -9 of one pool child", "Redis", lambda tmp, url, n, c:
        scenarios.pool_child_killed(tmp, url, n, c, within=None, **GROUPED)),
    "flushall": ("broker FLUSHALL", "Redis", lambda tmp, url, n, c:
        scenarios.redis_flushed(tmp, url, n, within=None, concurrency=c)),
    "restart-empty": ("broker restarted empty", "Redis", lambda tmp, url, n, c:
        scenarios.redis_flushed(tmp, url, n, restart=True, within=None, concurrency=c)),
    "push-429": ("push 429 Retry-After 5 for 10 s", "Redis", lambda tmp, url, n, c:
        scenarios.push_throttled_for(tmp, url, n, concurrency=c)),
    "slow-feed": ("feed dripping a byte every 5 s, webhook article", "Redis",
        lambda tmp, url, n, c: scenarios.slow_feed(tmp, url, n, concurrency=c)),
    "webhook": ("webhook article, no slow feed (control)", "Redis", lambda tmp, url, n, c:
        scenarios.slow_feed(tmp, url, n, slow=False, concurrency=c)),
    "rabbit-kill-worker": ("kill -9 of the whole worker", "RabbitMQ", lambda tmp, url, n, c:
        scenarios.worker_killed(tmp, url, n, c, within=None, broker="rabbitmq", **GROUPED)),
    "rabbit-kill-child": ("kill -9 of one pool child", "RabbitMQ", lambda tmp, url, n, c:
        scenarios.pool_child_killed(tmp, url, n, c, within=None, broker="rabbitmq",
                                    **GROUPED)),
    "rabbit-restart": ("broker restarted (stopped, started on its data)", "RabbitMQ",
        lambda tmp, url, n, c: scenarios.rabbitmq_restarted(tmp, url, n, within=None,
                                                            concurrency=c)),
    "broker-down": ("broker stopped mid fan-out and during a webhook article", "Redis (AOF)",
        lambda tmp, url, n, c: scenarios.broker_down(tmp, url, n - n // 4, n // 4,
                                                     within=None, concurrency=c)),
    "rabbit-broker-down": ("broker stopped mid fan-out and during a webhook article",
        "RabbitMQ", lambda tmp, url, n, c: scenarios.broker_down(
            tmp, url, n - n // 4, n // 4, broker="rabbitmq", within=None, concurrency=c)),
    "smtp": ("SMTP refused 3 s, then 421 3 s", "Redis", lambda tmp, url, n, c:
        scenarios.smtp_outage(tmp, url, n)),
    "database": ("PostgreSQL away 3 s", "Redis", lambda tmp, url, n, c:
        scenarios.database_outage(tmp, url, n, concurrency=c)),
}  # fmt: skip
DEFAULT = [key for key in SCENARIOS if key not in ("smtp", "database")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--recipients",
        type=int,
        default=20000,
        help="readers per fan-out (emails; push subscriptions for push-429, slow-feed, webhook)",
    )
    parser.add_argument(
        "--scenarios", nargs="+", default=DEFAULT, choices=list(SCENARIOS),
        help="which scenarios to run (default: all but smtp and database)",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="worker processes (default: WORKER_CONCURRENCY's default)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep process logs")
    return parser.parse_args(argv)


class ScratchDatabase:
    """A database of our own on the test server, migrated; dropped at the end."""

    def __init__(self) -> None:
        self._scratch = scratch_database("notifier_bench")
        self.url = self._scratch.__enter__()
        self.seeded = _seeded_category_rows(self.url)

    def clean(self) -> None:
        _clean(self.url, self.seeded)

    def drop(self) -> None:
        self._scratch.__exit__(None, None, None)


def print_webhook_table(results: list[tuple[str, Figures | None, float]], readers: int) -> None:
    """The webhook scenarios' own figures: first push, and the slow feed as operators see it."""
    rows = [(key, f) for key, f, _ in results if f is not None and "first_push_seconds" in f.notes]
    if not rows:
        return
    print()
    print("| scenario | readers | seconds from the webhook to the first push | to the last push "
          "| feed failing in `notifier status --json` / on /ops/ |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | --- |")
    for key, figures in rows:
        notes = figures.notes
        if "feed_failing_in_status" in notes:
            failing = (f"{_yes(notes['feed_failing_in_status'])} / "
                       f"{_yes(notes['feed_error_on_ops'])}: {notes['feed_error']}")  # fmt: skip
        else:
            failing = "no feed"
        print(f"| {SCENARIOS[key][0]} | {readers:,} | {notes['first_push_seconds']:.2f} | "
              f"{figures.seconds:.1f} | {failing} |")  # fmt: skip


def _yes(flag: object) -> str:
    return "yes" if flag else "NO"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="notifier-faults-"))
    database = ScratchDatabase()
    results: list[tuple[str, Figures | None, float]] = []
    try:
        for key in args.scenarios:
            title, _broker, run = SCENARIOS[key]
            print(f"== {key}: {title}, {args.recipients} recipients ...", flush=True)
            database.clean()
            started = time.monotonic()
            try:
                figures = run(logs / f"scenario-{key}", database.url, args.recipients,
                              args.concurrency)  # fmt: skip
            except AssertionError as error:  # a scenario that never completes: say so, go on
                print(f"   FAILED: {str(error)[:2000]}", flush=True)
                results.append((key, None, time.monotonic() - started))
                continue
            print(f"   {figures.line()}", flush=True)
            results.append((key, figures, time.monotonic() - started))
    finally:
        database.drop()
    print()
    print("| scenario | broker | readers | delivered | lost | duplicated | seconds from the "
          "fault to the last message |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for key, figures, _wall in results:
        title, broker, _run = SCENARIOS[key]
        if figures is None:
            print(f"| {title} | {broker} | {args.recipients} | did not complete | | | |")
            continue
        print(f"| {title} | {broker} | {figures.recipients:,} | {figures.delivered:,} | "
              f"{figures.lost} | {figures.duplicates} | {figures.seconds:.1f} |")  # fmt: skip
    print_webhook_table(results, args.recipients)
    print(f"\nprocess logs: {logs}" if args.keep_logs else "")
    if not args.keep_logs:
        shutil.rmtree(logs, ignore_errors=True)
    ok = all(f is not None and f.lost == 0 for _, f, _ in results)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
