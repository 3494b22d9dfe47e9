"""The editor's alert preview says how many browsers get the push now, how many are in their
quiet hours (held until they end, or dropped as stale by then) and how many are already at
today's push cap; then the alert is sent and exactly that happens."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.delivery.push_gate import STALE_BY_THEIR_END
from notifier.domain.quiet_hours import QuietHours, set_quiet_hours
from notifier.models import Alert, Delivery, DeliveryStatus
from tests import factories
from tests.delivery.test_quiet_hours import NOW
from tests.support.queue import alert_fanned_out, article_fanned_out
from tests.web.conftest import logged_in_client
from tests.web.test_editor_alerts import form


@pytest.fixture
def browsers(session, settings, push_service):
    """At NOW (20:30 UTC on a Monday): London (20:30) with no quiet hours; London again, at
    today's cap; New York (15:30) quiet until 16:00; Baku (00:30) quiet until 07:00, 6.5 h
    away; and a Baku browser following another category."""
    made = {}
    for name, zone, quiet, slug in (
        ("london", "Europe/London", None, "defense"),
        ("capped", "Europe/London", None, "defense"),
        ("new_york", "America/New_York", (14, 16), "defense"),
        ("baku", "Asia/Baku", (23, 7), "defense"),
        ("elsewhere", "Asia/Baku", None, "culture"),
    ):
        browser = push_service.new_subscription()
        row = factories.push_subscription(session, browser, slug)
        set_quiet_hours(row, QuietHours(*quiet) if quiet else None, zone)
        made[name] = (browser, row)
    session.commit()
    with time_machine.travel(NOW - timedelta(hours=6), tick=False):
        for _ in range(settings.push_daily_cap):  # five pushes today for "capped" alone
            story = factories.article(session, "defense")
            _, ids = article_fanned_out(session, settings, story.id)
            session.execute(
                Delivery.__table__.update()
                .where(Delivery.id.in_(ids), Delivery.push_subscription_id == made["capped"][1].id)
                .values(status=DeliveryStatus.SENT, push_day="2026-12-07")
            )
            session.execute(Delivery.__table__.delete().where(
                Delivery.id.in_(ids), Delivery.status != DeliveryStatus.SENT))  # fmt: skip
            session.commit()
    return made


def _reach(page: str) -> dict[str, str]:
    return dict(re.findall(r'<td data-reach="([\w-]+)">([^<]*)</td>', page))


@pytest.mark.parametrize("override", [False, True])
def test_preview_counts_match_what_the_send_then_does(
    app, session, settings, editor, browsers, override
):
    extra = {"channels": ["push"], **({"override_quiet_hours": "1"} if override else {})}
    with time_machine.travel(NOW, tick=False):
        client = logged_in_client(app, editor)
        page = client.post("/editor/alerts/preview", data=form(client, **extra)).text
        expected = {"push": "4 browsers", "push-now": "2 browsers", "push-held": "1 browser",
                    "push-dropped": "1 browser", "push-capped": "1 browser"}  # fmt: skip
        if override:
            expected.update({"push-now": "4 browsers", "push-held": "0 browsers",
                             "push-dropped": "0 browsers"})  # fmt: skip
        assert _reach(page) == expected
        client.post("/editor/alerts/", data={**form(client, **extra), "idempotency_key": "x"})
        alert = session.scalar(select(Alert))
        report = send_deliveries(session, alert_fanned_out(session, settings, alert.id)[1],
                                 outlets(settings, Composer(settings)), settings)  # fmt: skip
    session.expire_all()
    outcome = {
        name: session.scalar(select(Delivery).where(Delivery.alert_id == alert.id,
                                                    Delivery.push_subscription_id == row.id))
        for name, (_, row) in browsers.items()
    }  # fmt: skip
    assert outcome["elsewhere"] is None
    went = sorted(n for n, d in outcome.items() if d and d.status is DeliveryStatus.SENT)
    assert report.sent == len(went) == int(expected["push-now"].split()[0])
    if override:
        assert went == ["baku", "capped", "london", "new_york"]
    else:
        assert went == ["capped", "london"]  # the capped browser gets the alert all the same
        assert outcome["new_york"].held_until is not None
        assert outcome["new_york"].status is DeliveryStatus.PENDING
        assert outcome["baku"].last_error == STALE_BY_THEIR_END
    assert outcome["capped"].push_day == "2026-12-07"  # and it counts: six today
    for name in went:
        browsers[name][0].wait_for(1)


def test_preview_of_an_email_only_alert_shows_no_push_rows(editor_client, session):
    factories.subscriber(session, "a@example.com", "defense")
    page = editor_client.post("/editor/alerts/preview",
                              data=form(editor_client, channels=["email"])).text  # fmt: skip
    assert set(_reach(page)) == {"email"}
