"""Reader pages: plain HTML forms (no JavaScript needed), signed links, one-click unsubscribe."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from notifier.models import Subscriber, SubscriberStatus
from notifier.tokens import Tokens, address_digest
from tests import factories


def csrf(client, path: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


@pytest.fixture
def tokens(settings) -> Tokens:
    return Tokens(settings.secret_key, settings.confirm_max_age_seconds)


def reload(session, row):
    session.expire_all()
    return session.get(type(row), row.id)


def test_subscribe_page_lists_categories_in_a_form_that_works_without_javascript(client):
    page = client.get("/").text
    assert '<form method="post" action="/subscribe"' in page
    assert page.count('type="checkbox" name="categories"') == 15
    assert 'value="logistics-transport"' in page and "Covid-19" in page


def test_subscribe_form_needs_its_csrf_token(client, queue):
    answer = client.post("/subscribe", data={"email": "a@example.com", "categories": ["news"]})
    assert answer.status_code == 400 and queue.confirmations == []


def test_subscribe_form_queues_a_confirmation(client, queue):
    form = {
        "email": "a@example.com",
        "categories": ["news", "science"],
        "csrf_token": csrf(client, "/"),
    }
    answer = client.post("/subscribe", data=form)
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert len(queue.confirmations) == 1


def test_subscribe_form_error_keeps_what_the_reader_typed(client, queue):
    form = {"email": "a@example.com", "csrf_token": csrf(client, "/")}
    answer = client.post("/subscribe", data=form)
    assert answer.status_code == 400
    assert "Please choose at least one category" in answer.text
    assert 'value="a@example.com"' in answer.text


def test_confirmation_link_activates_the_chosen_categories(client, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news", status=SubscriberStatus.PENDING)
    session.commit()
    wanted = [c.id for c in factories.categories(session, "economy", "energy")]
    link = f"/confirm/{tokens.confirm_token(reader.id, reader.email, wanted)}"
    page = client.get(link)
    assert page.status_code == 200 and "Yes, subscribe me" in page.text
    assert reload(session, reader).status is SubscriberStatus.PENDING, "a GET changes nothing"
    answer = client.post(link)
    assert answer.status_code == 200 and "Economy, Energy" in answer.text
    reader = reload(session, reader)
    assert reader.status is SubscriberStatus.ACTIVE and reader.confirmed_at is not None
    assert sorted(c.slug for c in reader.categories) == ["economy", "energy"]


def test_a_confirmation_link_works_once_and_never_after_unsubscribing(client, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news", status=SubscriberStatus.PENDING)
    session.commit()
    news = [c.id for c in factories.categories(session, "news")]
    link = f"/confirm/{tokens.confirm_token(reader.id, reader.email, news)}"
    assert client.post(link).status_code == 200
    reader = reload(session, reader)
    reader.confirm_links_after += timedelta(seconds=2)  # used 2 s after it was sent
    session.commit()
    for again in (client.get(link), client.post(link)):
        assert again.status_code == 400 and "already used" in again.text
    unsubscribe = f"/unsubscribe/{tokens.unsubscribe_token(reader.id, news)}"
    assert client.post(unsubscribe, data={"scope": "all"}).status_code == 200
    assert reload(session, reader).status is SubscriberStatus.UNSUBSCRIBED
    old = tokens._confirm.dumps(  # a link from before the unsubscribe, still unexpired
        {"s": reader.id, "e": address_digest("test-secret-key", reader.email), "c": news}
    )
    reader = reload(session, reader)
    reader.confirm_links_after += timedelta(seconds=2)
    session.commit()
    assert client.post(f"/confirm/{old}").status_code == 400
    assert reload(session, reader).status is SubscriberStatus.UNSUBSCRIBED


def test_knowing_an_address_is_not_enough_to_change_its_categories(client, session, queue):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    client.post("/api/v1/subscriptions", json={"email": "r@example.com", "categories": ["culture"]})
    assert [c.slug for c in reload(session, reader).categories] == ["news"]
    assert queue.confirmations, "the owner confirms the change from their inbox"


@pytest.mark.parametrize("mangle", [lambda t: t[:-2] + "xx", lambda t: "x" + t, lambda t: "abc"])
def test_broken_or_forged_links_are_a_400_page(client, session, tokens, mangle):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    for path in (
        f"/confirm/{mangle(tokens.confirm_token(reader.id, reader.email, [1]))}",
        f"/preferences/{mangle(tokens.manage_token(reader.id))}",
        f"/unsubscribe/{mangle(tokens.unsubscribe_token(reader.id, [1]))}",
    ):
        answer = client.get(path)
        assert answer.status_code == 400 and "not valid" in answer.text, path


def test_confirm_token_for_another_address_is_refused(client, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news", status=SubscriberStatus.PENDING)
    session.commit()
    answer = client.get(f"/confirm/{tokens.confirm_token(reader.id, 'other@example.com', [1])}")
    assert answer.status_code == 400
    assert reload(session, reader).status is SubscriberStatus.PENDING


def test_unsubscribe_get_changes_nothing_and_offers_a_button(client, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news", "economy")
    session.commit()
    news = [c.id for c in factories.categories(session, "news")]
    page = client.get(f"/unsubscribe/{tokens.unsubscribe_token(reader.id, news)}")
    assert page.status_code == 200 and "Unsubscribe from News" in page.text
    assert len(reload(session, reader).categories) == 2


def test_one_click_post_drops_the_categories_of_that_email_without_cookie_or_csrf(
    app, session, tokens
):
    reader = factories.subscriber(session, "r@example.com", "news", "economy")
    session.commit()
    news = [c.id for c in factories.categories(session, "news")]
    client = app.test_client(use_cookies=False)
    url = f"/unsubscribe/{tokens.unsubscribe_token(reader.id, news)}"
    for _ in range(2):  # mail clients may POST twice
        answer = client.post(
            url, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        )
        assert answer.status_code == 200
    reader = reload(session, reader)
    assert [c.slug for c in reader.categories] == ["economy"]
    assert reader.status is SubscriberStatus.ACTIVE


def test_one_click_of_the_last_category_unsubscribes(app, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    news = [c.id for c in factories.categories(session, "news")]
    url = f"/unsubscribe/{tokens.unsubscribe_token(reader.id, news)}"
    answer = app.test_client().post(url, data={"List-Unsubscribe": "One-Click"})
    assert "will get no more emails" in answer.text
    reader = reload(session, reader)
    assert reader.status is SubscriberStatus.UNSUBSCRIBED and reader.status_reason


def test_unsubscribe_from_everything(app, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news", "economy", "culture")
    session.commit()
    url = f"/unsubscribe/{tokens.unsubscribe_token(reader.id, [1])}"
    app.test_client().post(url, data={"scope": "all"})
    reader = reload(session, reader)
    assert reader.categories == [] and reader.status is SubscriberStatus.UNSUBSCRIBED


def test_preferences_page_changes_categories(client, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    path = f"/preferences/{tokens.manage_token(reader.id)}"
    assert (
        '<option value="instant" selected>' in client.get(path).text.split('name="email-news"')[1]
    )
    answer = client.post(
        path, data={"categories": ["history", "defense"], "csrf_token": csrf(client, path)}
    )
    assert answer.status_code == 200 and "Saved." in answer.text
    assert sorted(c.slug for c in reload(session, reader).categories) == ["defense", "history"]


def test_preferences_page_refuses_a_post_without_csrf(client, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    path = f"/preferences/{tokens.manage_token(reader.id)}"
    assert client.post(path, data={"categories": ["history"]}).status_code == 400
    assert [c.slug for c in reload(session, reader).categories] == ["news"]


def test_preferences_unsubscribe_everything_then_come_back(client, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    path = f"/preferences/{tokens.manage_token(reader.id)}"
    client.post(path, data={"unsubscribe_all": "1", "csrf_token": csrf(client, path)})
    assert reload(session, reader).status is SubscriberStatus.UNSUBSCRIBED
    client.post(path, data={"categories": ["news"], "csrf_token": csrf(client, path)})
    assert reload(session, reader).status is SubscriberStatus.ACTIVE


def test_manage_page_answers_the_same_for_known_and_unknown_addresses(client, session, queue):
    reader = factories.subscriber(session, "known@example.com", "news")
    pending = factories.subscriber(
        session, "pending@example.com", "news", status=SubscriberStatus.PENDING
    )
    session.commit()
    answers = [
        client.post("/manage", data={"email": address, "csrf_token": csrf(client, "/manage")})
        for address in ("known@example.com", "nobody@example.com", "pending@example.com")
    ]
    assert len({(a.status_code, a.text) for a in answers}) == 1
    assert queue.manage_links == [reader.id]
    assert [sid for sid, _ in queue.confirmations] == [pending.id], "never confirmed: confirm"


def test_subscriber_row_is_never_deleted_by_unsubscribing(app, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    app.test_client().post(f"/unsubscribe/{tokens.unsubscribe_token(reader.id, [])}",
                           data={"scope": "all"})  # fmt: skip
    assert session.get(Subscriber, reader.id) is not None
