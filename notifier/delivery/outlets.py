"""Bind each channel's transport to deliveries: who a chunk goes to (addressing), the message
for one reader (compose), and what "gone" means for the reader (the domain's reaction).

Transports come from notifier.channels.registry by their own name; this table says what the
delivery path does around each.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

from sqlalchemy.orm import Session

from notifier.channels.registry import transports
from notifier.config import Settings
from notifier.delivery.addressing import Addressee, Unwanted, address_chunk, notice_time
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import Outgoing, Outlet
from notifier.domain.deliveries import count_hard_bounces
from notifier.domain.push_subscriptions import mark_push_gone
from notifier.domain.subscriptions import suppress_bounced_address
from notifier.models import Delivery


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

    channels = transports(settings)
    return {
        "email": Outlet(channels["email"], address("email", composer.email_envelope),
                        email_gone),
        "push": Outlet(channels["push"], address("push", composer.push), push_gone),
    }  # fmt: skip
