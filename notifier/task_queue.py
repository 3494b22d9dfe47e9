"""How the web app hands work to the workers: by task name and ids, after its commit."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy.orm import Session

from notifier import metrics
from notifier.delivery.queueing import Enqueue
from notifier.delivery.unsent import NotHandedOver, keep_unsent
from notifier.ops.task_failures import describe
from notifier.timeutil import utcnow

log = logging.getLogger(__name__)


class TaskQueue:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send_confirmation(self, subscriber_id: int, category_ids: list[int]) -> None:
        self.celery.send_task(
            "notifier.tasks.send_confirmation", args=(subscriber_id, list(category_ids))
        )

    def send_manage_link(self, subscriber_id: int) -> None:
        self.celery.send_task("notifier.tasks.send_manage_link", args=(subscriber_id,))

    def poll_feed(self, feed_id: int) -> None:
        self.celery.send_task("notifier.tasks.poll_feed", args=(feed_id,))

    def send_deliveries(self, delivery_ids: list[int]) -> None:
        self.celery.send_task("notifier.tasks.send_deliveries", args=(list(delivery_ids),))

    def fan_out_alert(self, alert_id: int) -> None:
        self.celery.send_task("notifier.tasks.fan_out_alert", args=(alert_id,))

    def fan_out_article(self, article_id: int) -> None:
        self.celery.send_task("notifier.tasks.fan_out_article", args=(article_id,))

    def send_alert_test(self, alert_fields: dict, to: str, category_names: list[str]) -> None:
        self.celery.send_task(
            "notifier.tasks.send_alert_test", args=(alert_fields, to, category_names)
        )


def send_or_keep(session: Session, send: Callable[..., object], *args: object) -> bool:
    """For work already kept in the database: if the broker does not take the task, it is
    kept (notifier.delivery.unsent, committed) and a worker hands it over as soon as the
    broker answers again, so the caller still answers 202. `send` is a TaskQueue method,
    named as its task is."""
    try:
        send(*args)
    except BrokerUnavailable as problem:
        task_name = f"notifier.tasks.{send.__name__}"
        keep_unsent(session, task_name, list(args), utcnow(), describe(problem))
        session.commit()
        metrics.task_not_handed_over(task_name)
        log.error("broker unavailable; %s%s kept for a worker to hand over when it "
                  "answers: %s", task_name, list(args), problem)  # fmt: skip
        return False
    return True


def enqueue_or_refuse(send: Callable[[list[int]], object]) -> Enqueue:
    """A TaskQueue's send_deliveries as the delivery path's enqueue: a chunk the broker does
    not take is refused (NotHandedOver), so hand_over keeps it."""

    def enqueue(delivery_ids: list[int], countdown: float = 0.0) -> None:
        try:
            send(list(delivery_ids))
        except BrokerUnavailable as problem:
            metrics.task_not_handed_over("notifier.tasks.send_deliveries")
            raise NotHandedOver(describe(problem)) from problem

    return enqueue
