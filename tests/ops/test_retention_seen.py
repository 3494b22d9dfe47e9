"""The retention job as ops meet it: `notifier retention` (its sentence, its exit code when the
database refuses), its line in `notifier status` (unhealthy when the last run failed), on
/ops/ and its figures in /metrics."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

from click.testing import CliRunner

from notifier.cli import cli
from notifier.models import RetentionRun
from notifier.timeutil import utcnow
from tests import factories
from tests.support.ops_views import admin_client
from tests.support.processes import settings_env
from tests.support.smtp import free_port

INSIDE = {"REMOTE_ADDR": "10.1.2.3"}


def _old_history(session, settings, emails: int) -> None:
    """`emails` emails sent a day past DELIVERY_RETENTION_DAYS ago."""
    old = utcnow() - timedelta(days=settings.delivery_retention_days + 1)
    story = factories.email_deliveries(session, old, sent=emails)
    story.fanned_out_at = old
    session.commit()


def test_the_command_removes_and_says_how_many(session, settings):
    _old_history(session, settings, 3)
    result = CliRunner().invoke(cli, ["retention"], env=settings_env(settings))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Removed 3 deliveries planned before ")
    assert "(1 batch of at most 5,000)." in result.output
    again = CliRunner().invoke(cli, ["retention"], env=settings_env(settings))
    assert again.output.startswith("Removed 0 deliveries")


def test_the_command_fails_with_a_sentence_when_the_database_refuses(settings):
    env = settings_env(settings)
    env["DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    result = CliRunner().invoke(cli, ["retention"], env=env)
    assert result.exit_code == 1
    assert "Error: Retention stopped: the database refused it (" in result.output
    assert "run it again once the database answers" in result.output
    assert "Traceback" not in result.output


def test_status_ops_and_metrics_show_the_last_run(session, settings):
    _old_history(session, settings, 4)
    CliRunner().invoke(cli, ["retention"], env=settings_env(settings))
    env = settings_env(settings)
    report = json.loads(CliRunner().invoke(cli, ["status", "--json"], env=env).output)
    retention = report["retention"]
    assert (retention["last_removed"], retention["removed_last_day"]) == (4, 4)
    assert retention["last_error"] is None and retention["last_complete"] is True
    assert retention["summary_rows"] == 1
    assert not any(p.startswith("Retention") for p in report["problems"])
    text = CliRunner().invoke(cli, ["status"], env=env).output
    assert re.search(r"Retention: last run at .* removed 4 deliveries planned before", text)

    client = admin_client(settings)
    page = client.get("/ops/").text
    paragraph = re.search(r'<p id="retention" class="ok">(.*?)</p>', page, re.S)
    assert paragraph and "removed 4 deliveries planned before" in paragraph.group(1)

    metrics = client.get("/metrics", environ_base=INSIDE).text
    assert "notifier_retention_last_run_removed 4.0" in metrics
    assert "notifier_retention_removed_last_day 4.0" in metrics
    assert "notifier_retention_last_run_failed 0.0" in metrics
    assert "notifier_delivery_summary_rows 1.0" in metrics
    started = re.search(r"^notifier_retention_last_run_timestamp_seconds (\S+)$", metrics, re.M)
    assert started and abs(float(started.group(1)) - utcnow().timestamp()) < 600


def test_a_failed_run_makes_status_unhealthy_and_shows_on_ops_and_metrics(session, settings):
    now = utcnow()
    error = "OperationalError: canceling statement due to lock timeout"
    session.add(RetentionRun(started_at=now, finished_at=now, cutoff=now, removed=5000,
                             batches=1, complete=False, error=error))  # fmt: skip
    session.commit()
    result = CliRunner().invoke(cli, ["status", "--json"], env=settings_env(settings))
    report = json.loads(result.output)
    assert result.exit_code == 1
    assert any("FAILED after removing 5,000 deliveries: OperationalError: canceling" in p
               for p in report["problems"])  # fmt: skip
    client = admin_client(settings)
    page = html.unescape(client.get("/ops/").text)
    assert re.search(r'<p id="retention" class="bad">\s*The run at .* FAILED after removing '
                     r"5,000 deliveries", page)  # fmt: skip
    assert "notifier_retention_last_run_failed 1.0" in client.get(
        "/metrics", environ_base=INSIDE).text  # fmt: skip


def test_no_run_yet_is_said_plainly(settings):
    text = CliRunner().invoke(cli, ["status"], env=settings_env(settings)).output
    assert "Retention: no run yet (beat runs it every RETENTION_SECONDS)." in text
