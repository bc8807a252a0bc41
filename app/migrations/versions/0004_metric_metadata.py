"""Metric metadata (type, help, unit) as remote write and the Prometheus text format send it.

Revision ID: 0004
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_metadata",
        sa.Column("metric_name", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("help", sa.Text(), nullable=False),
        sa.Column("unit", sa.String(255), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("metric_name", "fingerprint", name="pk_metric_metadata"),
    )


def downgrade() -> None:
    op.drop_table("metric_metadata")
