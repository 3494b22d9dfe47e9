"""Engine and session factory shared by the web app, the workers and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def _tune_sqlite(dbapi_connection, _record) -> None:
    """WAL and a busy timeout let the web process and the workers share one SQLite file."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_engines: dict[str, Engine] = {}


def engine_for(database_url: str) -> Engine:
    """One engine per URL and process; pool_pre_ping survives database restarts."""
    if database_url not in _engines:
        if database_url.startswith("sqlite"):
            engine = create_engine(database_url, connect_args={"timeout": 15})
            event.listen(engine, "connect", _tune_sqlite)
        else:
            engine = create_engine(database_url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        _engines[database_url] = engine
    return _engines[database_url]


def forget_inherited_connections() -> None:
    """In a forked child (a Celery pool process): never use the parent's pooled connections,
    two processes talking over one socket corrupt each other's transactions."""
    for engine in _engines.values():
        engine.dispose(close=False)


def session_factory(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(database_url), expire_on_commit=False)


@contextmanager
def session_scope(database_url: str, *, one_connection: bool = False) -> Iterator[Session]:
    """A session that rolls back on error; callers commit explicitly.

    `one_connection`: every transaction of the session on one connection, checked out (and
    pinged) once. A session otherwise hands its connection back to the pool at each commit
    and pings the next one it takes: a round trip per transaction, and the send path
    commits a dozen times per chunk (each group of outcomes recorded). After a database
    error and rollback the connection reconnects by itself."""
    if not one_connection:
        session = session_factory(database_url)()
    else:
        connection = engine_for(database_url).connect()
        session = Session(bind=connection, expire_on_commit=False)
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
        if one_connection:
            connection.close()
