"""Bounce and complaint rates of email, per day and per article/alert, and the warnings that
mailbox providers' thresholds call for (Gmail and Yahoo reject bulk mail from 0.3 % complaints).

Counted in SQL, one statement per view. An email counts as sent when the server took it (status
sent, whatever came back later) or refused the address at once (outcome gone): both reached a
mailbox provider. Bounced is a returned message (outcome bounced) or that refusal (gone);
complained is a spam report (outcome complained). Each counts on the day it was sent (a gone
one on the day of its last attempt), in the site's time zone, so a bounce arriving tomorrow
raises the rate of the day its email went out.

Each figure adds the emails retention removed from the ledger (delivery_summaries, counted by
the hour they went out), so they stay the same once the rows are gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal, or_, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from notifier.config import Settings
from notifier.models import (
    Alert,
    Article,
    Delivery,
    DeliveryOutcome,
    DeliveryStatus,
    DeliverySummary,
)

# When the email went out: sent_at, or the last attempt for one refused at once.
_went_out_at = func.coalesce(Delivery.sent_at, Delivery.next_attempt_at)
_reached = and_(
    Delivery.channel == "email",
    or_(Delivery.status == DeliveryStatus.SENT, Delivery.outcome == DeliveryOutcome.GONE),
)
_bounced = Delivery.outcome.in_([DeliveryOutcome.BOUNCED, DeliveryOutcome.GONE])
_complained = Delivery.outcome == DeliveryOutcome.COMPLAINED

# The same conditions on the counts retention kept of removed rows.
_S = DeliverySummary
_removed_reached = and_(
    _S.channel == "email",
    or_(_S.status == DeliveryStatus.SENT.value, _S.outcome == DeliveryOutcome.GONE.value),
)
_removed_bounced = _S.outcome.in_([DeliveryOutcome.BOUNCED.value, DeliveryOutcome.GONE.value])
_removed_complained = _S.outcome == DeliveryOutcome.COMPLAINED.value


@dataclass(frozen=True)
class Thresholds:
    """From the settings: warn at these percentages, once at least min_sent emails went out."""

    bounce_percent: float
    complaint_percent: float
    min_sent: int

    @classmethod
    def of(cls, settings: Settings) -> Thresholds:
        return cls(
            settings.bounce_rate_warning_percent,
            settings.complaint_rate_warning_percent,
            settings.deliverability_min_sent,
        )


@dataclass(frozen=True)
class Rates:
    sent: int
    bounced: int
    complained: int

    @property
    def bounce_percent(self) -> float | None:
        return None if not self.sent else 100.0 * self.bounced / self.sent

    @property
    def complaint_percent(self) -> float | None:
        return None if not self.sent else 100.0 * self.complained / self.sent

    def over(self, limits: Thresholds) -> list[str]:
        """Which rates ("complaints", "bounces") reach their threshold, on enough volume."""
        if self.sent < limits.min_sent:
            return []
        found = []
        if self.complained * 100.0 >= limits.complaint_percent * self.sent and self.complained:
            found.append("complaints")
        if self.bounced * 100.0 >= limits.bounce_percent * self.sent and self.bounced:
            found.append("bounces")
        return found


@dataclass(frozen=True)
class DayRates:
    day: date  # in the site's time zone
    rates: Rates
    warnings: tuple[str, ...]  # "complaints", "bounces"


@dataclass(frozen=True)
class NoticeRates:
    kind: str  # article | alert
    id: int
    title: str
    rates: Rates
    warnings: tuple[str, ...]


def _sum(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _removed_sum(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, _S.count), else_=0)), 0)


def _removed_rates(session: Session, *where: ColumnElement[bool]) -> Rates:
    """Sent, bounced and complained among the removed emails matching `where`."""
    row = session.execute(
        select(_removed_sum(literal(True)), _removed_sum(_removed_bounced),
               _removed_sum(_removed_complained)).where(_removed_reached, *where)
    ).one()  # fmt: skip
    return Rates(*(int(value) for value in row))


def day_starts(now: datetime, days: int, zone: ZoneInfo) -> list[tuple[date, datetime]]:
    """The last `days` days in the zone (today last), each with its midnight in UTC."""
    today = now.astimezone(zone).date()
    dates = [today - timedelta(days=days - 1 - i) for i in range(days + 1)]
    return [(day, datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)) for day in dates]


def daily_rates(
    session: Session, now: datetime, days: int, zone: ZoneInfo, limits: Thresholds
) -> list[DayRates]:
    """Sent, bounced and complained per day for the last `days` days, newest first."""
    bounds = day_starts(now, days, zone)
    columns, removed = [], []
    hour = _S.ended_hour
    for (_, start), (_, stop) in pairwise(bounds):
        on_day = and_(_went_out_at >= start, _went_out_at < stop)
        columns += [_sum(on_day), _sum(and_(on_day, _bounced)), _sum(and_(on_day, _complained))]
        on_day = and_(hour >= start, hour < stop)
        removed += [_removed_sum(on_day), _removed_sum(and_(on_day, _removed_bounced)),
                    _removed_sum(and_(on_day, _removed_complained))]  # fmt: skip
    row = session.execute(
        select(*columns).where(_reached, _went_out_at >= bounds[0][1], _went_out_at < bounds[-1][1])
    ).one()
    kept = session.execute(
        select(*removed).where(_removed_reached, hour >= bounds[0][1], hour < bounds[-1][1])
    ).one()
    result = []
    for i, (day, _) in enumerate(bounds[:-1]):
        ledger, gone = row[3 * i : 3 * i + 3], kept[3 * i : 3 * i + 3]
        rates = Rates(*(int(a) + int(b) for a, b in zip(ledger, gone, strict=True)))
        result.append(DayRates(day, rates, tuple(rates.over(limits))))
    return result[::-1]


def rates_since(session: Session, since: datetime) -> Rates:
    """Email sent, bounced and complained since a moment (the last 24 hours for /metrics)."""
    row = session.execute(
        select(func.count(), _sum(_bounced), _sum(_complained)).where(
            _reached, _went_out_at >= since
        )
    ).one()
    return _plus(Rates(*(int(value) for value in row)),
                 _removed_rates(session, _S.ended_hour >= since))  # fmt: skip


def _plus(a: Rates, b: Rates) -> Rates:
    return Rates(a.sent + b.sent, a.bounced + b.bounced, a.complained + b.complained)


def alert_rates(session: Session, alert_id: int, limits: Thresholds) -> NoticeRates:
    """One alert's email since it went out, for its page: the bounces and complaints it drew."""
    row = session.execute(
        select(func.count(), _sum(_bounced), _sum(_complained)).where(
            _reached, Delivery.alert_id == alert_id
        )
    ).one()
    removed = _removed_rates(session, _S.notice_kind == "alert", _S.notice_id == alert_id)
    rates = _plus(Rates(*(int(value) for value in row)), removed)
    title = session.scalar(select(Alert.title).where(Alert.id == alert_id)) or ""
    return NoticeRates("alert", alert_id, title, rates, tuple(rates.over(limits)))


def notice_rates(
    session: Session, since: datetime, limits: Thresholds, limit: int = 20
) -> list[NoticeRates]:
    """Per article and alert whose email went out since `since`: those over a threshold first,
    then the largest sends; digests (one per reader) count in the days only."""
    kind = case((Delivery.article_id.is_not(None), "article"), else_="alert")
    ledger = (
        select(kind.label("kind"), func.coalesce(Delivery.article_id, Delivery.alert_id)
               .label("notice_id"), func.count().label("sent"), _sum(_bounced).label("bounced"),
               _sum(_complained).label("complained"))
        .where(_reached, _went_out_at >= since, Delivery.digest_id.is_(None))
        .group_by(Delivery.article_id, Delivery.alert_id)
    )  # fmt: skip
    removed = (
        select(_S.notice_kind, _S.notice_id, _removed_sum(literal(True)),
               _removed_sum(_removed_bounced), _removed_sum(_removed_complained))
        .where(_removed_reached, _S.ended_hour >= since, _S.notice_kind != "digest")
        .group_by(_S.notice_kind, _S.notice_id)
    )  # fmt: skip
    both = union_all(ledger, removed).subquery()
    sent, bounced = func.sum(both.c.sent), func.sum(both.c.bounced)
    complained = func.sum(both.c.complained)
    warned = and_(
        sent >= limits.min_sent,
        or_(
            and_(complained > 0, complained * 100.0 >= literal(limits.complaint_percent) * sent),
            and_(bounced > 0, bounced * 100.0 >= literal(limits.bounce_percent) * sent),
        ),
    )
    rows = session.execute(
        select(both.c.kind, both.c.notice_id, sent, bounced, complained)
        .group_by(both.c.kind, both.c.notice_id)
        .order_by(case((warned, 0), else_=1), sent.desc(), both.c.kind.desc(), both.c.notice_id)
        .limit(limit)
    ).all()
    titles = _titles(session, rows)
    result = []
    for kind, notice_id, *counts in rows:
        rates = Rates(*(int(value) for value in counts))
        title = titles.get((kind, notice_id), "")
        result.append(NoticeRates(kind, notice_id, title, rates, tuple(rates.over(limits))))
    return result


def _titles(session: Session, rows) -> dict[tuple[str, int], str]:
    articles = [row[1] for row in rows if row[0] == "article"]
    alerts = [row[1] for row in rows if row[0] == "alert"]
    titles: dict[tuple[str, int], str] = {}
    if articles:
        query = select(Article.id, Article.title).where(Article.id.in_(articles))
        titles.update((("article", i), t) for i, t in session.execute(query))
    if alerts:
        query = select(Alert.id, Alert.title).where(Alert.id.in_(alerts))
        titles.update((("alert", i), t) for i, t in session.execute(query))
    return titles


def percent(value: float | None) -> str:
    """'0.30 %', '—' when nothing was sent."""
    return "—" if value is None else f"{value:.2f} %"


def day_warnings(days: list[DayRates], limits: Thresholds) -> list[str]:
    """One sentence per day over a threshold, for status problems and the dashboard."""
    sentences = []
    for day in days:
        r = day.rates
        if "complaints" in day.warnings:
            sentences.append(
                f"Spam complaints were {percent(r.complaint_percent)} of email sent on "
                f"{day.day.isoformat()} ({r.complained:,} of {r.sent:,}; "
                f"COMPLAINT_RATE_WARNING_PERCENT is {limits.complaint_percent:g}): mailbox "
                "providers reject bulk mail from 0.3 %; look at what went out that day."
            )
        if "bounces" in day.warnings:
            sentences.append(
                f"Bounces were {percent(r.bounce_percent)} of email sent on "
                f"{day.day.isoformat()} ({r.bounced:,} of {r.sent:,}; "
                f"BOUNCE_RATE_WARNING_PERCENT is {limits.bounce_percent:g}): the list holds "
                "dead addresses, which hurts the sender's reputation."
            )
    return sentences


@dataclass(frozen=True)
class EmailRates:
    """Everything the dashboard, `notifier status` and /metrics show about it."""

    limits: Thresholds
    days: list[DayRates]  # newest first
    notices: list[NoticeRates]  # over a threshold first, then the largest sends

    @property
    def warnings(self) -> list[str]:
        return day_warnings(self.days, self.limits)


def email_rates(session: Session, now: datetime, settings: Settings) -> EmailRates:
    """The last DELIVERABILITY_DAYS days, and the articles/alerts sent in them."""
    limits, zone = Thresholds.of(settings), ZoneInfo(settings.site_timezone)
    days = daily_rates(session, now, settings.deliverability_days, zone, limits)
    since = day_starts(now, settings.deliverability_days, zone)[0][1]
    return EmailRates(limits, days, notice_rates(session, since, limits))
