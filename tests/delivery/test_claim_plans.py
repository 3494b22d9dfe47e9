"""Recording a batch's outcomes finds its rows by primary key, whatever the statistics say.

psycopg prepares a statement after five runs; PostgreSQL then plans each run with its values
(a custom plan) as long as that looks cheaper than one plan for any values. With statistics
taken while a fan-out's rows were still pending, `status = 'sending'` looked like one row,
so the plan went through ix_deliveries_due, walking every claimed row of the fan-out and the
dead index entries of its earlier claims, for each group of 50 outcomes: at a million
readers that was most of the database's CPU (13 billion index entries read in one run)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from psycopg import sql
from sqlalchemy import text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from notifier.db import session_factory
from notifier.delivery import claims
from notifier.delivery.claims import DELIVERIES
from notifier.models import DeliveryStatus
from notifier.timeutil import utcnow
from tests import factories

READERS = 3000  # enough rows that a scan of the due index is not free, in one INSERT


def _seed_a_fan_out(session: Session, analyzed_as: str) -> list[int]:
    """An article to READERS readers, with the statistics taken while all its deliveries
    were `analyzed_as` (pending: as it was planned; sent: a day's earlier fan-outs, all
    done); then all pending, and the first 50 ids."""
    article = factories.article(session, "news")
    session.flush()
    session.execute(
        text("INSERT INTO subscribers (email, status, created_at) SELECT 'r' || n || "
             "'@claims.test', 'active', now() FROM generate_series(1, :n) AS n"),
        {"n": READERS},
    )  # fmt: skip
    session.execute(
        text("INSERT INTO deliveries (article_id, subscriber_id, channel, status, attempts, "
             "created_at, next_attempt_at) SELECT :article, id, 'email', :status, 0, now(), "
             "now() FROM subscribers WHERE email LIKE '%@claims.test'"),
        {"article": article.id, "status": analyzed_as},
    )  # fmt: skip
    session.commit()
    session.execute(text("ANALYZE deliveries"))
    session.execute(update(DELIVERIES).values(status=DeliveryStatus.PENDING))
    session.commit()
    return list(session.scalars(text("SELECT id FROM deliveries ORDER BY id LIMIT 50")))


def _plans(session: Session, statement, values: dict | None = None) -> list[str]:
    """EXPLAIN of `statement` prepared, as PostgreSQL plans a run of it with `values` (or
    the values built in): with its values (custom) and for any values (generic, which it
    may settle on after five runs)."""
    compiled = statement.compile(dialect=postgresql.dialect())
    params = compiled.construct_params(values)
    names: list[str] = []

    def placeholder(match: re.Match) -> str:
        names.append(match.group(1))
        return f"${len(names)}"

    prepared = re.sub(r"%\((\w+)\)s", placeholder, str(compiled))
    raw = session.connection().connection.dbapi_connection
    ordered = [params[name] for name in names]
    plans = []
    with raw.cursor() as cursor:
        cursor.execute(f"PREPARE recording AS {prepared}")
        arguments = sql.SQL(", ").join(sql.Literal(getattr(v, "value", v)) for v in ordered)
        for mode in ("force_custom_plan", "force_generic_plan"):
            cursor.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.Identifier(mode)))
            cursor.execute(sql.SQL("EXPLAIN EXECUTE recording({})").format(arguments))
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
        cursor.execute("DEALLOCATE recording")
        cursor.execute("RESET plan_cache_mode")
    return plans


@pytest.mark.parametrize("analyzed_as", ["pending", "sent"])
def test_a_batch_finds_its_rows_by_primary_key_whatever_the_statistics(
    pg_database_url, analyzed_as
):
    with session_factory(pg_database_url)() as session:
        ids = _seed_a_fan_out(session, analyzed_as)
        now = utcnow()
        claim = claims.claim_statement(session, ids, now, 300, "t", "worker@host/1/2")
        statements = {
            "claimed": claim,  # (statement, values)
            "not yet due": claims.not_yet_due_statement(session, ids, now),
        }
        session.execute(update(DELIVERIES).values(status=DeliveryStatus.SENDING, claim_token="t"))
        statements |= {
            "sent": (claims._mark_sent("postgresql", True).statement,
                     {**claims.fence_values(ids, "t"), "now": now}),
            "lease renewed": update(DELIVERIES).where(*claims.held_by(session, ids, "t"))
            .values(lease_until=now + timedelta(seconds=300)),
        }  # fmt: skip
        for what, statement in statements.items():
            run = statement if isinstance(statement, tuple) else (statement,)
            for plan in _plans(session, *run):
                assert "pk_deliveries" in plan, f"{what}:\n{plan}"
                assert "ix_deliveries_due" not in plan, f"{what}:\n{plan}"
        session.rollback()
