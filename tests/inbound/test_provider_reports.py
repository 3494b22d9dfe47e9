"""The processor's entry point for relays' events on a real database: the same event posted
twice at once (the relay retried while the first call was still being stored) is applied
once, the second call seeing it as the replay it is."""

from __future__ import annotations

import threading

import pytest

from notifier.db import session_factory
from notifier.domain.bounces import ProviderReport, process_provider_report
from notifier.inbound.processing import BounceProcessor, bounce_addresses, bounce_policy
from notifier.models import BounceKind, BounceReport
from notifier.timeutil import utcnow
from tests import factories
from tests.web.bounce_webhooks import sent_email


def report(message_id: str) -> ProviderReport:
    return ProviderReport(source="mailgun", event_id="G9Bn5", kind=BounceKind.HARD,
                          recipient="ann@example.com", reason="550 5.1.1 no such user",
                          raw="{}", status="5.1.1", message_id=message_id)  # fmt: skip


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_event_posted_twice_at_once_is_applied_once(session, settings):
    reader = factories.subscriber(session, "ann@example.com", "news")
    _, message_id = sent_email(session, reader)
    sessions = session_factory(settings.database_url)
    first = sessions()
    process_provider_report(first, report(message_id), utcnow(), bounce_policy(settings),
                            bounce_addresses(settings))  # fmt: skip
    first.flush()  # the first call holds its row, not yet committed
    results = []
    second = threading.Thread(target=lambda: results.extend(
        BounceProcessor(settings, sessions).process_provider([report(message_id)])))  # fmt: skip
    second.start()
    second.join(0.5)
    assert second.is_alive()  # waits on the unique event id
    first.commit()
    first.close()
    second.join(10)
    [processed] = results
    assert processed.replay
    assert session.query(BounceReport).count() == 1
