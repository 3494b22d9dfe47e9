"""Hand a dead worker's claimed deliveries to live workers as soon as it is known dead, and
queue again the rows it had noted queued but perhaps never handed to the broker.

Claims name the worker process holding them ("node/main pid/pid", notifier.holders), and so
do notes that rows are queued (deliveries.queued_by, read while a row is pending): a
planner commits its rows noted queued, then hands their task to the broker, and one killed
between the two left rows that looked queued and were not, until the sweeper's
SWEEP_REQUEUE_AFTER_SECONDS. A holder is dead when its worker's heartbeat is stale
(WORKER_STALE_SECONDS) or gone, when the node's heartbeat now comes from another main
process (the worker was restarted), or, seen from its own main process, when the pool child
is no longer among its children (SIGKILLed while the main process lives on). Its claimed
rows become due again and are queued at once; their claim token is dropped, so a late write
from the dead process records nothing. Its noted rows still waiting for a sender are queued
again (due ones at once, the others for their time): a task of theirs the broker did hold
finds them claimed or sent, and does nothing. Either kind is noted as the taker's until it
has queued them, so a taker that dies meanwhile is taken over in turn. Leases stay as the
last resort (a holder outside any worker, or a takeover that could not run).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifier import holders as holder_names
from notifier.delivery.claims import claim_holders, release_claims
from notifier.delivery.queueing import note_queued, queueing_holders, take_noted
from notifier.models import WorkerHeartbeat


@dataclass(frozen=True)
class Beat:
    main_pid: int
    seen_at: datetime


@dataclass(frozen=True)
class LocalPool:
    """What a worker's main process knows first-hand: its node, pid and live pool children."""

    node: str
    main_pid: int
    children: Collection[int] | None  # None: not a forking pool (solo, threads)


def dead_holders(
    holders: Collection[str],
    beats: Mapping[str, Beat],
    now: datetime,
    stale_seconds: float,
    local: LocalPool | None = None,
) -> list[str]:
    """The holders among `holders` that are known dead (see the module docstring)."""
    fresh_since = now - timedelta(seconds=stale_seconds)
    dead = []
    for holder in holders:
        parsed = holder_names.parse(holder)
        if parsed is None:
            continue  # not ours to judge: its lease decides
        node, main_pid, pid = parsed
        beat = beats.get(node)
        gone = beat is None or beat.main_pid != main_pid or beat.seen_at < fresh_since
        if gone or _lost_child(local, node, main_pid, pid):
            dead.append(holder)
    return dead


def _lost_child(local: LocalPool | None, node: str, main_pid: int, pid: int) -> bool:
    """A pool child of this very worker that is no longer among its children."""
    if local is None or local.children is None or (node, main_pid) != (local.node, local.main_pid):
        return False
    return pid != main_pid and pid not in local.children


def newly_dead_workers(
    beats: Mapping[str, Beat], now: datetime, stale_seconds: float, handled: set[tuple[str, int]]
) -> list[str]:
    """Workers whose heartbeat went stale within the last day and that the caller has not
    handled yet (they are added to `handled`): whatever they held besides claims (retries
    waiting as ETA tasks in their memory, a fan-out half planned) must be queued again."""
    fresh_since, day_ago = now - timedelta(seconds=stale_seconds), now - timedelta(days=1)
    dead = []
    for node, beat in sorted(beats.items()):
        if day_ago <= beat.seen_at < fresh_since and (node, beat.main_pid) not in handled:
            handled.add((node, beat.main_pid))
            dead.append(node)
    return dead


@dataclass
class Verdict:
    released: list[int]  # claimed rows of dead holders, due again now
    dead_workers: list[str]  # workers newly known dead
    # (id, channel, due time) of rows dead holders noted queued and no sender has claimed:
    # to queue again (notifier.delivery.queueing.queue_again)
    noted: list[tuple[int, str, datetime]] = field(default_factory=list)


def take_over(
    session: Session,
    now: datetime,
    stale_seconds: float,
    local: LocalPool | None = None,
    handled: set[tuple[str, int]] | None = None,
    taker: str | None = None,
) -> Verdict:
    """Release the claims of dead holders and take the rows they noted queued, both noted as
    the `taker`'s (caller commits, then queues them), and name the workers newly known dead
    (see `newly_dead_workers`)."""
    beats = {
        hostname: Beat(pid, seen_at)
        for hostname, pid, seen_at in session.execute(
            select(WorkerHeartbeat.hostname, WorkerHeartbeat.pid, WorkerHeartbeat.seen_at)
        )
    }
    dead = newly_dead_workers(beats, now, stale_seconds, set() if handled is None else handled)
    holding, noting = claim_holders(session), queueing_holders(session)
    if not holding and not noting:
        return Verdict([], dead)
    holders = dead_holders(sorted({*holding, *noting}), beats, now, stale_seconds, local)
    if not holders:
        return Verdict([], dead)
    # Noted rows first: released ones are pending too, and are queued at once with the rest.
    noted = take_noted(session, [h for h in holders if h in noting], taker)
    released = release_claims(session, [h for h in holders if h in holding], now)
    if released:
        note_queued(session, released, now, taker)
    return Verdict(released, dead, noted)
