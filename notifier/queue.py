"""How the web app hands work to the workers: by task name and ids, after its commit."""

from __future__ import annotations

from celery import Celery


class TaskQueue:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send_confirmation(self, subscriber_id: int, category_ids: list[int]) -> None:
        self.celery.send_task(
            "notifier.tasks.send_confirmation", args=(subscriber_id, list(category_ids))
        )

    def send_manage_link(self, subscriber_id: int) -> None:
        self.celery.send_task("notifier.tasks.send_manage_link", args=(subscriber_id,))
