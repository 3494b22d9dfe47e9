"""Structured logs: one JSON object per line, ids as fields, never an address or endpoint."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
import requests

from notifier.celery_app import make_celery
from notifier.config import ConfigError
from notifier.db import session_scope
from notifier.logs import JsonFormatter, RedactingFilter, TaskContextFilter, TextFormatter, redact
from notifier.models import SubscriberStatus
from tests import factories
from tests.conftest import make_settings
from tests.support.processes import Process, celery_processes, settings_env, wait_until
from tests.support.smtp import free_port

READER = "reader.name+news@example.com"
FCM = "https://fcm.googleapis.com/fcm/send/dQw4w9WgXcQ:APA91bH-secret-token"


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    """A private logger with our handler set-up, so the test never touches the root logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(TaskContextFilter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"tests.logs.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, stream


def _wait_for(process: Process, needle: str) -> None:
    wait_until(lambda: needle in process.output(), timeout=30,
               message=f"{needle!r} not logged:\n{process.output()[-3000:]}")  # fmt: skip


def _json_lines(text: str) -> list[dict]:
    """Every line must be one JSON object: that is what log shippers need."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"bounce from {READER}: 550", "bounce from <email>: 550"),
        (f"SMTP 550 5.1.1 <{READER}> No such user", "SMTP 550 5.1.1 <<email>> No such user"),
        ("to=ANA%40mail.az", "to=<email>"),
        (f"POST {FCM} failed", "POST https://fcm.googleapis.com/<redacted> failed"),
        ("https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk",
         "https://updates.push.services.mozilla.com/<redacted>"),
        ("https://db5p.notify.windows.com/w/?token=BQYAAAB", "https://db5p.notify.windows.com/<redacted>"),
        ("https://web.push.apple.com/QGuQyavXutnMei", "https://web.push.apple.com/<redacted>"),
        ("HTTPSConnectionPool(host='fcm.googleapis.com', port=443): Max retries exceeded with "
         "url: /fcm/send/abc (Caused by Timeout)",
         "HTTPSConnectionPool(host='fcm.googleapis.com', port=443): Max retries exceeded with "
         "url: /<redacted> (Caused by Timeout)"),
        ("HTTPSConnectionPool(host='web.push.apple.com', port=443): Max retries exceeded with "
         "url: /QGuQyavXutnMei (Caused by Timeout)",
         "HTTPSConnectionPool(host='web.push.apple.com', port=443): Max retries exceeded with "
         "url: /<redacted> (Caused by Timeout)"),
        ("HTTPConnectionPool(host='aze.media', port=80): Max retries exceeded with url: /feed/",
         "HTTPConnectionPool(host='aze.media', port=80): Max retries exceeded with url: /feed/"),
        ("feed https://aze.media/feed/: HTTP 500", "feed https://aze.media/feed/: HTTP 500"),
        ("worker e2e@buildhost ready.", "worker e2e@buildhost ready."),
        ("delivery 7 sent", "delivery 7 sent"),
    ],
)  # fmt: skip
def test_redact(text, expected):
    assert redact(text) == expected


def test_an_address_in_a_message_or_its_arguments_comes_out_masked():
    log, stream = _logger(JsonFormatter())
    log.warning("not sent to %s: %s", READER, f"SMTP 550 <{READER}>", extra={"subscriber_id": 7})
    log.info(f"push to {FCM} gone", extra={"push_subscription_id": 9, "channel": "push"})
    first, second = _json_lines(stream.getvalue())
    assert first["message"] == "not sent to <email>: SMTP 550 <<email>>"
    assert first["subscriber_id"] == 7
    assert second["message"] == "push to https://fcm.googleapis.com/<redacted> gone"
    assert second["push_subscription_id"] == 9 and second["channel"] == "push"
    assert READER not in stream.getvalue() and "secret-token" not in stream.getvalue()


def test_a_broken_format_string_is_still_logged_masked():
    log, stream = _logger(JsonFormatter())
    log.warning("to %s and %s", READER)
    [line] = _json_lines(stream.getvalue())
    assert line["message"] == "to %s and %s ('<email>',)"


def test_json_lines_parse_with_the_documented_fields():
    log, stream = _logger(JsonFormatter())
    log.info("plain")
    extra = {
        "article_id": 1,
        "alert_id": 2,
        "delivery_id": 3,
        "channel": "email",
        "subscriber_id": 4,
        "push_subscription_id": 5,
        "task_id": "t-1",
        "task_name": "x",
    }
    log.error("with ids", extra={**extra, "data": {"args": [READER]}})
    try:
        raise ValueError(f"cannot mail {READER}\nsecond line")
    except ValueError:
        log.exception("failed")  # fmt: skip
    plain, with_ids, failed = _json_lines(stream.getvalue())
    assert set(plain) == {"time", "level", "logger", "message", "process"}
    assert plain["level"] == "INFO" and plain["message"] == "plain"
    assert plain["time"].endswith("Z") and plain["process"] > 0
    assert {k: with_ids[k] for k in extra} == extra
    assert "data" not in with_ids  # Celery's task arguments are never written
    assert failed["level"] == "ERROR"
    assert "ValueError: cannot mail <email>" in failed["exception"]
    assert READER not in stream.getvalue()


def test_text_format_masks_too_and_shows_ids():
    log, stream = _logger(TextFormatter())
    log.warning("bounce from %s", READER, extra={"delivery_id": 12, "channel": "email"})
    line = stream.getvalue().strip()
    assert line.endswith("bounce from <email> [delivery_id=12 channel=email]")
    assert "WARNING" in line


def test_log_settings(tmp_path):
    assert make_settings(tmp_path).log_format == "json"
    assert make_settings(tmp_path, NOTIFIER_DEV="1").log_format == "text"
    assert make_settings(tmp_path, LOG_FORMAT="TEXT", LOG_LEVEL="debug").log_level == "DEBUG"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        make_settings(tmp_path, LOG_FORMAT="xml")
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        make_settings(tmp_path, LOG_LEVEL="loud")


def test_a_real_worker_writes_json_lines_with_task_ids_and_no_addresses(
    tmp_path, pg_database_url, redis_url, smtp
):
    # A temporary refusal naming the reader: Celery itself logs the retry with that text.
    smtp.handler.refuse[READER] = f"451 4.2.2 <{READER}> Mailbox full, try later"
    settings = make_settings(
        tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url, SMTP_URL=smtp.url
    )
    with session_scope(pg_database_url) as session:
        reader = factories.subscriber(session, READER, "news", status=SubscriberStatus.PENDING)
        news = factories.categories(session, "news")[0]
        article = factories.article(session, "news")
        session.commit()
        reader_id, news_id, article_id = reader.id, news.id, article.id
    fan_out_id, confirm_id = str(uuid.uuid4()), str(uuid.uuid4())
    app = make_celery(settings)
    with celery_processes(settings, tmp_path, beat=False) as [worker]:
        app.send_task("notifier.tasks.fan_out_article", (article_id,), task_id=fan_out_id)
        _wait_for(worker, f"{fan_out_id}] succeeded")
        app.send_task("notifier.tasks.send_confirmation", (reader_id, [news_id]),
                      task_id=confirm_id)  # fmt: skip
        _wait_for(worker, f"{confirm_id}] retry")
        # Read while the worker runs: on SIGTERM Celery prints its one-line shutdown notice
        # straight to stdout, past logging. Only whole lines count.
        lines = _json_lines(worker.output().rpartition("\n")[0])
    app.close()
    assert all({"time", "level", "logger", "message", "process"} <= set(line) for line in lines)
    assert any(line["message"].endswith(" ready.") for line in lines)
    [planned] = [line for line in lines if line["logger"] == "notifier.tasks"
                 and line.get("task_id") == fan_out_id]  # fmt: skip
    assert planned["task_name"] == "notifier.tasks.fan_out_article"
    assert planned["article_id"] == article_id
    assert planned["message"].startswith(f"article {article_id}: ")
    received = [line for line in lines if line["message"].endswith(f"[{fan_out_id}] received")]
    assert received and received[0]["task_id"] == fan_out_id
    retry = next(line for line in lines if f"[{confirm_id}] retry" in line["message"])
    assert retry["task_id"] == confirm_id and "<email>" in retry["message"]
    assert READER not in worker.output()


def test_web_server_access_and_error_logs_are_json(tmp_path, pg_database_url, redis_url):
    port = free_port()
    settings = make_settings(tmp_path, DATABASE_URL=pg_database_url, CELERY_BROKER_URL=redis_url)
    web = Process("web", ["web", "--port", str(port), "--workers", "1"], settings_env(settings),
                  tmp_path)  # fmt: skip
    try:

        def answered() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
            except (requests.ConnectionError, requests.Timeout):  # up, but not answering yet
                return False

        wait_until(answered, timeout=30, message=f"web never answered:\n{web.output()}")
        wait_until(lambda: "/healthz" in web.output(), timeout=10, message=web.output())
    finally:
        web.stop()
    lines = _json_lines(web.output())
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "gunicorn.access"} <= loggers
    access = next(line for line in lines if line["logger"] == "gunicorn.access")
    assert '"GET /healthz HTTP/1.1" 200' in access["message"]


@pytest.mark.parametrize(
    "line",
    [
        '127.0.0.1 "POST /unsubscribe/eyJzIjoxLCJjIjpbMV19.abc-XYZ_1 HTTP/1.1" 200',
        '127.0.0.1 "GET /confirm/eyJzIjoxfQ.Zz9.Qq HTTP/1.1" 200',
        '127.0.0.1 "GET /preferences/eyJzIjoxfQ.sig HTTP/1.1" 200',
        '127.0.0.1 "GET /push/manage/eyJwIjo1fQ.sig HTTP/1.1" 200',
        '3.208.0.1 "POST /webhooks/bounces/postmark/eyJpm-webhook-token HTTP/1.1" 200',
    ],
)
def test_signed_link_tokens_never_reach_the_logs(line):
    masked = redact(line)
    assert "<token>" in masked and "eyJ" not in masked
