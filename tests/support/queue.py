"""The broker's stand-in for tests that call the delivery path directly: it records each chunk
handed over (ids, countdown) instead of sending a task, so a test sends exactly what the
fan-out, a batch's retries or the sweeper queued."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.delivery.fanout import fan_out_alert, fan_out_article


class RecordingQueue:
    def __init__(self) -> None:
        self.chunks: list[tuple[list[int], float]] = []

    def __call__(self, delivery_ids: Sequence[int], countdown: float = 0.0) -> None:
        self.chunks.append((list(delivery_ids), countdown))

    @property
    def ids(self) -> list[int]:
        return [i for ids, _ in self.chunks for i in ids]


def article_fanned_out(
    session: Session, settings: Settings, article_id: int
) -> tuple[dict[str, int], list[int]]:
    """What the article's fan-out task does: (deliveries planned per channel, ids queued)."""
    queue = RecordingQueue()
    planned = fan_out_article(session, article_id, settings, queue)
    return planned, queue.ids


def alert_fanned_out(
    session: Session, settings: Settings, alert_id: int
) -> tuple[dict[str, int], list[int]]:
    """What the alert's fan-out task does: (deliveries planned per channel, ids queued)."""
    queue = RecordingQueue()
    planned = fan_out_alert(session, alert_id, settings, queue)
    return planned, queue.ids
