"""Fault scenarios at scale against the local PostgreSQL, with real worker/beat processes.

    .venv/bin/python bench/faults.py --recipients 5000 --scenarios 1 2 3 6

Runs the tests/fault scenarios (1: worker SIGKILL, 2: Redis FLUSHALL, 3: SMTP refused then
421, 6: database outage) on a scratch database created for the run (TEST_DATABASE_URL names
the server, as for the tests) and prints, per scenario: recipients / delivered / lost /
duplicated / seconds from the fan-out being queued to full delivery. Each scenario starts
its own Redis, proxies, SMTP server, worker and beat, and stops them afterwards.
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


from tests.conftest import _clean, _seeded_category_count  # noqa: E402
from tests.fault import scenarios  # noqa: E402
from tests.fault.harness import Figures  # noqa: E402
from tests.support.databases import scratch_database  # noqa: E402

SCENARIOS: dict[str, tuple[str, Callable[..., Figures]]] = {
    "1": ("worker SIGKILL mid fan-out", lambda tmp, url, n, c: scenarios.worker_killed(
        tmp, url, n, concurrency=c)),
    "2": ("Redis FLUSHALL mid fan-out", lambda tmp, url, n, c: scenarios.redis_flushed(
        tmp, url, n)),
    "3": ("SMTP refused 3 s, then 421 3 s", lambda tmp, url, n, c: scenarios.smtp_outage(
        tmp, url, n)),
    "6": ("PostgreSQL away 3 s mid fan-out", lambda tmp, url, n, c: scenarios.database_outage(
        tmp, url, n, concurrency=c)),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=20000, help="emails per fan-out")
    parser.add_argument(
        "--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS),
        help="which scenarios to run (default: all of 1 2 3 6)",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--keep-logs", action="store_true", help="keep process logs")
    return parser.parse_args(argv)


class ScratchDatabase:
    """A database of our own on the test server, migrated; dropped at the end."""

    def __init__(self) -> None:
        self._scratch = scratch_database("notifier_bench")
        self.url = self._scratch.__enter__()
        self.seeded = _seeded_category_count(self.url)

    def clean(self) -> None:
        _clean(self.url, self.seeded)

    def drop(self) -> None:
        self._scratch.__exit__(None, None, None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="notifier-faults-"))
    database = ScratchDatabase()
    results: list[tuple[str, Figures | None, float]] = []
    try:
        for key in args.scenarios:
            title, run = SCENARIOS[key]
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
    print(f"{'scenario':<36} {'recipients':>10} {'delivered':>9} {'lost':>5} "
          f"{'duplicated':>10} {'seconds':>8} {'wall':>6}")  # fmt: skip
    for key, figures, wall in results:
        title = f"{key} {SCENARIOS[key][0]}"
        if figures is None:
            print(f"{title:<36} {'did not complete':>44} {wall:>6.0f}")
            continue
        print(f"{title:<36} {figures.recipients:>10} {figures.delivered:>9} {figures.lost:>5} "
              f"{figures.duplicates:>10} {figures.seconds:>8.1f} {wall:>6.0f}")  # fmt: skip
    print(f"\nprocess logs: {logs}" if args.keep_logs else "")
    if not args.keep_logs:
        shutil.rmtree(logs, ignore_errors=True)
    ok = all(f is not None and f.lost == 0 for _, f, _ in results)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
