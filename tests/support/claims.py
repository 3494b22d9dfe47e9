"""Claims as tests read them: the ids taken."""

from __future__ import annotations

from sqlalchemy.orm import Session

from notifier.delivery.claims import claim_rows


def claimed_ids(session: Session, *args, **kwargs) -> list[int]:
    """The ids of the rows claim_rows (same arguments) took, in id order."""
    return [row.id for row in claim_rows(session, *args, **kwargs)]
