"""Pick the transport for each channel from the settings, and bind channels to deliveries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache, partial

from sqlalchemy.orm import Session

from notifier.channels.dev_mailbox import DevMailboxChannel
from notifier.channels.smtp import SmtpChannel
from notifier.channels.webpush import WebPushChannel
from notifier.compose import Composer
from notifier.config import Settings
from notifier.dispatch import Outgoing, Outlet
from notifier.domain.addressing import Addressee, Unwanted, address_chunk, notice_time
from notifier.domain.deliveries import count_hard_bounces
from notifier.domain.push_subscriptions import EndpointPolicy, mark_push_gone
from notifier.domain.subscriptions import suppress_bounced_address
from notifier.models import Delivery
from notifier.pacing import Pacer, pacer_for
from notifier.push_backoff import SharedBackoff
from notifier.vapid import VapidSigner, load_private_key


@cache
def pacer(settings: Settings) -> Pacer:
    """One per process: the send-rate limits every channel of this process honours."""
    return pacer_for(settings)


def email_channel(settings: Settings) -> SmtpChannel | DevMailboxChannel:
    if settings.smtp_url:
        return SmtpChannel(settings.smtp_url, settings.smtp_timeout_seconds,
                           settings.smtp_connections, pacer(settings),
                           settings.smtp_keepalive_seconds)  # fmt: skip
    return DevMailboxChannel(settings.dev_mailbox_dir)


@cache
def vapid_signer(settings: Settings) -> VapidSigner:
    """One per process, so a JWT signed for a push service serves every batch that hour."""
    vapid = load_private_key(settings.vapid_private_key, settings.vapid_public_key)
    return VapidSigner(vapid, settings.vapid_subject)


def push_channel(settings: Settings) -> WebPushChannel:
    return WebPushChannel(
        vapid_signer(settings),
        EndpointPolicy(settings.push_allowed_origins),
        settings.push_connect_timeout_seconds,
        settings.push_read_timeout_seconds,
        SharedBackoff(settings.database_url, settings.push_backoff_refresh_seconds),
        pacer=pacer(settings),
        concurrency_per_origin=settings.push_concurrency_per_origin,
        retry_after_max_seconds=settings.retry_after_max_seconds,
    )


def outlets(settings: Settings, composer: Composer) -> dict[str, Outlet]:
    def address(channel: str, compose: Callable[[Addressee], object]):
        def entries(session: Session, delivery_ids: list[int]) -> list[Outgoing | Unwanted]:
            return [
                Outgoing(e.delivery_id, partial(compose, e), notice_time(e.notice))
                if isinstance(e, Addressee) else e
                for e in address_chunk(session, channel, delivery_ids)
            ]  # fmt: skip

        return entries

    def push_gone(session: Session, delivery: Delivery, detail: str, now: datetime) -> None:
        mark_push_gone(session, delivery.push_subscription_id, detail, now)

    def email_gone(session: Session, delivery: Delivery, detail: str, now: datetime) -> None:
        bounces = count_hard_bounces(session, delivery.subscriber_id)
        limit = settings.email_bounce_limit
        suppress_bounced_address(session, delivery.subscriber_id, bounces, limit, detail, now)

    return {
        "email": Outlet(email_channel(settings), address("email", composer.email_envelope),
                        email_gone),
        "push": Outlet(push_channel(settings), address("push", composer.push), push_gone),
    }  # fmt: skip
