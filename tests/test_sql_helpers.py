"""notifier.sql.among and among_bound: `column IN ids` on both dialects; on PostgreSQL one
integer[] bound, dumped by our own dumper. DriverStatement: a statement compiled once that
changes what Session.execute would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, event, select, text, update
from sqlalchemy.exc import IntegrityError

from notifier.models import Subscriber, SubscriberStatus
from notifier.sql import DriverStatement, among, among_bound, dialect_of
from tests import factories


def test_among_finds_exactly_the_ids_given_and_never_matches_none(session):
    readers = [factories.subscriber(session, f"r{n}@example.com", "news") for n in range(5)]
    session.commit()
    wanted = [readers[0].id, readers[3].id, None, readers[3].id]

    def found(ids) -> list[int]:
        query = select(Subscriber.id).where(among(session, Subscriber.id, ids))
        return sorted(session.scalars(query))

    assert found(wanted) == sorted({readers[0].id, readers[3].id})
    assert found([]) == []
    assert found([None]) == []
    assert found(r.id for r in readers) == sorted(r.id for r in readers), "any iterable"


def test_a_statement_built_once_finds_the_ids_it_runs_with(session):
    readers = [factories.subscriber(session, f"r{n}@example.com", "news") for n in range(4)]
    session.commit()
    query = select(Subscriber.id).where(among_bound(dialect_of(session), Subscriber.id))

    def found(ids) -> list[int]:
        return sorted(session.scalars(query, {"ids": ids}))

    assert found([readers[1].id, None, readers[2].id]) == sorted([readers[1].id, readers[2].id])
    assert found(r.id for r in readers[:2]) == sorted(r.id for r in readers[:2])
    assert found([]) == []
    assert found([2**31 - 1]) == [], "the largest integer id is bound, and matches nothing here"


def _leaving(session) -> DriverStatement:
    table = Subscriber.__table__
    return DriverStatement(
        update(table)
        .where(among_bound(dialect_of(session), table.c.id))
        .values(
            status=SubscriberStatus.UNSUBSCRIBED,
            status_changed_at=bindparam("at"),
            status_reason=None,
        )
    )


def test_a_driver_statement_binds_as_session_execute_does_in_the_session_transaction(session):
    readers = [factories.subscriber(session, f"d{n}@example.com", "news") for n in range(4)]
    session.commit()
    ids = [readers[0].id, readers[2].id]
    at = datetime(2026, 12, 7, 9, 30, tzinfo=timezone(timedelta(hours=4)))  # 05:30 UTC
    postgresql = dialect_of(session) == "postgresql"
    if postgresql:  # a server clock elsewhere than UTC: an aware value bound as it is moves
        session.execute(text("SET LOCAL TIME ZONE 'Asia/Tokyo'"))
    seen: list[str] = []
    engine = session.get_bind()

    def record(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        changed = _leaving(session).rows_changed(session, {"ids": ids, "at": at})
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert changed == 2
    assert [s.split()[:2] for s in seen] == [["UPDATE", "subscribers"]], "metrics count it"
    stored = session.execute(
        select(Subscriber.__table__.c.id, Subscriber.__table__.c.status,
               Subscriber.__table__.c.status_changed_at).order_by(Subscriber.__table__.c.id)
    ).all()  # fmt: skip
    assert [(row.id, row.status) for row in stored if row.id in ids] == [
        (i, SubscriberStatus.UNSUBSCRIBED) for i in ids
    ]
    [when] = {row.status_changed_at for row in stored if row.id in ids}
    assert when == datetime(2026, 12, 7, 5, 30, tzinfo=UTC), "stored as naive UTC"
    session.rollback()
    assert set(session.scalars(select(Subscriber.status))) == {SubscriberStatus.ACTIVE}, (
        "it ran in the session's transaction"
    )


def test_a_driver_statement_raises_what_sqlalchemy_raises_and_wants_every_value(session):
    table = Subscriber.__table__
    readers = [factories.subscriber(session, f"e{n}@example.com", "news") for n in range(2)]
    session.commit()
    same_address = DriverStatement(
        update(table).where(among_bound(dialect_of(session), table.c.id))
        .values(email=bindparam("email"))
    )  # fmt: skip

    with pytest.raises(IntegrityError):
        same_address.rows_changed(session, {"ids": [r.id for r in readers], "email": "x@y.z"})
    session.rollback()
    if dialect_of(session) == "postgresql":
        with pytest.raises(TypeError, match="values for \\['at', 'ids'\\] expected"):
            _leaving(session).rows_changed(session, {"ids": [readers[0].id]})
    assert session.scalar(select(table.c.email).where(table.c.id == readers[0].id)) == (
        "e0@example.com"
    )
