"""Alerts API for scripts and the CMS publish webhook."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from sqlalchemy import select

from notifier.domain.categories import CategoryRef
from notifier.domain.feeds import ParsedArticle, store_articles, sync_feeds
from notifier.models import Alert, Article, UnsentTask
from notifier.timeutil import utcnow

ALERT = {"title": "Ceasefire signed", "body": "Details soon.", "url": "https://aze.media/x",
         "all": True, "channels": ["email", "push"]}  # fmt: skip


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_alerts_need_a_valid_token(client, queue):
    assert client.post("/api/v1/alerts", json=ALERT).status_code == 401
    answer = client.post("/api/v1/alerts", json=ALERT, headers=bearer("ntf_wrong"))
    assert answer.status_code == 401 and "token" in answer.json["error"]
    assert queue.alerts == []


def test_create_then_read_an_alert(client, queue, api_token):
    answer = client.post("/api/v1/alerts", json=ALERT, headers=bearer(api_token))
    assert answer.status_code == 202
    alert_id = answer.json["id"]
    assert queue.alerts == [alert_id]
    status = client.get(f"/api/v1/alerts/{alert_id}", headers=bearer(api_token)).json
    assert status["status"] == "queued" and status["channels"] == ["email", "push"]
    assert client.get("/api/v1/alerts/999999", headers=bearer(api_token)).status_code == 404


def test_a_retried_call_with_the_same_idempotency_key_makes_one_alert(
    client, queue, api_token, session
):
    headers = {**bearer(api_token), "Idempotency-Key": "evening-1"}
    ids = {client.post("/api/v1/alerts", json=ALERT, headers=headers).json["id"] for _ in "12"}
    assert len(ids) == 1 and len(session.scalars(select(Alert)).all()) == 1
    assert len(queue.alerts) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [({**ALERT, "title": ""}, "headline"), ({**ALERT, "all": False}, "category"),
     ({**ALERT, "channels": ["fax"]}, "Channels"), ("[]", "JSON object"),
     ({**ALERT, "channels": [{}]}, "Channels"),
     ({**ALERT, "all": False, "categories": [1]}, "list of slugs")],
)  # fmt: skip
def test_bad_alerts_are_400(client, api_token, body, message):
    answer = client.post("/api/v1/alerts", json=body, headers=bearer(api_token))
    assert answer.status_code == 400 and message in answer.json["error"]


def test_an_alert_accepted_while_the_broker_is_down_is_kept(client, queue, api_token, session):
    queue.broker_down = True
    answer = client.post("/api/v1/alerts", json=ALERT, headers=bearer(api_token))
    assert answer.status_code == 202
    [alert] = session.scalars(select(Alert)).all()
    assert alert.status.value == "queued"
    [kept] = session.scalars(select(UnsentTask)).all()  # a worker hands it over when it answers
    assert (kept.task_name, kept.arguments) == ("notifier.tasks.fan_out_alert", f"[{alert.id}]")
    assert kept.cause == "OperationalError: connection refused (test)"


POST = {"guid": "https://aze.media/?p=4242", "url": "https://aze.media/ceasefire/",
        "title": "Ceasefire signed", "summary": "<p>Both sides.</p>",
        "categories": ["Defense", "News"], "published_at": "2026-11-25T10:00:00+04:00"}  # fmt: skip


def signed(settings_secret: str, body: dict) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    signature = hmac.new(settings_secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Notifier-Signature": f"sha256={signature}",
                 "Content-Type": "application/json"}  # fmt: skip


@pytest.fixture
def webhook_app(settings, queue):
    from notifier.web import create_app

    return create_app(settings.with_overrides(webhook_secret="s3cret"), queue=queue)


def test_webhook_with_a_bad_signature_is_refused_and_sends_nothing(webhook_app, queue, session):
    client = webhook_app.test_client()
    raw, headers = signed("wrong", POST)
    assert client.post("/api/v1/articles", data=raw, headers=headers).status_code == 401
    assert client.post("/api/v1/articles", json=POST).status_code == 401
    assert queue.articles == [] and session.scalars(select(Article)).all() == []


def test_webhook_announces_once_and_the_feed_later_sends_nothing_again(webhook_app, queue, session):
    client = webhook_app.test_client()
    raw, headers = signed("s3cret", POST)
    first = client.post("/api/v1/articles", data=raw, headers=headers)
    assert first.status_code == 202 and queue.articles == [first.json["id"]]
    again = client.post("/api/v1/articles", data=raw, headers=headers)
    assert again.status_code == 200 and len(queue.articles) == 1
    [article] = session.scalars(select(Article)).all()
    assert sorted(c.slug for c in article.categories) == ["defense", "news"]

    feed = sync_feeds(session, ["https://aze.media/feed/"], utcnow())[0]
    feed.last_success_at = utcnow()
    item = ParsedArticle(POST["guid"], POST["url"], POST["title"], "Both sides.", None,
                         utcnow(), (CategoryRef("Defense"),))  # fmt: skip
    assert store_articles(session, feed, [item], utcnow(), 600) == [], "never announced twice"


def test_an_article_announced_while_the_broker_is_down_is_kept(webhook_app, queue, session):
    queue.broker_down = True
    raw, headers = signed("s3cret", POST)
    answer = webhook_app.test_client().post("/api/v1/articles", data=raw, headers=headers)
    assert answer.status_code == 202 and answer.json["status"] == "announced"
    [kept] = session.scalars(select(UnsentTask)).all()
    assert (kept.task_name, kept.arguments) == ("notifier.tasks.fan_out_article",
                                                f"[{answer.json['id']}]")  # fmt: skip
    assert kept.handed_over_at is None


def test_webhook_accepts_an_api_token_and_refuses_bad_fields(client, api_token, queue):
    answer = client.post("/api/v1/articles", json=POST, headers=bearer(api_token))
    assert answer.status_code == 202
    bad = client.post("/api/v1/articles", json={**POST, "guid": ""}, headers=bearer(api_token))
    assert bad.status_code == 400 and "guid" in bad.json["error"]
    late = {**POST, "guid": "x", "published_at": "yesterday"}
    assert client.post("/api/v1/articles", json=late, headers=bearer(api_token)).status_code == 400
