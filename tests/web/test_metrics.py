"""GET /metrics: who may read it, and gauges that say what the database and broker hold."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from notifier.models import Feed, PushStatus, SubscriberStatus, WorkerHeartbeat
from notifier.timeutil import utcnow
from notifier.web import create_app
from tests import factories

INSIDE = {"REMOTE_ADDR": "10.1.2.3"}


def scrape(client, **kwargs) -> dict[tuple[str, frozenset], float]:
    answer = client.get("/metrics", **kwargs)
    assert answer.status_code == 200, answer.text
    assert answer.content_type.startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.mark.parametrize(
    ("address", "status"),
    [
        ("127.0.0.1", 200),
        ("::1", 200),
        ("10.1.2.3", 200),
        ("172.20.0.5", 200),
        ("192.168.1.10", 200),
        ("::ffff:10.1.2.3", 200),  # IPv4 seen through an IPv6 socket
        ("203.0.113.7", 403),
        ("172.32.0.1", 403),
        ("2001:db8::1", 403),
    ],
)
def test_only_the_internal_network_may_read_it(client, address, status):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": address}).status_code == status


def test_a_request_relayed_by_an_unknown_proxy_is_refused(client):
    """Without TRUSTED_PROXIES the peer is the proxy: anyone would look internal."""
    relayed = client.get("/metrics", headers={"X-Forwarded-For": "10.0.0.9"})
    assert relayed.status_code == 403


def test_behind_trusted_proxies_the_client_address_counts(settings, queue):
    client = create_app(settings.with_overrides(trusted_proxies=1), queue).test_client()
    proxied = {"environ_base": {"REMOTE_ADDR": "127.0.0.1"}}
    outside = client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.4"}, **proxied)
    inside = client.get("/metrics", headers={"X-Forwarded-For": "10.0.0.9"}, **proxied)
    assert (outside.status_code, inside.status_code) == (403, 200)


def test_a_token_when_set_is_required(settings, queue):
    client = create_app(settings.with_overrides(metrics_token="s3cret"), queue).test_client()
    missing = client.get("/metrics", environ_base=INSIDE)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = client.get("/metrics", environ_base=INSIDE, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = {"Authorization": "Bearer s3cret"}
    assert client.get("/metrics", environ_base=INSIDE, headers=right).status_code == 200
    outside = {"REMOTE_ADDR": "203.0.113.7"}
    assert client.get("/metrics", environ_base=outside, headers=right).status_code == 403


def test_gauges_reflect_the_rows(client, session, push_service):
    now = utcnow()
    factories.subscriber(session, "a@example.com", "news")
    factories.subscriber(session, "b@example.com", "news")
    factories.subscriber(session, "c@example.com", "news", status=SubscriberStatus.PENDING)
    factories.subscriber(session, "d@example.com", "news", status=SubscriberStatus.UNSUBSCRIBED)
    factories.push_subscription(session, push_service.new_subscription(), "news")
    gone = factories.push_subscription(session, push_service.new_subscription(), "news")
    gone.status = PushStatus.GONE
    session.add_all([
        Feed(url="https://aze.media/feed/", added_at=now - timedelta(hours=1),
             last_success_at=now - timedelta(minutes=2)),
        Feed(url="https://aze.media/broken/", added_at=now - timedelta(hours=1),
             last_error="HTTP 500 from feed"),
        WorkerHeartbeat(hostname="celery@alive", seen_at=now - timedelta(seconds=3),
                        started_at=now, concurrency=2, active_tasks=0, pid=1),
        WorkerHeartbeat(hostname="celery@dead", seen_at=now - timedelta(minutes=10),
                        started_at=now, concurrency=2, active_tasks=0, pid=2),
    ])  # fmt: skip
    session.commit()

    samples = scrape(client)

    subscribers = {s.value: value(samples, "notifier_subscribers", status=s.value)
                   for s in SubscriberStatus}  # fmt: skip
    assert subscribers == {
        "active": 2,
        "pending": 1,
        "unsubscribed": 1,
        "bounced": 0,
        "complained": 0,
    }
    push = {s.value: value(samples, "notifier_push_subscriptions", status=s.value)
            for s in PushStatus}  # fmt: skip
    assert push == {"active": 1, "unsubscribed": 0, "gone": 1}
    assert value(samples, "notifier_feed_error", feed="https://aze.media/broken/") == 1
    assert value(samples, "notifier_feed_error", feed="https://aze.media/feed/") == 0
    fresh = value(samples, "notifier_feed_last_success_age_seconds", feed="https://aze.media/feed/")
    assert 120 <= fresh < 180
    never = "https://aze.media/broken/"
    assert value(samples, "notifier_feed_last_success_age_seconds", feed=never) == float("inf")
    assert value(samples, "notifier_workers_online") == 1
    dead = value(samples, "notifier_worker_last_heartbeat_age_seconds", worker="celery@dead")
    assert 600 <= dead < 660
    assert value(samples, "notifier_up", part="database") == 1
    assert value(samples, "notifier_up", part="broker") == 1  # the embedded SQLite broker
    assert value(samples, "notifier_queue_depth", queue="celery") == 0


def test_a_part_that_is_down_is_a_gauge_not_an_error(settings):
    down = settings.with_overrides(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        broker_url="redis://127.0.0.1:1/0",
    )
    samples = scrape(create_app(down).test_client())
    assert value(samples, "notifier_up", part="database") == 0
    assert value(samples, "notifier_up", part="broker") == 0
    assert not any(name == "notifier_subscribers" for name, _ in samples)
