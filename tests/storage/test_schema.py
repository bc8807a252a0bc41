"""The migrations build exactly the tables the code describes (app/storage/schema.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import test_settings
from sqlalchemy.engine import Connection

from app.storage.engine import make_engines
from app.storage.schema import metadata


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def test_migrations_match_the_schema_module(database_url: str, backend: str) -> None:
    async def compare() -> list[Any]:
        engines = make_engines(test_settings(database_url))
        try:
            async with engines.reader.connect() as conn:
                return await conn.run_sync(_differences)
        finally:
            await engines.dispose()

    differences = asyncio.run(compare())
    # The GIN index on labels (PostgreSQL) and the day partitions live only in migrations; the
    # partial index on samples.bits exists only on SQLite (PostgreSQL never sets bits).
    only_elsewhere = {("remove_index", "ix_series_labels")}
    if backend == "postgresql":
        only_elsewhere.add(("add_index", "ix_samples_bits"))
    ignored = [d for d in differences if (d[0], getattr(d[1], "name", None)) not in only_elsewhere]
    assert ignored == []
