"""What an operator sees: `notifier status` (text and --json) and the /ops/ dashboard, read as
they would be, from the database the workers wrote to (recoveries after faults, feeds)."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

from click.testing import CliRunner
from sqlalchemy import select

from notifier.cli import cli
from notifier.config import Settings
from notifier.db import session_scope
from notifier.domain.editors import create_editor
from notifier.models import Editor
from notifier.web import create_app
from tests.support.processes import settings_env

ADMIN = "ops-admin@aze.media"


@dataclass
class Shown:
    counts: dict[str, int]  # `notifier status --json`: recovered.deliveries_last_day
    status_line: str  # the "Recovered after faults" line of `notifier status`
    ops: str  # the /ops/ paragraph, whitespace collapsed


def shown_recoveries(settings: Settings) -> Shown:
    env = settings_env(settings)
    report = json.loads(CliRunner().invoke(cli, ["status", "--json"], env=env).output)
    text = CliRunner().invoke(cli, ["status"], env=env).output
    [line] = [row for row in text.splitlines() if row.startswith("Recovered after faults")]
    return Shown(report["recovered"]["deliveries_last_day"], line, _ops_paragraph(settings))


@dataclass
class UnsentShown:
    report: dict  # `notifier status --json`: unsent_tasks
    problems: list[str]  # `notifier status --json`: what makes the deployment unhealthy
    status_line: str  # the "Not taken by the broker" line of `notifier status`
    ops: str  # the /ops/ paragraph, whitespace collapsed
    metrics: str  # /metrics


def shown_unsent(settings: Settings) -> UnsentShown:
    """Tasks the broker did not take, as `notifier status`, /ops/ and /metrics show them."""
    env = settings_env(settings)
    report = json.loads(CliRunner().invoke(cli, ["status", "--json"], env=env).output)
    text = CliRunner().invoke(cli, ["status"], env=env).output
    [line] = [row for row in text.splitlines() if row.startswith("Not taken by the broker")]
    client = admin_client(settings)
    page = client.get("/ops/").text
    found = re.search(r'<p id="unsent"[^>]*>(.*?)</p>', page, re.S)
    assert found, "no unsent-tasks paragraph on /ops/"
    ops = " ".join(html.unescape(found.group(1)).split())
    return UnsentShown(report["unsent_tasks"], report["problems"], line, ops,
                       client.get("/metrics").text)  # fmt: skip


def admin_client(settings: Settings):
    """A test client of the web app, logged in as an admin (created on first use)."""
    from tests.web.conftest import logged_in_client

    with session_scope(settings.database_url) as session:
        admin = session.scalar(select(Editor).where(Editor.email == ADMIN))
        if admin is None:
            admin = create_editor(session, ADMIN, "correct horse battery", "admin")
            session.commit()
        session.refresh(admin)
        session.expunge(admin)
    return logged_in_client(create_app(settings), admin)


def _ops_paragraph(settings: Settings) -> str:
    page = admin_client(settings).get("/ops/").text
    found = re.search(r'<p id="recovered"[^>]*>(.*?)</p>', page, re.S)
    assert found, "no recoveries paragraph on /ops/"
    return " ".join(html.unescape(found.group(1)).split())


@dataclass
class FeedShown:
    healthy: bool  # as `notifier status --json` says
    error: str | None  # its last_error there
    error_on_ops: bool  # that error is on /ops/, in the feed's row


def feed_in_status(settings: Settings, url: str) -> FeedShown:
    env = settings_env(settings)
    report = json.loads(CliRunner().invoke(cli, ["status", "--json"], env=env).output)
    [feed] = [f for f in report["feeds"] if f["url"] == url]
    page = admin_client(settings).get("/ops/").text
    row = re.search(r'<tr class="\w+"><td class="url">' + re.escape(html.escape(url)) +
                    r"</td>(.*?)</tr>", page, re.S)  # fmt: skip
    error = feed["last_error"]
    on_ops = bool(row and error and html.escape(error) in row.group(1))
    return FeedShown(feed["healthy"], error, on_ops)
