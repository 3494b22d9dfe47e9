"""Quiet hours and the browser's time zone, set through the push API (the page and the widget
send the zone) and on the manage page every push links to; bad input is a 400 sentence and
changes nothing."""

from __future__ import annotations

import pytest

from notifier.models import PushSubscription
from tests.web.test_push_pages import csrf, manage_path, subscribed


def post(client, browser, **fields):
    body = {"subscription": browser.as_json(), "categories": ["news"], **fields}
    return client.post("/api/v1/push/subscriptions", json=body)


def stored(session, endpoint) -> PushSubscription:
    session.expire_all()
    return session.query(PushSubscription).filter_by(endpoint=endpoint).one()


def test_subscribe_with_zone_and_quiet_hours_then_change_and_clear_them(
    client, session, push_service
):
    browser = push_service.new_subscription()
    answer = post(client, browser, timezone="Asia/Baku", quietHours={"start": 23, "end": 7})
    assert answer.status_code == 201
    assert (answer.json["timezone"], answer.json["quietHours"]) == (
        "Asia/Baku", {"start": 23, "end": 7},
    )  # fmt: skip
    row = stored(session, browser.endpoint)
    assert (row.timezone, row.quiet_start, row.quiet_end) == ("Asia/Baku", 23, 7)

    kept = post(client, browser)  # categories changed, nothing said about quiet hours
    assert kept.json["quietHours"] == {"start": 23, "end": 7}
    assert kept.json["timezone"] == "Asia/Baku"
    moved = post(client, browser, timezone="Europe/London")
    assert (moved.json["timezone"], moved.json["quietHours"]["start"]) == ("Europe/London", 23)
    cleared = post(client, browser, quietHours=None)
    assert cleared.status_code == 200 and cleared.json["quietHours"] is None
    assert stored(session, browser.endpoint).quiet_start is None


def test_a_browser_without_a_zone_is_utc_without_quiet_hours(client, push_service):
    answer = post(client, push_service.new_subscription())
    assert (answer.json["timezone"], answer.json["quietHours"]) == ("UTC", None)


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"quietHours": {"start": 24, "end": 7}}, "start must be a whole hour from 0 to 23"),
        ({"quietHours": {"start": -1, "end": 7}}, "start must be a whole hour"),
        ({"quietHours": {"start": "22", "end": 7}}, "start must be a whole hour"),
        ({"quietHours": {"start": True, "end": 7}}, "start must be a whole hour"),
        ({"quietHours": {"start": 22.5, "end": 7}}, "start must be a whole hour"),
        ({"quietHours": {"start": 22}}, "end must be a whole hour"),
        ({"quietHours": {"start": 7, "end": 7}}, "different hours"),
        ({"quietHours": "22-07"}, 'must be {"start": hour, "end": hour}'),
        ({"quietHours": {}}, "start must be a whole hour"),
        ({"timezone": "Mars/Olympus_Mons"}, "not a time zone we know"),
        ({"timezone": ""}, "choose a time zone"),
        ({"timezone": 4}, "choose a time zone"),
    ],
)
def test_bad_quiet_hours_are_refused_with_a_sentence_and_change_nothing(
    client, session, push_service, fields, says
):
    browser = push_service.new_subscription()
    assert post(client, browser, quietHours={"start": 22, "end": 6}).status_code == 201
    answer = post(client, browser, **fields)
    assert answer.status_code == 400
    assert says.lower() in answer.json["error"].lower()
    row = stored(session, browser.endpoint)
    assert (row.timezone, row.quiet_start, row.quiet_end) == ("UTC", 22, 6)
    fresh = push_service.new_subscription()
    assert post(client, fresh, **fields).status_code == 400
    assert session.query(PushSubscription).filter_by(endpoint=fresh.endpoint).count() == 0


def test_manage_page_sets_and_clears_quiet_hours(client, session, settings, push_service):
    row = subscribed(session, push_service, "news")
    path = manage_path(settings, row)
    page = client.get(path).text
    assert "Quiet hours" in page and "<option selected>UTC</option>" in page

    form = {"quiet_hours": "1", "quiet_start": "22", "quiet_end": "7",
            "timezone": "America/New_York", "csrf_token": csrf(page)}  # fmt: skip
    answer = client.post(path, data=form)
    assert answer.status_code == 200 and "from 22:00 to 07:00" in answer.text
    assert '<option value="22" selected>22:00</option>' in answer.text
    session.expire_all()
    row = session.get(PushSubscription, row.id)
    assert (row.timezone, row.quiet_start, row.quiet_end) == ("America/New_York", 22, 7)

    answer = client.post(path, data={**form, "quiet_start": "", "quiet_end": ""})
    assert answer.status_code == 200 and "no quiet hours" in answer.text
    session.expire_all()
    assert session.get(PushSubscription, row.id).quiet_start is None


@pytest.mark.parametrize(
    "change, says",
    [
        ({"quiet_start": "22", "quiet_end": ""}, "end must be a whole hour"),
        ({"quiet_start": "25", "quiet_end": "7"}, "start must be a whole hour"),
        ({"quiet_start": "8", "quiet_end": "8"}, "different hours"),
        ({"timezone": "Nowhere/Special"}, "not a time zone we know"),
    ],
)
def test_manage_page_refuses_bad_quiet_hours(client, session, settings, push_service, change,
                                             says):  # fmt: skip
    row = subscribed(session, push_service, "news")
    path = manage_path(settings, row)
    form = {"quiet_hours": "1", "quiet_start": "22", "quiet_end": "7", "timezone": "Asia/Baku",
            "csrf_token": csrf(client.get(path).text), **change}  # fmt: skip
    answer = client.post(path, data=form)
    assert answer.status_code == 400 and says in answer.text
    session.expire_all()
    row = session.get(PushSubscription, row.id)
    assert (row.timezone, row.quiet_start) == ("UTC", None)
