"""Tables, as SQLAlchemy Core metadata. Migrations in app/migrations build them;
tests/storage/test_schema.py checks that both agree.

Timestamps are integer milliseconds since the Unix epoch. Samples on PostgreSQL are range-
partitioned by day on `ts` (migrations, docs/storage.md), so retention drops whole partitions.
Values are float64 with every bit pattern kept: on SQLite, whose REAL loses NaN and -0.0, those
rows carry their IEEE 754 bits in `samples.bits` (docs/storage.md).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

from app.services.rollup import RESOLUTIONS

metadata = MetaData()

LabelsType = JSON().with_variant(JSONB(), "postgresql")

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("metric_name", String(255), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Column("labels", LabelsType, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("metric_name", "fingerprint", name="uq_series_metric_fingerprint"),
)

samples = Table(
    "samples",
    metadata,
    Column("series_id", Integer, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("value", Double, nullable=False),  # SQLite: 0.0 where `bits` holds a NaN
    Column("bits", BigInteger, nullable=True),  # SQLite: the exact bits of a NaN or -0.0
    PrimaryKeyConstraint("series_id", "ts", name="pk_samples"),
    sqlite_with_rowid=False,
)
# The block layout (STORAGE_LAYOUT=blocks, migration 0006, docs/storage.md#the-block-layout):
# one row per series and closed 2 h span, its samples compressed (app.storage.blocks.codec).
# A rowid table with the key as its primary key on SQLite (never WITHOUT ROWID: a blob above a
# quarter page would spill into an overflow page of its own); PostgreSQL stores `payload` with
# SET STORAGE EXTERNAL (pcodec output does not compress), in the migration.
blocks = Table(
    "blocks",
    metadata,
    Column("series_id", Integer, nullable=False),
    Column("span_start", BigInteger, nullable=False),
    Column("first_ts", BigInteger, nullable=False),
    Column("last_ts", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),
    Column("nans", Integer, nullable=False),  # NaN samples other than the stale marker
    Column("payload", LargeBinary, nullable=False),
    PrimaryKeyConstraint("series_id", "span_start", name="pk_blocks"),
)
# Rollups stored compactly (migration 0008, docs/storage.md#rollup-blocks): one row per series,
# resolution and closed UTC day, its buckets of `rollup_<res>` encoded by
# app.storage.blocks.rollup_codec; rows of `rollup_<res>` in that day are newer and win. A rowid
# table keyed by its primary key on SQLite; on PostgreSQL `payload` SET STORAGE EXTERNAL and
# toast_tuple_target 8160, in the migration.
rollup_blocks = Table(
    "rollup_blocks",
    metadata,
    Column("series_id", Integer, nullable=False),
    Column("resolution", String(8), nullable=False),
    Column("day_start", BigInteger, nullable=False),
    Column("count", Integer, nullable=False),  # buckets in the payload
    Column("payload", LargeBinary, nullable=False),
    PrimaryKeyConstraint("series_id", "resolution", "day_start", name="pk_rollup_blocks"),
)
# SQLite only (migration 0002): finds the few rows whose exact bits are kept apart.
Index(
    "ix_samples_bits", samples.c.series_id, samples.c.ts, sqlite_where=samples.c.bits.isnot(None)
).ddl_if(dialect="sqlite")


def _rollup_table(name: str) -> Table:
    return Table(
        f"rollup_{name}",
        metadata,
        Column("series_id", Integer, nullable=False),
        Column("bucket", BigInteger, nullable=False),
        Column("count", BigInteger, nullable=False),
        # NULL on SQLite for a NaN sum (+Inf and -Inf in one bucket); PostgreSQL stores NaN.
        Column("sum", Double, nullable=True),
        Column("min", Double, nullable=False),
        Column("max", Double, nullable=False),
        Column("sumsq", Double, nullable=False),
        Column("last", Double, nullable=False),
        Column("last_ts", BigInteger, nullable=False),
        PrimaryKeyConstraint("series_id", "bucket", name=f"pk_rollup_{name}"),
        sqlite_with_rowid=False,
    )


def _dirty_table(name: str) -> Table:
    return Table(
        f"rollup_dirty_{name}",
        metadata,
        Column("series_id", Integer, nullable=False),
        Column("bucket", BigInteger, nullable=False),
        PrimaryKeyConstraint("series_id", "bucket", name=f"pk_rollup_dirty_{name}"),
        sqlite_with_rowid=False,
    )


rollups = {res.name: _rollup_table(res.name) for res in RESOLUTIONS}
dirty = {res.name: _dirty_table(res.name) for res in RESOLUTIONS}

rollup_state = Table(
    "rollup_state",
    metadata,
    Column("resolution", String(8), primary_key=True),
    Column("materialized_until", BigInteger, nullable=False),
)

retention_overrides = Table(
    "retention_overrides",
    metadata,
    Column("metric_name", String(255), primary_key=True),
    Column("raw_ms", BigInteger, nullable=True),
    Column("r1m_ms", BigInteger, nullable=True),
    Column("r5m_ms", BigInteger, nullable=True),
    Column("r1h_ms", BigInteger, nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
)

raw_horizon = Table(
    "raw_horizon",
    metadata,
    Column("metric_name", String(255), primary_key=True),  # '*' for a drop that covered all metrics
    Column("dropped_before", BigInteger, nullable=False),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("job", String(32), primary_key=True),
    Column("runs", BigInteger, nullable=False),
    Column("last_started_ms", BigInteger, nullable=True),
    Column("last_finished_ms", BigInteger, nullable=True),
    Column("last_duration_ms", BigInteger, nullable=True),
    Column("last_status", String(16), nullable=True),
    Column("buckets_written", BigInteger, nullable=False),
    Column("rows_dropped", BigInteger, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("last_error_ms", BigInteger, nullable=True),
)


# -- alerting (app/storage/alerts.py) -----------------------------------------------------------

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("spec", Text, nullable=False),  # the rule as JSON (app.services.alerting.rules)
    Column("source", String(8), nullable=False),  # api or file
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("last_eval_ms", BigInteger, nullable=True),
    Column("last_duration_ms", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
)

alerts = Table(  # one row per rule and series: its alert state and how far it was judged
    "alerts",
    metadata,
    Column("rule_name", String(200), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Column("labels", Text, nullable=False),  # the alert's labels as JSON
    Column("state", String(16), nullable=False),
    Column("active_at", BigInteger, nullable=True),
    Column("fired_at", BigInteger, nullable=True),
    Column("resolved_at", BigInteger, nullable=True),
    Column("run_end", BigInteger, nullable=True),
    Column("open", Integer, nullable=False),
    Column("consumed_until", BigInteger, nullable=False),
    Column("value", Double, nullable=True),
    Column("score", Double, nullable=True),
    Column("evaluated_until", BigInteger, nullable=False),
    Column("last_point_ms", BigInteger, nullable=True),
    Column("am_sent_ms", BigInteger, nullable=True),
    Column("updated_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("rule_name", "fingerprint", name="pk_alerts"),
)

alert_history = Table(
    "alert_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_name", String(200), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Column("labels", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("value", Double, nullable=True),
    Column("score", Double, nullable=True),
    Column("recorded_ms", BigInteger, nullable=False),
    Index("ix_alert_history_at", "at_ms"),
)

alert_notifications = Table(  # the webhook's outbox: one row per transition, sent once
    "alert_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("history_id", Integer, nullable=False),
    Column("receiver", String(16), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending, sending, sent, failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("lease_until", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("sent_ms", BigInteger, nullable=True),
    UniqueConstraint("history_id", "receiver", name="uq_alert_notifications_history"),
    Index("ix_alert_notifications_due", "status", "next_attempt_ms"),
)

alert_receivers = Table(  # per receiver: failures in a row and when to try again
    "alert_receivers",
    metadata,
    Column("receiver", String(16), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("last_success_ms", BigInteger, nullable=True),
    Column("last_failure_ms", BigInteger, nullable=True),
)

# What agents say about metric families (remote-write metadata, `# HELP`/`# TYPE` lines), for
# Prometheus' /api/v1/metadata. One row per distinct (type, help, unit) of a metric, identified
# by their fingerprint; `updated_ms` is when it was last received.
metric_metadata = Table(
    "metric_metadata",
    metadata,
    Column("metric_name", String(255), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Column("type", String(16), nullable=False),
    Column("help", Text, nullable=False),
    Column("unit", String(255), nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("metric_name", "fingerprint", name="pk_metric_metadata"),
)
