"""The naive way, for bench/fanout.py to compare against: one Celery task per reader.

Each task loads its reader and the article from the database (the ORM models), renders the
message with the project's own templates (MessageRenderer, RenderedEmail.to_mime, PushMessage)
and sends it on its own: a new SMTP connection per email (smtplib), one `pywebpush.webpush()`
call per push (a new HTTP connection and a freshly signed VAPID JWT each time). Nothing is
recorded in the database, which only flatters it. Run by bench/fanout.py as

    celery -A bench.naive worker -Q bench_naive --concurrency 2

with the same environment as `notifier worker` (DATABASE_URL, CELERY_BROKER_URL, SMTP_URL,
VAPID_*, ...).
"""

from __future__ import annotations

import os
import smtplib
from functools import cache
from urllib.parse import urlsplit

from celery import Celery

QUEUE = "bench_naive"

app = Celery("bench_naive", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/13"))
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@cache
def _settings():
    from notifier.config import load_settings

    return load_settings()


@cache
def _tools():
    """The project's own renderer and link builder (templates/, signed tokens)."""
    from notifier.delivery.rendering import MessageRenderer
    from notifier.tokens import Tokens
    from notifier.urls import PublicUrls

    settings = _settings()
    tokens = Tokens(settings.secret_key, settings.confirm_max_age_seconds)
    return MessageRenderer(settings.templates_dir), PublicUrls(settings.public_url, tokens)


def _load(session, model, recipient_id: int, article_id: int):
    """The reader and the article, and the article's categories the reader follows."""
    from notifier.models import Article

    recipient, article = session.get(model, recipient_id), session.get(Article, article_id)
    if recipient is None or article is None:
        raise RuntimeError(f"{model.__name__} {recipient_id} or article {article_id} missing")
    followed = {c.id for c in recipient.categories}
    matched = [c for c in article.categories if c.id in followed]
    if not matched:
        raise RuntimeError(f"{model.__name__} {recipient_id} follows none of the categories")
    return recipient, article, matched


@app.task(name="bench.naive.send_email")
def send_email(subscriber_id: int, article_id: int) -> None:
    from notifier.branding import Brand
    from notifier.db import session_scope
    from notifier.models import Subscriber

    settings = _settings()
    renderer, urls = _tools()
    with session_scope(settings.database_url) as session:
        subscriber, article, matched = _load(session, Subscriber, subscriber_id, article_id)
        unsubscribe_url = urls.unsubscribe(subscriber.id, [c.id for c in matched])
        context = {
            "site_name": settings.site_name,
            "site_url": settings.site_url,
            "brand": Brand.of(settings),
            "view_url": urls.email_view("article", article.id, [c.id for c in matched]),
            "web_version": False,
            "article": article,
            "matched_categories": [c.name for c in matched],
            "unsubscribe_url": unsubscribe_url,
            "manage_url": urls.manage(subscriber.id),
        }
        headers = {
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        rendered = renderer.render_email("article", subscriber.email, context, headers)
    url = urlsplit(settings.smtp_url)
    with smtplib.SMTP(url.hostname, url.port, timeout=30) as smtp:
        smtp.send_message(rendered.to_mime(settings.mail_from))


@app.task(name="bench.naive.send_push")
def send_push(push_subscription_id: int, article_id: int) -> None:
    from pywebpush import webpush

    from notifier.db import session_scope
    from notifier.messages import PushMessage
    from notifier.models import PushSubscription

    settings = _settings()
    renderer, urls = _tools()
    with session_scope(settings.database_url) as session:
        browser, article, _ = _load(session, PushSubscription, push_subscription_id, article_id)
        published = article.published_at or article.first_seen_at
        payload = renderer.render_push(
            "article",
            {
                "title": article.title,
                "body": article.summary,
                "icon": settings.site_icon_url,
                "image": article.image_url,
                "url": article.link,
                "tag": f"article-{article.id}",
                "manage_url": urls.push_manage(browser.id),
                "timestamp": int(published.timestamp() * 1000),
            },
        )
        message = PushMessage(
            endpoint=browser.endpoint, p256dh=browser.p256dh, auth=browser.auth,
            payload=payload, ttl=settings.push_ttl_seconds,
        )  # fmt: skip
    webpush(
        {"endpoint": message.endpoint, "keys": {"p256dh": message.p256dh, "auth": message.auth}},
        data=message.plaintext(),
        vapid_private_key=settings.vapid_private_key,
        vapid_claims={"sub": settings.vapid_subject},
        ttl=message.ttl,
        headers={"Urgency": message.urgency},
        timeout=10,
    )
