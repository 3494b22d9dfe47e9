"""A corpus of hostile and malformed input at the API boundary (issue 13's table and more).

Each case must get a 4xx whose JSON error is a sentence, and leave nothing behind: no row
in any table the API writes, nothing handed to the workers. Runs on PostgreSQL, which is
the database that refuses what SQLite would swallow.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from notifier.db import session_factory
from notifier.domain.api_tokens import issue_token
from notifier.models import Alert, ApiToken, Article, Category, PushSubscription, Subscriber
from notifier.timeutil import utcnow
from notifier.tokens import Tokens
from notifier.web import create_app
from tests.conftest import make_settings
from tests.web.conftest import RecordingQueue

SECRET = "corpus-webhook-secret"
KEYS = {  # a real P-256 point and a 16-byte auth secret
    "p256dh": "BLMQ7f7UaF4NVWFyfwPQ6_uV4Kq6qXqi2C1nFFCyciCHoq6G21Mpu"
    "Jhnn_E2DOis2IAw4u38OCjdxev54yKhcHk",
    "auth": "tZdRp2ktDoSi0YHWjC3Rvg",
}
ENDPOINT = "https://fcm.googleapis.com/fcm/send/corpus"
BROWSER = {"subscription": {"endpoint": ENDPOINT, "keys": KEYS}, "categories": ["news"]}
ALERT = {"title": "Ceasefire signed", "url": "https://aze.media/x", "all": True,
         "channels": ["email", "push"]}  # fmt: skip
POST = {"guid": "https://aze.media/?p=1", "url": "https://aze.media/a/", "title": "Ceasefire",
        "categories": ["News"], "published_at": "2026-11-25T10:00:00+04:00"}  # fmt: skip
NESTED = "[" * 1024 + "]" * 1024  # 2 KB: past Python's recursion limit when parsed
LONG_URL = "https://aze.media/" + "a" * 2000
TABLES = (Subscriber, PushSubscription, Alert, Article, Category)


@dataclass
class Case:
    id: str
    method: str
    path: str
    body: bytes | dict | list | str | None = None
    headers: dict = field(default_factory=dict)
    auth: str | None = None  # "token", "signature" or None
    status: int = 400
    says: str = ""  # a phrase the error sentence must contain


def raw(text: str) -> bytes:
    """JSON written by hand: escapes like \\ud800 reach the server as sent."""
    return text.encode()


CASES = [
    # Deep nesting: a RecursionError in the JSON parser.
    Case("nested-subscriptions", "POST", "/api/v1/subscriptions", raw(NESTED), says="nests"),
    Case("nested-in-a-field", "POST", "/api/v1/subscriptions",
         raw('{"email": ' + NESTED + "}"), says="nests"),
    Case("nested-push", "POST", "/api/v1/push/subscriptions", raw(NESTED), says="nests"),
    Case("nested-lookup", "POST", "/api/v1/push/subscriptions/lookup", raw(NESTED),
         says="nests"),
    Case("nested-delete", "DELETE", "/api/v1/push/subscriptions", raw(NESTED), says="nests"),
    Case("nested-alert", "POST", "/api/v1/alerts", raw(NESTED), auth="token", says="nests"),
    Case("nested-webhook", "POST", "/api/v1/articles", raw(NESTED), auth="signature",
         says="nests"),
    # Lone surrogates: valid JSON, not Unicode; PostgreSQL cannot store them.
    Case("surrogate-endpoint", "POST", "/api/v1/push/subscriptions",
         raw('{"subscription": {"endpoint": "https://fcm.googleapis.com/\\ud800", "keys": '
             + json.dumps(KEYS) + '}, "categories": ["news"]}'), says="surrogate"),
    Case("surrogate-lookup", "POST", "/api/v1/push/subscriptions/lookup",
         raw('{"endpoint": "https://fcm.googleapis.com/\\udfff"}'), says="surrogate"),
    Case("surrogate-email", "POST", "/api/v1/subscriptions",
         raw('{"email": "a\\ud800@example.com", "categories": ["news"]}'), says="surrogate"),
    Case("surrogate-key", "POST", "/api/v1/subscriptions",
         raw('{"\\ud800": 1, "email": "a@example.com", "categories": ["news"]}'),
         says="surrogate"),
    Case("surrogate-alert-title", "POST", "/api/v1/alerts",
         raw('{"title": "Hi \\ud83d", "all": true, "channels": ["push"]}'), auth="token",
         says="surrogate"),
    Case("surrogate-category-name", "POST", "/api/v1/articles",
         raw(json.dumps({**POST, "categories": []})[:-1] + ', "x": [{"name": "\\udc00"}]}'),
         auth="signature", says="surrogate"),
    # Other text that is not what a column takes.
    Case("nul-in-email", "POST", "/api/v1/subscriptions",
         raw('{"email": "a\\u0000@example.com", "categories": ["news"]}'), says="NUL"),
    Case("not-utf8", "POST", "/api/v1/subscriptions", b'{"email": "\xff\xfe@example.com"}',
         says="JSON object"),
    Case("not-json", "POST", "/api/v1/subscriptions", raw("email=a@example.com"),
         says="JSON object"),
    Case("json-array", "POST", "/api/v1/push/subscriptions", [BROWSER], says="JSON object"),
    Case("script-tag-email", "POST", "/api/v1/subscriptions",
         {"email": "<script>alert(1)</script>@example.com", "categories": ["news"]},
         says="not valid"),
    Case("email-as-list", "POST", "/api/v1/subscriptions",
         {"email": ["a@example.com"], "categories": ["news"]}, says="email address"),
    Case("categories-as-string", "POST", "/api/v1/subscriptions",
         {"email": "a@example.com", "categories": "news"}, says="list of category slugs"),
    Case("too-many-categories", "POST", "/api/v1/subscriptions",
         {"email": "a@example.com", "categories": ["news"] * 201}, says="at most 200"),
    # Push subscriptions.
    Case("endpoint-too-long", "POST", "/api/v1/push/subscriptions",
         {**BROWSER, "subscription": {"endpoint": ENDPOINT + "/" + "a" * 2000, "keys": KEYS}},
         says="endpoint"),
    Case("endpoint-decimal-loopback", "POST", "/api/v1/push/subscriptions",
         {**BROWSER, "subscription": {"endpoint": "https://2130706433/push", "keys": KEYS}},
         says="not a known push service"),
    Case("endpoint-private-address", "POST", "/api/v1/push/subscriptions",
         {**BROWSER, "subscription": {"endpoint": "http://10.0.0.1/push", "keys": KEYS}},
         says="not a known push service"),
    Case("p256dh-off-curve", "POST", "/api/v1/push/subscriptions",
         {**BROWSER, "subscription": {"endpoint": ENDPOINT,
                                      "keys": {**KEYS, "p256dh": "B" + "A" * 86}}},
         says="P-256"),
    Case("previous-endpoint-number", "POST", "/api/v1/push/subscriptions",
         {**BROWSER, "previousEndpoint": 7}, says="previousEndpoint"),
    Case("user-agent-control-characters", "POST", "/api/v1/push/subscriptions", BROWSER,
         headers={"User-Agent": "Mozilla\x01"}, says="control characters"),
    # Alerts.
    Case("alert-title-list", "POST", "/api/v1/alerts", {**ALERT, "title": ["Hi"]},
         auth="token", says="headline"),
    Case("alert-channels-string", "POST", "/api/v1/alerts", {**ALERT, "channels": "push"},
         auth="token", says="Channels"),
    Case("alert-all-string", "POST", "/api/v1/alerts", {**ALERT, "all": "yes"},
         auth="token", says='"all"'),
    Case("alert-url-too-long", "POST", "/api/v1/alerts", {**ALERT, "url": LONG_URL},
         auth="token", says="2000"),
    Case("alert-image-too-long", "POST", "/api/v1/alerts", {**ALERT, "image_url": LONG_URL},
         auth="token", says="2000"),
    Case("alert-body-number", "POST", "/api/v1/alerts", {**ALERT, "body": 5}, auth="token",
         says="body must be text"),
    Case("alert-send-at-year-1", "POST", "/api/v1/alerts",
         {**ALERT, "send_at": "0001-01-01T00:00:00+04:00"}, auth="token", says="range"),
    Case("alert-send-at-year-9999", "POST", "/api/v1/alerts",
         {**ALERT, "send_at": "9999-12-31T23:59:59-05:00"}, auth="token", says="range"),
    Case("alert-idempotency-key-control", "POST", "/api/v1/alerts", ALERT, auth="token",
         headers={"Idempotency-Key": "a\x7fb"}, says="control characters"),
    Case("alert-script-in-url", "POST", "/api/v1/alerts",
         {**ALERT, "url": "javascript:alert(1)"}, auth="token", says="web address"),
    Case("alert-id-2147483648", "GET", "/api/v1/alerts/2147483648", auth="token", status=404,
         says="not found"),
    Case("alert-id-huge", "GET", "/api/v1/alerts/" + "9" * 40, auth="token", status=404,
         says="not found"),
    Case("wrong-purpose-token", "POST", "/api/v1/alerts", ALERT, auth="confirm-token",
         status=401, says="API token"),
    # The publish webhook.
    Case("webhook-guid-number", "POST", "/api/v1/articles", {**POST, "guid": 4242},
         auth="signature", says="guid must be text"),
    Case("webhook-title-list", "POST", "/api/v1/articles", {**POST, "title": ["x"]},
         auth="token", says="title must be text"),
    Case("webhook-title-too-long", "POST", "/api/v1/articles", {**POST, "title": "x" * 1001},
         auth="token", says="at most 1000"),
    Case("webhook-image-too-long", "POST", "/api/v1/articles", {**POST, "image": LONG_URL},
         auth="signature", says="2000"),
    Case("webhook-published-year-1", "POST", "/api/v1/articles",
         {**POST, "published_at": "0001-01-01T00:00:00+04:00"}, auth="signature",
         says="range"),
    Case("webhook-published-year-9999", "POST", "/api/v1/articles",
         {**POST, "published_at": "9999-12-31T23:59:59-05:00"}, auth="signature",
         says="range"),
    Case("webhook-published-number", "POST", "/api/v1/articles",
         {**POST, "published_at": 20261125}, auth="signature", says="ISO 8601"),
    Case("webhook-categories-string", "POST", "/api/v1/articles",
         {**POST, "categories": "News"}, auth="signature", says="list"),
    Case("webhook-3000-categories", "POST", "/api/v1/articles",
         {**POST, "categories": [f"Spam {n}" for n in range(3000)]}, auth="signature",
         says="at most 100"),
    Case("webhook-11-new-categories", "POST", "/api/v1/articles",
         {**POST, "categories": [f"Spam {n}" for n in range(11)]}, auth="signature",
         says="WEBHOOK_MAX_NEW_CATEGORIES"),
    Case("webhook-11-new-terms", "POST", "/api/v1/articles",
         {**POST, "categories": [{"id": 900 + n, "slug": f"s{n}", "name": f"S {n}"}
                                 for n in range(11)]}, auth="token",
         says="WEBHOOK_MAX_NEW_CATEGORIES"),
    Case("webhook-term-id-too-big", "POST", "/api/v1/articles",
         {**POST, "categories": [{"id": 2**31, "name": "News"}]}, auth="token",
         says="term id"),
    Case("webhook-signature-non-ascii", "POST", "/api/v1/articles", POST,
         headers={"X-Notifier-Signature": "sha256=ünïcödé"}, status=401, says="Sign the body"),
    Case("webhook-signature-wrong", "POST", "/api/v1/articles", POST,
         headers={"X-Notifier-Signature": "sha256=" + "0" * 64}, status=401,
         says="Sign the body"),
]  # fmt: skip


@pytest.fixture
def corpus(tmp_path, pg_database_url):
    settings = make_settings(
        tmp_path,
        DATABASE_URL=pg_database_url,
        PUSH_ALLOWED_ORIGINS="https://fcm.googleapis.com",
        WEBHOOK_SECRET=SECRET,
    )
    queue = RecordingQueue()
    app = create_app(settings, queue=queue)
    sessions = session_factory(pg_database_url)
    with sessions() as session:
        _, token = issue_token(session, "corpus", None, utcnow())
        session.commit()
    return app, queue, sessions, token, Tokens(settings.secret_key, 3600)


def _counts(sessions) -> dict[str, int]:
    with sessions() as session:
        return {t.__name__: session.scalar(select(func.count()).select_from(t)) for t in TABLES}


def _request(case: Case, token: str, tokens: Tokens) -> dict:
    if isinstance(case.body, bytes):
        body = case.body
    else:
        body = b"" if case.body is None else json.dumps(case.body).encode()
    headers = {"Content-Type": "application/json", **case.headers}
    if case.auth == "token":
        headers["Authorization"] = f"Bearer {token}"
    elif case.auth == "confirm-token":
        headers["Authorization"] = f"Bearer {tokens.confirm_token(1, 'a@example.com', [1])}"
    elif case.auth == "signature":
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Notifier-Signature"] = f"sha256={digest}"
    if case.body is None:
        del headers["Content-Type"]
    return {"method": case.method, "path": case.path, "data": body, "headers": headers}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_a_4xx_sentence_and_stores_nothing(corpus, case):
    app, queue, sessions, token, tokens = corpus
    before = _counts(sessions)
    answer = app.test_client().open(**_request(case, token, tokens))
    assert answer.status_code == case.status, answer.get_data(as_text=True)
    sentence = answer.json["error"]
    assert case.says.lower() in sentence.lower() and sentence.rstrip().endswith((".", ")"))
    assert _counts(sessions) == before, "nothing stored half-way"
    assert not (queue.confirmations or queue.alerts or queue.articles)


def test_the_corpus_cases_are_well_formed_when_the_bad_part_is_fixed(corpus):
    """The good requests the corpus spoils are accepted, so each case fails for its own
    reason (and a webhook may add exactly WEBHOOK_MAX_NEW_CATEGORIES new categories)."""
    app, _, sessions, token, tokens = corpus
    client = app.test_client()
    good = [
        Case("subscribe", "POST", "/api/v1/subscriptions",
             {"email": "a@example.com", "categories": ["news"]}),
        Case("push", "POST", "/api/v1/push/subscriptions", BROWSER),
        Case("alert", "POST", "/api/v1/alerts", ALERT, auth="token"),
        Case("webhook", "POST", "/api/v1/articles",
             {**POST, "categories": [f"New {n}" for n in range(10)]}, auth="signature"),
    ]  # fmt: skip
    before = _counts(sessions)
    for case in good:
        answer = client.open(**_request(case, token, tokens))
        assert answer.status_code in (201, 202), (case.id, answer.json)
    after = _counts(sessions)
    assert after["Category"] == before["Category"] + 10
    assert {k: after[k] - before[k] for k in ("Subscriber", "PushSubscription", "Alert")} == {
        "Subscriber": 1, "PushSubscription": 1, "Alert": 1}  # fmt: skip
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ApiToken)) == 1
