"""No silent failures: a task that fails for good is kept with its cause, counted in /metrics,
listed on /ops/ and in `notifier status`, and makes status unhealthy when it keeps happening.
The sweeper says what it re-queued (zero in normal operation)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select

from notifier.celery_app import make_celery
from notifier.cli import cli
from notifier.db import session_scope
from notifier.delivery.planning import Notice, plan_chunks
from notifier.domain.editors import create_editor
from notifier.models import Delivery, SweepRun, TaskFailure
from notifier.timeutil import utcnow
from notifier.web import create_app
from tests import factories
from tests.conftest import make_settings
from tests.support.processes import celery_processes, settings_env, wait_until, web_server
from tests.support.smtp import free_port
from tests.web.conftest import logged_in_client

REFUSED = ("nobody@example.com", "gone@example.com", "left@example.com")


def _admin_client(app, database_url: str):
    with session_scope(database_url) as session:
        admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
        session.commit()
    return logged_in_client(app, admin)


def _failures(database_url: str) -> int:
    with session_scope(database_url) as session:
        return session.scalar(select(func.count()).select_from(TaskFailure))


def _status_json(settings) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["status", "--json"], env=settings_env(settings))
    return result.exit_code, json.loads(result.output)


def test_a_failed_confirmation_shows_everywhere_and_repeated_failures_are_unhealthy(
    tmp_path, pg_database_url, redis_url, smtp
):
    """The mail server refuses the confirmation for good (550): the task fails, and that is
    recorded by the real worker that ran it, with the cause and without the address."""
    for address in REFUSED:
        smtp.handler.refuse[address] = f"550 5.1.1 <{address}> No such user"
    port = free_port()
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url,
                             SMTP_URL=smtp.url, PUBLIC_URL=f"http://127.0.0.1:{port}")  # fmt: skip
    app = create_app(settings)
    admin = _admin_client(app, pg_database_url)
    with web_server(app, port) as base, celery_processes(settings, tmp_path, beat=False):
        body = {"email": REFUSED[0], "categories": ["news"]}
        assert requests.post(f"{base}/api/v1/subscriptions", json=body).status_code == 202
        wait_until(lambda: _failures(pg_database_url) == 1, message="failure not recorded")

        code, report = _status_json(settings)
        assert code == 0, report["problems"]  # once is shown, not yet alarming
        [failure] = report["task_failures"]["last_day"]
        assert failure["task"] == "send_confirmation" and failure["count"] == 1
        assert failure["cause"] == (
            "ServiceEmailNotSent: gone: SMTP 550 5.1.1 <address> No such user"
        )
        page = admin.get("/ops/").text
        assert "send_confirmation</td>" in page
        assert "ServiceEmailNotSent: gone: SMTP 550 5.1.1 &lt;address&gt; No such user" in page
        assert REFUSED[0] not in page
        metrics = admin.get("/metrics").text
        assert 'notifier_task_failures_total{task="send_confirmation"} 1.0' in metrics
        assert 'notifier_task_failures_recent{task="send_confirmation"} 1.0' in metrics

        for address in REFUSED[1:]:  # it keeps happening: TASK_FAILURE_LIMIT is 3
            body = {"email": address, "categories": ["news"]}
            assert requests.post(f"{base}/api/v1/subscriptions", json=body).status_code == 202
        wait_until(lambda: _failures(pg_database_url) == 3, message="failures not recorded")
        code, report = _status_json(settings)
        assert code == 1
        assert report["problems"] == [
            "3 tasks failed in the last 1h (TASK_FAILURE_LIMIT is 3); most often "
            "send_confirmation: ServiceEmailNotSent: gone: SMTP 550 5.1.1 <address> No such user."
        ]


@pytest.fixture
def sweeping_settings(tmp_path, pg_database_url, redis_url):
    return make_settings(tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url)


def test_the_sweeper_reports_what_it_requeued(sweeping_settings, pg_database_url):
    from notifier.tasks import sweep

    settings = sweeping_settings
    make_celery(settings)  # the current app: sweep.run() reads its settings
    with session_scope(pg_database_url) as session:
        factories.subscriber(session, "reader@example.com", "news")
        story = factories.article(session, "news")
        an_hour_ago = utcnow() - timedelta(hours=1)
        list(plan_chunks(session, Notice.article(story.id), ["email"], an_hour_ago, 100))
        lost = session.scalars(select(Delivery)).one()
        lost.queued_at = utcnow() - timedelta(hours=1)  # its task never came back
        session.commit()

    assert sweep.run() == {"articles": 0, "alerts": 0, "deliveries": 1}
    assert sweep.run() == {"articles": 0, "alerts": 0, "deliveries": 0}  # queued again now
    with session_scope(pg_database_url) as session:
        runs = session.scalars(select(SweepRun).order_by(SweepRun.id)).all()
        assert [(r.articles, r.alerts, r.deliveries) for r in runs] == [(0, 0, 1), (0, 0, 0)]

    admin = _admin_client(create_app(settings), pg_database_url)
    page = admin.get("/ops/").text
    assert "Re-queued in the last day: 1 delivery, 0 articles,\n  0 alerts (2 sweeps" in page
    metrics = admin.get("/metrics").text
    assert 'notifier_sweep_requeued_last_day{kind="deliveries"} 1.0' in metrics
    assert 'notifier_sweep_requeued_last_day{kind="articles"} 0.0' in metrics
    _, report = _status_json(settings)
    assert report["sweeper"]["requeued_last_day"] == {"articles": 0, "alerts": 0,
                                                      "deliveries": 1}  # fmt: skip
    assert report["sweeper"]["last_requeued"]["deliveries"] == 0


def test_the_sweeper_drops_raw_bounce_reports_past_their_days(sweeping_settings, pg_database_url):
    """No new report needs to arrive: the sweeper alone keeps BOUNCE_REPORT_DAYS."""
    from notifier.models import BounceKind, BounceReport
    from notifier.tasks import sweep

    make_celery(sweeping_settings)
    keep = sweeping_settings.bounce_report_days
    with session_scope(pg_database_url) as session:
        for name, age in (("old", keep + 1), ("new", keep - 1)):
            session.add(BounceReport(received_at=utcnow() - timedelta(days=age),
                                     source="listener", kind=BounceKind.HARD, reason="550",
                                     digest=name * 16, raw=f"the {name} report"))  # fmt: skip
        session.commit()
    sweep.run()
    with session_scope(pg_database_url) as session:
        raws = dict(session.execute(select(BounceReport.digest, BounceReport.raw)).all())
    assert raws == {"old" * 16: None, "new" * 16: "the new report"}, "the summary rows stay"
