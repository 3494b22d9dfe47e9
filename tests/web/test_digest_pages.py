"""A digest's own links: "view in browser" opens the same digest as a page (no login), and
"switch to instant / weekly" opens a page whose one button moves the digest's categories.
A GET changes nothing; bad links answer 404, old ones 410, each with a sentence."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from notifier.delivery.compose import Composer
from notifier.delivery.digest_planning import plan_and_queue_digests
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.domain.cadence import email_cadences, set_digest_time, set_email_cadences
from notifier.domain.subscriptions import unsubscribe
from notifier.models import Article, Cadence, Category, Digest, DigestSchedule
from tests import factories
from tests.support.queue import RecordingQueue


def _reader(session, email, **cadences):
    reader = factories.subscriber(session, email, *cadences)
    now = datetime.now(UTC)
    set_email_cadences(session, reader.id, cadences, now)
    set_digest_time(session, reader.id, "Asia/Baku", 8, 0, now)
    session.commit()
    return reader


def _due(session, reader_id):
    session.expire_all()
    return min(s.next_at for s in session.scalars(
        select(DigestSchedule).where(DigestSchedule.subscriber_id == reader_id)))  # fmt: skip


@pytest.fixture
def digests(session, settings, smtp):
    """Two readers with the same daily digest (Economy, News) and a weekly Culture; the
    digests sent at their hour: reader email -> the digest as received."""
    readers = [_reader(session, f"r{n}@example.com", economy="daily", news="daily",
                       culture="weekly", defense="instant") for n in range(2)]  # fmt: skip
    for title, slugs in [("Port grows", ["economy"]), ("Talks resume", ["news"]),
                         ("Manat holds", ["economy", "news"])]:  # fmt: skip
        factories.article(session, *slugs, title=title)
    session.commit()
    due = _due(session, readers[0].id) + timedelta(seconds=1)
    queue = RecordingQueue()
    with time_machine.travel(due, tick=False):
        plan_and_queue_digests(session, settings, queue, due)
        bound = outlets(settings, Composer(settings))
        assert send_deliveries(session, queue.ids, bound, settings).sent == 2
    return {r.email: (r, smtp.handler.to(r.email)[-1]) for r in readers}


def _links(message, settings) -> dict[str, str]:
    """The digest's links by what they say, as paths on our site (text and HTML agree)."""
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    base = re.escape(settings.public_url)
    found = {
        "view": re.search(rf"Read this email in your browser: {base}(/digest/\S+)", text),
        "instant": re.search(
            rf"Get each article at once instead: {base}(/digest/switch/\S+)", text
        ),
        "weekly": re.search(rf"Get a weekly digest instead: {base}(/digest/switch/\S+)", text),
    }
    links = {name: match.group(1) for name, match in found.items() if match}
    assert len(links) == 3, text
    for path in links.values():
        assert f'href="{settings.public_url}{path}"' in html
    assert "View this email in your browser" in html
    return links


def _titles(page: str) -> list[str]:
    return re.findall(r'<li><a href="[^"]+">([^<]+)</a>', page)


def test_the_web_version_shows_the_same_digest_without_login(client, digests, settings):
    (reader, message), (_other, other_message) = digests.values()
    links = _links(message, settings)
    assert links != _links(other_message, settings), "each reader has their own links"

    page = client.get(links["view"])
    assert page.status_code == 200
    assert page.headers["X-Robots-Tag"] == "noindex"
    email_titles = [line[2:] for line in message.get_body(("plain",)).get_content().splitlines()
                    if line.startswith("* ")]  # fmt: skip
    assert _titles(page.text) == email_titles == ["Manat holds", "Port grows", "Talks resume"]
    assert '<h2 class="flush-top">Economy</h2>' in page.text
    assert reader.email not in page.text and "/preferences/" not in page.text


def test_a_bad_or_old_view_link_says_so(client, digests, settings):
    _, message = next(iter(digests.values()))
    links = _links(message, settings)
    broken = client.get(links["view"][:-3] + "xyz")
    assert broken.status_code == 404 and "This link to a digest is not valid." in broken.text
    # A switch link is not a view link: purpose-scoped signatures.
    switch_token = links["instant"].rpartition("/")[2]
    assert client.get(f"/digest/{switch_token}").status_code == 404
    later = datetime.now(UTC) + timedelta(seconds=settings.digest_link_max_age_seconds, days=2)
    with time_machine.travel(later, tick=False):
        old = client.get(links["view"])
    assert old.status_code == 410 and "too old" in old.text


def _cadences(session, reader_id) -> dict[str, Cadence]:
    session.expire_all()
    slugs = {c.id: c.slug for c in session.scalars(select(Category))}
    return {slugs[i]: c for i, c in email_cadences(session, reader_id).items()}


def test_switch_to_instant_is_one_button_and_a_get_changes_nothing(client, digests, settings,
                                                                     session):  # fmt: skip
    (reader, message), (other, _) = digests.values()
    before = _cadences(session, reader.id)
    link = _links(message, settings)["instant"]

    page = client.get(link)
    assert page.status_code == 200
    assert page.text.count("<button") == 1
    assert "Switch Economy, News to instant emails" in page.text
    assert _cadences(session, reader.id) == before, "a GET (a mail scanner) changes nothing"

    done = client.post(link)
    assert done.status_code == 200 and "Done: Economy, News now come as each article" in done.text
    assert _cadences(session, reader.id) == {
        "economy": Cadence.INSTANT, "news": Cadence.INSTANT,
        "culture": Cadence.WEEKLY, "defense": Cadence.INSTANT,
    }  # fmt: skip
    assert _cadences(session, other.id) == before, "the other reader's choices are theirs"
    schedules = {s.cadence for s in session.scalars(
        select(DigestSchedule).where(DigestSchedule.subscriber_id == reader.id))}  # fmt: skip
    assert schedules == {"weekly"}, "no daily category left: no daily digest"
    again = client.post(link)
    assert again.status_code == 200 and "Nothing to change" in again.text


def test_switch_to_weekly_moves_only_the_digest_s_categories(client, digests, settings,
                                                             session):  # fmt: skip
    reader, message = next(iter(digests.values()))
    client.post(_links(message, settings)["weekly"])
    assert _cadences(session, reader.id) == {
        "economy": Cadence.WEEKLY, "news": Cadence.WEEKLY,
        "culture": Cadence.WEEKLY, "defense": Cadence.INSTANT,
    }  # fmt: skip


def test_bad_old_or_unwelcome_switch_links_answer_4xx_with_a_sentence(client, digests, settings,
                                                                      session):  # fmt: skip
    reader, message = next(iter(digests.values()))
    link = _links(message, settings)["instant"]
    assert client.post(link[:-4] + "abcd").status_code == 404
    view_token = _links(message, settings)["view"].rpartition("/")[2]
    assert client.get(f"/digest/switch/{view_token}").status_code == 404
    later = datetime.now(UTC) + timedelta(seconds=settings.digest_link_max_age_seconds, days=2)
    with time_machine.travel(later, tick=False):
        old = client.post(link)
    assert old.status_code == 410 and "too old" in old.text
    assert _cadences(session, reader.id)["economy"] is Cadence.DAILY

    unsubscribe(session, reader.id, None, datetime.now(UTC), reason="test")
    session.commit()
    refused = client.post(link)
    assert refused.status_code == 409 and "unsubscribed" in refused.text


def test_what_the_daily_digest_carried_does_not_come_back_in_the_weekly(
    client, digests, settings, session
):
    """Switching Economy and News from the daily digest to the weekly (which already takes
    Culture, its period begun before the daily digest went) brings only what is new."""
    reader, message = next(iter(digests.values()))
    assert client.post(_links(message, settings)["weekly"]).status_code == 200
    schedules = select(DigestSchedule).where(DigestSchedule.subscriber_id == reader.id)
    weekly = session.scalars(schedules.where(DigestSchedule.cadence == "weekly")).one()
    # The daily digest went at its hour, which the fixture travelled to (tomorrow's, after
    # that hour of the day): the new stories come after it, not at the real clock's now.
    with time_machine.travel(weekly.since + timedelta(minutes=1), tick=False):
        factories.article(session, "economy", title="New port opens")
        factories.article(session, "culture", title="Film week")
        session.commit()
    due = weekly.next_at + timedelta(seconds=1)
    with time_machine.travel(due, tick=False):
        plan_and_queue_digests(session, settings, RecordingQueue(), due)
    session.expire_all()
    [digest] = session.scalars(select(Digest).where(
        Digest.subscriber_id == reader.id, Digest.cadence == "weekly"))  # fmt: skip
    titles = {a.title for a in session.scalars(
        select(Article).where(Article.id.in_(json.loads(digest.article_ids))))}  # fmt: skip
    assert titles == {"New port opens", "Film week"}, "the daily digest's three stay sent once"
