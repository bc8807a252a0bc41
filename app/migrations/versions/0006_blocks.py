"""Compressed sample blocks (STORAGE_LAYOUT=blocks): the `blocks` table, one row per series and
closed span, its samples encoded by app.storage.blocks.codec (docs/storage.md#the-block-layout).

Nothing is converted: with the default layout (`rows`) the table stays empty, and the block
layout's compaction job fills it from `samples`. On SQLite a rowid table keyed by its primary
key (a `WITHOUT ROWID` table would put every block of more than a quarter page into an overflow
page of its own, docs/storage-blocks.md); on PostgreSQL `payload` is stored out of line without
compression (SET STORAGE EXTERNAL: pcodec's output does not compress).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blocks",
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("span_start", sa.BigInteger, nullable=False),
        sa.Column("first_ts", sa.BigInteger, nullable=False),
        sa.Column("last_ts", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("nans", sa.Integer, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("series_id", "span_start", name="pk_blocks"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE blocks ALTER COLUMN payload SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("blocks")
