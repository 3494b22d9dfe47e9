"""Bind each channel's transport to deliveries, as notifier.delivery.routes describes it: who
a chunk goes to (addressing), the message for one reader (compose), and what "gone" means
for the reader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial

from sqlalchemy import Row
from sqlalchemy.orm import Session

from notifier.channels.base import Channel
from notifier.channels.registry import transports
from notifier.config import Settings
from notifier.delivery.addressing import Addressee, Unwanted, address_chunk, notice_time
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import Outgoing, Outlet
from notifier.delivery.holding import Held
from notifier.delivery.routes import ROUTES, Route
from notifier.delivery.stale_news import hold_back_stale
from notifier.models import Delivery
from notifier.timeutil import utcnow


def outlets(settings: Settings, composer: Composer) -> dict[str, Outlet]:
    """One outlet per route, with the transport of the same name."""
    channels = transports(settings)
    missing = sorted(set(ROUTES) - set(channels))
    if missing:
        raise ValueError(f"no transport calls itself {', '.join(map(repr, missing))}")
    return {name: _outlet(route, channels[name], composer, settings)
            for name, route in ROUTES.items()}  # fmt: skip


def _outlet(route: Route, channel: Channel, composer: Composer, settings: Settings) -> Outlet:
    compose = partial(route.compose, composer)

    def address(
        session: Session, delivery_ids: list[int], claimed: Mapping[int, Row] | None = None
    ) -> list[Outgoing | Unwanted | Held]:
        now = utcnow()
        entries: Sequence[Addressee | Unwanted | Held]
        entries = address_chunk(session, route.name, route.audience, delivery_ids, now, claimed)
        entries = hold_back_stale(session, route.name, entries, settings.stale_news_hours, now)
        if route.gate is not None:  # push: the browser's quiet hours
            entries = route.gate(session, entries, now, settings)
        since: dict[int, datetime | None] = {}  # per notice (a chunk has one or a few)
        outgoing: list[Outgoing | Unwanted | Held] = []
        for e in entries:
            if not isinstance(e, Addressee):
                outgoing.append(e)
                continue
            key = id(e.notice)  # the notices live as long as the entries
            if key not in since:
                since[key] = notice_time(e.notice)
            outgoing.append(Outgoing(e.delivery_id, partial(compose, e), since[key]))
        return outgoing

    def recipient_gone(session: Session, delivery: Delivery, detail: str, now: datetime) -> None:
        route.recipient_gone(session, delivery, detail, now, settings)

    return Outlet(channel, address, recipient_gone)
