from __future__ import annotations

import pytest

from notifier.web import create_app


class RecordingQueue:
    """Records what the web app hands to the workers (the E2E tests use the real broker)."""

    def __init__(self) -> None:
        self.confirmations: list[tuple[int, list[int]]] = []
        self.manage_links: list[int] = []

    def send_confirmation(self, subscriber_id: int, category_ids: list[int]) -> None:
        self.confirmations.append((subscriber_id, sorted(category_ids)))

    def send_manage_link(self, subscriber_id: int) -> None:
        self.manage_links.append(subscriber_id)


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def app(settings, queue):
    return create_app(settings, queue=queue)


@pytest.fixture
def client(app):
    return app.test_client()
