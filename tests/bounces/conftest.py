"""A private Dovecot for the bounce mailbox tests (one per test session, an account per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dovecot import Dovecot, running_dovecot


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture
def mailbox_settings(settings, dovecot):
    """The defaults (IMAPS, INBOX, notifier-processed), trusting the test server's own
    certificate, on a fresh account."""
    user, password = dovecot.add_account()
    return settings.with_overrides(
        bounce_domain="bounces.aze.test", imap_host="127.0.0.1", imap_port=dovecot.imaps_port,
        imap_user=user, imap_password=password, imap_ca_file=str(dovecot.ca_file),
    )  # fmt: skip
