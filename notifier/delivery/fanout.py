"""A notice to its readers: plan its deliveries and queue them, chunk by chunk, once.

What the fan-out tasks call: an article on every channel, an alert on the channels its
editor chose. Safe to run twice: planning again adds no row, and queues only unsent ones.
`holder` names the planning worker process on its rows' note (notifier.delivery.queueing).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.delivery.planning import Notice, alert_notice
from notifier.delivery.queueing import Enqueue, plan_and_queue
from notifier.delivery.routes import CHANNELS
from notifier.domain.alerts import alert_channels, finish_planning, start_alert
from notifier.models import Alert, Article
from notifier.timeutil import utcnow


def fan_out_article(
    session: Session, article_id: int, settings: Settings, enqueue: Enqueue,
    holder: str | None = None,
) -> dict[str, int]:  # fmt: skip
    """Deliveries planned per channel; {} for an article that no longer exists, or whose
    planning already finished (`fanned_out_at`): its rows may have been removed by retention
    since, so planning again would send it twice. Unsent rows are the sweeper's."""
    article = session.get(Article, article_id)
    if article is None or article.fanned_out_at is not None:
        return {}
    planned = plan_and_queue(session, Notice.article(article_id), list(CHANNELS), settings,
                             enqueue, holder)  # fmt: skip
    article = session.get(Article, article_id)
    if article is not None and article.fanned_out_at is None:
        article.fanned_out_at = utcnow()
    session.commit()
    return planned


def fan_out_alert(
    session: Session, alert_id: int, settings: Settings, enqueue: Enqueue,
    holder: str | None = None,
) -> dict[str, int]:  # fmt: skip
    """Deliveries planned per channel; {} for an alert not due to start (cancelled,
    scheduled, finished) or one whose planning already finished."""
    alert = start_alert(session, alert_id, utcnow())
    if alert is None:
        return {}
    session.commit()
    channels = alert_channels(alert)
    planned = plan_and_queue(session, alert_notice(alert), channels, settings, enqueue, holder)
    alert = session.get(Alert, alert_id)
    if alert is not None:
        finish_planning(session, alert, utcnow())
    session.commit()
    return planned
