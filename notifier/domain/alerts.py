"""Breaking alerts: validate, create once, reach the target once per reader and channel,
report progress, cancel before the start or stop while sending."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeGuard
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from notifier.domain.audiences import Audience
from notifier.domain.categories import categories_for_slugs
from notifier.domain.limits import ALERT_BODY_MAX, ALERT_TITLE_MAX, CATEGORY_SLUGS_MAX, URL_MAX
from notifier.models import (
    Alert,
    AlertStatus,
    Category,
    Delivery,
    DeliveryOutcome,
    DeliveryStatus,
    DeliverySummary,
)
from notifier.text import single_line
from notifier.timeutil import utcnow

CHANNELS = ("email", "push")
TITLE_MAX, BODY_MAX = ALERT_TITLE_MAX, ALERT_BODY_MAX


class AlertError(ValueError):
    """Input an editor or a script can correct; the message is a sentence in plain words,
    and `field` names the input it is about (the form shows it next to that field)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class AlertDraft:
    title: str
    body: str
    url: str
    image_url: str | None
    target_all: bool
    category_slugs: tuple[str, ...]
    channels: tuple[str, ...]
    send_at: datetime | None = None
    category_names: tuple[str, ...] = field(default=())
    override_quiet_hours: bool = False  # its pushes go through readers' quiet hours


def _strings(value: object) -> TypeGuard[list[str] | tuple[str, ...]]:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def _text(data: Mapping[str, object], name: str) -> str:
    """An optional text field: absent or null reads as empty; anything but text is refused."""
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AlertError(f"{name} must be text.", name)
    return value


def _http_url(value: str, name: str, label: str) -> str:
    """An absolute http(s) address, stripped; AlertError with a sentence otherwise."""
    if len(value) > URL_MAX:
        raise AlertError(f"The {label} is longer than {URL_MAX} characters.", name)
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AlertError(
            f"The {label} must be a web address starting with http:// or https://.", name
        )
    return value


def _optional_http_url(value: str, name: str, label: str) -> str | None:
    """As _http_url, but blank (or only spaces) means none."""
    if len(value) <= URL_MAX and not value.strip():
        return None
    return _http_url(value, name, label)


def _send_at(value: str, now: datetime) -> datetime | None:
    if value == "":
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise AlertError(
            "The time to send must be a date and time with a time zone (ISO 8601).", "send_at"
        ) from None
    if moment.tzinfo is None:
        raise AlertError(
            "The time to send needs a time zone, e.g. 2026-12-01T09:00:00+04:00.", "send_at"
        )
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset
        raise AlertError("The time to send is out of range.", "send_at") from None
    if moment < now - timedelta(minutes=1):
        raise AlertError(
            "That time is already in the past. Choose a later time, or send now.", "send_at"
        )
    return moment if moment > now else None


def _channels(data: Mapping[str, object]) -> tuple[str, ...]:
    channels = data.get("channels")
    if channels is None or channels == []:
        raise AlertError("Choose email, browser push or both.", "channels")
    if not _strings(channels) or not set(channels) <= set(CHANNELS):
        raise AlertError('Channels can only be "email" and "push".', "channels")
    return tuple(c for c in CHANNELS if c in channels)


def _target(
    session: Session, data: Mapping[str, object]
) -> tuple[bool, list[str], tuple[str, ...]]:
    """(all readers?, category slugs, category names)."""
    target_all, slugs = data.get("all"), data.get("categories")
    if slugs is None:  # absent or null: no categories
        slugs = []
    if target_all is not None and not isinstance(target_all, bool):
        raise AlertError('"all" must be true or false.', "categories")
    if not _strings(slugs) or len(slugs) > CATEGORY_SLUGS_MAX:
        raise AlertError(  # only a script can send this: it knows what a slug is
            f"Categories must be a list of slugs, at most {CATEGORY_SLUGS_MAX}.", "categories"
        )
    if target_all:
        return True, [], ()
    if not slugs:
        raise AlertError("Choose at least one category, or send to all readers.", "categories")
    try:
        names = tuple(c.name for c in categories_for_slugs(session, slugs))
    except ValueError as error:
        raise AlertError(str(error), "categories") from None
    return False, list(slugs), names


def validate_alert(
    session: Session, data: Mapping[str, object], default_url: str, now: datetime
) -> AlertDraft:
    """Check what an editor or a script asked for; raise AlertError with a sentence."""
    raw_title = data.get("title")
    if not isinstance(raw_title, str):
        raise AlertError("Please write a headline (title, as text).", "title")
    title, body = single_line(raw_title), _text(data, "body")
    if not title:
        raise AlertError("Please write a headline.", "title")
    if len(raw_title) > TITLE_MAX:
        raise AlertError(f"The headline is longer than {TITLE_MAX} characters.", "title")
    if len(body) > BODY_MAX:
        raise AlertError(f"The text is longer than {BODY_MAX} characters.", "body")
    channels = _channels(data)
    target_all, slugs, names = _target(session, data)
    image = _text(data, "image_url") or _text(data, "image")
    override = data.get("override_quiet_hours")
    if override is not None and not isinstance(override, bool):
        raise AlertError('"override_quiet_hours" must be true or false.', "override_quiet_hours")
    return AlertDraft(
        title=title,
        body=" ".join(body.split()),
        url=_http_url(_text(data, "url") or default_url, "url", "link"),
        image_url=_optional_http_url(image, "image_url", "image"),
        target_all=target_all,
        category_slugs=tuple(sorted(slugs)),
        channels=channels,
        send_at=_send_at(_text(data, "send_at"), now),
        category_names=names,
        override_quiet_hours=bool(override),
    )


def create_alert(
    session: Session,
    draft: AlertDraft,
    now: datetime,
    created_by_id: int | None = None,
    api_token_id: int | None = None,
    idempotency_key: str | None = None,
) -> tuple[Alert, bool]:
    """Keep the alert (the database holds it even if the broker is down). The same
    idempotency key returns the alert it already made: a retried call makes one alert."""
    if idempotency_key:
        existing = session.scalar(select(Alert).where(Alert.idempotency_key == idempotency_key))
        if existing is not None:
            return existing, False
    alert = Alert(
        title=draft.title,
        body=draft.body,
        url=draft.url,
        image_url=draft.image_url,
        target_all=draft.target_all,
        send_email="email" in draft.channels,
        send_push="push" in draft.channels,
        send_at=draft.send_at,
        override_quiet_hours=draft.override_quiet_hours,
        status=AlertStatus.SCHEDULED if draft.send_at else AlertStatus.QUEUED,
        created_at=now,
        status_changed_at=now,
        created_by_id=created_by_id,
        api_token_id=api_token_id,
        idempotency_key=idempotency_key or None,
        categories=[] if draft.target_all else categories_for_slugs(session, draft.category_slugs),
    )
    session.add(alert)
    session.flush()
    return alert, True


def alert_channels(alert: Alert) -> list[str]:
    return [c for c, on in (("email", alert.send_email), ("push", alert.send_push)) if on]


def audience_size(
    session: Session,
    draft: AlertDraft,
    audiences: Mapping[str, Audience],
    now: datetime | None = None,
) -> dict[str, int]:
    """How many readers (email) and browsers (push) the draft would reach if sent at `now`
    (default: the clock; readers who paused their email are not counted); `audiences`: who
    each channel reaches (notifier.delivery.routes.AUDIENCES)."""
    sizes = {}
    now = now or utcnow()
    category_ids = select(Category.id).where(Category.slug.in_(draft.category_slugs))
    for channel in draft.channels:
        audience = audiences[channel]
        recipient = audience.recipient
        query = select(func.count(func.distinct(recipient.id))).where(audience.receiving(now))
        if not draft.target_all:
            membership = audience.membership
            query = query.join(
                membership, membership.c[audience.recipient_column] == recipient.id
            ).where(membership.c.category_id.in_(category_ids))
        sizes[channel] = session.scalar(query) or 0
    return sizes


def start_alert(session: Session, alert_id: int, now: datetime) -> Alert | None:
    """Begin an alert's fan-out: a queued alert starts sending now; one that is sending but
    whose planning never finished (its planner died) is resumed. Others: None."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        return None
    if alert.status == AlertStatus.QUEUED:
        _set_status(alert, AlertStatus.SENDING, now)
        alert.started_at = now
        return alert
    if alert.status == AlertStatus.SENDING and alert.fanned_out_at is None:
        return alert
    return None


def finish_planning(session: Session, alert: Alert, now: datetime) -> None:
    """Every chunk is planned: from now on the alert is done when its deliveries are."""
    alert.fanned_out_at = now
    finish_if_done(session, alert.id, now)


def release_due_alerts(session: Session, now: datetime, grace_seconds: int) -> list[int]:
    """Scheduled alerts whose time has come, and queued ones whose fan-out task was lost."""
    stale = list(
        session.scalars(
            select(Alert.id).where(
                Alert.status == AlertStatus.QUEUED,
                Alert.status_changed_at <= now - timedelta(seconds=grace_seconds),
            )
        )
    )
    due = list(
        session.scalars(
            select(Alert).where(Alert.status == AlertStatus.SCHEDULED, Alert.send_at <= now)
        )
    )
    for alert in due:
        _set_status(alert, AlertStatus.QUEUED, now)
    return sorted({*stale, *(alert.id for alert in due)})


def unplanned_alert_ids(session: Session, now: datetime, grace_seconds: int) -> list[int]:
    """Sending alerts whose planner stopped before the last chunk (a worker died)."""
    return list(
        session.scalars(
            select(Alert.id).where(
                Alert.status == AlertStatus.SENDING,
                Alert.fanned_out_at.is_(None),
                Alert.status_changed_at <= now - timedelta(seconds=grace_seconds),
            )
        )
    )


def cancel_alert(session: Session, alert_id: int, now: datetime) -> Alert:
    alert = _get(session, alert_id)
    if alert.status not in (AlertStatus.SCHEDULED, AlertStatus.QUEUED):
        raise AlertError(f"This alert is {alert.status.value}; only one not yet started can be "
                         "cancelled.")  # fmt: skip
    _set_status(alert, AlertStatus.CANCELLED, now)
    return alert


def stop_alert(session: Session, alert_id: int, now: datetime) -> Alert:
    """What is sent stays sent; every delivery not yet sent is skipped."""
    alert = _get(session, alert_id)
    if alert.status != AlertStatus.SENDING:
        raise AlertError(f"This alert is {alert.status.value}; only a sending one can be stopped.")
    session.execute(
        update(Delivery)
        .where(Delivery.alert_id == alert_id, Delivery.status == DeliveryStatus.PENDING)
        .values(
            status=DeliveryStatus.SKIPPED,
            outcome=DeliveryOutcome.SKIPPED,
            last_error="alert stopped by an editor",
        )
    )
    _set_status(alert, AlertStatus.STOPPED, now)
    alert.finished_at = now
    return alert


def alert_progress(session: Session, alert_id: int) -> dict[str, dict[str, int]]:
    """Per channel: queued (not yet final), sent, failed, gone, skipped: the ledger's rows
    plus those retention removed (counted in delivery_summaries)."""
    rows = session.execute(
        select(Delivery.channel, Delivery.status, Delivery.outcome, func.count())
        .where(Delivery.alert_id == alert_id)
        .group_by(Delivery.channel, Delivery.status, Delivery.outcome)
    ).all()
    removed = session.execute(
        select(DeliverySummary.channel, DeliverySummary.status, DeliverySummary.outcome,
               func.sum(DeliverySummary.count))
        .where(DeliverySummary.notice_kind == "alert", DeliverySummary.notice_id == alert_id)
        .group_by(DeliverySummary.channel, DeliverySummary.status, DeliverySummary.outcome)
    ).all()  # fmt: skip
    progress = {c: dict.fromkeys(("queued", "sent", "failed", "gone", "skipped"), 0)
                for c in CHANNELS}  # fmt: skip
    for channel, status, outcome, count in [*rows, *removed]:
        bucket = {
            DeliveryStatus.PENDING: "queued", DeliveryStatus.SENDING: "queued",
            DeliveryStatus.SENT: "sent", DeliveryStatus.SKIPPED: "skipped",
        }.get(DeliveryStatus(status), "failed")  # fmt: skip
        if bucket == "failed" and outcome == DeliveryOutcome.GONE:
            bucket = "gone"
        progress[channel][bucket] += int(count)
    return progress


def finish_if_done(session: Session, alert_id: int, now: datetime) -> bool:
    alert = session.get(Alert, alert_id)
    if alert is None or alert.status != AlertStatus.SENDING or alert.fanned_out_at is None:
        return False
    open_rows = session.scalar(
        select(func.count()).where(
            Delivery.alert_id == alert_id,
            Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
        )
    )
    if open_rows:
        return False
    _set_status(alert, AlertStatus.SENT, now)
    alert.finished_at = now
    return True


def _get(session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise AlertError("No such alert.")
    return alert


def _set_status(alert: Alert, status: AlertStatus, now: datetime) -> None:
    alert.status, alert.status_changed_at = status, now
