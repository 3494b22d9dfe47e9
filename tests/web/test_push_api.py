"""Push subscription API: only real push services, only valid keys, only allowed origins."""

from __future__ import annotations

import base64
import os

import pytest
from sqlalchemy import select

from notifier.models import PushStatus, PushSubscription


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
def browser(push_service):
    return push_service.new_subscription()


def post(client, subscription: dict, categories=("news", "economy"), **headers):
    body = {"subscription": subscription, "categories": list(categories)}
    return client.post("/api/v1/push/subscriptions", json=body, headers=headers)


def test_vapid_public_key_is_the_configured_one(client, settings):
    answer = client.get("/api/v1/push/vapid-public-key")
    assert answer.json == {"publicKey": settings.vapid_public_key}
    assert len(base64.urlsafe_b64decode(settings.vapid_public_key + "==")) == 65


def test_subscribe_then_resubscribe_replaces_categories(client, session, browser):
    first = post(client, browser.as_json())
    assert first.status_code == 201
    assert [c["slug"] for c in first.json["categories"]] == ["economy", "news"]
    assert first.json["manageUrl"].startswith("http://127.0.0.1:8000/push/manage/")
    again = post(client, browser.as_json(), categories=["culture"])
    assert again.status_code == 200
    [row] = session.scalars(select(PushSubscription)).all()
    assert [c.slug for c in row.categories] == ["culture"]


def test_lookup_and_delete(client, session, browser):
    post(client, browser.as_json())
    found = client.post("/api/v1/push/subscriptions/lookup", json={"endpoint": browser.endpoint})
    assert found.status_code == 200 and found.json["status"] == "subscribed"
    gone = client.delete("/api/v1/push/subscriptions", json={"endpoint": browser.endpoint})
    assert gone.status_code == 204
    missing = client.post("/api/v1/push/subscriptions/lookup", json={"endpoint": browser.endpoint})
    assert missing.status_code == 404
    [row] = session.scalars(select(PushSubscription)).all()
    assert row.status is PushStatus.UNSUBSCRIBED, "kept, with the reason it stopped"
    assert post(client, browser.as_json()).status_code == 201, "turning push on again"


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://example.com/push/1",
        "http://fcm.googleapis.com/fcm/send/abc",  # http, not https
        "https://fcm.googleapis.com.evil.example/fcm/send/abc",
        "https://user@fcm.googleapis.com/fcm/send/abc",
        "ftp://fcm.googleapis.com/x",
        "not a url",
        "https://[::1",
    ],
)
def test_endpoints_off_the_known_push_services_are_refused(client, browser, endpoint):
    answer = post(client, {**browser.as_json(), "endpoint": endpoint})
    assert answer.status_code == 400 and "error" in answer.json


def test_a_known_push_service_is_accepted(client, browser):
    subscription = {**browser.as_json(), "endpoint": "https://fcm.googleapis.com/fcm/send/abc:xyz"}
    assert post(client, subscription).status_code == 201


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"p256dh": b64(b"\x04" + os.urandom(10)), "auth": b64(os.urandom(16))}, "65-byte"),
        ({"p256dh": b64(b"\x04" + b"\x01" * 64), "auth": b64(os.urandom(16))}, "P-256"),
        (None, "keys.p256dh"),
        ({"p256dh": "!!!", "auth": b64(os.urandom(16))}, "base64url"),
        ("short-auth", "16 bytes"),
    ],
)
def test_bad_keys_are_refused(client, browser, keys, message):
    subscription = browser.as_json()
    if keys == "short-auth":
        keys = {**subscription["keys"], "auth": b64(os.urandom(8))}
    answer = post(client, {**subscription, "keys": keys})
    assert answer.status_code == 400 and message in answer.json["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"categories": ["news"]}, "subscription"),
        ({"subscription": "x", "categories": ["news"]}, "subscription"),
        ("not an object", "JSON object"),
    ],
)
def test_malformed_bodies_are_400(client, body, message):
    answer = client.post("/api/v1/push/subscriptions", json=body)
    assert answer.status_code == 400 and message in answer.json["error"]


def test_categories_are_validated(client, browser):
    assert "at least one" in post(client, browser.as_json(), categories=[]).json["error"]
    assert "Unknown category" in post(client, browser.as_json(), categories=["x"]).json["error"]


def test_only_configured_origins_may_call_the_api(client, browser):
    allowed = post(client, browser.as_json(), Origin="https://aze.media")
    assert allowed.status_code == 201
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://aze.media"
    other = post(client, browser.as_json(), Origin="https://evil.example")
    assert other.status_code == 403 and "evil.example" in other.json["error"]
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_preflight_from_the_news_site(client):
    answer = client.options(
        "/api/v1/push/subscriptions",
        headers={"Origin": "https://aze.media", "Access-Control-Request-Method": "DELETE",
                 "Access-Control-Request-Headers": "Content-Type"},
    )  # fmt: skip
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "https://aze.media"
    assert "DELETE" in answer.headers["Access-Control-Allow-Methods"]


def test_service_worker_and_widget_are_served(client):
    with client.get("/sw.js") as worker:
        assert worker.status_code == 200 and worker.headers["Service-Worker-Allowed"] == "/"
        assert "javascript" in worker.headers["Content-Type"]
        assert b"addEventListener" in worker.data
    with client.get("/widget.js") as widget:
        assert widget.status_code == 200 and widget.data


def test_a_renewed_subscription_retires_the_endpoint_it_replaces(client, session, push_service):
    old, new = push_service.new_subscription(), push_service.new_subscription()
    post(client, old.as_json())
    body = {"subscription": new.as_json(), "categories": ["news"],
            "previousEndpoint": old.endpoint}  # fmt: skip
    assert client.post("/api/v1/push/subscriptions", json=body).status_code == 201
    states = {r.endpoint: r.status for r in session.scalars(select(PushSubscription))}
    assert states == {old.endpoint: PushStatus.UNSUBSCRIBED, new.endpoint: PushStatus.ACTIVE}
