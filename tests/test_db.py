"""The session scopes: one connection for a session's every transaction, and back after a
lost connection."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from notifier.db import engine_for, session_scope


@pytest.fixture
def checkouts(pg_database_url) -> Iterator[list[int]]:
    """The pool's connection checkouts while a test runs (each one pinged)."""
    seen: list[int] = []
    pool = engine_for(pg_database_url).pool

    def count(*_) -> None:
        seen.append(1)

    event.listen(pool, "checkout", count)
    yield seen
    event.remove(pool, "checkout", count)


def _backend(session) -> int:
    return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_one_connection_serves_every_transaction_of_the_session(pg_database_url, checkouts):
    with session_scope(pg_database_url, one_connection=True) as session:
        backends = set()
        for _ in range(5):
            backends.add(_backend(session))
            session.commit()
    assert len(backends) == 1
    assert len(checkouts) == 1


def test_a_plain_session_takes_a_connection_per_transaction(pg_database_url, checkouts):
    with session_scope(pg_database_url) as session:
        for _ in range(5):
            _backend(session)
            session.commit()
    assert len(checkouts) == 5


def test_one_connection_reconnects_after_its_connection_is_lost(pg_database_url):
    with session_scope(pg_database_url, one_connection=True) as session:
        lost = _backend(session)
        session.commit()
        url = make_url(pg_database_url).set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [lost])
        with pytest.raises(OperationalError):
            _backend(session)
        session.rollback()
        assert _backend(session) != lost
