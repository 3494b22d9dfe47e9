"""Can this deployment work right now? Database reachable, broker reachable, schema at head.

Every check is bounded: short connect timeouts, no retry loop, and an overall deadline after
which a check that has not answered counts as failed. A dead dependency makes /readyz answer
503 within seconds, never hang the probe.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from functools import lru_cache

from kombu import Connection
from kombu.exceptions import KombuError
from sqlalchemy import Engine, create_engine, pool, text
from sqlalchemy.exc import SQLAlchemyError

from notifier.config import Settings
from notifier.logs import redact
from notifier.schema import alembic_config

CHECK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Check:
    name: str  # database | broker | migrations
    ok: bool
    detail: str
    seconds: float


@dataclass(frozen=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> list[str]:
        """'broker: Error 111 connecting to …' per failed check."""
        return [f"{check.name}: {check.detail}" for check in self.checks if not check.ok]

    def as_json(self) -> dict:
        checks = {
            check.name: {"ok": check.ok, "detail": check.detail, "ms": round(check.seconds * 1000)}
            for check in self.checks
        }
        if self.ready:
            return {"status": "ready", "checks": checks}
        return {"status": "not ready", "failing": self.failing, "checks": checks}


def _reason(error: BaseException) -> str:
    """The first line of an error, without addresses or credentials, short."""
    orig = getattr(error, "orig", None) or error
    line = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return redact(line)[:200]


@lru_cache(maxsize=8)
def probe_engine(database_url: str, timeout: float = CHECK_TIMEOUT_SECONDS) -> Engine:
    """An engine for checks: a fresh connection each time (NullPool), a connect timeout and,
    on PostgreSQL, a statement timeout, so a stuck server cannot hold the caller."""
    if database_url.startswith("sqlite"):
        return create_engine(
            database_url, poolclass=pool.NullPool, connect_args={"timeout": timeout}
        )
    connect_args: dict[str, object] = {"connect_timeout": max(1, math.ceil(timeout))}
    if database_url.startswith("postgresql"):
        connect_args["options"] = f"-c statement_timeout={int(timeout * 1000)}"
    return create_engine(database_url, poolclass=pool.NullPool, connect_args=connect_args)


@lru_cache(maxsize=8)
def _head_revisions(database_url: str) -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())


def _database_and_migrations(database_url: str, timeout: float) -> tuple[Check, Check]:
    """One connection answers both: SELECT 1, then alembic's revision against the code's."""
    from alembic.runtime.migration import MigrationContext

    started = time.monotonic()
    try:
        with probe_engine(database_url, timeout).connect() as connection:
            connection.execute(text("SELECT 1"))
            reached = time.monotonic()
            current = frozenset(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as error:
        elapsed = time.monotonic() - started
        return (
            Check("database", False, _reason(error), elapsed),
            Check("migrations", False, "not checked: the database is unreachable", 0.0),
        )
    database = Check("database", True, "reachable", reached - started)
    head = _head_revisions(database_url)
    elapsed = time.monotonic() - reached
    if current == head:
        return database, Check("migrations", True, f"at head {', '.join(sorted(head))}", elapsed)
    at = f"at {', '.join(sorted(current))}" if current else "never migrated"
    detail = f"database {at}, code expects {', '.join(sorted(head))}; run `notifier migrate`"
    return database, Check("migrations", False, detail, elapsed)


def _broker_errors(connection: Connection) -> tuple[type[BaseException], ...]:
    return (KombuError, OSError, *connection.connection_errors, *connection.channel_errors)


def _broker(broker_url: str, timeout: float) -> tuple[Check]:
    """Connect once (no retry) with short socket timeouts and open a channel (Redis: PING)."""
    started = time.monotonic()
    options = {"socket_connect_timeout": timeout, "socket_timeout": timeout, "max_retries": 0}
    connection = Connection(broker_url, connect_timeout=timeout, transport_options=options)
    try:
        with connection:
            # kombu takes float seconds here (its stubs say int)
            connection.ensure_connection(max_retries=0, timeout=timeout)  # type: ignore[arg-type]
            with connection.channel():  # opened, then closed on leaving
                pass
    except _broker_errors(connection) as e:
        return (Check("broker", False, _reason(e), time.monotonic() - started),)
    return (Check("broker", True, "reachable", time.monotonic() - started),)


def check_readiness(settings: Settings, timeout: float = CHECK_TIMEOUT_SECONDS) -> Readiness:
    """Run the checks side by side; whatever has not answered by the deadline has failed."""
    probes: dict[tuple[str, ...], Callable[[], tuple[Check, ...]]] = {
        ("database", "migrations"): lambda: _database_and_migrations(
            settings.database_url, timeout
        ),
        ("broker",): lambda: _broker(settings.broker_url, timeout),
    }
    executor = ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="readiness")
    futures = {names: executor.submit(probe) for names, probe in probes.items()}
    deadline = timeout * 2 + 0.5  # connect + one query, with room for scheduling
    wait_for(futures.values(), timeout=deadline)
    executor.shutdown(wait=False, cancel_futures=True)
    checks: list[Check] = []
    for names, future in futures.items():
        if not future.done():
            silent = f"no answer within {deadline:.1f}s"
            checks.extend(Check(name, False, silent, deadline) for name in names)
        elif error := future.exception():  # an unforeseen failure still names its part
            checks.extend(Check(name, False, _reason(error), 0.0) for name in names)
        else:
            checks.extend(future.result())
    order = {"database": 0, "broker": 1, "migrations": 2}
    return Readiness(tuple(sorted(checks, key=lambda check: order[check.name])))
