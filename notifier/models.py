"""SQLAlchemy 2 typed models. State is data with a reason: enums say why a row stopped."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from notifier.timeutil import UTCDateTime, utcnow

# A delivery's id: 64 bits on PostgreSQL. Each story writes a row per reader and channel, and
# ids are never reused: 100,000 readers and 40 stories a day spend 32 bits in about 18
# months, whatever retention removes, and every fan-out would then fail. SQLite's INTEGER
# primary key is 64 bits already (and only INTEGER makes it the rowid).
DELIVERY_ID = BigInteger().with_variant(Integer, "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    # Every model maps one plain table (none maps a join or a select), so its __table__ is a
    # Table: Core statements (update, insert ... on conflict) take it as such.
    __table__: ClassVar[Table]


def _enum(enum_class: type[enum.Enum]) -> Enum:
    """Stored as short strings with a CHECK constraint: portable and easy to migrate."""
    return Enum(
        enum_class,
        native_enum=False,
        length=20,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class SubscriberStatus(enum.StrEnum):
    PENDING = (
        "pending"  # signed up, confirmation email sent, not confirmed: only confirmations go out
    )
    ACTIVE = "active"  # confirmed the address: receives notifications for its categories
    UNSUBSCRIBED = "unsubscribed"  # left on their own (link, one-click, preferences page)
    BOUNCED = "bounced"  # suppressed: hard bounces (SMTP 5xx, DSN 5.x.x) or soft ones over days
    COMPLAINED = "complained"  # marked our email as spam: every category dropped, no email at all


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # recorded, waiting to be sent (or to be retried at next_attempt_at)
    SENDING = "sending"  # claimed by a worker until lease_until
    SENT = "sent"  # accepted by the SMTP server / push service
    FAILED = "failed"  # permanent failure, or temporary failures past the attempt limit
    SKIPPED = "skipped"  # not sent on purpose: the reader left or changed categories meanwhile


class DeliveryOutcome(enum.StrEnum):
    """How a delivery ended, as data (the detail is in last_error); NULL while it may still go."""

    SENT = "sent"  # accepted by the SMTP server / push service
    GONE = "gone"  # the recipient no longer exists (SMTP 5xx at RCPT, push 404/410)
    FAILED = "failed"  # refused for good, or temporary failures past the attempt limit or age
    SKIPPED = "skipped"  # not sent on purpose; last_error says why (reader left, alert stopped)
    BOUNCED = "bounced"  # accepted, then returned for good (a DSN 5.x.x); last_error says why
    COMPLAINED = "complained"  # accepted, then reported as spam by the reader (ARF, provider)


class Cadence(enum.StrEnum):
    """How a followed category reaches a reader by email (not following it is "off")."""

    INSTANT = "instant"  # each article as it is published: today's behaviour, the default
    DAILY = "daily"  # in one digest a day, at the reader's digest hour
    WEEKLY = "weekly"  # in one digest a week, at the reader's digest weekday and hour


class PushStatus(enum.StrEnum):
    ACTIVE = "active"  # receives pushes for its categories
    UNSUBSCRIBED = "unsubscribed"  # the reader turned push off (page, widget or manage link)
    GONE = "gone"  # the push service answered 404/410: the browser dropped it; never send again


class EditorRole(enum.StrEnum):
    EDITOR = "editor"  # composes and sends breaking alerts
    ADMIN = "admin"  # also manages editors and API tokens


class AlertStatus(enum.StrEnum):
    SCHEDULED = "scheduled"  # waits for send_at; can be cancelled
    QUEUED = "queued"  # accepted to go out now; the fan-out has not run yet
    SENDING = "sending"  # deliveries planned and going out; can be stopped
    SENT = "sent"  # every delivery reached a final state
    CANCELLED = "cancelled"  # cancelled before it started: nothing went out
    STOPPED = "stopped"  # stopped while sending: what was sent stays sent, nothing more goes


subscriber_categories = Table(
    "subscriber_categories",
    Base.metadata,
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("category_id", ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True),
    # Rows written through Subscriber.categories take the server default: instant.
    Column(
        "cadence",
        Enum(
            Cadence,
            native_enum=False,
            length=10,
            name="cadence",
            values_callable=lambda members: [m.value for m in members],
        ),
        nullable=False,
        server_default=Cadence.INSTANT.value,
    ),
    Index("ix_subscriber_categories_category", "category_id", "subscriber_id"),
)

push_subscription_categories = Table(
    "push_subscription_categories",
    Base.metadata,
    Column(
        "push_subscription_id",
        ForeignKey(
            "push_subscriptions.id",
            ondelete="CASCADE",
            name="fk_push_subscription_categories_subscription",
        ),
        primary_key=True,
    ),
    Column(
        "category_id",
        ForeignKey(
            "categories.id", ondelete="CASCADE", name="fk_push_subscription_categories_category"
        ),
        primary_key=True,
    ),
    Index("ix_push_subscription_categories_category", "category_id", "push_subscription_id"),
)

alert_categories = Table(
    "alert_categories",
    Base.metadata,
    Column("alert_id", ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
    Column("category_id", ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True),
)

article_categories = Table(
    "article_categories",
    Base.metadata,
    Column("article_id", ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    Column("category_id", ForeignKey("categories.id", ondelete="CASCADE"), primary_key=True),
)


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # WordPress's term id, once the CMS webhook named it: the one identifier that survives a
    # rename. None for categories only ever seen in a feed (feeds carry names only).
    wp_term_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    status: Mapped[SubscriberStatus] = mapped_column(
        _enum(SubscriberStatus), default=SubscriberStatus.PENDING
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    manage_link_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Confirmation links issued before this are dead: one was used, or the reader left since.
    confirm_links_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The reader paused all email until then (preferences page): none is planned or sent to
    # them before it, and it starts again by itself. None: not paused.
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Ops lifted a suppression then: bounces before it no longer count toward the limits.
    bounces_forgiven_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Digests come at this local hour (daily) and weekday (weekly, 0 = Monday) in this IANA
    # zone, taken from the browser at sign-up and editable on the preferences page. Server
    # defaults only: core inserts into older schemas (migration tests) must not name them.
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    digest_hour: Mapped[int] = mapped_column(Integer, server_default="7")
    digest_weekday: Mapped[int] = mapped_column(Integer, server_default="0")

    categories: Mapped[list[Category]] = relationship(
        secondary=subscriber_categories, order_by=Category.name
    )


class PushSubscription(Base):
    """One browser's push subscription. Rows are never deleted: state says why it stopped."""

    __tablename__ = "push_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(2000), unique=True)
    p256dh: Mapped[str] = mapped_column(String(200))
    auth: Mapped[str] = mapped_column(String(100))
    status: Mapped[PushStatus] = mapped_column(_enum(PushStatus), default=PushStatus.ACTIVE)
    status_reason: Mapped[str | None] = mapped_column(Text)
    site_origin: Mapped[str | None] = mapped_column(String(300))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The browser's IANA zone (sent by the page or widget) and its quiet hours in it: no push
    # arrives from quiet_start:00 to quiet_end:00 local time (may span midnight); both None:
    # none. Server default only for timezone, as on subscribers.
    timezone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    quiet_start: Mapped[int | None] = mapped_column(Integer)
    quiet_end: Mapped[int | None] = mapped_column(Integer)

    categories: Mapped[list[Category]] = relationship(
        secondary=push_subscription_categories, order_by=Category.name
    )


class Feed(Base):
    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class Article(Base):
    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    # None for articles announced by the CMS webhook before any feed saw them.
    feed_id: Mapped[int | None] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    guid: Mapped[str] = mapped_column(String(2000), unique=True)
    link: Mapped[str] = mapped_column(String(2000))
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    image_url: Mapped[str | None] = mapped_column(String(2000))
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Decided once, when the guid is first seen: edits and re-publishes never flip it.
    announce: Mapped[bool] = mapped_column(Boolean, default=False)
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    categories: Mapped[list[Category]] = relationship(
        secondary=article_categories, order_by=Category.name
    )
    feed: Mapped[Feed | None] = relationship()


class Editor(Base):
    __tablename__ = "editors"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[EditorRole] = mapped_column(_enum(EditorRole), default=EditorRole.EDITOR)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Copied into each login's session cookie; raised by logout, a new password or disabling,
    # which ends every session of this editor (a signed cookie cannot be taken back).
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(Base):
    """A bearer token for scripts and the CMS; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # shown in lists to tell tokens apart
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("editors.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginAttempt(Base):
    """Failed logins by IP and by account, for rate limiting across processes."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(400))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Alert(Base):
    """A breaking alert written by an editor (or a script), sent now or at send_at."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str] = mapped_column(String(2000))
    image_url: Mapped[str | None] = mapped_column(String(2000))
    target_all: Mapped[bool] = mapped_column(Boolean, default=False)
    send_email: Mapped[bool] = mapped_column(Boolean, default=True)
    send_push: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[AlertStatus] = mapped_column(_enum(AlertStatus), default=AlertStatus.QUEUED)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("editors.id"))
    api_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    # A retried API call or a double-clicked Send carries the same key: one alert.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    # Its pushes go through readers' quiet hours (the editor ticked it): breaking news only.
    override_quiet_hours: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # every chunk planned
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    categories: Mapped[list[Category]] = relationship(
        secondary=alert_categories, order_by=Category.name
    )
    created_by: Mapped[Editor | None] = relationship()


class PushServiceBackoff(Base):
    """A push service asked us to wait (429 + Retry-After): every worker process honours it."""

    __tablename__ = "push_service_backoffs"

    origin: Mapped[str] = mapped_column(String(300), primary_key=True)
    blocked_until: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)


class WorkerHeartbeat(Base):
    """The last sign of life of each Celery worker (written every few seconds by the worker)."""

    __tablename__ = "worker_heartbeats"

    hostname: Mapped[str] = mapped_column(String(300), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    concurrency: Mapped[int] = mapped_column(Integer, default=0)
    active_tasks: Mapped[int] = mapped_column(Integer, default=0)
    pid: Mapped[int] = mapped_column(Integer, default=0)
    # "host name/boot id" of the machine it runs on: a row from this machine whose process is
    # gone is a restart; one from another machine still written to is a twin under one name.
    machine: Mapped[str | None] = mapped_column(String(300))


class TaskFailure(Base):
    """A task that failed for good (no retry left), with its cause: nothing fails silently."""

    __tablename__ = "task_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_name: Mapped[str] = mapped_column(String(200))
    task_id: Mapped[str] = mapped_column(String(64))
    cause: Mapped[str] = mapped_column(Text)  # "ErrorType: message", addresses masked
    arguments: Mapped[str] = mapped_column(Text)  # the ids it was given, as JSON
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SweepRun(Base):
    """What one sweep had to re-queue. Zero in normal operation: work comes back by itself."""

    __tablename__ = "sweep_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    swept_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    articles: Mapped[int] = mapped_column(Integer)
    alerts: Mapped[int] = mapped_column(Integer)
    deliveries: Mapped[int] = mapped_column(Integer)


class RecoveryCause(enum.StrEnum):
    DEAD_WORKER = "dead_worker"  # claims of a worker process known dead, taken over at once
    BROKER_LOST = "broker_lost"  # the broker lost its queues: every unsent row queued again
    # The broker did not take a chunk (down, unreachable): handed over once it answered.
    BROKER_UNREACHABLE = "broker_unreachable"


class Recovery(Base):
    """Deliveries queued again at once after a fault, and why. Zero in normal operation."""

    __tablename__ = "recoveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recovered_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    cause: Mapped[RecoveryCause] = mapped_column(_enum(RecoveryCause))
    deliveries: Mapped[int] = mapped_column(Integer)


class UnsentTask(Base):
    """A task the broker did not take when it was sent (down, unreachable, the publish
    failed), kept with the cause until a worker hands it over (notifier.delivery.unsent)."""

    __tablename__ = "unsent_tasks"
    __table_args__ = (
        # What the workers' frequent check reads: the few still waiting, oldest first.
        Index(
            "ix_unsent_tasks_waiting",
            "id",
            postgresql_where=text("handed_over_at IS NULL"),
            sqlite_where=text("handed_over_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_name: Mapped[str] = mapped_column(String(200))
    arguments: Mapped[str] = mapped_column(Text)  # the task's positional arguments, as JSON
    deliveries: Mapped[int] = mapped_column(Integer, default=0)  # a chunk: how many rows
    cause: Mapped[str] = mapped_column(Text)  # why the broker did not take it
    kept_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the task was to run (its ETA)
    # A paced channel's chunk: when its turn comes (its rows are noted queued until then).
    turn_at: Mapped[datetime] = mapped_column(UTCDateTime)
    handed_over_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: waiting


class DigestSchedule(Base):
    """When a reader's next daily or weekly digest is due, and since when its articles count.
    A row exists while the reader has a category at that cadence; planning a digest moves
    `next_at` past now in the same transaction, so a beat firing twice plans it once."""

    __tablename__ = "digest_schedules"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    cadence: Mapped[str] = mapped_column(String(10), primary_key=True)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime)


class DigestLeftover(Base):
    """An article whose instant email came too late (stale, see notifier.delivery.stale_news)
    for a reader who also takes a digest: it goes in that reader's next digest, which takes
    the row away in the transaction that plans it."""

    __tablename__ = "digest_leftovers"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
    )
    left_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Digest(Base):
    """One reader's digest for one period (unique: a second planning adds nothing), its
    articles fixed when planned, so a retry or a takeover sends the same digest."""

    __tablename__ = "digests"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "cadence", "due_at", name="uq_digests_period"),
        # A reader's other digests reaching into a period being planned (digest_selection).
        Index("ix_digests_subscriber_id_until", "subscriber_id", "until"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    cadence: Mapped[str] = mapped_column(String(10))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the period: its local digest time
    since: Mapped[datetime] = mapped_column(UTCDateTime)  # articles first seen after this
    until: Mapped[datetime] = mapped_column(UTCDateTime)  # … and up to this
    article_ids: Mapped[str] = mapped_column(Text)  # JSON list, newest first
    # JSON list: the reader's digest categories (and those of stale articles left for it)
    category_ids: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


QUEUED_BY_WAITING = "status = 'pending' AND queued_by IS NOT NULL"


class Delivery(Base):
    """One message for one recipient on one channel; the unique keys make re-planning harmless.

    The notice is an article, an alert or a digest; the recipient is a subscriber (email) or a push
    subscription (push); never both of either.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        # Partial: a row names one notice and one recipient, so it sits in one unique index
        # (not four), and each status change writes one entry there, not four.
        *(
            Index(
                name,
                notice,
                recipient,
                "channel",
                unique=True,
                postgresql_where=text(f"{notice} IS NOT NULL AND {recipient} IS NOT NULL"),
                sqlite_where=text(f"{notice} IS NOT NULL AND {recipient} IS NOT NULL"),
            )
            for name, notice, recipient in (
                ("uq_deliveries_recipient", "article_id", "subscriber_id"),
                ("uq_deliveries_push_recipient", "article_id", "push_subscription_id"),
                ("uq_deliveries_alert_recipient", "alert_id", "subscriber_id"),
                ("uq_deliveries_alert_push_recipient", "alert_id", "push_subscription_id"),
                ("uq_deliveries_digest_recipient", "digest_id", "subscriber_id"),
            )
        ),
        CheckConstraint(
            "(CASE WHEN article_id IS NULL THEN 0 ELSE 1 END"
            " + CASE WHEN alert_id IS NULL THEN 0 ELSE 1 END"
            " + CASE WHEN digest_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_notice",
        ),
        CheckConstraint(
            "(subscriber_id IS NULL) <> (push_subscription_id IS NULL)", name="one_recipient"
        ),
        # Retention walks old rows in planning-time order, a batch after the other
        # (notifier.domain.retention). A B-tree: BRIN would be cheaper to write, but once
        # removed rows' pages are reused by new ones its ranges span every date and it no
        # longer narrows anything.
        Index("ix_deliveries_created_at", "created_at", "id"),
        # Only rows that can still be due: sent ones leave it.
        Index(
            "ix_deliveries_due",
            "status",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'sending')"),
            sqlite_where=text("status IN ('pending', 'sending')"),
        ),
        # The worker processes that noted rows queued, for takeover (notifier.delivery.takeover):
        # only rows still waiting for a sender, so claimed and finished rows leave it.
        Index(
            "ix_deliveries_queued_by",
            "queued_by",
            postgresql_where=text(QUEUED_BY_WAITING),
            sqlite_where=text(QUEUED_BY_WAITING),
        ),
        # Counting a browser's pushes of its local day (PUSH_DAILY_CAP): only counted rows.
        Index(
            "ix_deliveries_push_day",
            "push_subscription_id",
            "push_day",
            postgresql_where=text("push_day IS NOT NULL"),
            sqlite_where=text("push_day IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(DELIVERY_ID, primary_key=True)
    article_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("digests.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE")
    )
    push_subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("push_subscriptions.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Written with the final status by whoever records it (notifier.delivery.recording);
    # ops, metrics and alert progress read it. last_error keeps the detail, as text.
    outcome: Mapped[DeliveryOutcome | None] = mapped_column(_enum(DeliveryOutcome))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When a task for it was last handed to the broker (or is due to run, for a retry): the
    # sweeper re-queues only work the broker has held for too long, i.e. lost.
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The worker process that last noted it queued ("node/main pid/pid"; None outside a
    # worker): a process killed between its commit and handing the task to the broker leaves
    # its rows noted queued, and while they wait for a sender (pending) they are queued again
    # once it is known dead (notifier.delivery.takeover), not when the sweeper thinks them lost.
    queued_by: Mapped[str | None] = mapped_column(String(300))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The worker process holding the claim ("node/main pid/pid"; None outside a worker): when
    # it is known dead its rows are taken over at once. The token fences recording: only the
    # claim that wrote it may record an outcome.
    claimed_by: Mapped[str | None] = mapped_column(String(300))
    claim_token: Mapped[str | None] = mapped_column(String(32))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Quiet hours held this push until then (next_attempt_at was set to it); when it comes
    # due, it is dropped if its news has gone stale (notifier.delivery.push_gate).
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The browser's local day (YYYY-MM-DD) this push counted toward PUSH_DAILY_CAP on; set
    # once, before it is sent, so a retry is not counted twice.
    push_day: Mapped[str | None] = mapped_column(String(10))

    @property
    def recipient_id(self) -> int:
        """The reader (email) or browser (push) it goes to; CHECK one_recipient sets one."""
        recipient_id = (
            self.subscriber_id if self.subscriber_id is not None else self.push_subscription_id
        )
        if recipient_id is None:
            raise ValueError(f"delivery {self.id} has no recipient")
        return recipient_id


class DeliverySummary(Base):
    """Deliveries removed by retention, counted: per notice, channel, status, outcome and skip
    reason, in the hour they were planned and the hour they ended. Readers of delivery counts
    add these to the ledger's rows (notifier.domain.delivery_counts), so history, ops charts,
    alert pages and rates show the same figures once the rows are gone."""

    __tablename__ = "delivery_summaries"
    __table_args__ = (
        UniqueConstraint(
            "notice_kind",
            "notice_id",
            "channel",
            "status",
            "outcome",
            "reason",
            "created_hour",
            "ended_hour",
            name="uq_delivery_summaries_key",
        ),
        Index("ix_delivery_summaries_ended_hour", "ended_hour"),
        Index("ix_delivery_summaries_created_hour", "created_hour"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_kind: Mapped[str] = mapped_column(String(10))  # article | alert | digest
    notice_id: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))  # a final DeliveryStatus
    outcome: Mapped[str] = mapped_column(String(20))  # DeliveryOutcome (the status if none)
    reason: Mapped[str] = mapped_column(String(200), default="")  # why skipped; "" otherwise
    created_hour: Mapped[datetime] = mapped_column(UTCDateTime)  # planned in this hour (UTC)
    # Went out (sent_at) or was last tried (next_attempt_at) in this hour (UTC).
    ended_hour: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer)


class RetentionRun(Base):
    """One run of the retention job: what it removed, how long it took, and why it stopped
    if it failed (nothing fails silently: /ops/, `notifier status` and /metrics show it)."""

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: still running
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime)  # rows planned before it went
    removed: Mapped[int] = mapped_column(Integer, default=0)
    batches: Mapped[int] = mapped_column(Integer, default=0)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)  # False: time ran out first
    error: Mapped[str | None] = mapped_column(Text)  # "ErrorType: message" when it failed


class BounceKind(enum.StrEnum):
    """What a message that came back to a bounce address turned out to be."""

    HARD = "hard"  # returned for good (DSN 5.x.x): counts toward EMAIL_BOUNCE_LIMIT
    SOFT = "soft"  # returned for now (4.x.x, mailbox full, refused by policy): counts over days
    COMPLAINT = "complaint"  # the reader reported our email as spam (ARF feedback report)
    DELAY = "delay"  # the reader's server is still trying (DSN action "delayed"): ignored
    AUTO_REPLY = "auto_reply"  # a vacation notice or other automatic answer: ignored
    UNRELATED = "unrelated"  # not a report about our mail: kept for ops, never acted on


class BounceReport(Base):
    """One message returned to us, as evidence: what it said, which delivery it named, and the
    raw message itself until BOUNCE_REPORT_DAYS pass (then only the summary stays)."""

    __tablename__ = "bounce_reports"
    # A relay's webhook sends an event again until we answer 2xx: its id is seen only once.
    __table_args__ = (
        Index("uq_bounce_reports_source_event_id", "source", "event_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    source: Mapped[str] = mapped_column(String(40))  # "listener", "imap", "ses", ...
    # The relay's own id of the event (SES feedback id and recipient, Postmark's ID, ...);
    # None for returned mail, which is recognised by its digest.
    event_id: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[BounceKind] = mapped_column(_enum(BounceKind))
    # The delivery the report named (signed bounce address or our Message-ID); None: no
    # delivery of ours, and then nothing is acted on.
    delivery_id: Mapped[int | None] = mapped_column(
        DELIVERY_ID, ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    recipient: Mapped[str | None] = mapped_column(String(320))  # as the report names it
    status: Mapped[str | None] = mapped_column(String(20))  # RFC 3463 code, e.g. 5.1.1
    reason: Mapped[str] = mapped_column(Text)  # the diagnostic, or why it was ignored
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256: a replay is seen
    raw: Mapped[str | None] = mapped_column(Text)  # None once BOUNCE_REPORT_DAYS passed


class SuppressionReason(enum.StrEnum):
    HARD_BOUNCES = "hard_bounces"  # EMAIL_BOUNCE_LIMIT hard bounces
    SOFT_BOUNCES = "soft_bounces"  # soft bounces on SOFT_BOUNCE_DAYS days within the window
    COMPLAINT = "complaint"  # a spam complaint: stopped at once, every category dropped


class Suppression(Base):
    """An address we stopped mailing, why, on whose evidence, and whether ops lifted it."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    reason: Mapped[SuppressionReason] = mapped_column(_enum(SuppressionReason))
    source: Mapped[str] = mapped_column(String(40))  # "smtp" (at send time), "listener", ...
    detail: Mapped[str] = mapped_column(Text)
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("bounce_reports.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: still in force
    lifted_by: Mapped[str | None] = mapped_column(String(320))

    report: Mapped[BounceReport | None] = relationship()
