"""Every channel the delivery path knows, one line each: who it reaches, how one reader's
message is made, what "gone" means for that reader, and its send rate.

The transport itself is found by the same name in notifier.channels.registry (Channel.name).
Adding a channel: a transport module in notifier/channels/ (listed in TRANSPORTS there), a
Route here, a template folder and its settings; docs/adding-a-channel.md walks through one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.delivery.addressing import Addressee, Unwanted
from notifier.delivery.compose import Composer
from notifier.delivery.holding import Held
from notifier.delivery.push_gate import gate_pushes
from notifier.domain.audiences import BROWSERS, SUBSCRIBERS, Audience
from notifier.domain.deliveries import count_hard_bounces
from notifier.domain.push_subscriptions import mark_push_gone
from notifier.domain.subscriptions import suppress_bounced_address
from notifier.models import Delivery


@dataclass(frozen=True)
class Route:
    name: str  # the channel: its transport's Channel.name, and deliveries.channel
    audience: Audience  # who it reaches
    compose: Callable[[Composer, Addressee], object]  # one reader's ready message
    # The domain's rule when the channel says the recipient no longer exists.
    recipient_gone: Callable[[Session, Delivery, str, datetime, Settings], None]
    rate: Callable[[Settings], float]  # sends per second, all workers together (0: unpaced)
    queued_first: bool = False  # planned and queued before the others (its messages go fastest)
    # When an addressed message may go (push: quiet hours, daily cap); None: at once.
    gate: (
        Callable[[Session, Sequence[Addressee | Unwanted], datetime, Settings],
                 list[Addressee | Unwanted | Held]] | None
    ) = None  # fmt: skip


def _address_bounced(
    session: Session, delivery: Delivery, detail: str, now: datetime, settings: Settings
) -> None:
    """The mail server said the address does not exist: after EMAIL_BOUNCE_LIMIT such
    answers the address is suppressed."""
    bounces = count_hard_bounces(session, delivery.recipient_id)
    suppress_bounced_address(session, delivery.recipient_id, bounces,
                             settings.email_bounce_limit, detail, now)  # fmt: skip


def _browser_gone(
    session: Session, delivery: Delivery, detail: str, now: datetime, settings: Settings
) -> None:
    """The push service said 404/410: the browser dropped the subscription."""
    mark_push_gone(session, delivery.recipient_id, detail, now)


ROUTES: dict[str, Route] = {
    route.name: route
    for route in (
        Route("email", SUBSCRIBERS, Composer.email_envelope, _address_bounced,
              lambda settings: settings.email_rate_per_second),
        Route("push", BROWSERS, Composer.push, _browser_gone,
              lambda settings: settings.push_rate_per_second, queued_first=True,
              gate=gate_pushes),
    )
}  # fmt: skip

CHANNELS = tuple(ROUTES)
AUDIENCES = {name: route.audience for name, route in ROUTES.items()}


def in_queue_order(channels: Iterable[str]) -> list[str]:
    """The channels whose messages go fastest first (push), the others as given."""
    return sorted(channels, key=lambda name: not (name in ROUTES and ROUTES[name].queued_first))


def send_rates(settings: Settings) -> dict[str, float]:
    """Sends per second of each paced channel (all workers together)."""
    rates = {name: route.rate(settings) for name, route in ROUTES.items()}
    return {name: rate for name, rate in rates.items() if rate > 0}
