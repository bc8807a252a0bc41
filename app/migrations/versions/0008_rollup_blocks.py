"""Rollups stored compactly: the `rollup_blocks` table, one row per series, resolution and closed
UTC day, its buckets encoded by app.storage.blocks.rollup_codec (docs/storage.md#rollup-blocks);
and autovacuum settings for the invalidation marks on PostgreSQL.

Nothing is converted: the compact job folds closed days of `rollup_<res>` into it. On SQLite a
rowid table keyed by its primary key (as `blocks`, migration 0006); on PostgreSQL `payload` is
stored without compression (SET STORAGE EXTERNAL: pcodec's output does not compress), in the
heap up to a page (toast_tuple_target 8160), out of line beyond.

The marks tables `rollup_dirty_<res>` are written by every write and emptied by the rollup job:
on PostgreSQL their dead tuples (13 MB after the benchmark's import) waited for the default
autovacuum thresholds (20% of the table plus 50 rows, judged on the table's last size). They get
autovacuum at 1% plus 1,000 dead rows, so the space is reused by the next writes; the rollup job
also vacuums them when a run leaves them empty (app.storage.maintenance.vacuum_marks).

Downgrade turns every folded day back into rows of its resolution's table (rows there win:
rollup_blocks.unpack_all) before the table goes, so the release before it finds every bucket.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.storage import rollup_blocks

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

RESOLUTIONS = ("1m", "5m", "1h")
MARKS_AUTOVACUUM = (
    "autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,"
    " autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_vacuum_insert_threshold = 1000"
)
MARKS_RESET = (
    "autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,"
    " autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_insert_threshold"
)


def upgrade() -> None:
    op.create_table(
        "rollup_blocks",
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("resolution", sa.String(8), nullable=False),
        sa.Column("day_start", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("series_id", "resolution", "day_start", name="pk_rollup_blocks"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE rollup_blocks ALTER COLUMN payload SET STORAGE EXTERNAL")
        # rows up to a page stay in the heap: a 5m day (about 2 KB) just above the default
        # 2 KB threshold took two TOAST chunks, and 1m days ten; measured, 2.61 MB instead of
        # 2.79 MB for the benchmark's rollup blocks
        op.execute("ALTER TABLE rollup_blocks SET (toast_tuple_target = 8160)")
        for name in RESOLUTIONS:
            op.execute(f"ALTER TABLE rollup_dirty_{name} SET ({MARKS_AUTOVACUUM})")


def downgrade() -> None:
    rollup_blocks.unpack_all(op.get_bind())  # every folded day back into rows first
    if op.get_bind().dialect.name == "postgresql":
        for name in RESOLUTIONS:
            op.execute(f"ALTER TABLE rollup_dirty_{name} RESET ({MARKS_RESET})")
    op.drop_table("rollup_blocks")
