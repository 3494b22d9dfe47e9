"""Settings into the bounce processor's values, and one returned message processed in a
transaction of its own: what every way in calls."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from notifier import metrics
from notifier.config import Settings
from notifier.domain.bounces import (
    BouncePolicy,
    Processed,
    ProviderReport,
    drop_old_raw_reports,
    process_provider_report,
    process_report,
)
from notifier.timeutil import utcnow
from notifier.tokens import BounceAddresses


def bounce_policy(settings: Settings) -> BouncePolicy:
    return BouncePolicy(
        hard_limit=settings.email_bounce_limit,
        soft_days=settings.soft_bounce_days,
        soft_window_days=settings.soft_bounce_window_days,
        message_id_domain=email.utils.parseaddr(settings.mail_from)[1].rpartition("@")[2],
    )


def bounce_addresses(settings: Settings) -> BounceAddresses | None:
    if not settings.bounce_domain:
        return None
    return BounceAddresses(
        settings.bounce_domain, settings.secret_key, settings.secret_key_fallbacks
    )


class BounceProcessor:
    """Process and commit one returned message at a time; old raw reports are dropped as
    new ones come in (and by the sweeper)."""

    def __init__(self, settings: Settings, sessions: Callable[[], Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.policy = bounce_policy(settings)
        self.addresses = bounce_addresses(settings)

    def process(self, raw: bytes, source: str, recipients: tuple[str, ...] = ()) -> Processed:
        processed = self.process_if(raw, source, recipients, lambda _: True)
        assert processed is not None  # kept whatever it is
        return processed

    def process_if(self, raw: bytes, source: str, recipients: tuple[str, ...],
                   ours: Callable[[Processed], bool]) -> Processed | None:  # fmt: skip
        """Process and commit only what `ours` accepts (the mailbox reader keeps no record of
        another's mail it merely looked at); None, with nothing written, otherwise."""
        now = utcnow()
        with self.sessions() as session:
            processed = process_report(session, raw, source, now, self.policy, self.addresses,
                                       recipients)  # fmt: skip
            if not ours(processed):
                session.rollback()
                return None
            drop_old_raw_reports(session, now, self.settings.bounce_report_days)
            session.commit()
        metrics.bounce_report_processed(source, processed.kind.value, processed.replay)
        return processed

    def process_provider(self, reports: list[ProviderReport]) -> list[Processed]:
        """The events of one webhook call, in one short transaction. The same event posted
        twice at once: the second commit fails on the unique event id, and its events are
        then read again, as the replays they are."""
        now = utcnow()
        try:
            processed = self._commit_provider(reports, now)
        except IntegrityError:
            processed = self._commit_provider(reports, now)
        for report, result in zip(reports, processed, strict=True):
            metrics.bounce_report_processed(report.source, result.kind.value, result.replay)
        return processed

    def _commit_provider(self, reports: list[ProviderReport], now: datetime) -> list[Processed]:
        with self.sessions() as session:
            processed = [process_provider_report(session, report, now, self.policy,
                                                 self.addresses) for report in reports]  # fmt: skip
            drop_old_raw_reports(session, now, self.settings.bounce_report_days)
            session.commit()
        return processed
