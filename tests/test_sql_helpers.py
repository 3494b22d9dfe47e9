"""notifier.sql.among and among_bound: `column IN ids` on both dialects; on PostgreSQL one
integer[] bound, dumped by our own dumper."""

from __future__ import annotations

from sqlalchemy import select

from notifier.models import Subscriber
from notifier.sql import among, among_bound, dialect_of
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
