"""Web push through a real local push service that checks VAPID and decrypts RFC 8291."""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from notifier.channels.registry import vapid_signer
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.domain.push_subscriptions import BrowserSubscription, save_push_subscription
from notifier.messages import PUSH_MAX_PLAINTEXT, PushMessage
from notifier.models import Delivery, DeliveryStatus, PushStatus, PushSubscription
from notifier.timeutil import utcnow
from tests import factories
from tests.support.push_service import Reply
from tests.support.queue import article_fanned_out


@pytest.fixture
def send(session, settings):
    bound = outlets(settings, Composer(settings))

    def run(at=None):
        """Send what the last article's fan-out queued (rows already sent are not claimed)."""
        clock = (lambda: at) if at else utcnow
        return send_deliveries(session, queued[-1], bound, settings, now=clock)

    queued: list[list[int]] = []
    run.queued, run.settings = queued, settings
    return run


subscribe = factories.push_subscription


def publish(session, send, *slugs: str, **fields) -> int:
    story = factories.article(session, *slugs, **fields)
    send.queued.append(article_fanned_out(session, send.settings, story.id)[1])
    return story.id


def deliveries(session) -> list[Delivery]:
    session.expire_all()
    return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def test_one_encrypted_push_per_browser_with_vapid_ttl_urgency_and_topic(
    session, send, push_service, settings
):
    browser = push_service.new_subscription()
    row = subscribe(session, browser, "news", "economy")
    publish(session, send, "news", "economy", title="Manat ə ğ ş ı — Новости 🚀")

    assert send().sent == 1
    [push] = browser.wait_for(1)
    payload = push.json()
    assert payload["title"] == "Manat ə ğ ş ı — Новости 🚀"
    assert payload["url"].startswith("https://aze.media/story-")
    assert payload["manageUrl"].startswith(f"{settings.public_url}/push/manage/")
    assert payload["icon"] == settings.site_icon_url
    assert (push.ttl, push.urgency) == (settings.push_ttl_seconds, "normal")
    assert push.topic and len(push.topic) <= 32
    assert push.vapid_claims["aud"] == push_service.origin
    assert push.vapid_key == settings.vapid_public_key
    assert push.vapid_claims["exp"] <= utcnow().timestamp() + 24 * 3600
    assert send().sent == 0, "a second run sends nothing"
    assert [d.push_subscription_id for d in deliveries(session)] == [row.id]


@pytest.mark.parametrize("status", [404, 410])
def test_gone_subscription_is_marked_and_never_sent_to_again(session, send, push_service, status):
    browser = push_service.new_subscription()
    row = subscribe(session, browser, "news")
    push_service.script(browser, Reply(status))
    publish(session, send, "news")

    report = send()
    assert (report.sent, report.failed, report.retry_in) == (0, 1, {})
    session.expire_all()
    row = session.get(PushSubscription, row.id)
    assert row.status is PushStatus.GONE and str(status) in row.status_reason
    publish(session, send, "news")
    assert send().sent == 0 and len(deliveries(session)) == 1


@pytest.mark.parametrize("status", [400, 401, 403])
def test_our_mistakes_fail_the_message_but_keep_the_subscription(
    session, send, push_service, status
):
    browser = push_service.new_subscription()
    row = subscribe(session, browser, "news")
    push_service.script(browser, Reply(status))
    publish(session, send, "news")

    assert send().failed == 1
    session.expire_all()
    assert session.get(PushSubscription, row.id).status is PushStatus.ACTIVE
    [delivery] = deliveries(session)
    assert delivery.status is DeliveryStatus.FAILED and f"HTTP {status}" in delivery.last_error


def test_429_waits_for_retry_after_then_delivers(session, send, push_service):
    browser = push_service.new_subscription()
    subscribe(session, browser, "news")
    push_service.script(browser, Reply(429, retry_after=2))
    publish(session, send, "news")

    started = utcnow()
    report = send()
    [delay] = report.retry_in.values()
    assert delay >= 2
    [delivery] = deliveries(session)
    due = delivery.next_attempt_at
    assert due >= started + timedelta(seconds=2)
    assert send(at=started + timedelta(seconds=1)).sent == 0, "not before Retry-After"
    # Even when due by the database's clock, nobody posts to the service while it said wait.
    assert send(at=due + timedelta(seconds=60)).sent == 0
    assert len(push_service.requests) == 1
    # The hold began when the 429 came back (later than `started` on a busy machine) and ends
    # no later than the row's next attempt, which was counted from the moment it was recorded.
    time.sleep(max(0.0, (due - utcnow()).total_seconds()) + 0.1)
    assert send(at=utcnow() + timedelta(hours=1)).sent == 1
    assert len(browser.received) == 1


def test_an_outcome_is_recorded_when_the_session_already_held_the_row(session, send, push_service):
    """Sessions keep objects across commits and the claim is a Core UPDATE: a row the
    session had loaded before the send must still be recorded as this claim's, not taken
    for another worker's (fenced) and left claimed until its lease runs out."""
    browser = push_service.new_subscription()
    subscribe(session, browser, "news")
    push_service.script(browser, Reply(503))
    publish(session, send, "news")
    [before] = deliveries(session)  # loaded, unclaimed: no token
    assert before.claim_token is None

    report = send()

    assert report.fenced == 0 and list(report.retry_in) == [before.id]
    [after] = deliveries(session)
    assert after.status is DeliveryStatus.PENDING and after.claim_token is None
    assert after.last_error.startswith("temporary: HTTP 503")


def test_retry_after_holds_back_every_worker_process(session, settings, push_service):
    """Another process (its own channel, its own batch) sees the 429 through the database."""
    first, second = push_service.new_subscription(), push_service.new_subscription()
    subscribe(session, first, "news")
    subscribe(session, second, "culture")
    push_service.script(first, Reply(429, retry_after=30))
    for slug in ("news", "culture"):
        story = factories.article(session, slug)
        article_fanned_out(session, settings, story.id)
    [one, two] = [d.id for d in deliveries(session)]
    send_deliveries(session, [one], outlets(settings, Composer(settings)), settings)
    elsewhere = outlets(settings, Composer(settings))  # as in another worker process
    report = send_deliveries(session, [two], elsewhere, settings)
    assert list(report.retry_in) == [two] and second.received == []
    assert len(push_service.requests) == 1


def test_5xx_is_retried_with_backoff(session, send, push_service):
    browser = push_service.new_subscription()
    subscribe(session, browser, "news")
    push_service.script(browser, Reply(500), Reply(503))
    publish(session, send, "news")
    at = utcnow()
    for _ in range(2):
        assert send(at=at).retry_in
        at = deliveries(session)[0].next_attempt_at
    assert send(at=at).sent == 1
    assert deliveries(session)[0].attempts == 3


def test_413_shrinks_and_retries_once(session, send, push_service):
    browser = push_service.new_subscription()
    subscribe(session, browser, "news")
    push_service.script(browser, Reply(413))
    publish(session, send, "news")
    assert send().sent == 1
    [push] = browser.received
    assert push.json()["image"] is None and len(push.json()["body"]) <= 120

    other = push_service.new_subscription()
    subscribe(session, other, "culture")
    push_service.script(other, Reply(413), Reply(413))
    publish(session, send, "culture")
    assert send().failed == 1 and other.received == []


def test_429_for_one_push_service_holds_back_the_rest_of_its_batch(session, send, push_service):
    browsers = [push_service.new_subscription() for _ in range(3)]
    for browser in browsers:
        subscribe(session, browser, "news")
    push_service.fail_all(Reply(429, retry_after=30))
    publish(session, send, "news")
    report = send()
    assert len(report.retry_in) == 3
    assert len(push_service.requests) == 1, "after a 429 the service is left alone"


def test_vapid_is_signed_once_per_origin_and_connections_are_reused(
    session, send, push_service, settings
):
    browsers = [push_service.new_subscription() for _ in range(5)]
    for browser in browsers:
        subscribe(session, browser, "news")
    publish(session, send, "news")
    signed_before = vapid_signer(settings).signatures
    assert send().sent == 5
    assert vapid_signer(settings).signatures - signed_before <= 1
    assert push_service.connections == 1


def test_endpoint_is_checked_again_at_send_time(session, push_service, settings):
    browser = push_service.new_subscription()
    subscribe(session, browser, "news")
    story = factories.article(session, "news")
    _, ids = article_fanned_out(session, settings, story.id)
    stricter = settings.with_overrides(push_allowed_origins=("https://fcm.googleapis.com",))
    report = send_deliveries(session, ids, outlets(stricter, Composer(stricter)), stricter)
    assert report.failed == 1 and browser.received == []
    [delivery] = deliveries(session)
    assert "not accepted" in delivery.last_error
    assert session.get(PushSubscription, delivery.push_subscription_id).status is PushStatus.ACTIVE


def test_a_push_service_that_never_answers_times_out_and_is_retried(
    session, settings, push_service
):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    origin = f"http://127.0.0.1:{silent.getsockname()[1]}"
    impatient = settings.with_overrides(
        push_allowed_origins=(origin,), push_read_timeout_seconds=0.3
    )
    keys = push_service.new_subscription()  # a browser's keys; its endpoint is the silent one
    save_push_subscription(
        session, BrowserSubscription(f"{origin}/push/x", keys.p256dh, keys.auth), ["news"],
        utcnow(),
    )  # fmt: skip
    story = factories.article(session, "news")
    _, ids = article_fanned_out(session, impatient, story.id)
    try:
        report = send_deliveries(session, ids, outlets(impatient, Composer(impatient)), impatient)
    finally:
        silent.close()
    assert list(report.retry_in) == ids
    assert "timeout" in deliveries(session)[0].last_error


def test_a_reader_on_both_channels_gets_one_email_and_one_push(session, send, push_service, smtp):
    browser = push_service.new_subscription()
    subscribe(session, browser, "news")
    factories.subscriber(session, "both@example.com", "news", "economy")
    publish(session, send, "news", "economy")
    assert send().sent == 2
    assert len(browser.received) == 1 and len(smtp.handler.received) == 1
    assert sorted(d.channel for d in deliveries(session)) == ["email", "push"]


@pytest.mark.parametrize("summary_chars", [10, 3000, 20000])
def test_payload_always_fits_the_4096_byte_record(summary_chars):
    message = PushMessage(
        endpoint="https://fcm.googleapis.com/x", p256dh="", auth="", ttl=60,
        payload={"title": "Ə" * 80, "body": "ş " * summary_chars, "url": "https://aze.media/a",
                 "image": "https://aze.media/i.jpg", "icon": None, "manageUrl": "https://n/m",
                 "tag": "article-1", "timestamp": 1},
    )  # fmt: skip
    data = message.plaintext()
    assert 0 < len(data) <= PUSH_MAX_PLAINTEXT
    payload = json.loads(data)
    assert payload["title"] == "Ə" * 80 and payload["url"] == "https://aze.media/a"
    if summary_chars > 2000:
        assert payload["body"].endswith("…")


def test_retry_after_is_when_the_retry_goes_not_the_base_backoff(
    session, send, push_service, settings
):
    """Retry-After 5 s: the refused row is due 5 s later (plus at most the jitter), not after
    the 30 s base backoff; the rows held back without a request are due when the hold ends
    and have not spent an attempt."""
    browsers = [push_service.new_subscription() for _ in range(3)]
    for browser in browsers:
        subscribe(session, browser, "news")
    push_service.fail_all(Reply(429, retry_after=5))
    publish(session, send, "news")
    started = utcnow()
    report = send()
    assert len(report.retry_in) == 3 and len(push_service.requests) == 1
    jitter = timedelta(seconds=settings.retry_after_jitter_seconds + 1)  # + this test's time
    rows = deliveries(session)
    assert sorted(d.attempts for d in rows) == [0, 0, 1]
    for row in rows:
        assert (
            started + timedelta(seconds=4)
            <= row.next_attempt_at
            <= started + timedelta(seconds=5) + jitter
        )
    assert set(report.due_at) == {d.id for d in rows}


@pytest.mark.parametrize(
    "retry_after", ["99999999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"]
)
def test_a_huge_retry_after_is_cut_to_the_setting(session, send, push_service, settings,
                                                   retry_after):  # fmt: skip
    browser = push_service.new_subscription()
    subscribe(session, browser, "news")
    push_service.script(browser, Reply(429, retry_after=retry_after))
    publish(session, send, "news")
    [delay] = send().retry_in.values()
    most = settings.retry_after_max_seconds + settings.retry_after_jitter_seconds
    assert settings.retry_after_max_seconds <= delay <= most


@pytest.mark.parametrize("retry_after", ["soon", "-5", "1e999", "Mon, 99 Foo 2026"])
def test_a_garbage_retry_after_counts_as_none(session, send, push_service, settings,
                                              retry_after):  # fmt: skip
    browser = push_service.new_subscription()
    subscribe(session, browser, "news")
    push_service.script(browser, Reply(429, retry_after=retry_after))
    publish(session, send, "news")
    [delay] = send().retry_in.values()
    base = settings.delivery_retry_base_seconds
    assert base / 2 <= delay <= base  # the usual first backoff
    [row] = deliveries(session)
    assert row.status is DeliveryStatus.PENDING and "HTTP 429" in row.last_error


def test_a_row_handed_over_before_it_is_due_is_reported_with_its_time(session, send, push_service):
    browser = push_service.new_subscription()
    subscribe(session, browser, "news")
    push_service.script(browser, Reply(429, retry_after=30))
    publish(session, send, "news")
    send()
    [row] = deliveries(session)
    early = send()  # the retry task came early (another host's clock, a re-queued chunk)
    assert early.sent == 0 and early.due_at == {row.id: row.next_attempt_at}
    assert len(push_service.requests) == 1
