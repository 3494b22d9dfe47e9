"""The bounce processor on real databases: a report tied to its delivery by the signed bounce
address is kept and applied; hard bounces count with the send-time ones, soft ones only over
days, a complaint stops everything at once; auto-replies and strangers change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from notifier.domain.bounces import drop_old_raw_reports, process_report
from notifier.domain.suppressions import SuppressionError, lift
from notifier.inbound.processing import bounce_addresses, bounce_policy
from notifier.models import (
    BounceKind,
    BounceReport,
    Delivery,
    DeliveryOutcome,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from notifier.timeutil import utcnow
from tests import factories
from tests.bounces.corpus import CORPUS, load


@pytest.fixture
def bounce_settings(settings):
    # BOUNCE_DOMAIN is empty by default: these deployments read their returned mail.
    return settings.with_overrides(bounce_domain="bounces.aze.test")


def _sent(session, reader):
    """An article emailed to the reader: its delivery, as the send path leaves it."""
    story = factories.article(session, "news")
    delivery = Delivery(article_id=story.id, subscriber_id=reader.id, channel="email",
                        status=DeliveryStatus.SENT, outcome=DeliveryOutcome.SENT, attempts=1,
                        sent_at=utcnow())  # fmt: skip
    session.add(delivery)
    session.flush()
    return delivery


def _returned(session, settings, name, delivery, at=None, verp=True, to=None):
    addresses = bounce_addresses(settings)
    reader = delivery.subscriber_id and session.get(Subscriber, delivery.subscriber_id)
    bounce_to = addresses.address(delivery.id) if verp else "postmaster@bounces.aze.test"
    raw = load(name, to or reader.email, bounce_to, f"<article{delivery.article_id}.d"
               f"{delivery.id}@aze.test>")  # fmt: skip
    processed = process_report(session, raw, "listener", at or utcnow(), bounce_policy(settings),
                               addresses, (bounce_to,))  # fmt: skip
    session.commit()
    return processed


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_report_is_kept_tied_to_its_delivery(session, bounce_settings, name):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery = _sent(session, reader)
    processed = _returned(session, bounce_settings, name, delivery)

    report = session.get(BounceReport, processed.report_id)
    assert (report.kind, report.status) == (CORPUS[name].kind, CORPUS[name].status)
    assert report.delivery_id == delivery.id and report.subscriber_id == reader.id
    verp = bounce_addresses(bounce_settings).address(delivery.id)
    sent = load(name, reader.email, verp, f"<article{delivery.article_id}.d{delivery.id}@aze.test>")
    assert report.raw == sent.decode()  # the evidence, as it came
    session.refresh(delivery)
    expected_outcome = {BounceKind.HARD: DeliveryOutcome.BOUNCED,
                        BounceKind.COMPLAINT: DeliveryOutcome.COMPLAINED}.get(
        CORPUS[name].kind, DeliveryOutcome.SENT)  # fmt: skip
    assert delivery.outcome == expected_outcome
    if expected_outcome == DeliveryOutcome.BOUNCED:
        assert delivery.last_error.startswith(f"bounced: {report.status} ")
    session.refresh(reader)
    complaint = CORPUS[name].kind == BounceKind.COMPLAINT
    assert reader.status == (SubscriberStatus.COMPLAINED if complaint else SubscriberStatus.ACTIVE)


def test_the_third_hard_bounce_suppresses_counting_the_send_time_ones(session, bounce_settings):
    reader = factories.subscriber(session, "ann@example.com", "news")
    refused_at_send = _sent(session, reader)
    refused_at_send.status, refused_at_send.outcome = DeliveryStatus.FAILED, DeliveryOutcome.GONE
    first = _returned(session, bounce_settings, "gmail_user_unknown.eml", _sent(session, reader))
    assert not first.suppressed
    session.refresh(reader)
    assert reader.status == SubscriberStatus.ACTIVE
    third = _returned(session, bounce_settings, "ses_bounce.eml", _sent(session, reader))
    assert third.suppressed
    session.refresh(reader)
    assert reader.status == SubscriberStatus.BOUNCED
    [row] = session.scalars(select(Suppression))
    assert (row.email, row.reason, row.source) == (
        "ann@example.com",
        SuppressionReason.HARD_BOUNCES,
        "listener",
    )
    assert row.report_id == third.report_id and "3 hard bounces" in row.detail


def test_soft_bounces_suppress_only_on_several_different_days(session, bounce_settings):
    reader = factories.subscriber(session, "ann@example.com", "news")
    now = utcnow()
    for hour in range(5):  # a full mailbox all day long: not the reader's fault
        _returned(session, bounce_settings, "exim_dsn_mailbox_full.eml", _sent(session, reader),
                  at=now - timedelta(days=20, hours=hour))  # fmt: skip
    _returned(session, bounce_settings, "exim_dsn_mailbox_full.eml", _sent(session, reader),
              at=now - timedelta(days=2))  # fmt: skip
    session.refresh(reader)
    assert reader.status == SubscriberStatus.ACTIVE  # the first day is outside the window
    _returned(session, bounce_settings, "postfix_policy_reject.eml", _sent(session, reader),
              at=now - timedelta(days=1))  # fmt: skip
    session.refresh(reader)
    assert reader.status == SubscriberStatus.ACTIVE
    last = _returned(session, bounce_settings, "exim_dsn_mailbox_full.eml",
                     _sent(session, reader), at=now)  # fmt: skip
    assert last.suppressed
    session.refresh(reader)
    assert reader.status == SubscriberStatus.BOUNCED
    row = session.scalar(select(Suppression))
    assert row.reason == SuppressionReason.SOFT_BOUNCES and "3 days" in row.detail


def test_a_complaint_stops_everything_at_once_and_drops_every_category(session, bounce_settings):
    reader = factories.subscriber(session, "ann@example.com", "news", "economy")
    processed = _returned(session, bounce_settings, "yahoo_arf_complaint.eml",
                          _sent(session, reader))  # fmt: skip
    assert processed.suppressed
    session.refresh(reader)
    assert reader.status == SubscriberStatus.COMPLAINED and reader.categories == []
    row = session.scalar(select(Suppression))
    assert row.reason == SuppressionReason.COMPLAINT and "Yahoo" in row.detail


def test_a_complaint_without_our_bounce_address_is_tied_by_our_message_id_and_the_reader(
    session, bounce_settings
):
    # Feedback loops mail their reports to an address registered once, not to VERP.
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery = _sent(session, reader)
    processed = _returned(session, bounce_settings, "ses_complaint_arf.eml", delivery, verp=False)
    assert processed.delivery_id == delivery.id and processed.suppressed
    other = factories.subscriber(session, "bob@example.com", "news")
    # The same Message-ID reported for another reader: not tied, nobody suppressed.
    stray = _returned(session, bounce_settings, "yahoo_arf_complaint.eml", _sent(session, other),
                      verp=False, to="carol@example.com")  # fmt: skip
    assert stray.delivery_id is None
    session.refresh(other)
    assert other.status == SubscriberStatus.ACTIVE


def test_auto_replies_and_unrelated_mail_suppress_nobody(session, bounce_settings):
    reader = factories.subscriber(session, "ann@example.com", "news")
    for _ in range(3):
        for name in ("vacation_rfc3834.eml", "outlook_automatic_reply.eml",
                     "abwesenheit_x_autoreply.eml", "unrelated_reader_reply.eml",
                     "postfix_delayed.eml"):  # fmt: skip
            _returned(session, bounce_settings, name, _sent(session, reader))
    session.refresh(reader)
    assert reader.status == SubscriberStatus.ACTIVE
    assert session.scalar(select(Suppression)) is None


def test_a_report_for_a_forged_or_foreign_address_is_kept_and_acts_on_nobody(
    session, bounce_settings
):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery = _sent(session, reader)
    forged = "bounces+1.aaaaaaaaaaaaaaaa@bounces.aze.test"
    raw = load("postfix_user_unknown.eml", reader.email, forged, "<article1.d9999@elsewhere.test>")
    for _ in range(3):
        processed = process_report(session, raw + b" " * _, "listener", utcnow(),
                                   bounce_policy(bounce_settings),
                                   bounce_addresses(bounce_settings))  # fmt: skip
        assert processed.delivery_id is None
    session.commit()
    session.refresh(reader), session.refresh(delivery)
    assert reader.status == SubscriberStatus.ACTIVE and delivery.outcome == DeliveryOutcome.SENT


def test_the_same_report_twice_is_applied_once(session, bounce_settings):
    reader = factories.subscriber(session, "ann@example.com", "news")
    delivery = _sent(session, reader)
    first = _returned(session, bounce_settings, "gmail_user_unknown.eml", delivery)
    again = _returned(session, bounce_settings, "gmail_user_unknown.eml", delivery)
    assert again.replay and again.report_id == first.report_id
    assert len(list(session.scalars(select(BounceReport)))) == 1


def test_lifting_a_suppression_forgives_the_bounces_before_it(session, bounce_settings):
    reader = factories.subscriber(session, "ann@example.com", "news")
    for name in ("gmail_user_unknown.eml", "ses_bounce.eml", "postfix_user_unknown.eml"):
        _returned(session, bounce_settings, name, _sent(session, reader))
    row = session.scalar(select(Suppression))
    lift(session, row.id, "ops@aze.test", utcnow())
    session.commit()
    session.refresh(reader)
    assert reader.status == SubscriberStatus.ACTIVE and row.lifted_by == "ops@aze.test"
    with pytest.raises(SuppressionError, match="already lifted"):
        lift(session, row.id, "ops@aze.test", utcnow())
    _returned(session, bounce_settings, "microsoft_recipient_not_found.eml", _sent(session, reader))
    session.refresh(reader)
    assert reader.status == SubscriberStatus.ACTIVE  # one new bounce, not four


def test_raw_reports_are_dropped_after_the_set_days_and_the_summary_stays(session, bounce_settings):
    reader = factories.subscriber(session, "ann@example.com", "news")
    now = utcnow()
    old = _returned(session, bounce_settings, "gmail_user_unknown.eml", _sent(session, reader),
                    at=now - timedelta(days=bounce_settings.bounce_report_days + 1))  # fmt: skip
    new = _returned(session, bounce_settings, "ses_bounce.eml", _sent(session, reader), at=now)
    assert drop_old_raw_reports(session, now, bounce_settings.bounce_report_days) == 1
    session.commit()
    old_row, new_row = (
        session.get(BounceReport, old.report_id),
        session.get(BounceReport, new.report_id),
    )
    session.refresh(old_row), session.refresh(new_row)
    assert old_row.raw is None and old_row.status == "5.1.1" and new_row.raw is not None
