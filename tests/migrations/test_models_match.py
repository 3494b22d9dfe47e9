"""The migrations build the schema the models describe: a column or index added to one and
not the other (deliveries.queued_by and its partial index, say) is caught here, not in
production."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from notifier.db import engine_for
from notifier.models import Base


def test_the_migrated_schema_is_the_models_schema(database_url):
    with engine_for(database_url).connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []
