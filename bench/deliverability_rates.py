"""What reading the bounce and complaint rates costs on a large deliveries table: /ops/
reads them on each refresh (OPS_REFRESH_SECONDS), /metrics on each scrape.

    .venv/bin/python bench/deliverability_rates.py [--deliveries 500000]

Creates a scratch PostgreSQL database (TEST_DATABASE_URL, like the tests), fills it with one
email delivery per reader spread over twice DELIVERABILITY_DAYS across 200 articles (1 % bounced,
0.05 % complained, 0.5 % gone), then times each read (best of 5) and drops the database.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from notifier.config import load_settings
from notifier.db import session_scope
from notifier.ops.deliverability import (
    Thresholds,
    daily_rates,
    email_rates,
    notice_rates,
    rates_since,
)
from notifier.timeutil import utcnow
from tests.support.databases import scratch_database

FILL = """
INSERT INTO feeds (url, added_at) VALUES ('https://aze.media/feed/', now());
INSERT INTO articles (feed_id, guid, link, title, summary, first_seen_at, announce)
  SELECT 1, 'g' || a, 'https://aze.media/' || a, 'Story ' || a, '', now(), true
  FROM generate_series(1, 200) a;
INSERT INTO subscribers (email, status, created_at)
  SELECT 'r' || i || '@example.com', 'active', now() FROM generate_series(1, :n) i;
INSERT INTO deliveries (article_id, subscriber_id, channel, status, outcome, attempts,
                        created_at, next_attempt_at, sent_at)
  SELECT 1 + i % 200, i, 'email',
         CASE WHEN i % 200 = 7 THEN 'failed' ELSE 'sent' END,
         CASE WHEN i % 200 = 7 THEN 'gone' WHEN i % 100 = 3 THEN 'bounced'
              WHEN i % 2000 = 11 THEN 'complained' ELSE 'sent' END,
         1, t, t, CASE WHEN i % 200 = 7 THEN NULL ELSE t END
  FROM (SELECT i, now() - (i::bigint * :spread / :n) * interval '1 second' AS t
        FROM generate_series(1, :n) i) s;
ANALYZE;
"""


def best_of(runs: int, read) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        read()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=500_000)
    count = parser.parse_args().deliveries
    with scratch_database("notifier_bench_rates") as url:
        settings = load_settings({
            "DATABASE_URL": url, "SECRET_KEY": "bench", "PUBLIC_URL": "http://127.0.0.1",
            "MAIL_FROM": "news@aze.test", "NOTIFIER_DATA_DIR": "/tmp/notifier-bench-rates",
        })  # fmt: skip
        spread = settings.deliverability_days * 2 * 86400
        with session_scope(url) as session:
            started = time.perf_counter()
            for statement in FILL.split(";\n"):
                if statement.strip():
                    session.execute(text(statement), {"n": count, "spread": spread})
            session.commit()
            print(f"filled {count:,} deliveries in {time.perf_counter() - started:.1f}s")
            now, limits = utcnow(), Thresholds.of(settings)
            zone, days = ZoneInfo(settings.site_timezone), settings.deliverability_days
            since = now - timedelta(days=days)
            reads = {
                "daily_rates (7 days)": lambda: daily_rates(session, now, days, zone, limits),
                "notice_rates (top 20)": lambda: notice_rates(session, since, limits),
                "rates_since (24 h)": lambda: rates_since(session, now - timedelta(days=1)),
                "email_rates (what /ops/ and status read)": lambda: email_rates(
                    session, now, settings
                ),
            }
            for name, read in reads.items():
                print(f"{name}: {best_of(5, read):.1f} ms")
            shown = email_rates(session, now, settings)
            sent = sum(d.rates.sent for d in shown.days)
            bounced = sum(d.rates.bounced for d in shown.days)
            print(f"counted over {days} days: {sent:,} sent, {bounced:,} bounced, "
                  f"{sum(d.rates.complained for d in shown.days):,} complained; "
                  f"{len(shown.warnings)} warnings")  # fmt: skip


if __name__ == "__main__":
    main()
