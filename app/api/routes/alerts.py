"""Alert rules (`/alerts/rules`) and alerts with their history (`/alerts`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, HTTPException, Path, Query, Response

from app.api.deps import ReadKey, StoreDep, WriteKey
from app.schemas import ErrorResponse
from app.services.alerting import view
from app.services.alerting.rules import RuleError, parse_rule
from app.services.alerting.state import FIRING, INACTIVE, PENDING

router = APIRouter(tags=["alerting"])
NO_RULE: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No alert rule of that name"}
}
BAD_RULE: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "A field of the rule is wrong; names it"}
}
RuleName = Annotated[str, Path(max_length=200, description="The rule's name (its alertname).")]
EXAMPLE = {
    "metric": "cpu_usage",
    "match": '{region="eu-west"}',
    "anomaly": {"method": "auto", "likelihood": 0.99999},
    "for": "2m",
    "labels": {"severity": "warning"},
    "annotations": {"summary": "cpu_usage on {{ $labels.host }} is unusual: {{ $value }}"},
}


@router.get("/alerts/rules", dependencies=[ReadKey], summary="List alert rules")
async def list_rules(store: StoreDep) -> dict[str, object]:
    return {"rules": [view.rule_json(row) for row in await store.alert_rules()]}


@router.get(
    "/alerts/rules/{name}",
    dependencies=[ReadKey],
    summary="One alert rule",
    responses=NO_RULE,
)
async def get_rule(name: RuleName, store: StoreDep) -> dict[str, object]:
    row = await store.alert_rule(name)
    if row is None:
        raise HTTPException(404, f"name: no alert rule {name!r}")
    return view.rule_json(row)


@router.put(
    "/alerts/rules/{name}",
    dependencies=[WriteKey],
    status_code=200,
    summary="Create or replace an alert rule",
    responses={201: {"description": "Created"}, 200: {"description": "Replaced"}, **BAD_RULE},
)
async def put_rule(
    name: RuleName,
    store: StoreDep,
    response: Response,
    body: Annotated[dict[str, Any], Body(examples=[EXAMPLE])],
) -> dict[str, object]:
    """A metric with an optional Prometheus `match`; exactly one of `anomaly` (method auto, a
    likelihood threshold) or `threshold` (`op` ">" or "<", `value`); `for`, `keep_firing_for`,
    `labels`, `annotations` (templates: `{{ $labels.NAME }}`, `{{ $value }}`, `{{ $likelihood }}`).
    The next alert job run evaluates it."""
    try:
        rule = parse_rule(name, body)
    except RuleError as exc:
        raise HTTPException(422, str(exc)) from None
    created = await store.put_alert_rule(name, orjson.dumps(rule.to_json()).decode())
    response.status_code = 201 if created else 200
    row = await store.alert_rule(name)
    assert row is not None
    return view.rule_json(row)


@router.delete(
    "/alerts/rules/{name}",
    dependencies=[WriteKey],
    summary="Delete an alert rule",
    responses=NO_RULE,
)
async def delete_rule(name: RuleName, store: StoreDep) -> dict[str, object]:
    """Its firing alerts are resolved (and notified) by the next alert job run."""
    if not await store.delete_alert_rule(name):
        raise HTTPException(404, f"name: no alert rule {name!r}")
    return {"name": name, "status": "deleted"}


@router.get("/alerts", dependencies=[ReadKey], summary="Alerts and their history")
async def list_alerts(
    store: StoreDep,
    state: Annotated[
        Literal["active", "pending", "firing", "resolved", "all"],
        Query(description="active (pending and firing, the default), one state, or all."),
    ] = "active",
    rule: Annotated[str | None, Query(max_length=200, description="Only this rule's.")] = None,
    history: Annotated[
        int, Query(ge=0, le=10_000, description="How many recent transitions to list.")
    ] = 100,
) -> dict[str, object]:
    """`alerts`: per rule and series its current state; `history`: the latest transitions
    (pending, firing, resolved, inactive = a pending alert that never fired), newest first."""
    wanted = {
        "active": {PENDING, FIRING},
        "pending": {PENDING},
        "firing": {FIRING},
        "resolved": {INACTIVE},
        "all": {PENDING, FIRING, INACTIVE},
    }[state]
    rules = {}
    for row in await store.alert_rules():
        try:
            rules[row["name"]] = view.stored_rule(row)
        except RuleError:
            continue
    alerts = [
        view.alert_json(rules.get(a["rule_name"]), a)
        for a in await store.alerts(rule)
        if a["state"] in wanted and (a["state"] != INACTIVE or a["resolved_at"] is not None)
    ]
    recent = await store.alert_history(history, rule) if history else []
    return {"alerts": alerts, "history": [view.history_json(h) for h in recent]}
