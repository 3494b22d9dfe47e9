"""Who gets which words: build the rendered email for a delivery, a confirmation, a link."""

from __future__ import annotations

import hashlib
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.messages import MessageRenderer, PushMessage, RenderedEmail
from notifier.models import (
    Alert,
    AlertStatus,
    Article,
    Category,
    Delivery,
    PushStatus,
    PushSubscription,
    Subscriber,
    SubscriberStatus,
)
from notifier.tokens import Tokens
from notifier.urls import PublicUrls
from notifier.vapid import b64url


class Composer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.renderer = MessageRenderer(settings.templates_dir)
        tokens = Tokens(settings.secret_key, settings.confirm_max_age_seconds)
        self.urls = PublicUrls(settings.public_url, tokens)

    def _site(self) -> dict[str, str]:
        return {"site_name": self.settings.site_name, "site_url": self.settings.site_url}

    def email_for(self, session: Session, delivery: Delivery) -> RenderedEmail | str:
        """The notification for one delivery, or the reason it must not go out any more."""
        subscriber = session.get(Subscriber, delivery.subscriber_id)
        found = _still_wanted(session, delivery, subscriber, SubscriberStatus.ACTIVE)
        if isinstance(found, str):
            return found
        notice, matched = found
        unsubscribe_url = self.urls.unsubscribe(subscriber.id, [c.id for c in matched])
        kind = "alert" if delivery.alert_id is not None else "article"
        context = {
            **self._site(),
            kind: notice,
            "matched_categories": [c.name for c in matched],
            "unsubscribe_url": unsubscribe_url,
            "manage_url": self.urls.manage(subscriber.id),
        }
        headers = {
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": f"{self.settings.site_name} <news.{_host(self.settings.public_url)}>",
        }
        return self.renderer.render_email(kind, subscriber.email, context, headers)

    def push_for(self, session: Session, delivery: Delivery) -> PushMessage | str:
        """The push for one delivery, or the reason it must not go out any more."""
        subscription = session.get(PushSubscription, delivery.push_subscription_id)
        found = _still_wanted(session, delivery, subscription, PushStatus.ACTIVE)
        if isinstance(found, str):
            return found
        notice, _ = found
        if isinstance(notice, Alert):
            return self.alert_push(notice, subscription)
        payload = self.renderer.render_push(
            "article",
            {
                "title": notice.title,
                "body": notice.summary,
                "icon": self.settings.site_icon_url,
                "image": notice.image_url,
                "url": notice.link,
                "tag": f"article-{notice.id}",
                "manage_url": self.urls.push_manage(subscription.id),
                "timestamp": _millis(notice.published_at or notice.first_seen_at),
            },
        )
        return PushMessage(
            endpoint=subscription.endpoint,
            p256dh=subscription.p256dh,
            auth=subscription.auth,
            payload=payload,
            ttl=self.settings.push_ttl_seconds,
            urgency="normal",
            topic=article_topic(notice.guid),
        )

    def alert_push(self, alert: Alert, subscription: PushSubscription | None) -> PushMessage:
        """Breaking news: Urgency high and a short TTL (stale breaking news is no news)."""
        payload = self.renderer.render_push(
            "alert",
            {
                "title": alert.title,
                "body": alert.body,
                "icon": self.settings.site_icon_url,
                "image": alert.image_url,
                "url": alert.url,
                "tag": f"alert-{alert.id}",
                "manage_url": self.urls.push_manage(subscription.id) if subscription else None,
                "timestamp": _millis(alert.started_at or alert.created_at),
            },
        )
        return PushMessage(
            endpoint=subscription.endpoint if subscription else "",
            p256dh=subscription.p256dh if subscription else "",
            auth=subscription.auth if subscription else "",
            payload=payload,
            ttl=self.settings.push_alert_ttl_seconds,
            urgency="high",
            topic=article_topic(f"alert:{alert.id}"),
        )

    def alert_preview(self, alert: Alert, to: str, category_names: list[str]) -> RenderedEmail:
        """The alert email as a reader will see it (links are the preview's own)."""
        context = {
            **self._site(),
            "alert": alert,
            "matched_categories": category_names or ["all news"],
            "unsubscribe_url": f"{self.urls.base}/unsubscribe/PREVIEW",
            "manage_url": f"{self.urls.base}/preferences/PREVIEW",
        }
        return self.renderer.render_email("alert", to, context)

    def confirmation_email(
        self, session: Session, subscriber_id: int, category_ids: list[int]
    ) -> RenderedEmail | None:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return None
        categories = session.scalars(select(Category.name).where(Category.id.in_(category_ids)))
        context = {
            **self._site(),
            "categories": sorted(categories),
            "confirm_url": self.urls.confirm(subscriber.id, subscriber.email, category_ids),
            "valid_days": max(1, self.settings.confirm_max_age_seconds // 86400),
        }
        return self.renderer.render_email("confirm", subscriber.email, context)

    def manage_link_email(self, session: Session, subscriber_id: int) -> RenderedEmail | None:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            return None
        context = {**self._site(), "manage_url": self.urls.manage(subscriber.id)}
        return self.renderer.render_email("manage_link", subscriber.email, context)


def _still_wanted(
    session: Session, delivery: Delivery, recipient, active
) -> tuple[Article | Alert, list[Category]] | str:
    """The notice and the recipient's categories it matches, checked at send time; or why
    it must not go out any more (the reader left or changed categories since planning, or
    an editor stopped the alert)."""
    if delivery.alert_id is not None:
        notice = session.get(Alert, delivery.alert_id)
        if notice is not None and notice.status != AlertStatus.SENDING:
            return f"alert is {notice.status.value}"
    else:
        notice = session.get(Article, delivery.article_id)
    if recipient is None or notice is None:
        return "recipient or article deleted"
    if recipient.status != active:
        return f"{delivery.channel} recipient is {recipient.status.value}"
    wanted = {c.id for c in recipient.categories}
    targeted = recipient.categories if getattr(notice, "target_all", False) else notice.categories
    matched = sorted((c for c in targeted if c.id in wanted), key=lambda c: c.name)
    if not matched:
        return "recipient no longer follows any of the article's categories"
    return notice, matched


def article_topic(guid: str) -> str:
    """RFC 8030 Topic (at most 32 base64url characters): one per article, so a newer push
    about the same article replaces an undelivered older one."""
    return b64url(hashlib.sha256(guid.encode()).digest()[:24])


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _host(url: str) -> str:
    return urlsplit(url).hostname or "localhost"
