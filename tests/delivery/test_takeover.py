"""A dead worker's claims are handed over at once, and fenced against its late writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from notifier.delivery.claims import mark_sent
from notifier.delivery.compose import Composer
from notifier.delivery.digest_planning import plan_and_queue_digests
from notifier.delivery.dispatch import Outlet, send_deliveries
from notifier.delivery.fanout import fan_out_article
from notifier.delivery.outlets import outlets
from notifier.delivery.queueing import queue_again
from notifier.delivery.takeover import Beat, LocalPool, Verdict, dead_holders, take_over
from notifier.domain.cadence import set_digest_time, set_email_cadences
from notifier.domain.deliveries import unsent_deliveries
from notifier.holders import holder_name, parse
from notifier.messages import Outcome
from notifier.models import Delivery, DeliveryStatus, WorkerHeartbeat
from notifier.timeutil import utcnow
from tests import factories
from tests.support.claims import claimed_ids
from tests.support.queue import RecordingQueue, article_fanned_out

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
    assert claimed_ids(session, ids[:2], now, 300, "old-token", A) == ids[:2]
    assert claimed_ids(session, ids[2:], now, 300, "b-token", B) == ids[2:]
    session.commit()

    handled: set = set()
    verdict = take_over(session, now, 30, handled=handled)
    assert verdict.released == ids[:2], "only the dead worker's rows"
    assert verdict.dead_workers == ["a@host"]
    session.commit()
    assert take_over(session, now, 30, handled=handled) == Verdict([], []), "once"
    # Due again at once (not in 300 s), and claimable by a live worker.
    assert claimed_ids(session, ids, now, 300, "new-token", B) == ids[:2]
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
                claimed_ids(self.session, self.ids, utcnow(), 300, "other", B)
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


# A planner notes its rows queued (queued_at, queued_by) with the rows, commits, then hands
# their task to the broker; one SIGKILLed in between leaves rows that look queued and are not.
TAKER = holder_name("c@host", 300, 300)  # a live worker's main process, checking


class Killed(BaseException):
    """What the planner meets between its commit and the enqueue: kill -9 (nothing after
    it runs; BaseException, so nothing on the way catches it)."""


def _killed_on_enqueue(ids, countdown=0.0):
    raise Killed


def _noted_rows(session, ids):
    session.expire_all()
    rows = session.scalars(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id))
    return [(r.status, r.queued_at is not None, r.queued_by) for r in rows]


def test_rows_a_killed_planner_noted_queued_are_queued_again_once_it_is_known_dead(
    session, settings
):
    for n in range(3):
        factories.subscriber(session, f"t{n}@example.com", "news")
    dead_story, live_story = factories.article(session, "news"), factories.article(session, "news")
    now = utcnow()
    _beat(session, "a@host", 100, now - timedelta(seconds=60))  # stale: its planner is dead
    _beat(session, "b@host", 200, now)
    _beat(session, "c@host", 300, now)
    with pytest.raises(Killed):
        fan_out_article(session, dead_story.id, settings, _killed_on_enqueue, holder=A)
    with pytest.raises(Killed):
        fan_out_article(session, live_story.id, settings, _killed_on_enqueue, holder=B)
    dead_ids = session.scalars(select(Delivery.id).where(Delivery.article_id == dead_story.id))
    dead_ids = sorted(dead_ids)
    assert len(dead_ids) == 3
    assert _noted_rows(session, dead_ids) == [(DeliveryStatus.PENDING, True, A)] * 3, (
        "committed, noted queued by the planner, never handed to the broker"
    )
    live_ids = sorted(session.scalars(select(Delivery.id).where(Delivery.article_id ==
                                                                live_story.id)))  # fmt: skip

    verdict = take_over(session, utcnow(), 30, taker=TAKER)
    assert verdict.released == []
    assert [(i, channel) for i, channel, _ in verdict.noted] == [(i, "email") for i in dead_ids]
    assert all(due <= utcnow() for _, _, due in verdict.noted), "due at once"
    session.commit()
    assert _noted_rows(session, dead_ids) == [(DeliveryStatus.PENDING, True, TAKER)] * 3
    assert _noted_rows(session, live_ids) == [(DeliveryStatus.PENDING, True, B)] * 3, (
        "a live planner's rows are its own (it hands them over itself)"
    )
    assert take_over(session, utcnow(), 30, taker=TAKER).noted == [], "taken once"

    queue = RecordingQueue()
    queue_again(session, verdict.noted, settings, queue, utcnow(), TAKER)
    assert queue.chunks == [(dead_ids, 0.0)], "queued again at once, not in minutes"
    assert _noted_rows(session, dead_ids) == [(DeliveryStatus.PENDING, True, TAKER)] * 3

    # A taker that dies before it has queued them hands them on in turn.
    session.execute(WorkerHeartbeat.__table__.delete().where(WorkerHeartbeat.hostname == "c@host"))
    session.commit()
    assert [i for i, _, _ in take_over(session, utcnow(), 30, taker=B).noted] == dead_ids


def test_a_dead_planner_s_row_a_sender_claimed_is_the_sender_s_until_it_dies(session, settings):
    factories.subscriber(session, "t0@example.com", "news")
    factories.subscriber(session, "t1@example.com", "news")
    story = factories.article(session, "news")
    now = utcnow()
    _beat(session, "a@host", 100, now - timedelta(seconds=60))
    _beat(session, "b@host", 200, now)
    _beat(session, "c@host", 300, now)
    queue = RecordingQueue()
    fan_out_article(session, story.id, settings, queue, holder=A)
    ids = queue.ids
    assert claimed_ids(session, ids[:1], utcnow(), 300, "b-token", B) == ids[:1]
    session.commit()
    assert _noted_rows(session, ids)[0] == (DeliveryStatus.SENDING, True, A)
    assert [i for i, _, _ in take_over(session, utcnow(), 30, taker=TAKER).noted] == ids[1:]
    session.commit()
    # The sender dies too: its claim is released, noted as the taker's (queued at once).
    session.execute(WorkerHeartbeat.__table__.delete().where(WorkerHeartbeat.hostname == "b@host"))
    session.commit()
    verdict = take_over(session, utcnow(), 30, taker=TAKER)
    assert (verdict.released, verdict.noted) == (ids[:1], [])
    session.commit()
    assert _noted_rows(session, ids)[0] == (DeliveryStatus.PENDING, True, TAKER)


def test_a_killed_digest_planner_s_rows_are_queued_again(session, settings):
    start = datetime(2026, 6, 1, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        for n in range(2):
            reader = factories.subscriber(session, f"d{n}@example.com", "economy")
            set_email_cadences(session, reader.id, {"economy": "daily"}, start)
            set_digest_time(session, reader.id, "Asia/Baku", 8, 0, start)
        story = factories.article(session, "economy")
        story.first_seen_at = story.published_at = start + timedelta(hours=1)
        session.commit()
    with pytest.raises(Killed):  # 08:00 in Baku: both digests planned, then the kill
        plan_and_queue_digests(session, settings, _killed_on_enqueue,
                               start + timedelta(hours=4, seconds=30), holder=A)  # fmt: skip
    ids = sorted(session.scalars(select(Delivery.id).where(Delivery.digest_id.is_not(None))))
    assert _noted_rows(session, ids) == [(DeliveryStatus.PENDING, True, A)] * 2
    _beat(session, "a@host", 100, utcnow() - timedelta(seconds=60))
    assert [i for i, _, _ in take_over(session, utcnow(), 30, taker=TAKER).noted] == ids


class _RunsTheOtherCopy:
    """A channel session that, while the first copy of a chunk is on the wire, runs the
    second copy (the one queued again) in full: both copies at once."""

    def __init__(self, other_copy):
        self.other_copy, self.sent = other_copy, []

    def open(self):
        return self

    def send_many(self, messages):
        from notifier.messages import SendResult

        for key, _message in messages:
            if self.other_copy is not None:
                run, self.other_copy = self.other_copy, None
                run()
            self.sent.append(key)
            yield key, SendResult(Outcome.SENT)

    def close(self):
        pass


def test_a_row_queued_again_whose_task_did_reach_the_broker_is_sent_once(session, settings):
    """The planner died after the enqueue (its chunk's task waits in the broker): takeover
    cannot tell, queues the rows again, and the claims make the copy that runs second send
    nothing, whether it runs while the first is sending or after it."""
    for n in range(3):
        factories.subscriber(session, f"t{n}@example.com", "news")
    broker = RecordingQueue()  # the planner's task reached the broker, then it died
    fan_out_article(session, factories.article(session, "news").id, settings, broker, holder=A)
    ids = broker.ids
    _beat(session, "a@host", 100, utcnow() - timedelta(seconds=60))
    verdict = take_over(session, utcnow(), 30, taker=TAKER)
    session.commit()
    again = RecordingQueue()
    queue_again(session, verdict.noted, settings, again, utcnow(), TAKER)
    assert again.ids == ids

    real = outlets(settings, Composer(settings))["email"]
    inner = _RunsTheOtherCopy(None)
    second = {"email": Outlet(inner, real.address, real.recipient_gone)}
    reports = []
    outer = _RunsTheOtherCopy(
        lambda: reports.append(send_deliveries(session, ids, second, settings, holder=B))
    )
    first_copy = {"email": Outlet(outer, real.address, real.recipient_gone)}
    reports.append(send_deliveries(session, ids, first_copy, settings, holder=B))
    assert len(reports) == 2 and outer.sent == ids and inner.sent == []
    reports.append(send_deliveries(session, ids, second, settings, holder=B))  # late copy
    assert [r.sent for r in reports] == [0, 3, 0] and inner.sent == []
    session.expire_all()
    rows = session.scalars(select(Delivery).where(Delivery.id.in_(ids)))
    assert {(r.status, r.attempts) for r in rows} == {(DeliveryStatus.SENT, 1)}


def test_a_starting_worker_reads_only_the_rows_due_later_not_a_fan_out_under_way(session, settings):
    """What takeover queues for later (retries, held pushes) is read without the due rows of
    a fan-out under way, which can be a million; the broker-lost path still reads them all."""
    ids = _planned(session, settings)
    now = utcnow()
    later = now + timedelta(minutes=10)
    retry = session.get(Delivery, ids[1])
    retry.next_attempt_at = later
    session.commit()
    assert [row[0] for row in unsent_deliveries(session)] == sorted(ids)
    assert unsent_deliveries(session, due_after=now) == [(ids[1], "email", later)]
