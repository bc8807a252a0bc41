"""Every float64 bit pattern stored exactly: `samples.bits`, and rollup sums that may be NaN.

SQLite's REAL turns NaN into NULL and -0.0 into 0.0, so on SQLite a sample whose value is NaN
(any payload: the Prometheus stale marker is one) or -0.0 keeps its exact IEEE 754 bits in the new
`bits` column, with a partial index that finds those few rows; PostgreSQL's float8 keeps every bit
pattern through binary parameters and COPY, and leaves `bits` NULL (docs/storage.md).

The sum of a bucket holding both +Inf and -Inf is NaN, which SQLite stores as NULL: `sum` of the
rollup tables becomes nullable. SQLite cannot drop a NOT NULL constraint in place, so its rollup
tables are rebuilt (same columns, same primary key, WITHOUT ROWID); on PostgreSQL it is a catalog
change.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RESOLUTIONS = ("1m", "5m", "1h")
ROLLUP_COLUMNS = "series_id, bucket, count, sum, min, max, sumsq, last, last_ts"


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _rollup_ddl(table: str, sum_null: str) -> str:
    return (
        f"CREATE TABLE {table} (series_id INTEGER NOT NULL, bucket BIGINT NOT NULL,"
        f" count BIGINT NOT NULL, sum DOUBLE{sum_null}, min DOUBLE NOT NULL, max DOUBLE NOT NULL,"
        " sumsq DOUBLE NOT NULL, last DOUBLE NOT NULL, last_ts BIGINT NOT NULL,"
        f" CONSTRAINT pk_{table.replace('_new', '')} PRIMARY KEY (series_id, bucket))"
        " WITHOUT ROWID"
    )


def _rebuild_sqlite_rollups(sum_null: str) -> None:
    """Copy each rollup table into one with the new `sum` constraint (SQLite only)."""
    for name in RESOLUTIONS:
        table = f"rollup_{name}"
        op.execute(_rollup_ddl(f"{table}_new", sum_null))
        op.execute(
            f"INSERT INTO {table}_new ({ROLLUP_COLUMNS}) SELECT {ROLLUP_COLUMNS} FROM {table}"
        )
        op.execute(f"DROP TABLE {table}")
        op.execute(f"ALTER TABLE {table}_new RENAME TO {table}")


def upgrade() -> None:
    op.execute("ALTER TABLE samples ADD COLUMN bits BIGINT")
    if _is_postgres():
        for name in RESOLUTIONS:
            op.execute(f"ALTER TABLE rollup_{name} ALTER COLUMN sum DROP NOT NULL")
        return
    op.execute("CREATE INDEX ix_samples_bits ON samples (series_id, ts) WHERE bits IS NOT NULL")
    _rebuild_sqlite_rollups("")


def downgrade() -> None:
    if _is_postgres():
        for name in RESOLUTIONS:
            op.execute(f"ALTER TABLE rollup_{name} ALTER COLUMN sum SET NOT NULL")
    else:
        op.execute("DROP INDEX ix_samples_bits")
        _rebuild_sqlite_rollups(" NOT NULL")
    op.execute("ALTER TABLE samples DROP COLUMN bits")
