"""How the web app hands work to the workers: by task name and ids, after its commit."""

from __future__ import annotations

import logging

from celery import Celery
from kombu.exceptions import OperationalError as BrokerUnavailable

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


def send_or_leave_to_beat(send, *args) -> bool:
    """For work already kept in the database: if the broker is down, beat's scheduler or
    sweeper sends it when the broker is back, so the caller still answers 202."""
    try:
        send(*args)
    except BrokerUnavailable as problem:
        log.error("broker unavailable; beat will pick up %s later: %s", args, problem)
        return False
    return True
