from __future__ import annotations

import pytest
from kombu.exceptions import OperationalError as BrokerUnavailable

from notifier.web import create_app


class RecordingQueue:
    """Records what the web app hands to the workers (the E2E tests use the real broker)."""

    def __init__(self, celery=None) -> None:
        self.celery = celery  # the real app, for reading queue depths from the test broker
        self.confirmations: list[tuple[int, list[int]]] = []
        self.manage_links: list[int] = []
        self.alerts: list[int] = []
        self.articles: list[int] = []
        self.alert_tests: list[tuple[str, str]] = []
        self.polled: list[int] = []
        self.sent: list[list[int]] = []
        self.broker_down = False

    def send_confirmation(self, subscriber_id: int, category_ids: list[int]) -> None:
        self.confirmations.append((subscriber_id, sorted(category_ids)))

    def send_manage_link(self, subscriber_id: int) -> None:
        self.manage_links.append(subscriber_id)

    def fan_out_alert(self, alert_id: int) -> None:
        self._maybe_down()
        self.alerts.append(alert_id)

    def fan_out_article(self, article_id: int) -> None:
        self._maybe_down()
        self.articles.append(article_id)

    def poll_feed(self, feed_id: int) -> None:
        self._maybe_down()
        self.polled.append(feed_id)

    def send_deliveries(self, delivery_ids: list[int]) -> None:
        self._maybe_down()
        self.sent.append(list(delivery_ids))

    def send_alert_test(self, alert_fields: dict, to: str, category_names: list[str]) -> None:
        self.alert_tests.append((alert_fields["title"], to))

    def _maybe_down(self) -> None:
        if self.broker_down:
            raise BrokerUnavailable("connection refused (test)")


@pytest.fixture
def queue(settings) -> RecordingQueue:
    from notifier.celery_app import make_celery

    return RecordingQueue(make_celery(settings))


@pytest.fixture
def app(settings, queue):
    return create_app(settings, queue=queue)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def editor(session):
    from notifier.domain.editors import create_editor

    row = create_editor(session, "editor@aze.media", "correct horse battery", "editor")
    session.commit()
    return row


def logged_in_client(app, editor):
    """A browser logged in as this editor (the session cookie names the editor's id and
    session version, as logging in writes them)."""
    from notifier.web.auth import SESSION_KEY, VERSION_KEY

    client = app.test_client()
    with client.session_transaction() as browser_session:
        browser_session[SESSION_KEY] = editor.id
        browser_session[VERSION_KEY] = editor.session_version
    return client


@pytest.fixture
def editor_client(app, editor):
    return logged_in_client(app, editor)


@pytest.fixture
def api_token(session, editor):
    from notifier.domain.api_tokens import issue_token
    from notifier.timeutil import utcnow

    _, plaintext = issue_token(session, "newsroom script", editor.id, utcnow())
    session.commit()
    return plaintext


def pytest_terminal_summary(terminalreporter):
    """The figure the schemathesis tests are judged by, at the end of every run."""
    from tests.support.api_fuzz import TALLY

    if TALLY.requests:
        terminalreporter.write_line(TALLY.summary())
