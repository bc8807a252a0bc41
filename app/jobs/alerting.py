"""The alert job's work: evaluate every rule over the data that arrived since its last run, then
deliver what is due (app.jobs.alert_delivery). Pure functions decide (app.services.alerting,
the detector); this module reads, hands over and records.

Each rule and series keeps, in the database, how far it has been judged (`evaluated_until`) and
its alert state, so every point is judged once however often and wherever the job runs; a new
rule starts FIRST_LOOKBACK before now. A series without a point for STALE_AFTER is gone, as in
Prometheus: its alert resolves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.config import Settings
from app.matchers import canonical_labels, fingerprint
from app.services.alerting import conditions, notify
from app.services.alerting.rules import (
    AnomalyCondition,
    Rule,
    RuleError,
    ThresholdCondition,
    alert_labels,
    annotate,
    load_file,
)
from app.services.alerting.state import FIRING, RESOLVED, AlertState, Transition, advance
from app.services.alerting.view import stored_rule
from app.services.anomaly import reader
from app.storage.store import Store, UnknownMetric

log = logging.getLogger("app.jobs.alert")
FIRST_LOOKBACK_MS = 5 * 60_000
STALE_AFTER_MS = 5 * 60_000
DEFAULT_EXTERNAL_URL = "http://localhost:8000"
Row = dict[str, Any]


@dataclass
class Tally:
    rules: int = 0
    series: int = 0
    points: int = 0
    transitions: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Series:
    labels: dict[str, str]
    ts: np.ndarray  # judged points (anomaly) or raw points (threshold) since `start`
    runs_after: Any  # (after_ms) -> list[Run]


async def load_rules_file(store: Store, settings: Settings) -> int:
    """Write the rules of ALERT_RULES_FILE (replacing rules of those names, dropping file rules
    no longer in it); how many it holds. RuleError (naming file, rule and field) if invalid."""
    if not settings.alert_rules_file:
        return 0
    path = Path(settings.alert_rules_file)
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"ALERT_RULES_FILE {path}: cannot read it: {exc.strerror}") from None
    try:
        rules = load_file(text)
    except RuleError as exc:
        raise RuleError(f"ALERT_RULES_FILE {path}: {exc}") from None
    specs = [(r.name, orjson.dumps(r.to_json()).decode()) for r in rules]
    dropped = await store.sync_file_rules(specs)
    log.info("alert rules file %s: %d rules (%d dropped)", path, len(rules), dropped)
    return len(rules)


async def evaluate_all(store: Store, settings: Settings, now: int) -> Tally:
    tally = Tally()
    rows = await store.alert_rules()
    for row in rows:
        started = time.perf_counter()
        error = None
        try:
            rule = stored_rule(row)
            await evaluate_rule(store, settings, rule, now, tally)
            tally.rules += 1
        except UnknownMetric:
            pass  # no series yet: nothing to judge
        except (RuleError, Exception) as exc:  # one bad rule must not stop the others
            error = f"{type(exc).__name__}: {exc}"[:500]
            tally.errors.append(f"{row['name']}: {error}")
            log.warning("alert rule %s failed: %s", row["name"], error)
        duration = round((time.perf_counter() - started) * 1000)
        await store.record_rule_evaluation(row["name"], now, duration, error)
    await _resolve_orphans(store, settings, {row["name"] for row in rows}, now)
    return tally


async def evaluate_rule(
    store: Store, settings: Settings, rule: Rule, now: int, tally: Tally
) -> None:
    existing = {r["fingerprint"]: r for r in await store.alerts(rule.name)}
    marks = [int(r["evaluated_until"]) for r in existing.values()]
    start = min(marks) + 1 if marks else now - FIRST_LOOKBACK_MS
    series = await _read(store, settings, rule, start, now)
    states: list[Row] = []
    transitions: list[tuple[Row, list[tuple[str, str]]]] = []
    seen = set()
    for s in series:
        fp = fingerprint(canonical_labels(s.labels))
        seen.add(fp)
        state_row, moves = _judge(rule, s, fp, existing.get(fp), start, now, settings)
        states.append(state_row)
        transitions += moves
        tally.points += int(
            np.sum(s.ts > (existing[fp]["evaluated_until"] if fp in existing else start - 1))
        )
    for fp, row in existing.items():  # series without a point since `start`
        if fp not in seen and row["state"] in ("pending", "firing"):
            labels = _series_labels(rule, orjson.loads(row["labels"]))
            empty = _Series(labels, np.empty(0, np.int64), lambda _after: [])
            state_row, moves = _judge(rule, empty, fp, row, start, now, settings)
            states.append(state_row)
            transitions += moves
    tally.series += len(series)
    tally.transitions += len(transitions)
    if states or transitions:
        await store.save_alert_evaluation(states, transitions)


async def _read(
    store: Store, settings: Settings, rule: Rule, start: int, now: int
) -> list[_Series]:
    condition = rule.condition
    if isinstance(condition, AnomalyCondition):
        answer = await reader.detect_auto(
            store,
            rule.metric,
            rule.matchers,
            start,
            now,
            threshold=condition.likelihood,
            max_query_points=settings.max_query_points,
            now_ms=now,
        )
        return [_Series(j.labels, j.result.ts, _anomaly_runs(j.result, now)) for j in answer.series]
    assert isinstance(condition, ThresholdCondition)
    raw, _ = await store.select_raw(
        rule.metric, rule.matchers, start, now, settings.max_query_points
    )
    return [
        _Series(s.labels, s.ts, _threshold_runs(s.ts, s.values, condition))
        for s in raw
        if s.ts.size
    ]


def _anomaly_runs(result: Any, now: int) -> Any:
    return lambda after: conditions.anomaly_runs(result, after, now)


def _threshold_runs(ts: np.ndarray, values: np.ndarray, condition: ThresholdCondition) -> Any:
    return lambda after: conditions.threshold_runs(ts, values, condition, after)


def _judge(
    rule: Rule, s: _Series, fp: str, row: Row | None, start: int, now: int, settings: Settings
) -> tuple[Row, list[tuple[Row, list[tuple[str, str]]]]]:
    """One series: its new state row and its transitions with their notifications."""
    state = _state(row) if row else AlertState(consumed_until=start - 1)
    watermark = int(row["evaluated_until"]) if row else start - 1
    last_point = int(s.ts[-1]) if s.ts.size else (row["last_point_ms"] if row else None)
    points = s.ts[s.ts > watermark]
    if last_point is not None and now - last_point > STALE_AFTER_MS:
        points = np.append(points, now)  # gone: the condition no longer holds at `now`
    runs = s.runs_after(max(state.consumed_until, watermark if row else start - 1))
    new, moves = advance(state, runs, points, rule)
    labels = alert_labels(rule, s.labels)
    judged_until = max(watermark, int(s.ts[-1])) if s.ts.size else watermark
    state_row = _row(rule, fp, labels, new, judged_until, last_point, row, now)
    return state_row, [_transition(rule, labels, s.labels, fp, m, settings, now) for m in moves]


def _state(row: Row) -> AlertState:
    return AlertState(
        state=row["state"],
        active_at=row["active_at"],
        fired_at=row["fired_at"],
        resolved_at=row["resolved_at"],
        run_end=row["run_end"],
        open=bool(row["open"]),
        consumed_until=int(row["consumed_until"]),
        value=row["value"],
        score=row["score"],
    )


def _row(
    rule: Rule,
    fp: str,
    labels: dict[str, str],
    s: AlertState,
    evaluated_until: int,
    last_point: int | None,
    previous: Row | None,
    now: int,
) -> Row:
    return {
        "rule_name": rule.name,
        "fingerprint": fp,
        "labels": orjson.dumps(dict(sorted(labels.items()))).decode(),
        "state": s.state,
        "active_at": s.active_at,
        "fired_at": s.fired_at,
        "resolved_at": s.resolved_at,
        "run_end": s.run_end,
        "open": int(s.open),
        "consumed_until": s.consumed_until,
        "value": s.value,
        "score": s.score,
        "evaluated_until": evaluated_until,
        "last_point_ms": last_point,
        # A changed alert (fired, or resolved) is due at Alertmanager at once.
        "am_sent_ms": previous["am_sent_ms"] if previous and _same(previous, s) else None,
        "updated_ms": now,
    }


def _same(previous: Row, s: AlertState) -> bool:
    return bool(previous["state"] == s.state and previous["fired_at"] == s.fired_at)


def _series_labels(rule: Rule, labels: dict[str, str]) -> dict[str, str]:
    """The series' own labels back from an alert's (rule labels and alertname removed)."""
    return {k: v for k, v in labels.items() if k != "alertname" and k not in rule.labels}


def _transition(
    rule: Rule,
    labels: dict[str, str],
    series_labels: dict[str, str],
    fp: str,
    move: Transition,
    settings: Settings,
    now: int,
) -> tuple[Row, list[tuple[str, str]]]:
    history = {
        "rule_name": rule.name,
        "fingerprint": fp,
        "labels": orjson.dumps(dict(sorted(labels.items()))).decode(),
        "state": move.state,
        "at_ms": move.at_ms,
        "value": move.value,
        "score": move.score,
        "recorded_ms": now,
    }
    sends: list[tuple[str, str]] = []
    if settings.alert_webhook_url and move.state in (FIRING, RESOLVED):
        external = settings.alert_external_url or DEFAULT_EXTERNAL_URL
        outgoing = notify.Outgoing(
            rule=rule.name,
            fingerprint=fp,
            status=move.state,
            labels=labels,
            annotations=annotate(rule, labels, move.value, move.score),
            starts_at=move.fired_at if move.fired_at is not None else move.at_ms,
            ends_at=move.at_ms if move.state == RESOLVED else None,
            generator_url=notify.generator_url(external, rule.metric, series_labels),
        )
        sends.append(("webhook", notify.webhook_body(outgoing, external)))
    return history, sends


async def _resolve_orphans(store: Store, settings: Settings, names: set[str], now: int) -> None:
    """Alerts whose rule was deleted: firing ones resolve now (and say so), then all go."""
    orphans = [r for r in await store.alerts() if r["rule_name"] not in names]
    for rule_name in sorted({r["rule_name"] for r in orphans}):
        mine = [r for r in orphans if r["rule_name"] == rule_name]
        gone = Rule(name=rule_name, metric="unknown", condition=ThresholdCondition(">", 0.0))
        moves = []
        for r in mine:
            if r["state"] != FIRING:
                continue
            labels = orjson.loads(r["labels"])
            move = Transition(RESOLVED, now, r["value"], r["score"], r["fired_at"])
            moves.append(
                _transition(
                    gone,
                    labels,
                    _series_labels(gone, labels),
                    r["fingerprint"],
                    move,
                    settings,
                    now,
                )
            )
        if moves:
            await store.save_alert_evaluation([], moves)
        await store.drop_rule_alerts(rule_name)
