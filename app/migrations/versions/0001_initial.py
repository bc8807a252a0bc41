"""Initial schema: series, day-partitioned samples (PostgreSQL), rollups, invalidations, jobs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RESOLUTIONS = ("1m", "5m", "1h")


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _labels_type() -> sa.types.TypeEngine[object]:
    if _is_postgres():
        from sqlalchemy.dialects.postgresql import JSONB

        return JSONB()
    return sa.JSON()


def _create_samples() -> None:
    if _is_postgres():
        op.execute(
            "CREATE TABLE samples (series_id integer NOT NULL, ts bigint NOT NULL,"
            " value double precision NOT NULL, CONSTRAINT pk_samples PRIMARY KEY (series_id, ts))"
            " PARTITION BY RANGE (ts)"
        )
        return
    op.create_table(
        "samples",
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("series_id", "ts", name="pk_samples"),
        sqlite_with_rowid=False,
    )


def _create_rollups(name: str) -> None:
    op.create_table(
        f"rollup_{name}",
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("sum", sa.Double, nullable=False),
        sa.Column("min", sa.Double, nullable=False),
        sa.Column("max", sa.Double, nullable=False),
        sa.Column("sumsq", sa.Double, nullable=False),
        sa.Column("last", sa.Double, nullable=False),
        sa.Column("last_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("series_id", "bucket", name=f"pk_rollup_{name}"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        f"rollup_dirty_{name}",
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("series_id", "bucket", name=f"pk_rollup_dirty_{name}"),
        sqlite_with_rowid=False,
    )


def upgrade() -> None:
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("metric_name", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("labels", _labels_type(), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("metric_name", "fingerprint", name="uq_series_metric_fingerprint"),
    )
    if _is_postgres():
        op.execute("CREATE INDEX ix_series_labels ON series USING gin (labels jsonb_path_ops)")
    _create_samples()
    for name in RESOLUTIONS:
        _create_rollups(name)
    op.create_table(
        "rollup_state",
        sa.Column("resolution", sa.String(8), primary_key=True),
        sa.Column("materialized_until", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "retention_overrides",
        sa.Column("metric_name", sa.String(255), primary_key=True),
        sa.Column("raw_ms", sa.BigInteger),
        sa.Column("r1m_ms", sa.BigInteger),
        sa.Column("r5m_ms", sa.BigInteger),
        sa.Column("r1h_ms", sa.BigInteger),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "raw_horizon",
        sa.Column("metric_name", sa.String(255), primary_key=True),
        sa.Column("dropped_before", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(32), primary_key=True),
        sa.Column("runs", sa.BigInteger, nullable=False),
        sa.Column("last_started_ms", sa.BigInteger),
        sa.Column("last_finished_ms", sa.BigInteger),
        sa.Column("last_duration_ms", sa.BigInteger),
        sa.Column("last_status", sa.String(16)),
        sa.Column("buckets_written", sa.BigInteger, nullable=False),
        sa.Column("rows_dropped", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("last_error_ms", sa.BigInteger),
    )


def downgrade() -> None:
    for table in ("job_runs", "raw_horizon", "retention_overrides", "rollup_state"):
        op.drop_table(table)
    for name in RESOLUTIONS:
        op.drop_table(f"rollup_dirty_{name}")
        op.drop_table(f"rollup_{name}")
    op.drop_table("samples")
    op.drop_table("series")
