"""Daily digests through a real worker and beat (subprocesses), Redis, PostgreSQL and a real
SMTP server: readers in Asia/Baku, Europe/London and America/New_York each get exactly one
digest at their own local hour with exactly the articles of their period, none when there
is nothing new or their hour has not come; a worker killed with SIGKILL while sending the
digests, then a new worker, still gives exactly one each, and the beat firing again adds none.

The clock. time-machine cannot move a subprocess's clock, so the readers' hours are set
against the real one: each due reader takes as digest hour their current local hour and
chose it (and their daily cadence) a minute before that hour began, as a reader who set it
up yesterday. Their hour has just passed in their own zone (03:00 in Baku is 23:00 in London
and 18:00 in New York) when beat starts, and the planner finds each due at its own local
time. A reader whose hour is two hours ahead gets nothing within the test. Beat runs its
default DIGEST_PLANNER_SECONDS (60 s), so the first planning comes up to a minute after beat
starts: the test waits for it rather than change the product's timing.
"""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from notifier.db import session_scope
from notifier.domain.cadence import set_digest_time, set_email_cadences
from notifier.models import Delivery, DeliveryStatus, Digest, DigestSchedule
from tests import factories
from tests.fault.harness import open_stack, wait_for

PLANNER_SECONDS = 60  # the default DIGEST_PLANNER_SECONDS, which the worker and beat run with


def _reader(session, email: str, zone: str, chosen_at: datetime, hours_ahead: int = 0,
            **cadences: str) -> int:  # fmt: skip
    """A confirmed reader who chose these cadences and a digest hour (their local hour at
    `chosen_at` plus one, plus `hours_ahead`) at `chosen_at`."""
    reader = factories.subscriber(session, email, *cadences)
    local = (chosen_at + timedelta(hours=1 + hours_ahead)).astimezone(ZoneInfo(zone))
    set_email_cadences(session, reader.id, cadences, chosen_at)
    set_digest_time(session, reader.id, zone, local.hour, local.weekday(), chosen_at)
    session.commit()
    return reader.id


def _story(session, title: str, *slugs: str, seen: datetime) -> int:
    row = factories.article(session, *slugs, title=title)
    row.first_seen_at = row.published_at = seen
    session.commit()
    return row.id


def _titles(message) -> list[str]:
    text = message.get_body(("plain",)).get_content()
    return [line[2:] for line in text.splitlines() if line.startswith("* ")]


def _digest_rows(url: str) -> list[tuple[str, DeliveryStatus, int]]:
    with session_scope(url) as session:
        rows = session.execute(
            select(Digest.subscriber_id, Delivery.status, Delivery.attempts)
            .join(Delivery, Delivery.digest_id == Digest.id)
            .order_by(Digest.subscriber_id)
        )
        return [tuple(row) for row in rows]


def test_each_reader_gets_one_digest_at_their_hour_through_real_processes(
    tmp_path, pg_database_url
):
    now = datetime.now(UTC)
    hour_began = now.replace(minute=0, second=0, microsecond=0)
    chosen_at = hour_began - timedelta(minutes=1)
    url = pg_database_url
    with open_stack(tmp_path / "stack", url) as stack, session_scope(url) as session:
        ids = {
            "baku": _reader(session, "baku@example.com", "Asia/Baku", chosen_at,
                            economy="daily", news="instant"),
            "london": _reader(session, "london@example.com", "Europe/London", chosen_at,
                              economy="daily", culture="daily"),
            "ny": _reader(session, "ny@example.com", "America/New_York", chosen_at,
                          economy="daily"),
            "quiet": _reader(session, "quiet@example.com", "America/New_York", chosen_at,
                             science="daily"),
            "later": _reader(session, "later@example.com", "Europe/London", chosen_at,
                             hours_ahead=2, economy="daily"),
        }  # fmt: skip
        with session_scope(url) as check:
            due = {s.subscriber_id: s.next_at for s in check.scalars(select(DigestSchedule))}
        assert {due[ids[n]] for n in ("baku", "london", "ny", "quiet")} == {hour_began}
        assert due[ids["later"]] == hour_began + timedelta(hours=2)

        # The period runs from the readers' choice to the planning: its stories are seen
        # between `chosen_at` and now, which may be as little as a minute apart (a run in the
        # first seconds of an hour), never before the choice.
        quarter = (now - chosen_at) / 4
        stories = [
            _story(session, "Before", "economy", seen=chosen_at - timedelta(minutes=30)),
            _story(session, "Port grows", "economy", seen=chosen_at + quarter),
            _story(session, "Gallery opens", "culture", seen=chosen_at + 2 * quarter),
            _story(session, "Talks resume", "news", "economy", seen=chosen_at + 3 * quarter),
        ]
        smtp = stack.smtp.handler
        first = stack.worker("worker-1")
        for story in stories:  # articles arrive: each fanned out by the worker
            stack.fan_out(story)
        # Baku takes News at once: that email goes first, and keeps it out of their digest.
        (instant,) = smtp.wait_for(1, timeout=60)
        assert (instant.message["To"], instant.message["Subject"]) == (
            "baku@example.com", "Talks resume")  # fmt: skip

        # The digests are claimed and being sent (held at RCPT TO: no message handed over)
        # when the whole worker is killed; a new worker takes their rows over.
        smtp.holding_rcpt = True
        beat = stack.beat()
        wait_for(lambda: len(_digest_rows(url)) == 3 and smtp.data_waiting >= 1,
                 PLANNER_SECONDS + 60, "no digest planned and being sent")  # fmt: skip
        assert {status for _, status, _ in _digest_rows(url)} <= {
            DeliveryStatus.SENDING, DeliveryStatus.PENDING}  # fmt: skip
        first.kill_group(signal.SIGKILL)
        first.wait(10)
        wait_for(lambda: not first.group(), 10, "killed processes are still alive")
        smtp.holding_rcpt = False
        assert len(smtp.received) == 1, "nothing of a digest reached the server before the kill"
        stack.worker("worker-2")
        wait_for(lambda: len(smtp.received) == 4, 120,
                 lambda: f"{len(smtp.received) - 1} of 3 digests after the kill")  # fmt: skip

        # Beat fires the planner again (a period is planned once): nothing more goes out.
        runs = beat.output().count("plan-digests")
        wait_for(lambda: beat.output().count("plan-digests") > runs, PLANNER_SECONDS + 30,
                 "beat did not fire the digest planner again")  # fmt: skip
        wait_for(lambda: all(s is DeliveryStatus.SENT for _, s, _ in _digest_rows(url)), 30,
                 "digest rows not recorded as sent")  # fmt: skip

    received = {name: [r.message for r in smtp.received if f"{name}@example.com" in r.rcpt_tos]
                for name in ids}  # fmt: skip
    assert {name: len(messages) for name, messages in received.items()} == {
        "baku": 2, "london": 1, "ny": 1, "quiet": 0, "later": 0}  # fmt: skip
    digests = {name: messages[-1] for name, messages in received.items() if messages}
    assert all(re.search(r"daily digest", m["Subject"]) for m in digests.values())
    assert {name: _titles(m) for name, m in digests.items()} == {
        "baku": ["Port grows"],  # Talks resume came instantly; Before was the last period
        # By category (Culture, Economy), newest first in each.
        "london": ["Gallery opens", "Talks resume", "Port grows"],
        "ny": ["Talks resume", "Port grows"],
    }
    rows = _digest_rows(url)
    assert max(attempts for _, _, attempts in rows) == 2, "the killed worker's claim taken over"
    assert sorted(subscriber for subscriber, _, _ in rows) == sorted(
        ids[n] for n in ("baku", "london", "ny"))  # fmt: skip
    with session_scope(url) as session:
        moved = {s.subscriber_id: s.next_at for s in session.scalars(select(DigestSchedule))}
    zones = {"baku": "Asia/Baku", "london": "Europe/London", "ny": "America/New_York",
             "quiet": "America/New_York"}  # fmt: skip
    for name, zone in zones.items():  # each planned once: next at the same hour, tomorrow
        local, today = (t.astimezone(ZoneInfo(zone)) for t in (moved[ids[name]], hour_began))
        assert (local.date(), local.hour) == (today.date() + timedelta(days=1), today.hour)
