"""Time from the CMS webhook call (and from an editor's alert) to the first message accepted.

Runs the real thing on this machine: a scratch PostgreSQL database, the shared Redis (a
database number of its own), a real Celery worker, an in-process SMTP server (aiosmtpd) and
a local push service that checks VAPID and decrypts every payload. Prints, per trigger:
seconds to the first email and first push accepted, and to the last one.

    .venv/bin/python bench/latency.py --readers 2000 --runs 3
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import redis
import requests
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from notifier.db import session_scope  # noqa: E402
from notifier.domain.api_tokens import issue_token  # noqa: E402
from notifier.timeutil import utcnow  # noqa: E402
from notifier.web import create_app  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.support.databases import scratch_database  # noqa: E402
from tests.support.processes import celery_processes, web_server  # noqa: E402
from tests.support.push_service import PushService  # noqa: E402
from tests.support.smtp import SmtpServer, free_port  # noqa: E402


def seed(url: str, readers: int, push: PushService) -> list:
    """Half the readers by email, half by push, all following News."""
    browsers = [push.new_subscription() for _ in range(readers // 2)]
    now = utcnow().replace(tzinfo=None)
    with create_engine(url).begin() as conn:
        news = conn.execute(text("SELECT id FROM categories WHERE slug = 'news'")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO subscribers (email, status, created_at, confirmed_at) "
                "SELECT 'r' || n || '@example.com', 'active', :now, :now "
                "FROM generate_series(1, :n) AS n"
            ),
            {"n": readers - len(browsers), "now": now},
        )
        conn.execute(
            text("INSERT INTO subscriber_categories SELECT id, :c FROM subscribers"), {"c": news}
        )
        conn.execute(
            text(
                "INSERT INTO push_subscriptions (endpoint, p256dh, auth, status, created_at, "
                "updated_at) VALUES (:e, :p, :a, 'active', :now, :now)"
            ),
            [{"e": b.endpoint, "p": b.p256dh, "a": b.auth, "now": now} for b in browsers],
        )
        conn.execute(
            text("INSERT INTO push_subscription_categories SELECT id, :c FROM push_subscriptions"),
            {"c": news},
        )
    return browsers


def wait_first_and_last(smtp: SmtpServer, push: PushService, emails: int, pushes: int,
                        started: float, timeout: float = 300) -> dict[str, float]:  # fmt: skip
    marks: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic() - started
        got_mail, got_push = len(smtp.handler.received), len(push.all_received)
        if got_mail and "first email" not in marks:
            marks["first email"] = now
        if got_push and "first push" not in marks:
            marks["first push"] = now
        if got_mail >= emails and got_push >= pushes:
            marks["last message"] = now
            return marks
        time.sleep(0.002)
    raise SystemExit(
        f"timed out: {len(smtp.handler.received)} emails, {len(push.all_received)} pushes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    cleanup = ExitStack()
    url = cleanup.enter_context(scratch_database("notifier_bench"))
    smtp, push = SmtpServer().start(), PushService().start()
    redis_url = "redis://127.0.0.1:6379/14"
    redis.Redis.from_url(redis_url).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="notifier-bench-"))
    port = free_port()
    settings = make_settings(
        tmp, DATABASE_URL=url, CELERY_BROKER_URL=redis_url, SMTP_URL=smtp.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}", PUSH_ALLOWED_ORIGINS=push.origin,
        WEBHOOK_SECRET="bench", FEED_POLL_SECONDS="3600",
    )  # fmt: skip
    try:
        browsers = seed(url, args.readers, push)
        emails = args.readers - len(browsers)
        with session_scope(url) as session:
            _, token = issue_token(session, "bench", None, utcnow())
            session.commit()
        results: dict[str, list[dict[str, float]]] = {"webhook": [], "alert": []}
        with (
            web_server(create_app(settings), port) as base,
            celery_processes(settings, tmp, beat=False),
        ):
            for run in range(args.runs):
                for trigger in ("webhook", "alert"):
                    smtp.handler.received.clear()
                    push.all_received.clear()
                    started = time.monotonic()
                    if trigger == "webhook":
                        body = json.dumps(
                            {
                                "guid": f"bench-{run}",
                                "url": f"https://aze.media/{run}",
                                "title": f"Bench {run}",
                                "categories": ["News"],
                                "published_at": datetime.now(UTC).isoformat(),
                            }
                        ).encode()
                        sig = hmac.new(b"bench", body, hashlib.sha256).hexdigest()
                        answer = requests.post(
                            f"{base}/api/v1/articles",
                            data=body,
                            headers={
                                "X-Notifier-Signature": f"sha256={sig}",
                                "Content-Type": "application/json",
                            },
                        )
                    else:
                        answer = requests.post(
                            f"{base}/api/v1/alerts",
                            headers={"Authorization": f"Bearer {token}"},
                            json={
                                "title": f"Alert {run}",
                                "categories": ["news"],
                                "channels": ["email", "push"],
                            },
                        )
                    assert answer.status_code == 202, answer.text
                    results[trigger].append(
                        wait_first_and_last(smtp, push, emails, len(browsers), started)
                    )
        print(f"readers: {args.readers} ({emails} email, {len(browsers)} push), runs: {args.runs}")
        for trigger, runs in results.items():
            for mark in ("first email", "first push", "last message"):
                values = [r[mark] for r in runs]
                print(
                    f"{trigger:8} {mark:13} median {statistics.median(values):6.3f} s   "
                    f"best {min(values):6.3f} s   worst {max(values):6.3f} s"
                )
    finally:
        smtp.stop()
        push.stop()
        cleanup.close()


if __name__ == "__main__":
    main()
