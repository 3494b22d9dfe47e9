"""A dead worker's claims are handed over at once, and fenced against its late writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from notifier.delivery.claims import claim_deliveries, mark_sent
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import Outlet, send_deliveries
from notifier.delivery.outlets import outlets
from notifier.delivery.takeover import Beat, LocalPool, Verdict, dead_holders, take_over
from notifier.holders import holder_name, parse
from notifier.messages import Outcome
from notifier.models import Delivery, DeliveryStatus, WorkerHeartbeat
from notifier.timeutil import utcnow
from tests import factories
from tests.support.queue import article_fanned_out

NOW = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
A = holder_name("a@host", 100, 101)
A_MAIN = holder_name("a@host", 100, 100)
A_OTHER_CHILD = holder_name("a@host", 100, 102)
B = holder_name("b@host", 200, 201)


def test_holder_names_round_trip_and_strangers_are_not_judged():
    assert parse(A) == ("a@host", 100, 101)
    assert parse("celery@web/1/x") is None and parse("nonsense") is None
    assert dead_holders(["nonsense"], {}, NOW, 30) == []


@pytest.mark.parametrize(
    ("beats", "dead"),
    [
        ({"a@host": Beat(100, NOW - timedelta(seconds=5))}, []),  # alive
        ({"a@host": Beat(100, NOW - timedelta(seconds=31))}, [A]),  # heartbeat stale
        ({}, [A]),  # heartbeat row gone (stopped, its children killed)
        ({"a@host": Beat(999, NOW)}, [A]),  # restarted under the same name: a new main pid
    ],
)
def test_a_holder_is_dead_when_its_worker_heartbeat_says_so(beats, dead):
    assert dead_holders([A], beats, NOW, 30) == dead


def test_a_worker_knows_at_once_when_one_of_its_own_pool_children_is_gone():
    beats = {"a@host": Beat(100, NOW), "b@host": Beat(200, NOW)}
    local = LocalPool("a@host", 100, children={102})
    assert dead_holders([A, A_MAIN, A_OTHER_CHILD, B], beats, NOW, 30, local) == [A]
    assert dead_holders([A], beats, NOW, 30, LocalPool("a@host", 100, children=None)) == []
    assert dead_holders([B], beats, NOW, 30, local) == [], "not its child to judge"


def _planned(session, settings, count=3):
    for n in range(count):
        factories.subscriber(session, f"t{n}@example.com", "news")
    story = factories.article(session, "news")
    return article_fanned_out(session, settings, story.id)[1]


def _beat(session, node, pid, seen_at):
    session.add(WorkerHeartbeat(hostname=node, seen_at=seen_at, started_at=seen_at,
                                concurrency=2, active_tasks=1, pid=pid))  # fmt: skip
    session.commit()


def test_claims_of_a_dead_worker_are_released_and_a_late_write_records_nothing(session, settings):
    ids = _planned(session, settings)
    now = utcnow()
    _beat(session, "a@host", 100, now - timedelta(seconds=60))
    _beat(session, "b@host", 200, now)
    assert claim_deliveries(session, ids[:2], now, 300, "old-token", A) == ids[:2]
    assert claim_deliveries(session, ids[2:], now, 300, "b-token", B) == ids[2:]
    session.commit()

    handled: set = set()
    verdict = take_over(session, now, 30, handled=handled)
    assert verdict.released == ids[:2], "only the dead worker's rows"
    assert verdict.dead_workers == ["a@host"]
    session.commit()
    assert take_over(session, now, 30, handled=handled) == Verdict([], []), "once"
    # Due again at once (not in 300 s), and claimable by a live worker.
    assert claim_deliveries(session, ids, now, 300, "new-token", B) == ids[:2]
    assert mark_sent(session, ids[:2], now, "old-token") == 0, "the dead process is fenced"
    assert mark_sent(session, ids[:2], now, "new-token") == 2
    session.commit()
    rows = session.scalars(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id))
    assert [r.status for r in rows] == [DeliveryStatus.SENT] * 2 + [DeliveryStatus.SENDING]


class _TakenOverMidSend:
    """A channel session that, while its batch is on the wire, has the rows taken over and
    sent by another worker: what a worker wrongly thought dead experiences."""

    def __init__(self, session, ids):
        self.session, self.ids, self.sent = session, ids, []

    def open(self):
        return self

    def send_many(self, messages):
        from notifier.messages import SendResult

        for key, message in messages:
            if not self.sent:
                from notifier.delivery.claims import release_claims

                release_claims(self.session, [A], utcnow())
                claim_deliveries(self.session, self.ids, utcnow(), 300, "other", B)
                self.session.commit()
            self.sent.append(message)
            yield key, SendResult(Outcome.SENT)

    def close(self):
        pass


def test_a_worker_whose_rows_were_taken_over_does_not_overwrite_the_new_claim(session, settings):
    ids = _planned(session, settings, 2)
    real = outlets(settings, Composer(settings))["email"]
    fake = _TakenOverMidSend(session, ids)
    outlet = Outlet(fake, real.address, real.recipient_gone)
    report = send_deliveries(session, ids, {"email": outlet}, settings, holder=A)
    assert report.fenced == 2 and report.sent == 0
    session.expire_all()
    rows = session.scalars(select(Delivery).where(Delivery.id.in_(ids)))
    assert {(r.status, r.claim_token, r.claimed_by) for r in rows} == {
        (DeliveryStatus.SENDING, "other", B)
    }


def test_a_worker_gone_stale_is_named_once_per_checking_process():
    from notifier.delivery.takeover import newly_dead_workers

    beats = {
        "a@host": Beat(100, NOW - timedelta(seconds=40)),  # died
        "b@host": Beat(200, NOW),  # alive
        "c@host": Beat(300, NOW - timedelta(days=2)),  # long gone: handled long ago
    }
    handled: set = set()
    assert newly_dead_workers(beats, NOW, 30, handled) == ["a@host"]
    assert newly_dead_workers(beats, NOW, 30, handled) == []
    beats["a@host"] = Beat(101, NOW - timedelta(seconds=40))  # restarted, then died again
    assert newly_dead_workers(beats, NOW, 30, handled) == ["a@host"]
