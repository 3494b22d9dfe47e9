"""When a claimed push may go: a browser's quiet hours hold it until they end (or drop it
when its news would be stale by then), unless it is an alert the editor let through them;
then the daily cap counts it, or skips an article push past it (notifier.delivery.push_cap).

Runs at send time on the addressed chunk, after the reader's wishes were checked
(notifier.delivery.addressing) and before anything is composed; the rules themselves are
notifier.domain.quiet_hours, which the editor's alert preview asks too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.delivery.addressing import Addressee, Unwanted
from notifier.delivery.holding import Held
from notifier.delivery.push_cap import gate_daily_cap
from notifier.domain.quiet_hours import is_stale, quiet_hours_of, quiet_verdict
from notifier.models import Alert, Article

# Kept on the row while it waits (it is pending, not skipped).
HELD = "held for quiet hours"
# Skip reasons, as recorded, shown on /ops/ and counted in /metrics (notifier.ops.skips):
# older than QUIET_HOURS_STALE_HOURS when the quiet hours end, or when a held push came due.
STALE_BY_THEIR_END = "quiet hours: stale by their end"
STALE_WHEN_RELEASED = "quiet hours: stale when released"

Entry = Addressee | Unwanted | Held


def news_time(notice: object) -> datetime | None:
    """How old the news is counted from: an article's published time (first seen when the
    feed gave none), an alert's start."""
    if isinstance(notice, Article):
        return notice.published_at or notice.first_seen_at
    if isinstance(notice, Alert):
        return notice.started_at or notice.created_at
    return None


def overrides_quiet_hours(notice: object) -> bool:
    return isinstance(notice, Alert) and bool(notice.override_quiet_hours)


def gate_pushes(
    session: Session, entries: Sequence[Addressee | Unwanted], now: datetime, settings: Settings
) -> list[Entry]:
    """Quiet hours first (a held push is not counted), then the daily cap on what goes."""
    return gate_daily_cap(session, gate_quiet_hours(session, entries, now, settings), now,
                          settings)  # fmt: skip


def gate_quiet_hours(
    session: Session, entries: Sequence[Addressee | Unwanted], now: datetime, settings: Settings
) -> list[Entry]:
    """Each addressed push as it goes: unchanged when it may go now, Held until the
    browser's quiet hours end, or Unwanted when its news would be stale by then. A push
    that was held and comes due is dropped if its news went stale meanwhile (workers were
    down when the quiet hours ended)."""
    stale_after = timedelta(hours=settings.quiet_hours_stale_hours)
    released = _held_before([e for e in entries if isinstance(e, Addressee)])
    gated: list[Entry] = []
    for entry in entries:
        if not isinstance(entry, Addressee):
            gated.append(entry)
            continue
        browser, news_at = entry.recipient, news_time(entry.notice)
        verdict = quiet_verdict(
            quiet_hours_of(browser.quiet_start, browser.quiet_end), browser.timezone, news_at,
            now, stale_after, override=overrides_quiet_hours(entry.notice),
        )  # fmt: skip
        if verdict.held:
            assert verdict.until is not None
            gated.append(Held(entry.delivery_id, verdict.until, HELD))
        elif verdict.stale:
            gated.append(Unwanted(entry.delivery_id, STALE_BY_THEIR_END))
        elif entry.delivery_id in released and is_stale(news_at, now, stale_after):
            gated.append(Unwanted(entry.delivery_id, STALE_WHEN_RELEASED))
        else:
            gated.append(entry)
    return gated


def _held_before(pushes: list[Addressee]) -> set[int]:
    """The rows among these that quiet hours held once (as the claim read them)."""
    return {push.delivery_id for push in pushes if push.delivery.held_until is not None}
