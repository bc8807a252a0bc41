"""The SQL of alerting: rules, per-series alert state, history, the webhook outbox and the
receivers' back-off. Called by `Store` inside its transactions; decisions live in
app.services.alerting, the acting in app.jobs.alerting."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.storage import dialect, schema

Row = dict[str, Any]
ALERT_COLUMNS = tuple(c.name for c in schema.alerts.c)


def _upsert(conn: AsyncConnection, table: Any, keys: Sequence[str], rows: list[Row]) -> Any:
    """INSERT ... ON CONFLICT (keys) DO UPDATE of every other column (both backends)."""
    build = postgresql.insert if dialect.is_postgres(conn) else sqlite.insert
    statement = build(table).values(rows)
    others = {c.name: statement.excluded[c.name] for c in table.c if c.name not in keys}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=others)


# -- rules ----------------------------------------------------------------------------------


async def read_rules(conn: AsyncConnection) -> list[Row]:
    rows = await conn.execute(select(schema.alert_rules).order_by(schema.alert_rules.c.name))
    return [dict(r._mapping) for r in rows]


async def read_rule(conn: AsyncConnection, name: str) -> Row | None:
    found = await conn.execute(select(schema.alert_rules).where(schema.alert_rules.c.name == name))
    row = found.first()
    return dict(row._mapping) if row else None


async def write_rule(conn: AsyncConnection, name: str, spec: str, source: str, now: int) -> bool:
    """Create or replace a rule; True when it is new. Its evaluation record is kept."""
    cols = schema.alert_rules.c
    existing = await read_rule(conn, name)
    if existing is None:
        await conn.execute(
            insert(schema.alert_rules).values(
                name=name, spec=spec, source=source, created_ms=now, updated_ms=now
            )
        )
        return True
    await conn.execute(
        update(schema.alert_rules)
        .where(cols.name == name)
        .values(spec=spec, source=source, updated_ms=now)
    )
    return False


async def delete_rule(conn: AsyncConnection, name: str) -> bool:
    result = await conn.execute(delete(schema.alert_rules).where(schema.alert_rules.c.name == name))
    return bool(result.rowcount)


async def delete_file_rules_except(conn: AsyncConnection, keep: Iterable[str]) -> int:
    """Rules that came from the rules file and are no longer in it."""
    cols = schema.alert_rules.c
    names = sorted(keep)
    where = cols.source == "file"
    if names:
        where = and_(where, cols.name.not_in(names))
    result = await conn.execute(delete(schema.alert_rules).where(where))
    return int(result.rowcount or 0)


async def record_evaluation(
    conn: AsyncConnection, name: str, at_ms: int, duration_ms: int, error: str | None
) -> None:
    cols = schema.alert_rules.c
    await conn.execute(
        update(schema.alert_rules)
        .where(cols.name == name)
        .values(last_eval_ms=at_ms, last_duration_ms=duration_ms, last_error=error)
    )


# -- alert state ----------------------------------------------------------------------------


async def read_alerts(conn: AsyncConnection, rule: str | None = None) -> list[Row]:
    query = select(schema.alerts).order_by(schema.alerts.c.rule_name, schema.alerts.c.labels)
    if rule is not None:
        query = query.where(schema.alerts.c.rule_name == rule)
    return [dict(r._mapping) for r in await conn.execute(query)]


async def write_alerts(conn: AsyncConnection, rows: list[Row]) -> None:
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        await conn.execute(_upsert(conn, schema.alerts, ("rule_name", "fingerprint"), chunk))


async def delete_alerts(conn: AsyncConnection, rule: str) -> int:
    result = await conn.execute(delete(schema.alerts).where(schema.alerts.c.rule_name == rule))
    return int(result.rowcount or 0)


async def mark_sent_to_alertmanager(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]], at_ms: int
) -> None:
    cols = schema.alerts.c
    for rule, fingerprint in keys:
        await conn.execute(
            update(schema.alerts)
            .where(cols.rule_name == rule, cols.fingerprint == fingerprint)
            .values(am_sent_ms=at_ms)
        )


async def count_alerts(conn: AsyncConnection) -> dict[str, int]:
    cols = schema.alerts.c
    rows = await conn.execute(select(cols.state, func.count()).group_by(cols.state))
    return {state: int(n) for state, n in rows}


# -- history and the outbox -------------------------------------------------------------------


async def add_history(conn: AsyncConnection, rows: list[Row]) -> list[int]:
    """Insert transitions; their ids, in order."""
    ids = []
    for row in rows:
        result = await conn.execute(
            insert(schema.alert_history).values(**row).returning(schema.alert_history.c.id)
        )
        ids.append(int(result.scalar_one()))
    return ids


async def read_history(
    conn: AsyncConnection, limit: int, rule: str | None = None, since_ms: int | None = None
) -> list[Row]:
    cols = schema.alert_history.c
    query = select(schema.alert_history).order_by(cols.at_ms.desc(), cols.id.desc()).limit(limit)
    if rule is not None:
        query = query.where(cols.rule_name == rule)
    if since_ms is not None:
        query = query.where(cols.at_ms >= since_ms)
    return [dict(r._mapping) for r in await conn.execute(query)]


async def add_notifications(conn: AsyncConnection, rows: list[Row]) -> None:
    """Queue notifications; one per transition and receiver, whatever happens twice."""
    if not rows:
        return
    build = postgresql.insert if dialect.is_postgres(conn) else sqlite.insert
    statement = build(schema.alert_notifications).values(rows)
    await conn.execute(statement.on_conflict_do_nothing(index_elements=["history_id", "receiver"]))


async def claim_notifications(
    conn: AsyncConnection, receiver: str, now_ms: int, lease_ms: int, limit: int
) -> list[Row]:
    """Take up to `limit` due notifications for sending: pending ones, and those a sender took
    but never finished (its lease ran out: the process died mid-send). Taken in this
    transaction, so no other sender takes them too."""
    cols = schema.alert_notifications.c
    due = and_(
        cols.receiver == receiver,
        cols.next_attempt_ms <= now_ms,
        or_(cols.status == "pending", and_(cols.status == "sending", cols.lease_until < now_ms)),
    )
    ids = [
        r[0] for r in await conn.execute(select(cols.id).where(due).order_by(cols.id).limit(limit))
    ]
    if not ids:
        return []
    claimed = await conn.execute(
        update(schema.alert_notifications)
        .where(and_(cols.id.in_(ids), due))
        .values(status="sending", lease_until=now_ms + lease_ms, attempts=cols.attempts + 1)
        .returning(cols.id, cols.payload, cols.attempts, cols.created_ms)
    )
    return sorted((dict(r._mapping) for r in claimed), key=lambda row: row["id"])


async def finish_notification(conn: AsyncConnection, ident: int, values: Mapping[str, Any]) -> None:
    cols = schema.alert_notifications.c
    await conn.execute(update(schema.alert_notifications).where(cols.id == ident).values(**values))


async def count_notifications(conn: AsyncConnection) -> dict[str, int]:
    cols = schema.alert_notifications.c
    rows = await conn.execute(select(cols.status, func.count()).group_by(cols.status))
    return {status: int(n) for status, n in rows}


# -- receivers --------------------------------------------------------------------------------


async def read_receiver(conn: AsyncConnection, receiver: str) -> Row | None:
    cols = schema.alert_receivers.c
    found = (
        await conn.execute(select(schema.alert_receivers).where(cols.receiver == receiver))
    ).first()
    return dict(found._mapping) if found else None


async def read_receivers(conn: AsyncConnection) -> list[Row]:
    return [dict(r._mapping) for r in await conn.execute(select(schema.alert_receivers))]


async def write_receiver(conn: AsyncConnection, row: Row) -> None:
    await conn.execute(_upsert(conn, schema.alert_receivers, ("receiver",), [row]))
