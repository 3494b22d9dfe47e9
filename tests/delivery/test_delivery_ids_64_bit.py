"""Delivery ids past 32 bits. A news site writes a delivery row per reader, story and channel
and never reuses an id: 100,000 readers and 40 stories a day pass 2**31 in about 18 months.
Past it, a fan-out still plans, claims, sends and records each reader once, a bounce still
finds its delivery, and migration 0027 carries an existing database over. PostgreSQL only:
SQLite's INTEGER ids are 64-bit already."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from notifier.db import engine_for
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.domain.bounces import process_report
from notifier.inbound.processing import bounce_addresses, bounce_policy
from notifier.models import Delivery, DeliveryStatus, Subscriber, SubscriberStatus
from notifier.schema import upgrade_database
from notifier.timeutil import utcnow
from tests import factories
from tests.bounces.corpus import load
from tests.support.databases import scratch_database
from tests.support.queue import article_fanned_out

PAST_32_BITS = 2**31 + 1000
_NEXT_ID = "SELECT setval(pg_get_serial_sequence('deliveries', 'id'), :last)"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_ledger_past_two_billion_rows_still_sends_each_reader_once(session, smtp, settings):
    settings = settings.with_overrides(bounce_domain="bounces.aze.test")
    session.execute(text(_NEXT_ID), {"last": PAST_32_BITS})
    readers = [factories.subscriber(session, f"r{n}@example.com", "news") for n in range(3)]
    story = factories.article(session, "news", title="Manat holds steady")
    session.commit()

    ids = article_fanned_out(session, settings, story.id)[1]
    assert len(ids) == 3 and min(ids) > 2**31
    report = send_deliveries(session, ids, outlets(settings, Composer(settings)), settings)
    assert report.sent == 3
    assert send_deliveries(session, ids, outlets(settings, Composer(settings)), settings).sent == 0
    session.expire_all()
    assert {d.status for d in session.scalars(select(Delivery))} == {DeliveryStatus.SENT}
    assert sorted(r for m in smtp.handler.received for r in m.rcpt_tos) == [
        r.email for r in readers
    ]

    # The first reader marks it as spam; the feedback loop names the delivery by Message-ID.
    (delivery,) = session.scalars(select(Delivery).where(Delivery.subscriber_id == readers[0].id))
    loop_address = "postmaster@bounces.aze.test"
    raw = load("ses_complaint_arf.eml", readers[0].email, loop_address,
               f"<article{story.id}.d{delivery.id}@aze.test>")  # fmt: skip
    processed = process_report(session, raw, "listener", utcnow(), bounce_policy(settings),
                               bounce_addresses(settings), (loop_address,))  # fmt: skip
    session.commit()
    assert processed.delivery_id == delivery.id and processed.suppressed
    session.expire_all()
    assert session.get(Subscriber, readers[0].id).status is SubscriberStatus.COMPLAINED


def test_migration_0027_lets_an_existing_ledger_go_past_32_bits():
    with scratch_database("notifier_0026", revision="0026") as url:
        engine = engine_for(url)
        with engine.begin() as conn:
            conn.execute(text(_NEXT_ID), {"last": 2**31 - 1})
        with pytest.raises(Exception, match="reached maximum value"), engine.begin() as conn:
            conn.execute(text("SELECT nextval(pg_get_serial_sequence('deliveries', 'id'))"))

        upgrade_database(url, "0027")
        with engine.begin() as conn:
            assert (
                conn.scalar(text("SELECT nextval(pg_get_serial_sequence('deliveries', 'id'))"))
                == 2**31
            )
            types = dict(conn.execute(text(
                "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                " WHERE (table_name, column_name) IN"
                " (('deliveries', 'id'), ('bounce_reports', 'delivery_id'))"
            )).all())  # fmt: skip
        assert types == {"deliveries.id": "bigint", "bounce_reports.delivery_id": "bigint"}
