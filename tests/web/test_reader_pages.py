"""Reader pages beyond the basics: one grid for both channels, "send the link again", a pause
from email, one-click resubscribe, and forms that keep what was typed after an error."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from notifier.models import Subscriber, SubscriberStatus
from notifier.timeutil import utcnow
from notifier.tokens import TokenError, Tokens
from notifier.web import create_app
from tests import factories
from tests.web.test_public import csrf, reload


@pytest.fixture
def tokens(settings) -> Tokens:
    return Tokens(settings.secret_key, settings.confirm_max_age_seconds)


def _ticked(page: str) -> set[str]:
    return set(re.findall(r'name="categories" value="([^"]+)" checked', page))


def _without_tokens(page: str, *addresses: str) -> str:
    """A page with its CSRF token and the typed address taken out, for comparing answers."""
    page = re.sub(r'name="csrf_token" value="[^"]+"', "", page)
    for address in addresses:
        page = page.replace(address, "ADDRESS")
    return page


# ---- subscribe: one grid for email and push ----------------------------------------------


def test_one_category_grid_serves_email_and_this_browser(client):
    page = client.get("/").text
    assert page.count('type="checkbox"') == 15, "each category once, for both channels"
    assert 'name="push_categories"' not in page
    grid = page.index('name="categories"')
    assert grid < page.index('id="email"') and grid < page.index('id="push"')
    assert page.index('<form method="post" action="/subscribe"') < grid
    assert page.index('id="push"') < page.index("</form>"), "push.js reads the same form"


def test_after_subscribing_the_page_offers_to_send_the_link_again(client, queue):
    form = {"email": "new@example.com", "categories": ["news", "science"],
            "csrf_token": csrf(client, "/")}  # fmt: skip
    page = client.post("/subscribe", data=form).text
    assert "Check your inbox" in page and "new@example.com" in page
    assert 'action="/subscribe/resend"' in page
    hidden = set(re.findall(r'type="hidden" name="categories" value="([^"]+)"', page))
    assert hidden == {"news", "science"}, "the same wish goes with the resend, nothing to type"
    resend = {
        "email": "new@example.com",
        "categories": sorted(hidden),
        "csrf_token": csrf(client, "/"),
    }
    answer = client.post("/subscribe/resend", data=resend)
    assert answer.status_code == 200 and "A new link is on its way." in answer.text
    assert len(queue.confirmations) == 2 and queue.confirmations[0] == queue.confirmations[1]


def test_a_resend_answers_the_same_for_any_address_and_mails_at_most_once_a_while(
    tmp_path, settings, queue, session
):
    # CONFIRM_RESEND_SECONDS back at its default (the test settings turn it off): the wait
    # between two links to one address is what this test is about.
    app = create_app(dataclasses.replace(settings, confirm_resend_seconds=300), queue=queue)
    client = app.test_client()
    factories.subscriber(session, "active@example.com", "news")
    session.commit()
    answers = []
    for address in ("active@example.com", "nobody@example.com", "nobody@example.com"):
        form = {"email": address, "categories": ["news"], "csrf_token": csrf(client, "/")}
        answer = client.post("/subscribe/resend", data=form)
        answers.append((answer.status_code, _without_tokens(answer.text, address)))
    assert len(set(answers)) == 1, "nothing in the answer tells whether an address is known"
    assert "5 minutes" in answers[0][1]
    assert len(queue.confirmations) == 2, "the second resend to one address came too soon"


def test_resends_are_rate_limited_per_client(client, queue):
    def resend(n: int):
        form = {"email": f"reader{n}@example.com", "categories": ["news"],
                "csrf_token": csrf(client, "/")}  # fmt: skip
        return client.post("/subscribe/resend", data=form)

    codes = [resend(n).status_code for n in range(7)]
    assert codes == [200] * 5 + [429] * 2  # RATE_LIMIT_RESENDS_PER_CLIENT: 5 per hour
    assert "Too many requests (5 per 1 hour)" in resend(8).text
    assert len(queue.confirmations) == 5


def test_a_resend_with_a_bad_address_says_so_and_keeps_the_choice(client, queue):
    form = {"email": "not an address", "categories": ["news"], "csrf_token": csrf(client, "/")}
    answer = client.post("/subscribe/resend", data=form)
    assert answer.status_code == 400 and "not valid" in answer.text
    assert 'value="not an address"' in answer.text and _ticked(answer.text) == {"news"}
    assert queue.confirmations == []


# ---- forms keep what was typed -------------------------------------------------------------


def test_manage_page_keeps_the_address_after_an_error(client):
    answer = client.post(
        "/manage", data={"email": "reader@", "csrf_token": csrf(client, "/manage")}
    )
    assert answer.status_code == 400 and 'value="reader@"' in answer.text
    assert 'aria-invalid="true"' in answer.text and 'id="email-error"' in answer.text


def test_subscribe_error_keeps_the_address_and_the_ticked_categories(client):
    form = {"email": "reader@", "categories": ["news", "culture"], "csrf_token": csrf(client, "/")}
    answer = client.post("/subscribe", data=form)
    assert answer.status_code == 400 and 'value="reader@"' in answer.text
    assert _ticked(answer.text) == {"news", "culture"}


def _chosen(page: str, slug: str) -> str:
    """The option selected for a category in the preferences grid."""
    select = page.split(f'name="email-{slug}"', 1)[1].split("</select>", 1)[0]
    return select.split(" selected>", 1)[0].rsplit('value="', 1)[1].split('"', 1)[0]


def test_preferences_error_keeps_the_chosen_cadences(client, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    path = f"/preferences/{tokens.manage_token(reader.id)}"
    form = {"email-culture": "daily", "email-no-such-category": "instant",
            "csrf_token": csrf(client, path)}  # fmt: skip
    answer = client.post(path, data=form)
    assert (
        answer.status_code == 400
        and "There is no category &#39;no-such-category&#39;" in answer.text
    )
    assert _chosen(answer.text, "culture") == "daily", "what was chosen, not what was saved"
    assert _chosen(answer.text, "news") == "off"
    assert [c.slug for c in reload(session, reader).categories] == ["news"]


# ---- a pause from email ------------------------------------------------------------------


def test_pause_then_resume_email_from_the_preferences_page(client, session, tokens, settings):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    path = f"/preferences/{tokens.manage_token(reader.id)}"
    assert "Pause all email for 7 days" in client.get(path).text
    before = utcnow()
    answer = client.post(path, data={"pause": "1", "csrf_token": csrf(client, path)})
    assert answer.status_code == 200 and "Email is paused for 7 days" in answer.text
    paused_until = reload(session, reader).paused_until
    days = timedelta(days=settings.email_pause_days)
    assert before + days <= paused_until <= utcnow() + days
    assert "email paused until" in answer.text and "Resume email now" in answer.text
    assert [c.slug for c in reload(session, reader).categories] == ["news"], "kept"

    answer = client.post(path, data={"resume": "1", "csrf_token": csrf(client, path)})
    assert "Email is on again" in answer.text and "Pause all email" in answer.text
    assert reload(session, reader).paused_until is None


def test_only_a_subscribed_reader_can_pause(client, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news")
    reader.status = SubscriberStatus.UNSUBSCRIBED
    session.commit()
    path = f"/preferences/{tokens.manage_token(reader.id)}"
    assert "Pause all email" not in client.get(path).text
    answer = client.post(path, data={"pause": "1", "csrf_token": csrf(client, path)})
    assert answer.status_code == 400 and "nothing to pause" in answer.text
    assert reload(session, reader).paused_until is None


# ---- one-click resubscribe ---------------------------------------------------------------


def _unsubscribe(app, tokens, reader, slugs, everything=False):
    ids = [c.id for c in reader.categories if c.slug in slugs]
    data = {"scope": "all"} if everything else {"List-Unsubscribe": "One-Click"}
    page = app.test_client().post(f"/unsubscribe/{tokens.unsubscribe_token(reader.id, ids)}",
                                  data=data).text  # fmt: skip
    match = re.search(r'action="(/resubscribe/[^"]+)"', page)
    return page, match.group(1) if match else None


def test_the_unsubscribed_page_resubscribes_in_one_click(app, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news", "economy")
    session.commit()
    page, resubscribe = _unsubscribe(app, tokens, reader, ["news", "economy"], everything=True)
    assert "will get no more emails" in page and "puts Economy, News back" in page
    assert "<input" not in page.split(resubscribe)[1].split("</form>")[0], "nothing to fill"
    assert reload(session, reader).status is SubscriberStatus.UNSUBSCRIBED

    answer = app.test_client(use_cookies=False).post(resubscribe)  # no cookie, no CSRF token
    assert answer.status_code == 200 and "Welcome back" in answer.text
    reader = reload(session, reader)
    assert reader.status is SubscriberStatus.ACTIVE
    assert sorted(c.slug for c in reader.categories) == ["economy", "news"]


def test_resubscribe_puts_back_only_what_the_click_dropped(app, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news", "economy")
    session.commit()
    page, resubscribe = _unsubscribe(app, tokens, reader, ["news"])
    assert "still gets: Economy" in page and "puts News back" in page
    app.test_client().post(resubscribe)
    assert sorted(c.slug for c in reload(session, reader).categories) == ["economy", "news"]


def test_a_resubscribe_token_is_signed_and_dies_once_the_reader_left_again(app, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    client = app.test_client()
    _, resubscribe = _unsubscribe(app, tokens, reader, ["news"])
    assert client.post(resubscribe[:-3] + "xyz").status_code == 400, "forged"
    assert client.post(resubscribe).status_code == 200
    # Later the reader leaves again (preferences page): the old page must not bring them back.
    reader = reload(session, reader)
    reader.status = SubscriberStatus.UNSUBSCRIBED
    reader.status_changed_at = utcnow() + timedelta(seconds=2)  # surely after the page
    reader.categories = []
    session.commit()
    answer = client.post(resubscribe)
    assert answer.status_code == 400 and "changed after this page was shown" in answer.text
    assert reload(session, reader).status is SubscriberStatus.UNSUBSCRIBED


def test_a_bounced_address_is_not_resubscribed(app, session, tokens):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    _, resubscribe = _unsubscribe(app, tokens, reader, ["news"])
    reader = reload(session, reader)
    reader.status = SubscriberStatus.BOUNCED
    session.commit()
    answer = app.test_client().post(resubscribe)
    assert answer.status_code == 400 and "bounced" in answer.text
    assert reload(session, reader).status is SubscriberStatus.BOUNCED


def test_a_resubscribe_token_expires(app, session, tokens, settings):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    _, resubscribe = _unsubscribe(app, tokens, reader, ["news"])
    token = resubscribe.rsplit("/", 1)[1]
    read = tokens.read_resubscribe_token(token, settings.resubscribe_max_age_seconds)
    assert read.category_ids == tuple(c.id for c in factories.categories(session, "news"))
    with pytest.raises(TokenError, match="too old"):
        tokens.read_resubscribe_token(token, max_age_seconds=-1)


# ---- cadence and digest time -------------------------------------------------------------


def test_the_browsers_time_zone_is_kept_at_sign_up_and_a_bad_one_falls_back_to_utc(client, session):
    for address, zone, kept in [("baku@example.com", "Asia/Baku", "Asia/Baku"),
                                ("odd@example.com", "Not/AZone", "UTC")]:  # fmt: skip
        form = {"email": address, "categories": ["news"], "timezone": zone,
                "csrf_token": csrf(client, "/")}  # fmt: skip
        assert client.post("/subscribe", data=form).status_code == 200
        reader = session.scalar(select(Subscriber).where(Subscriber.email == address))
        assert reader.timezone == kept


def test_the_preferences_grid_sets_each_categorys_cadence_and_the_digest_time(
    client, session, tokens
):
    reader = factories.subscriber(session, "r@example.com", "news")
    session.commit()
    path = f"/preferences/{tokens.manage_token(reader.id)}"
    form = {"email-news": "daily", "email-culture": "instant", "email-history": "off",
            "csrf_token": csrf(client, path)}  # fmt: skip
    answer = client.post(path, data=form)
    assert answer.status_code == 200 and "Saved." in answer.text
    assert (_chosen(answer.text, "news"), _chosen(answer.text, "culture")) == ("daily", "instant")
    assert _chosen(answer.text, "history") == "off"
    form = {"digest_time": "1", "timezone": "America/New_York", "digest_hour": "18",
            "digest_weekday": "4", "csrf_token": csrf(client, path)}  # fmt: skip
    assert client.post(path, data=form).status_code == 200
    reader = reload(session, reader)
    assert (reader.timezone, reader.digest_hour, reader.digest_weekday) == (
        "America/New_York", 18, 4)  # fmt: skip
    form["timezone"] = "Mars/Olympus"
    answer = client.post(path, data=form)
    assert answer.status_code == 400 and "not a time zone we know" in answer.text
