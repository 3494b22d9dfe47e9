"""No title can add a header or end the header block: raw CR/LF, RFC 2047 encoded-words that
encode CR/LF, NEL, U+2028 and friends. Both ways an email is built (one message, and the
per-reader layout of a fan-out) are parsed back, and a real worker's email is parsed as the
SMTP server received it."""

from __future__ import annotations

import email.policy
from email.parser import BytesParser

import pytest

from notifier.delivery.email_layout import EmailLayout
from notifier.email_headers import header_value
from notifier.messages import RenderedEmail
from notifier.text import single_line

MAIL_FROM = "Aze.Media <news@aze.test>"
PARSER = BytesParser(policy=email.policy.default)
HOSTILE = [
    "=?utf-8?q?Hi=0D=0ABcc:_x@example.net=0D=0AX-Injected:_yes?=",
    "=?utf-8?q?Hi=0D=0A=0D=0AList-Unsubscribe:_<https://evil.example/>?=",
    "=?utf-8?b?SGkNCkJjYzogeEBleGFtcGxlLm5ldA==?=",
    "Hi\r\nBcc: x@example.net",
    "Hi\r\n\r\nbody starts here",
    "Hi\nX-Injected: yes",
    "Hi\x85X-Injected: yes",
    "Hi\u2028X-Injected: yes\u2029X-Too: yes",
    "Hi\x0bX-Injected: yes\x0cX-Too: yes",
    "Qarabağ =?utf-8?q?=0D=0ABcc:_x@example.net?= Новости",
    "=?" * 600,
]
HEADERS = {"List-Unsubscribe": "<https://notify.aze.test/unsubscribe/T>",
           "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}  # fmt: skip
EXPECTED = {"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
            "List-Unsubscribe", "List-Unsubscribe-Post", "X-Title"}  # fmt: skip


def _check(data: bytes, title: str) -> None:
    message = PARSER.parsebytes(data)
    assert set(message.keys()) == EXPECTED, "exactly the headers we wrote"
    assert len(message.keys()) == len(EXPECTED), "each once"
    assert message["Subject"] == single_line(title), "the reader sees the title, as text"
    assert message["X-Title"] == single_line(title)
    assert message["List-Unsubscribe"] == HEADERS["List-Unsubscribe"]
    assert message.get_body(("plain",)).get_content().strip() == "Body"
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        assert len(line) <= 998 and line.isascii()


@pytest.mark.parametrize("title", HOSTILE)
def test_one_message_carries_exactly_our_headers(title):
    rendered = RenderedEmail("r@example.com", title, "Body\n", "<p>Body</p>",
                             {**HEADERS, "X-Title": title})  # fmt: skip
    _check(rendered.to_mime(MAIL_FROM).as_bytes(), title)


@pytest.mark.parametrize("title", HOSTILE)
def test_each_fan_out_envelope_carries_exactly_our_headers(title):
    rendered = RenderedEmail("any@example.com", title, "Body\n", "<p>Body</p>",
                             {**HEADERS, "X-Title": title})  # fmt: skip
    layout = EmailLayout.prepare(rendered, MAIL_FROM, [])
    _check(layout.envelope("r@example.com", []).data, title)


@pytest.mark.parametrize("value", ["plain words", "with =? inside", "Qarabağ", "x" * 2000])
def test_header_values_round_trip_as_text(value):
    line = f"Subject: {header_value('Subject', value)}\r\n\r\n".encode()
    assert PARSER.parsebytes(line)["Subject"] == value


def test_a_hostile_title_through_the_webhook_and_a_real_worker(
    tmp_path, pg_database_url, redis_url, smtp
):
    """As the SMTP server received it: exactly our headers, the title as text."""
    import hashlib
    import hmac
    import json

    import requests

    from notifier.db import session_scope
    from notifier.web import create_app
    from tests import factories
    from tests.conftest import make_settings
    from tests.support.processes import celery_processes, web_server
    from tests.support.smtp import free_port

    port = free_port()
    settings = make_settings(
        tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url, SMTP_URL=smtp.url,
        PUBLIC_URL=f"http://127.0.0.1:{port}", WEBHOOK_SECRET="s3cret",
    )  # fmt: skip
    with session_scope(pg_database_url) as session:
        factories.subscriber(session, "reader@example.com", "news")
        session.commit()
    title = HOSTILE[0]
    post = json.dumps({"guid": "https://aze.media/?p=9", "url": "https://aze.media/9/",
                       "title": title, "categories": ["News"]}).encode()  # fmt: skip
    signature = hmac.new(b"s3cret", post, hashlib.sha256).hexdigest()
    with (
        web_server(create_app(settings), port) as base,
        celery_processes(settings, tmp_path, beat=False),
    ):
        headers = {"X-Notifier-Signature": f"sha256={signature}",
                   "Content-Type": "application/json"}  # fmt: skip
        answer = requests.post(f"{base}/api/v1/articles", data=post, timeout=10, headers=headers)
        assert answer.status_code == 202, answer.text
        [received] = smtp.handler.wait_for(1)
    message = PARSER.parsebytes(received.data)
    assert received.rcpt_tos == ["reader@example.com"]
    assert message["Subject"] == title
    assert message.get_all("Bcc") is None and message.get_all("X-Injected") is None
    assert {"List-Unsubscribe", "List-Unsubscribe-Post"} <= set(message.keys())
    assert message.is_multipart(), "the MIME headers stayed in the header block"


@pytest.mark.parametrize("code", [c for c in range(128) if not chr(c).isspace()])
def test_exactly_printable_ascii_goes_as_plain_text(code):
    """Space to "~" stays as it is; every other ASCII character (controls, DEL) makes the
    value encoded-words, and "=?" does too."""
    value = f"a{chr(code)}b"
    assert (header_value("X-Test", value) == value) is (0x20 <= code <= 0x7E)
    assert header_value("X-Test", f"a=?{chr(code)}b") != f"a=?{chr(code)}b"
