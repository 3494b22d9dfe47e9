"""Numbers in our URLs are row ids, each of a PostgreSQL INTEGER column (only deliveries.id, never
in a URL, is a BIGINT)."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter, Map

from notifier.domain.limits import ROW_ID_MAX


class RowIdConverter(IntegerConverter):
    """<int:...> with an upper bound: /api/v1/alerts/2147483648 names no row and answers 404,
    instead of reaching PostgreSQL as an out-of-range value (a 500)."""

    def __init__(
        self, map: Map, fixed_digits: int = 0, min: int | None = None, max: int | None = None,
        signed: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(map, fixed_digits, min, ROW_ID_MAX if max is None else max, signed)
