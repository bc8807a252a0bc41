"""Rules and alerts as the service shows them: our own `GET /alerts` and `GET /alerts/rules`
answers, and the `data` of Prometheus' `/api/v1/rules` and `/api/v1/alerts` for the PromQL API
(issue 15) to return inside its envelope:

    from app.services.alerting import view
    data = await view.prometheus_rules(store, settings)    # {"groups": [...]}
    data = await view.prometheus_alerts(store, settings)   # {"alerts": [...]}

The shaping is pure; the two loaders only read through the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import orjson

from app.config import Settings
from app.services.alerting.rules import Rule, RuleError, annotate, parse_rule
from app.timeutil import format_ms

Row = dict[str, Any]
GROUP = "metrics-service"


class AlertReads(Protocol):
    async def alert_rules(self) -> list[Row]: ...

    async def alerts(self, rule: str | None = None) -> list[Row]: ...


def stored_rule(row: Row) -> Rule:
    """A rule as stored (its spec was validated when written)."""
    return parse_rule(row["name"], orjson.loads(row["spec"]), row["source"])


def rule_json(row: Row) -> dict[str, Any]:
    body = stored_rule(row).to_json()
    body["last_evaluation"] = (
        None if row["last_eval_ms"] is None else format_ms(row["last_eval_ms"])
    )
    body["last_error"] = row["last_error"]
    return body


def alert_json(rule: Rule | None, row: Row) -> dict[str, Any]:
    labels = orjson.loads(row["labels"])
    state = row["state"] if row["state"] != "inactive" else "resolved"
    return {
        "rule": row["rule_name"],
        "metric": rule.metric if rule else None,
        "state": state,
        "labels": labels,
        "annotations": annotate(rule, labels, row["value"], row["score"]) if rule else {},
        "active_at": _time(row["active_at"]),
        "fired_at": _time(row["fired_at"]),
        "resolved_at": _time(row["resolved_at"]) if state == "resolved" else None,
        "value": row["value"],
        "likelihood": row["score"],
        "evaluated_until": _time(row["evaluated_until"]),
    }


def history_json(row: Row) -> dict[str, Any]:
    return {
        "rule": row["rule_name"],
        "state": row["state"],
        "at": format_ms(row["at_ms"]),
        "labels": orjson.loads(row["labels"]),
        "value": row["value"],
        "likelihood": row["score"],
    }


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def prometheus_value(value: float | None) -> str:
    """A sample value as Prometheus writes it (Go's 'e' format, shortest digits)."""
    if value is None:
        return "NaN"
    if np.isnan(value):
        return "NaN"
    if np.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(np.format_float_scientific(value, unique=True, trim="-", exp_digits=2))


def _prometheus_alert(rule: Rule, row: Row) -> dict[str, Any]:
    labels = orjson.loads(row["labels"])
    return {
        "labels": labels,
        "annotations": annotate(rule, labels, row["value"], row["score"]),
        "state": row["state"],
        "activeAt": format_ms(row["active_at"]),
        "value": prometheus_value(row["value"]),
    }


def rules_data(rule_rows: Sequence[Row], alert_rows: Sequence[Row], interval_s: float) -> Row:
    active = [a for a in alert_rows if a["state"] in ("pending", "firing")]
    rules = []
    for row in rule_rows:
        try:
            rule = stored_rule(row)
        except RuleError:
            continue
        mine = [a for a in active if a["rule_name"] == rule.name]
        states = {a["state"] for a in mine}
        rules.append(
            {
                "state": "firing" if "firing" in states else "pending" if states else "inactive",
                "name": rule.name,
                "query": rule.describe(),
                "duration": rule.for_ms / 1000,
                "keepFiringFor": rule.keep_firing_for_ms / 1000,
                "labels": dict(rule.labels),
                "annotations": dict(rule.annotations),
                "alerts": [_prometheus_alert(rule, a) for a in mine],
                "health": "err"
                if row["last_error"]
                else ("ok" if row["last_eval_ms"] else "unknown"),
                "lastError": row["last_error"] or "",
                "evaluationTime": (row["last_duration_ms"] or 0) / 1000,
                "lastEvaluation": format_ms(row["last_eval_ms"] or 0),
                "type": "alerting",
            }
        )
    if not rules:
        return {"groups": []}  # as Prometheus answers without rule files
    last = max((r["last_eval_ms"] or 0 for r in rule_rows), default=0)
    return {
        "groups": [
            {
                "name": GROUP,
                "file": "",
                "rules": rules,
                "interval": interval_s,
                "limit": 0,
                "evaluationTime": sum((r["last_duration_ms"] or 0) for r in rule_rows) / 1000,
                "lastEvaluation": format_ms(last),
            }
        ]
    }


def alerts_data(rule_rows: Sequence[Row], alert_rows: Sequence[Row]) -> Row:
    rules = {}
    for row in rule_rows:
        try:
            rules[row["name"]] = stored_rule(row)
        except RuleError:
            continue
    return {
        "alerts": [
            _prometheus_alert(rules[a["rule_name"]], a)
            for a in alert_rows
            if a["state"] in ("pending", "firing") and a["rule_name"] in rules
        ]
    }


async def prometheus_rules(store: AlertReads, settings: Settings) -> Row:
    return rules_data(
        await store.alert_rules(), await store.alerts(), settings.alert_interval.total_seconds()
    )


async def prometheus_alerts(store: AlertReads, settings: Settings) -> Row:
    return alerts_data(await store.alert_rules(), await store.alerts())


class PrometheusRules:
    """The `RulesSource` that /api/v1/rules and /api/v1/alerts read (app.state.rules_source)."""

    def __init__(self, store: AlertReads, settings: Settings) -> None:
        self.store, self.settings = store, settings

    async def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = (await prometheus_rules(self.store, self.settings))["groups"]
        return groups

    async def alerts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await prometheus_alerts(self.store, self.settings))["alerts"]
        return found
