"""`notifier bounces` for real: returned mail over SMTP and LMTP into the processor, and the
issue's end-to-end story from an article going out to a suppression lifted."""

from __future__ import annotations

import smtplib

import pytest
from sqlalchemy import select

from notifier.db import session_factory
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.domain.suppressions import SuppressionQuery, lift, list_suppressions
from notifier.inbound.listener import bounce_listener
from notifier.models import (
    BounceKind,
    BounceReport,
    Delivery,
    DeliveryOutcome,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from notifier.timeutil import utcnow
from tests import factories
from tests.bounces.corpus import CORPUS, load
from tests.conftest import make_settings
from tests.support.queue import article_fanned_out
from tests.support.smtp import free_port

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def bounce_settings(settings):
    # BOUNCE_DOMAIN is empty by default, and the listener needs a free port of its own.
    return settings.with_overrides(
        bounce_domain="bounces.aze.test", bounce_listen=f"127.0.0.1:{free_port()}"
    )


@pytest.fixture(params=["smtp", "lmtp"])
def listener(request, bounce_settings):
    lmtp = request.param == "lmtp"
    controller = bounce_listener(bounce_settings, session_factory(bounce_settings.database_url),
                                 lmtp=lmtp)  # fmt: skip
    controller.start()
    yield controller, lmtp
    controller.stop()


def _hand_over(listener, raw: bytes, to: str) -> None:
    controller, lmtp = listener
    client = smtplib.LMTP if lmtp else smtplib.SMTP
    with client(controller.hostname, controller.port) as connection:
        connection.sendmail("", [to], raw)


def _send_article(session, settings, title):
    story = factories.article(session, "news", title=title)
    session.commit()
    ids = article_fanned_out(session, settings, story.id)[1]
    send_deliveries(session, ids, outlets(settings, Composer(settings)), settings)
    return story


@on_postgresql
def test_every_shape_in_the_corpus_arrives_and_is_classified(
    session, smtp, bounce_settings, listener
):
    for number, (name, expected) in enumerate(sorted(CORPUS.items())):
        reader = factories.subscriber(session, f"reader{number}@example.com", "news")
        for other in session.scalars(select(Subscriber).where(Subscriber.id != reader.id)):
            other.categories = []  # each shape is about one reader's one email
        _send_article(session, bounce_settings, name)
        [sent] = smtp.handler.received[-1:]
        assert sent.rcpt_tos == [reader.email]
        raw = load(name, reader.email, sent.mail_from, sent.message["Message-ID"])
        _hand_over(listener, raw, sent.mail_from)
        session.expire_all()
        report = session.scalar(select(BounceReport).order_by(BounceReport.id.desc()))
        assert (report.kind, report.status) == (expected.kind, expected.status), name
        assert report.source == "listener" and report.subscriber_id == reader.id
        session.refresh(reader)
        complained = expected.kind == BounceKind.COMPLAINT
        assert (reader.status == SubscriberStatus.COMPLAINED) == complained, name


@on_postgresql
def test_mail_for_any_other_domain_and_oversized_mail_are_refused(bounce_settings, listener):
    controller, lmtp = listener
    client = smtplib.LMTP if lmtp else smtplib.SMTP
    with (
        client(controller.hostname, controller.port) as connection,
        pytest.raises(smtplib.SMTPRecipientsRefused),
    ):
        connection.sendmail("", ["someone@aze.test"], b"Subject: hi\r\n\r\nrelay me")
    with client(controller.hostname, controller.port) as connection:
        big = b"Subject: big\r\n\r\n" + b"x" * (bounce_settings.bounce_max_bytes + 10)
        with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPSenderRefused)):
            connection.sendmail("", ["bounces+1.x@bounces.aze.test"], big)


def test_the_listener_needs_a_bounce_domain(tmp_path):
    with pytest.raises(ValueError, match="BOUNCE_DOMAIN"):
        bounce_listener(make_settings(tmp_path), session_factory("sqlite://"))


@on_postgresql
def test_a_dsn_through_the_listener_bounces_suppresses_and_ops_can_lift_it(
    session, smtp, bounce_settings, listener
):
    ann = factories.subscriber(session, "ann@example.com", "news")
    factories.subscriber(session, "bob@example.com", "news")
    for number in range(3):
        _send_article(session, bounce_settings, f"Story {number}")
        [sent_to_ann] = [r for r in smtp.handler.received[-2:] if r.rcpt_tos == [ann.email]]
        dsn = load("postfix_user_unknown.eml", ann.email, sent_to_ann.mail_from,
                   sent_to_ann.message["Message-ID"])  # fmt: skip
        _hand_over(listener, dsn, sent_to_ann.mail_from)
        session.expire_all()
        delivery = session.scalars(
            select(Delivery).where(Delivery.subscriber_id == ann.id).order_by(Delivery.id.desc())
        ).first()
        assert delivery.outcome == DeliveryOutcome.BOUNCED
        assert "User unknown in virtual mailbox table" in delivery.last_error
        session.refresh(ann)
        assert ann.status == (SubscriberStatus.BOUNCED if number == 2 else SubscriberStatus.ACTIVE)

    before = len(smtp.handler.received)
    _send_article(session, bounce_settings, "Not for Ann")
    assert [r.rcpt_tos for r in smtp.handler.received[before:]] == [["bob@example.com"]]

    [listed] = list_suppressions(session, SuppressionQuery(search="ann@"))
    assert listed.source == "listener" and "3 hard bounces" in listed.detail
    assert "User unknown" in listed.report.raw and listed.report.status == "5.1.1"
    lift(session, listed.id, "ops@aze.test", utcnow())
    session.commit()

    before = len(smtp.handler.received)
    _send_article(session, bounce_settings, "For Ann again")
    assert sorted(r.rcpt_tos[0] for r in smtp.handler.received[before:]) == [
        "ann@example.com",
        "bob@example.com",
    ]
    assert session.scalar(select(Suppression).where(Suppression.lifted_at.is_(None))) is None


def _failed_listener_reports(settings):
    from notifier.models import TaskFailure

    with session_factory(settings.database_url)() as session:
        return session.scalars(
            select(TaskFailure).where(TaskFailure.task_name == "notifier.bounces.listener")
        ).all()


@on_postgresql
def test_a_report_stored_while_the_database_is_away_is_answered_451_and_recorded(
    bounce_settings, pg_url
):
    from tests.test_metrics import in_process

    # The listener's own database is unreachable (nothing listens on port 1); the failure is
    # recorded where status, /ops/ and /metrics read it.
    away = session_factory(pg_url.rsplit("@", 1)[0] + "@127.0.0.1:1/test")
    controller = bounce_listener(bounce_settings, away)
    controller.start()
    before = in_process("notifier_bounce_reports_unprocessed_total", source="listener",
                        cause="database")  # fmt: skip
    try:
        raw = load("postfix_user_unknown.eml", "ann@example.com", "bounces@bounces.aze.test",
                   "<article1.d1@aze.test>")  # fmt: skip
        with (
            smtplib.SMTP(controller.hostname, controller.port) as connection,
            pytest.raises(smtplib.SMTPDataError) as refused,
        ):
            connection.sendmail("", ["postmaster@bounces.aze.test"], raw)
    finally:
        controller.stop()
    assert refused.value.smtp_code == 451, "the sender keeps the report and retries"
    [failure] = _failed_listener_reports(bounce_settings)
    assert failure.cause.startswith("OperationalError")
    assert in_process("notifier_bounce_reports_unprocessed_total", source="listener",
                      cause="database") == before + 1  # fmt: skip


def test_a_report_naming_a_delivery_id_beyond_any_row_is_not_ours(bounce_settings, listener):
    """Message-ID of our shape and domain, but an id no INTEGER column can hold: taken and
    ignored (250), never a lookup error the sender would retry for days."""
    raw = load("postfix_user_unknown.eml", "ann@example.com", "bounces@bounces.aze.test",
               "<article1.d99999999999999999999999@aze.test>")  # fmt: skip
    _hand_over(listener, raw, "postmaster@bounces.aze.test")
    assert _failed_listener_reports(bounce_settings) == []


def _broken_sessions():
    """Stands in for a processor bug: anything but a database outage."""
    raise RuntimeError("the processor failed")


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_a_report_that_cannot_be_processed_is_answered_451_and_recorded(bounce_settings, lmtp):
    """Whatever goes wrong in processing is kept with its cause, not swallowed, and the sender
    is told to try again (451), so the report is not lost either."""
    from notifier.ops.status import gather_status
    from notifier.web import create_app
    from tests.test_metrics import in_process

    before = in_process("notifier_bounce_reports_unprocessed_total", source="listener",
                        cause="error")  # fmt: skip
    raw = load("postfix_user_unknown.eml", "ann@example.com", "bounces@bounces.aze.test",
               "<article1.d1@aze.test>")  # fmt: skip
    controller = bounce_listener(bounce_settings, _broken_sessions, lmtp=lmtp)
    controller.start()
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            _hand_over((controller, lmtp), raw, "postmaster@bounces.aze.test")
    finally:
        controller.stop()
    assert refused.value.smtp_code == 451
    [failure] = _failed_listener_reports(bounce_settings)
    assert "RuntimeError" in failure.cause and "report_sha256" in failure.arguments
    assert in_process("notifier_bounce_reports_unprocessed_total", source="listener",
                      cause="error") == before + 1  # fmt: skip
    from notifier.celery_app import make_celery
    from notifier.timeutil import utcnow

    with session_factory(bounce_settings.database_url)() as session:
        report = gather_status(session, make_celery(bounce_settings), bounce_settings, utcnow())
    assert [g.task for g in report.task_failures_last_day] == ["listener"]
    metrics = create_app(bounce_settings).test_client().get("/metrics").text
    assert 'notifier_task_failures_recent{task="listener"} 1.0' in metrics


def test_reports_processed_are_counted_by_kind(bounce_settings, listener):
    from tests.test_metrics import in_process

    before = in_process("notifier_bounce_reports_total", source="listener", kind="auto_reply")
    raw = load("vacation_rfc3834.eml", "ann@example.com", "bounces@bounces.aze.test",
               "<article1.d1@aze.test>")  # fmt: skip
    _hand_over(listener, raw, "postmaster@bounces.aze.test")
    _hand_over(listener, raw, "postmaster@bounces.aze.test")
    assert in_process("notifier_bounce_reports_total", source="listener",
                      kind="auto_reply") == before + 1  # fmt: skip
    assert in_process("notifier_bounce_reports_total", source="listener", kind="replay") >= 1
