"""Alerting: rules, per-series alert state, history, the webhook outbox and receiver back-off.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.Column("last_eval_ms", sa.BigInteger),
        sa.Column("last_duration_ms", sa.BigInteger),
        sa.Column("last_error", sa.Text),
    )
    op.create_table(
        "alerts",
        sa.Column("rule_name", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("active_at", sa.BigInteger),
        sa.Column("fired_at", sa.BigInteger),
        sa.Column("resolved_at", sa.BigInteger),
        sa.Column("run_end", sa.BigInteger),
        sa.Column("open", sa.Integer, nullable=False),
        sa.Column("consumed_until", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Double),
        sa.Column("score", sa.Double),
        sa.Column("evaluated_until", sa.BigInteger, nullable=False),
        sa.Column("last_point_ms", sa.BigInteger),
        sa.Column("am_sent_ms", sa.BigInteger),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("rule_name", "fingerprint", name="pk_alerts"),
    )
    op.create_table(
        "alert_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule_name", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Double),
        sa.Column("score", sa.Double),
        sa.Column("recorded_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_alert_history_at", "alert_history", ["at_ms"])
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("history_id", sa.Integer, nullable=False),
        sa.Column("receiver", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger, nullable=False),
        sa.Column("lease_until", sa.BigInteger),
        sa.Column("last_error", sa.Text),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("sent_ms", sa.BigInteger),
        sa.UniqueConstraint("history_id", "receiver", name="uq_alert_notifications_history"),
    )
    op.create_index(
        "ix_alert_notifications_due", "alert_notifications", ["status", "next_attempt_ms"]
    )
    op.create_table(
        "alert_receivers",
        sa.Column("receiver", sa.String(16), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("last_success_ms", sa.BigInteger),
        sa.Column("last_failure_ms", sa.BigInteger),
    )


def downgrade() -> None:
    op.drop_index("ix_alert_notifications_due", "alert_notifications")
    op.drop_index("ix_alert_history_at", "alert_history")
    for table in (
        "alert_receivers",
        "alert_notifications",
        "alert_history",
        "alerts",
        "alert_rules",
    ):
        op.drop_table(table)
