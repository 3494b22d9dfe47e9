"""Browser push subscriptions: validate what a browser hands us, keep it, stop it for a reason.

An endpoint is a URL the server will POST to, supplied by whoever calls the API, so it is
accepted only on a known push service (PUSH_ALLOWED_ORIGINS) and checked again before
every send. Subscriptions are never deleted: a reader turning push off, or a push service
saying the subscription is gone, changes its status and keeps the history.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from notifier.domain.subscriptions import SubscriptionError, validate_category_slugs
from notifier.models import PushStatus, PushSubscription
from notifier.vapid import b64url_decode


class PushSubscriptionError(SubscriptionError):
    """The browser's subscription cannot be accepted; the message says why."""


@dataclass(frozen=True)
class BrowserSubscription:
    endpoint: str
    p256dh: str
    auth: str


def _decoded_key(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise PushSubscriptionError(f"The subscription has no keys.{name}.")
    try:
        return b64url_decode(value.strip())
    except (binascii.Error, ValueError):
        raise PushSubscriptionError(f"keys.{name} is not base64url.") from None


class EndpointCheck(Protocol):
    """Which push services we accept (notifier.channels.push_endpoints.EndpointPolicy)."""

    def origin_of(self, endpoint: str) -> str:
        """The endpoint's origin; raises ValueError with a sentence if it is not accepted."""
        ...


def parse_browser_subscription(data: object, policy: EndpointCheck) -> BrowserSubscription:
    """Validate PushSubscription.toJSON() output: endpoint allowed, p256dh a P-256 point,
    auth 16 bytes."""
    if not isinstance(data, dict):
        raise PushSubscriptionError(
            'Send "subscription": the object PushSubscription.toJSON() returns.'
        )
    endpoint = data.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint or len(endpoint) > 2000:
        raise PushSubscriptionError("The subscription has no valid endpoint.")
    try:
        policy.origin_of(endpoint)
    except ValueError as refused:
        raise PushSubscriptionError(str(refused)) from None
    keys = data.get("keys")
    if not isinstance(keys, dict):
        keys = {}
    p256dh, auth = (
        _decoded_key(keys.get("p256dh"), "p256dh"),
        _decoded_key(keys.get("auth"), "auth"),
    )
    if len(p256dh) != 65 or p256dh[0] != 4:
        raise PushSubscriptionError("keys.p256dh must be a 65-byte uncompressed P-256 point.")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except ValueError:
        raise PushSubscriptionError("keys.p256dh is not a point on the P-256 curve.") from None
    if len(auth) != 16:
        raise PushSubscriptionError("keys.auth must be 16 bytes.")
    return BrowserSubscription(endpoint, keys["p256dh"].strip(), keys["auth"].strip())


def find_push_subscription(session: Session, endpoint: object) -> PushSubscription | None:
    if not isinstance(endpoint, str) or not endpoint:
        raise PushSubscriptionError('Send the subscription\'s "endpoint".')
    return session.scalar(select(PushSubscription).where(PushSubscription.endpoint == endpoint))


def save_push_subscription(
    session: Session,
    browser: BrowserSubscription,
    slugs: object,
    now: datetime,
    site_origin: str | None = None,
    user_agent: str | None = None,
) -> tuple[PushSubscription, bool]:
    """Create, or replace the categories of, the subscription for this endpoint.

    Returns (subscription, created); a known endpoint that had stopped starts again.
    """
    categories = validate_category_slugs(session, slugs)
    row = find_push_subscription(session, browser.endpoint)
    created = row is None or row.status != PushStatus.ACTIVE
    if row is None:
        row = PushSubscription(endpoint=browser.endpoint, created_at=now)
        session.add(row)
    row.p256dh, row.auth = browser.p256dh, browser.auth
    row.categories = categories
    row.updated_at = now
    row.site_origin = site_origin or row.site_origin
    row.user_agent = (user_agent or "")[:500] or row.user_agent
    if row.status != PushStatus.ACTIVE:
        _set_status(row, PushStatus.ACTIVE, "subscribed again", now)
    session.flush()
    return row, created


def stop_push_subscription(session: Session, row: PushSubscription, reason: str, now: datetime):
    """The reader turned push off for this browser."""
    if row.status == PushStatus.ACTIVE:
        _set_status(row, PushStatus.UNSUBSCRIBED, reason, now)


def mark_push_gone(session: Session, subscription_id: int, detail: str, now: datetime) -> None:
    """The push service said 404/410: this browser subscription no longer exists."""
    row = session.get(PushSubscription, subscription_id)
    if row is not None and row.status != PushStatus.GONE:
        _set_status(row, PushStatus.GONE, detail, now)


def _set_status(row: PushSubscription, status: PushStatus, reason: str, now: datetime) -> None:
    row.status, row.status_reason, row.status_changed_at = status, reason, now
