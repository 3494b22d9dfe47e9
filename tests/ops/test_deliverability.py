"""Bounce and complaint rates of email per day and per article/alert, counted in the database
(both kinds), and the warnings they raise in `notifier status`, on /ops/ and in /metrics."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from sqlalchemy import select

from notifier.cli import cli
from notifier.db import session_scope
from notifier.models import Alert, Delivery
from notifier.ops.deliverability import email_rates
from notifier.timeutil import utcnow
from tests import factories
from tests.support.ops_views import admin_client
from tests.support.processes import settings_env


def _today(settings) -> str:
    return utcnow().astimezone(ZoneInfo(settings.site_timezone)).date().isoformat()


def test_no_email_no_figures_and_no_warning(session, settings):
    rates = email_rates(session, utcnow(), settings)
    assert len(rates.days) == settings.deliverability_days
    assert all(d.rates.sent == 0 and d.rates.bounce_percent is None for d in rates.days)
    assert rates.notices == [] and rates.warnings == []


def test_three_complaints_in_a_thousand_sent_warn(session, settings):
    story = factories.email_deliveries(session, utcnow(), sent=1000, complained=3)
    session.commit()
    rates = email_rates(session, utcnow(), settings)
    today = rates.days[0]
    assert (today.rates.sent, today.rates.bounced, today.rates.complained) == (1000, 0, 3)
    assert today.rates.complaint_percent == 0.3 and today.warnings == ("complaints",)
    [warning] = rates.warnings
    assert "0.30 %" in warning and "3 of 1,000" in warning
    [notice] = rates.notices
    assert (notice.kind, notice.id, notice.title) == ("article", story.id, story.title)
    assert notice.warnings == ("complaints",)


def test_one_bounce_in_ten_is_below_the_volume_that_warns(session, settings):
    factories.email_deliveries(session, utcnow(), sent=10, bounced=1)
    session.commit()
    rates = email_rates(session, utcnow(), settings)
    assert rates.days[0].rates.bounce_percent == 10.0  # shown, but 10 sent is no trend
    assert rates.days[0].warnings == () and rates.warnings == []
    assert rates.notices[0].warnings == ()


def test_what_counts_as_sent_bounced_and_on_which_day(session, settings):
    now = utcnow()
    yesterday = now - timedelta(days=1)
    # Refusals at send time are bounces too: 2 bounced + 1 gone in 100 reached = 3 %.
    factories.email_deliveries(session, yesterday, sent=99, bounced=2, gone=1)
    alert = Alert(title="Breaking", url="https://aze.media/b/")
    session.add(alert)
    session.flush()
    factories.email_deliveries(session, now, sent=5, alert_id=alert.id)
    old = now - timedelta(days=settings.deliverability_days + 1)
    factories.email_deliveries(session, old, sent=50, complained=50)  # before the window
    story = factories.article(session, "news")
    reader = factories.subscriber(session, "waiting@example.com", "news")
    pending = Delivery(article_id=story.id, subscriber_id=reader.id, channel="email")
    session.add(pending)  # planned, not sent yet: counts nowhere
    session.commit()
    rates = email_rates(session, now, settings)
    by_day = {d.day: d for d in rates.days}
    zone = ZoneInfo(settings.site_timezone)
    before = by_day[yesterday.astimezone(zone).date()]
    assert (before.rates.sent, before.rates.bounced) == (100, 3)
    assert before.warnings == ("bounces",)
    assert rates.days[0].rates.sent == 5
    assert sum(d.rates.complained for d in rates.days) == 0
    assert [(n.kind, n.rates.sent, n.warnings) for n in rates.notices] == [
        ("article", 100, ("bounces",)),
        ("alert", 5, ()),
    ]


def test_the_figures_and_the_warning_in_status_ops_and_metrics(session, settings):
    factories.email_deliveries(session, utcnow(), sent=1000, complained=3, bounced=25)
    session.commit()
    env = settings_env(settings)
    result = CliRunner().invoke(cli, ["status", "--json"], env=env)
    report = json.loads(result.output)
    assert result.exit_code == 1 and report["healthy"] is False
    today = report["email_rates"]["days"][0]
    assert today["day"] == _today(settings)
    assert (today["sent"], today["bounced"], today["complained"]) == (1000, 25, 3)
    assert today["warnings"] == ["complaints", "bounces"]
    assert any(p.startswith("Spam complaints were 0.30 %") for p in report["problems"])
    assert any(p.startswith("Bounces were 2.50 %") for p in report["problems"])
    [notice] = report["email_rates"]["notices_over_threshold"]
    assert notice["sent"] == 1000
    text = CliRunner().invoke(cli, ["status"], env=env).output
    assert f"{_today(settings)}  sent 1,000  bounced 25 (2.50 %)  complained 3 (0.30 %)" in text

    client = admin_client(settings)
    page = client.get("/ops/").text
    row = re.search(rf'<tr class="bad" data-day="{_today(settings)}">(.*?)</tr>', page, re.S)
    assert row and "0.30 %" in row.group(1) and "2.50 %" in row.group(1)
    warnings = re.findall(r'<p class="error email-rate-warning"[^>]*>(.*?)</p>', page, re.S)
    assert [html.unescape(w)[:28] for w in warnings] == [
        "Spam complaints were 0.30 % ", "Bounces were 2.50 % of email",
    ]  # fmt: skip
    assert re.search(r'<tr class="bad" data-notice="article-\d+">', page)

    metrics = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).text
    assert "notifier_email_sent_last_day 1000.0" in metrics
    assert "notifier_email_complained_last_day 3.0" in metrics
    assert "notifier_email_complaint_rate_last_day 0.003" in metrics
    assert 'notifier_email_rate_warning{rate="complaints"} 1.0' in metrics
    assert 'notifier_email_rate_warning{rate="bounces"} 1.0' in metrics


def test_quiet_days_keep_status_healthy_on_this_count(session, settings):
    factories.email_deliveries(session, utcnow(), sent=10, bounced=1)
    session.commit()
    env = settings_env(settings)
    report = json.loads(CliRunner().invoke(cli, ["status", "--json"], env=env).output)
    assert report["email_rates"]["days"][0]["bounce_percent"] == 10.0
    assert not [p for p in report["problems"] if "Bounces were" in p]
    with session_scope(settings.database_url) as other:
        assert email_rates(other, utcnow(), settings).warnings == []
    metrics = admin_client(settings).get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert 'notifier_email_rate_warning{rate="bounces"} 0.0' in metrics.text


def test_the_alert_page_shows_the_bounces_and_complaints_it_drew(session, settings):
    alert = Alert(title="Breaking", url="https://aze.media/b/")
    quiet = Alert(title="Not yet", url="https://aze.media/q/")
    session.add_all([alert, quiet])
    session.flush()
    factories.email_deliveries(session, utcnow(), sent=200, complained=1, alert_id=alert.id)
    session.commit()
    client = admin_client(settings)
    page = client.get(f"/editor/alerts/{alert.id}").text
    shown = re.search(r'<p id="email-rates" class="(\w+)">(.*?)</p>', page, re.S)
    words = " ".join(html.unescape(shown.group(2)).split())
    assert shown.group(1) == "error"
    assert words.startswith("Email: 200 messages sent; 0 bounced (0.00 %), 1 spam complaint")
    assert "(0.50 %). Too many complaints" in words
    page = client.get(f"/editor/alerts/{quiet.id}").text
    assert "No email of this alert has gone out yet." in page


def test_a_complaint_through_the_bounce_processor_raises_the_rate_of_the_day_it_was_sent(
    session, settings
):
    from tests.bounces.test_bounces import _returned

    # BOUNCE_DOMAIN is empty by default: a deployment that reads its returned mail sets it.
    bounce_settings = settings.with_overrides(bounce_domain="bounces.aze.test")
    sent_at = utcnow() - timedelta(days=1)
    factories.email_deliveries(session, sent_at, sent=100)
    session.commit()
    assert email_rates(session, utcnow(), settings).warnings == []
    delivery = session.scalars(select(Delivery).order_by(Delivery.id)).first()
    _returned(session, bounce_settings, "yahoo_arf_complaint.eml", delivery)
    rates = email_rates(session, utcnow(), settings)
    [flagged] = [d for d in rates.days if d.warnings]
    assert flagged.day == sent_at.astimezone(ZoneInfo(settings.site_timezone)).date()
    assert (flagged.rates.sent, flagged.rates.complained) == (100, 1)
    assert rates.days[0].rates.sent == 0  # the complaint came today; the email went yesterday
