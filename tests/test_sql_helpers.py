"""notifier.sql.among: `column IN ids` on both dialects, the PostgreSQL array bound as text."""

from __future__ import annotations

from sqlalchemy import select

from notifier.models import Subscriber
from notifier.sql import among
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
