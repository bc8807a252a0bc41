"""The store's alerting methods (thin: a transaction around app.storage.alerts), mixed into
`Store` so the HTTP layer and the jobs keep one storage interface."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app.storage import alerts
from app.storage.engine import Engines
from app.storage.write_turns import WriteTurns
from app.timeutil import now_ms

Row = dict[str, Any]


class AlertStore:
    engines: Engines
    _write_lock: WriteTurns

    # -- rules --------------------------------------------------------------------------

    async def alert_rules(self) -> list[Row]:
        async with self.engines.reader.connect() as conn:
            return await alerts.read_rules(conn)

    async def alert_rule(self, name: str) -> Row | None:
        async with self.engines.reader.connect() as conn:
            return await alerts.read_rule(conn, name)

    async def put_alert_rule(self, name: str, spec: str, source: str = "api") -> bool:
        """Create or replace a rule; True when it is new."""
        async with self._write_lock, self.engines.writer.begin() as conn:
            return await alerts.write_rule(conn, name, spec, source, now_ms())

    async def delete_alert_rule(self, name: str) -> bool:
        async with self._write_lock, self.engines.writer.begin() as conn:
            return await alerts.delete_rule(conn, name)

    async def sync_file_rules(self, rules: Sequence[tuple[str, str]]) -> int:
        """Write the rules of the rules file and drop earlier file rules it no longer holds, in
        one transaction; how many were dropped."""
        async with self._write_lock, self.engines.writer.begin() as conn:
            now = now_ms()
            for name, spec in rules:
                await alerts.write_rule(conn, name, spec, "file", now)
            return await alerts.delete_file_rules_except(conn, [name for name, _ in rules])

    async def record_rule_evaluation(
        self, name: str, at_ms: int, duration_ms: int, error: str | None
    ) -> None:
        async with self._write_lock, self.engines.writer.begin() as conn:
            await alerts.record_evaluation(conn, name, at_ms, duration_ms, error)

    # -- alert state, history, notifications -------------------------------------------

    async def alerts(self, rule: str | None = None) -> list[Row]:
        async with self.engines.reader.connect() as conn:
            return await alerts.read_alerts(conn, rule)

    async def save_alert_evaluation(
        self, states: list[Row], transitions: Sequence[tuple[Row, Sequence[tuple[str, str]]]]
    ) -> None:
        """One rule's evaluation in one transaction: its series' states (watermarks included),
        the transitions, and a notification per transition and receiver. Either all of it is
        recorded or none, so a crash re-judges the same points and notifies once."""
        async with self._write_lock, self.engines.writer.begin() as conn:
            await alerts.write_alerts(conn, states)
            ids = await alerts.add_history(conn, [row for row, _ in transitions])
            created = now_ms()
            outbox = [
                {
                    "history_id": ident,
                    "receiver": receiver,
                    "payload": payload,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_ms": 0,  # due at once
                    "created_ms": created,
                }
                for ident, (_, sends) in zip(ids, transitions, strict=True)
                for receiver, payload in sends
            ]
            await alerts.add_notifications(conn, outbox)

    async def drop_rule_alerts(self, rule: str) -> int:
        async with self._write_lock, self.engines.writer.begin() as conn:
            return await alerts.delete_alerts(conn, rule)

    async def alert_history(
        self, limit: int, rule: str | None = None, since_ms: int | None = None
    ) -> list[Row]:
        async with self.engines.reader.connect() as conn:
            return await alerts.read_history(conn, limit, rule, since_ms)

    async def claim_notifications(
        self, receiver: str, now: int, lease_ms: int, limit: int
    ) -> list[Row]:
        async with self._write_lock, self.engines.writer.begin() as conn:
            return await alerts.claim_notifications(conn, receiver, now, lease_ms, limit)

    async def finish_notification(self, ident: int, values: Mapping[str, Any]) -> None:
        async with self._write_lock, self.engines.writer.begin() as conn:
            await alerts.finish_notification(conn, ident, values)

    async def mark_sent_to_alertmanager(self, keys: Sequence[tuple[str, str]], at_ms: int) -> None:
        async with self._write_lock, self.engines.writer.begin() as conn:
            await alerts.mark_sent_to_alertmanager(conn, keys, at_ms)

    async def alert_receiver(self, receiver: str) -> Row | None:
        async with self.engines.reader.connect() as conn:
            return await alerts.read_receiver(conn, receiver)

    async def alert_receivers(self) -> list[Row]:
        async with self.engines.reader.connect() as conn:
            return await alerts.read_receivers(conn)

    async def save_alert_receiver(self, row: Row) -> None:
        async with self._write_lock, self.engines.writer.begin() as conn:
            await alerts.write_receiver(conn, row)

    async def alert_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Alerts by state and notifications by status (for /metrics)."""
        async with self.engines.reader.connect() as conn:
            return await alerts.count_alerts(conn), await alerts.count_notifications(conn)
