"""The manage link every push carries: change this browser's categories or turn push off."""

from __future__ import annotations

import re

from notifier.models import PushStatus, PushSubscription
from notifier.tokens import Tokens
from tests import factories


def manage_path(settings, row) -> str:
    tokens = Tokens(settings.secret_key, settings.confirm_max_age_seconds)
    return f"/push/manage/{tokens.push_manage_token(row.id)}"


def subscribed(session, push_service, *slugs) -> PushSubscription:
    return factories.push_subscription(session, push_service.new_subscription(), *slugs)


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_change_categories_then_turn_off_then_back_on(client, session, settings, push_service):
    row = subscribed(session, push_service, "news")
    path = manage_path(settings, row)
    page = client.get(path).text
    assert 'value="news" checked' in page and "Turn off notifications" in page

    client.post(path, data={"categories": ["science", "history"], "csrf_token": csrf(page)})
    session.expire_all()
    assert sorted(c.slug for c in session.get(PushSubscription, row.id).categories) == [
        "history", "science",
    ]  # fmt: skip

    answer = client.post(path, data={"turn_off": "1", "csrf_token": csrf(page)})
    assert "off for this browser" in answer.text
    session.expire_all()
    assert session.get(PushSubscription, row.id).status is PushStatus.UNSUBSCRIBED

    client.post(path, data={"categories": ["news"], "csrf_token": csrf(page)})
    session.expire_all()
    assert session.get(PushSubscription, row.id).status is PushStatus.ACTIVE


def test_manage_page_needs_csrf_and_a_valid_link(client, session, settings, push_service):
    row = subscribed(session, push_service, "news")
    path = manage_path(settings, row)
    assert client.post(path, data={"turn_off": "1"}).status_code == 400
    session.expire_all()
    assert session.get(PushSubscription, row.id).status is PushStatus.ACTIVE
    assert client.get(path[:-3] + "xyz").status_code == 400
    email_token = Tokens(settings.secret_key, 60).manage_token(row.id)
    assert client.get(f"/push/manage/{email_token}").status_code == 400, "other purpose"
