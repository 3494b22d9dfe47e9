"""Internationalised addresses (RFC 6531/6532): delivered for every kind of email, or refused
at subscription with a sentence; never accepted and then dropped."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime

import pytest
import requests

from notifier.channels.smtp import _Mail
from notifier.db import session_scope
from notifier.domain.api_tokens import issue_token
from notifier.domain.editors import create_editor
from notifier.domain.subscriptions import NO_UTF8_LOCAL_PART
from notifier.messages import RenderedEmail, wire_address
from notifier.timeutil import utcnow
from notifier.web import create_app
from tests.conftest import make_settings
from tests.support.processes import celery_processes, web_server
from tests.support.smtp import RecordingHandler, free_port

ZOE = "zoë@example.com"
CHINESE = "用户@例子.广告"


@pytest.mark.parametrize(
    ("address", "on_the_wire"),
    [
        ("reader@example.com", "reader@example.com"),
        ("zoe@例子.广告", "zoe@xn--fsqu00a.xn--4rr70v"),  # IDNA: any server takes it
        ("zoe@bakı.az", "zoe@xn--bak-lua.az"),
        (ZOE, ZOE),  # needs SMTPUTF8 whatever the domain, which then may stay as written
        (CHINESE, CHINESE),
    ],
)
def test_wire_address(address, on_the_wire):
    assert wire_address(address) == on_the_wire


@pytest.mark.parametrize("address", [ZOE, CHINESE, "zoe@例子.广告"])
def test_service_emails_to_international_addresses_can_be_built(address):
    """Confirmation and manage-link emails (the slow path) once crashed on these."""
    message = RenderedEmail(address, "Confirm", "text", "<p>html</p>").to_mime("A <n@a.test>")
    mail = _Mail.of(message)
    assert mail.rcpts == [wire_address(address)]
    assert mail.smtputf8 is not address.rpartition("@")[0].isascii()


def _link(message, prefix: str) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(rf"{re.escape(prefix)}\S+", text).group(0)


def _to(received) -> str:
    [rcpt] = received.rcpt_tos
    return rcpt


def test_every_kind_of_email_reaches_international_addresses(
    tmp_path, pg_database_url, redis_url, smtp
):
    """Against an SMTP server that offers SMTPUTF8 (aiosmtpd does): confirmation, manage
    link, article notification and breaking alert all arrive, through a real worker."""
    port = free_port()
    settings = make_settings(
        tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url, SMTP_URL=smtp.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}", WEBHOOK_SECRET="s3cret",
    )  # fmt: skip
    with session_scope(pg_database_url) as session:
        editor = create_editor(session, "editor@aze.media", "correct horse battery", "admin")
        session.flush()
        _, token = issue_token(session, "script", editor.id, utcnow())
        session.commit()
    mails = smtp.handler
    with web_server(create_app(settings), port) as base, celery_processes(settings, tmp_path,
                                                                          beat=False):  # fmt: skip
        http = requests.Session()
        for address in (ZOE, CHINESE):
            body = {"email": address, "categories": ["news"]}
            answer = http.post(f"{base}/api/v1/subscriptions", json=body)
            assert answer.status_code == 202, answer.text
        confirmations = mails.wait_for(2)
        assert sorted(_to(r) for r in confirmations) == sorted([ZOE, CHINESE])
        for received in confirmations:
            assert received.message["To"] == _to(received)
            confirmed = http.post(_link(received.message, f"{base}/confirm/"))
            assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text

        page = http.get(f"{base}/manage").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        http.post(f"{base}/manage", data={"email": ZOE, "csrf_token": csrf})
        [manage] = mails.wait_for(3)[2:]
        assert _to(manage) == ZOE and f"{base}/preferences/" in manage.message.as_string()

        post = {"guid": "https://aze.media/?p=9", "url": "https://aze.media/9/",
                "title": "Xəbər", "categories": ["News"],
                "published_at": datetime.now(UTC).isoformat()}  # fmt: skip
        raw = json.dumps(post).encode()
        signature = hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
        headers = {"X-Notifier-Signature": f"sha256={signature}",
                   "Content-Type": "application/json"}  # fmt: skip
        published = http.post(f"{base}/api/v1/articles", data=raw, headers=headers)
        assert published.status_code == 202, published.text
        notifications = mails.wait_for(5)[3:]
        assert sorted(_to(r) for r in notifications) == sorted([ZOE, CHINESE])
        assert {r.message["Subject"] for r in notifications} == {"Xəbər"}

        alert = {"title": "Zəlzələ", "body": "Now.", "categories": ["news"],
                 "channels": ["email"]}  # fmt: skip
        sent = http.post(f"{base}/api/v1/alerts", json=alert,
                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert sent.status_code == 202, sent.text
        alerts = mails.wait_for(7)[5:]
        assert sorted(_to(r) for r in alerts) == sorted([ZOE, CHINESE])
        assert {r.message["Subject"] for r in alerts} == {"Breaking: Zəlzələ"}


@pytest.fixture
def smtp_without_utf8():
    from aiosmtpd.controller import Controller

    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), decode_data=False,
                            enable_SMTPUTF8=False)  # fmt: skip
    controller.start()
    yield controller
    controller.stop()


@pytest.mark.parametrize("address", [ZOE, CHINESE])
def test_refused_at_subscription_when_the_server_lacks_smtputf8(
    tmp_path, pg_database_url, smtp_without_utf8, address
):
    from tests.web.conftest import RecordingQueue

    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url,
                             SMTP_URL=f"smtp://127.0.0.1:{smtp_without_utf8.port}")  # fmt: skip
    queue = RecordingQueue()
    client = create_app(settings, queue=queue).test_client()
    answer = client.post("/api/v1/subscriptions", json={"email": address, "categories": ["news"]})
    assert answer.status_code == 400
    assert answer.json == {"error": NO_UTF8_LOCAL_PART}
    assert queue.confirmations == []
    # An ASCII local part with an international domain goes out as IDNA: accepted.
    answer = client.post("/api/v1/subscriptions", json={"email": "zoe@例子.广告",
                                                        "categories": ["news"]})  # fmt: skip
    assert answer.status_code == 202, answer.json
    assert len(queue.confirmations) == 1
