"""Who gets which words: build the rendered email for a delivery, a confirmation, a link."""

from __future__ import annotations

import dataclasses
import email.generator
import email.policy
import email.utils
import hashlib
import io
import json
from collections import OrderedDict
from datetime import datetime
from email.message import EmailMessage
from urllib.parse import urlsplit

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from notifier.branding import Brand
from notifier.config import Settings
from notifier.delivery.addressing import Addressee
from notifier.delivery.digest_content import DigestNotice, digest_context
from notifier.delivery.rendering import MessageRenderer
from notifier.messages import EmailEnvelope, PushMessage, RenderedEmail, push_json
from notifier.models import (
    Alert,
    Article,
    Category,
    Subscriber,
)
from notifier.timeutil import utcnow
from notifier.tokens import BounceAddresses, EmailView, Tokens
from notifier.urls import PublicUrls
from notifier.vapid import b64url

# Per-reader values in a message rendered once: alphanumeric, so HTML escaping and CSS
# inlining leave them alone, and unlikely in any article.
UNSUBSCRIBE_SLOT = "NOTIFIERSLOT0UNSUBSCRIBEURL"
MANAGE_SLOT = "NOTIFIERSLOT1MANAGEURL"
# A digest's own per-reader links: its web version and the two one-click cadence switches.
DIGEST_SLOTS = ("NOTIFIERSLOT2DIGESTVIEWURL", "NOTIFIERSLOT3INSTANTURL", "NOTIFIERSLOT4OTHERURL")
LAYOUT_CACHE_SIZE = 64


class Composer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.renderer = MessageRenderer(settings.templates_dir)
        tokens = Tokens(
            settings.secret_key, settings.confirm_max_age_seconds, settings.secret_key_fallbacks
        )
        self.urls = PublicUrls(settings.public_url, tokens)
        self.domain = email.utils.parseaddr(settings.mail_from)[1].rpartition("@")[2]
        self.brand = Brand.of(settings)
        self.bounces: BounceAddresses | None = None
        if settings.bounce_domain:
            self.bounces = BounceAddresses(
                settings.bounce_domain, settings.secret_key, settings.secret_key_fallbacks
            )
        self._layouts: OrderedDict[tuple, object] = OrderedDict()
        # Digests are many notices with few distinct contents (one per set of articles):
        # their own, larger cache, so one morning's hundreds of variants stay rendered.
        self._digest_layouts: OrderedDict[tuple, object] = OrderedDict()
        self._push_payloads: OrderedDict[tuple, _PushTemplate] = OrderedDict()
        # The last notice's layouts by matched categories, and its push template: a chunk is
        # one notice, so most messages skip the content key and the cache lookup (a few µs
        # each). Kept with the notice object itself, which keeps it alive (no reused id),
        # and swapped whole, so a thread never mixes two notices.
        self._last_layouts: tuple[object, dict] = (None, {})
        self._last_push: tuple[object, _PushTemplate | None] = (None, None)

    def _site(self, view_url: str | None = None, web_version: bool = False) -> dict:
        """What every email template reads: the site and its brand, the link to the email's
        web version (notifications only) and whether this is that web version."""
        return {
            "site_name": self.settings.site_name, "site_url": self.settings.site_url,
            "brand": self.brand, "view_url": view_url, "web_version": web_version,
        }  # fmt: skip

    def email(self, addressee: Addressee) -> RenderedEmail:
        """The whole email rendered for one reader (previews, tests, unusual addresses)."""
        subscriber = addressee.recipient
        return self._render_email(addressee, subscriber.email, *self._email_links(addressee))

    def email_envelope(self, addressee: Addressee) -> EmailEnvelope:
        """The email for one reader, from the notice's layout rendered once: only the links,
        the To header and the Message-ID differ between readers. The Message-ID is fixed
        per delivery, so a copy sent twice after a crash is recognisably the same message.
        With BOUNCE_DOMAIN the envelope sender names the delivery (VERP), so a message
        returned later is tied to it."""
        layout = self._layout(addressee)
        subscriber = addressee.recipient
        notice_part = f"{addressee.kind}{addressee.notice.id}"
        message_id = f"<{notice_part}.d{addressee.delivery_id}@{self.domain or 'localhost'}>"
        try:
            envelope = layout.envelope(subscriber.email, self._email_links(addressee), message_id)
        except ValueError:  # an address the fast layout cannot carry: the full way
            message = self.email(addressee).to_mime(self.settings.mail_from)
            message.replace_header("Message-ID", message_id)
            envelope = _as_envelope(message)
        if self.bounces is None:
            return envelope
        return dataclasses.replace(envelope, mail_from=self.bounces.address(addressee.delivery_id))

    def _email_links(self, addressee: Addressee) -> tuple[str, ...]:
        """The reader's own links, in the order of the layout's slots."""
        subscriber_id = addressee.recipient.id
        category_ids = [c.id for c in addressee.matched]
        links = self.urls.unsubscribe(subscriber_id, category_ids), self.urls.manage(subscriber_id)
        if isinstance(addressee.notice, DigestNotice):
            return links + self._digest_links(subscriber_id, addressee.notice)
        return links

    def _digest_links(self, subscriber_id: int, digest: DigestNotice) -> tuple[str, str, str]:
        """View in browser, switch to instant, switch to the other digest (daily <-> weekly)."""
        issued = utcnow()
        other = "weekly" if digest.cadence == "daily" else "daily"
        return (
            self.urls.digest_view(digest.id, issued),
            self.urls.cadence_switch(subscriber_id, digest.id, "instant", issued),
            self.urls.cadence_switch(subscriber_id, digest.id, other, issued),
        )

    def _render_email(
        self, addressee: Addressee, to: str, unsubscribe_url: str, manage_url: str,
        *digest_links: str,
    ) -> RenderedEmail:  # fmt: skip
        kind, notice = addressee.kind, addressee.notice
        if isinstance(notice, DigestNotice):
            view_url, instant_url, other_url = digest_links
            context = {**self._site(view_url), **digest_context(notice, self.settings)}
            context |= {"switch_instant_url": instant_url, "switch_other_url": other_url}
            campaign = f"digest-{notice.cadence}"  # one per cadence, not per reader
        else:
            view_url = self.urls.email_view(kind, notice.id, [c.id for c in addressee.matched])
            context = {**self._site(view_url), kind: notice}
            campaign = f"{kind}{notice.id}"
        context |= {
            "matched_categories": [c.name for c in addressee.matched],
            "unsubscribe_url": unsubscribe_url,
            "manage_url": manage_url,
        }
        host, notice_tag = _host(self.settings.public_url), campaign
        headers = {
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": f"{self.settings.site_name} <news.{host}>",
            # Gmail's feedback loop counts complaints per value: one campaign per notice.
            "Feedback-ID": f"{notice_tag}:{kind}:{host}:notifier",
        }
        return self.renderer.render_email(addressee.kind, to, context, headers)

    def _layout(self, addressee: Addressee):
        """Rendered once per notice, its content and the set of categories readers matched.
        A notice object is not edited while its messages are composed (each chunk loads its
        own), so the last one's layouts are reused without looking at its content."""
        notice = addressee.notice
        last, layouts = self._last_layouts
        if last is notice:
            layout = layouts.get(addressee.matched)
            if layout is not None:
                return layout
        else:
            layouts = {}
            self._last_layouts = (notice, layouts)
        layout = self._cached_layout(addressee)
        layouts[addressee.matched] = layout
        return layout

    def _cached_layout(self, addressee: Addressee):
        from notifier.delivery.email_layout import EmailLayout

        notice = addressee.notice
        if isinstance(notice, DigestNotice):
            # Digests with the same articles share one rendering, whoever they are for.
            cache, size = self._digest_layouts, self.settings.digest_layout_cache
            notice_key: tuple = notice.content_key
        else:
            cache, size = self._layouts, LAYOUT_CACHE_SIZE
            notice_key = (notice.id, _content_key(notice))
        key = (addressee.kind, notice_key, tuple(c.id for c in addressee.matched))
        layout = _cached(cache, key)
        if layout is None:
            slots = [UNSUBSCRIBE_SLOT, MANAGE_SLOT]
            if isinstance(notice, DigestNotice):
                slots += DIGEST_SLOTS
            rendered = self._render_email(addressee, "reader@invalid", *slots)
            layout = EmailLayout.prepare(rendered, self.settings.mail_from, slots)
            _remember(cache, key, layout, size)
        return layout

    def push(self, addressee: Addressee) -> PushMessage:
        """The push for one browser: the payload is rendered once per notice; only the
        subscription's own manage link differs."""
        notice, subscription = addressee.notice, addressee.recipient
        if isinstance(notice, Alert):
            return self.alert_push(notice, subscription)
        if isinstance(notice, DigestNotice):
            raise TypeError("digests go by email only; no push delivery names one")
        last, template = self._last_push
        if last is not notice:
            template = self._push_template(notice)
            self._last_push = (notice, template)
        assert template is not None
        manage_url = self.urls.push_manage(subscription.id)
        return PushMessage(
            endpoint=subscription.endpoint,
            p256dh=subscription.p256dh,
            auth=subscription.auth,
            payload=template.payload_for(manage_url),
            ttl=self.settings.push_ttl_seconds,
            urgency="normal",
            topic=template.topic,
            encoded=template.encoded_for(manage_url),
        )

    def _push_template(self, notice: Article) -> _PushTemplate:
        key = ("article", notice.id, notice.guid, _content_key(notice))
        template = _cached(self._push_payloads, key)
        if template is None:
            payload = self.renderer.render_push(
                "article",
                {
                    "title": notice.title,
                    "body": notice.summary,
                    "icon": self.settings.site_icon_url,
                    "image": notice.image_url,
                    "url": notice.link,
                    "tag": f"article-{notice.id}",
                    "manage_url": MANAGE_SLOT,
                    "timestamp": _millis(notice.published_at or notice.first_seen_at),
                },
            )
            template = _PushTemplate(payload, article_topic(notice.guid))
            _remember(self._push_payloads, key, template)
        return template

    def alert_push(self, alert: Alert, subscription: Row | None) -> PushMessage:
        """Breaking news: Urgency high and a short TTL (stale breaking news is no news).
        `subscription` is a push_subscriptions row; None for an editor's preview."""
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

    def web_version(self, session: Session, view: EmailView) -> RenderedEmail | None:
        """A notification email as a web page, read-only and the same for every reader: the
        personal links become the public manage page. None: the notice is gone."""
        notice = session.get(Article if view.kind == "article" else Alert, view.notice_id)
        if notice is None:
            return None
        names = sorted(session.scalars(select(Category.name).where(
            Category.id.in_(view.category_ids))))  # fmt: skip
        context = {
            **self._site(web_version=True),
            view.kind: notice,
            "matched_categories": names or ["all news"],
            "unsubscribe_url": self.urls.manage_page(),
            "manage_url": self.urls.manage_page(),
        }
        return self.renderer.render_email(view.kind, "", context)

    def alert_preview(self, alert: Alert, to: str, category_names: list[str]) -> RenderedEmail:
        """The alert email as a reader will see it (links are the preview's own)."""
        context = {
            **self._site(f"{self.urls.base}/email/PREVIEW"),
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


class _PushTemplate:
    """An article's push payload, rendered and JSON-encoded once with MANAGE_SLOT where each
    browser's own manage link goes, and its Topic: per browser only the link is encoded."""

    __slots__ = ("_pieces", "_slot_names", "payload", "topic")

    def __init__(self, payload: dict, topic: str) -> None:
        self.payload, self.topic = payload, topic
        self._slot_names = [name for name, value in payload.items() if value == MANAGE_SLOT]
        pieces = push_json(payload).split(MANAGE_SLOT.encode())
        # The slot only where a value is the slot (never inside a title, say): else no shortcut.
        self._pieces = pieces if len(pieces) == len(self._slot_names) + 1 else None

    def payload_for(self, manage_url: str) -> dict:
        return {**self.payload, **dict.fromkeys(self._slot_names, manage_url)}

    def encoded_for(self, manage_url: str) -> bytes | None:
        """push_json(self.payload_for(manage_url)), without encoding the rest again."""
        if self._pieces is None:
            return None
        return _JSON_TEXT.encode(manage_url)[1:-1].encode().join(self._pieces)


_JSON_TEXT = json.JSONEncoder(ensure_ascii=False)  # json.dumps(…, ensure_ascii=False), made once


def _as_envelope(message: EmailMessage) -> EmailEnvelope:
    """A whole message as wire bytes (CRLF, UTF-8 headers for a non-ASCII address), so every
    reader's email goes out as an envelope whose sender the composer chooses."""
    to = email.utils.getaddresses([str(message["To"])])[0][1]
    sender = email.utils.parseaddr(str(message["From"]))[1]
    policy = message.policy
    if not isinstance(policy, email.policy.EmailPolicy):  # RenderedEmail.to_mime's always is
        raise TypeError(f"an email.policy.EmailPolicy message is needed, not {policy!r}")
    policy = policy.clone(utf8=not (to.isascii() and sender.isascii()), linesep="\r\n")
    with io.BytesIO() as buffer:
        email.generator.BytesGenerator(buffer, policy=policy).flatten(message)
        return EmailEnvelope(mail_from=sender, to=to, data=buffer.getvalue())


def _content_key(notice: Article | Alert) -> tuple:
    """What a rendered layout depends on, so an edited notice is rendered anew."""
    if isinstance(notice, Alert):
        return (notice.title, notice.body, notice.url, notice.image_url, notice.status)
    return (notice.title, notice.summary, notice.link, notice.image_url)


def _cached(cache: OrderedDict, key: tuple):
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
    return value


def _remember(cache: OrderedDict, key: tuple, value, size: int = LAYOUT_CACHE_SIZE) -> None:
    cache[key] = value
    while len(cache) > size:
        cache.popitem(last=False)


def article_topic(guid: str) -> str:
    """RFC 8030 Topic (at most 32 base64url characters): one per article, so a newer push
    about the same article replaces an undelivered older one."""
    return b64url(hashlib.sha256(guid.encode()).digest()[:24])


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _host(url: str) -> str:
    return urlsplit(url).hostname or "localhost"
