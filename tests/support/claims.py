"""Claims as tests read them: the ids taken."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from notifier.delivery.claims import claim_rows


def claimed_ids(
    session: Session,
    ids: Sequence[int],
    now: datetime,
    lease_seconds: int,
    token: str | None = None,
    holder: str | None = None,
) -> list[int]:
    """The ids of the rows claim_rows took, in id order."""
    return [row.id for row in claim_rows(session, ids, now, lease_seconds, token, holder)]
