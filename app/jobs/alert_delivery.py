"""Delivering alerts: to Alertmanager (its v2 API, re-sent while firing) and to a webhook (an
outbox, one notification per transition). A receiver that fails is retried with a doubling
back-off, capped at 5 minutes, from the database, so a restart or a second server continues
where the first stopped; nothing here runs on the request path, so a failing receiver never
slows ingestion. Notifications the webhook has not accepted for 24 hours are given up (status
`failed`, counted on /metrics).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from app.config import Settings
from app.services.alerting import notify
from app.services.alerting.rules import Rule, RuleError, annotate
from app.services.alerting.view import stored_rule
from app.storage.store import Store
from app.timeutil import to_ms

log = logging.getLogger("app.jobs.alert")
WEBHOOK_BATCH = 50
Row = dict[str, Any]


@dataclass
class Delivered:
    sent: int = 0
    failed: int = 0


async def deliver(store: Store, settings: Settings, now: int) -> Delivered:
    done = Delivered()
    if not (settings.alertmanager_url or settings.alert_webhook_url):
        return done
    timeout = settings.alert_notify_timeout.total_seconds()
    async with httpx.AsyncClient(timeout=timeout) as client:
        if settings.alertmanager_url:
            await _alertmanager(store, settings, client, now, done)
        if settings.alert_webhook_url:
            await _webhook(store, settings, client, now, done)
    return done


async def _due(store: Store, receiver: str, now: int) -> bool:
    row = await store.alert_receiver(receiver)
    return row is None or int(row["next_attempt_ms"]) <= now


async def _outcome(
    store: Store, settings: Settings, receiver: str, now: int, error: str | None
) -> None:
    row = await store.alert_receiver(receiver) or {
        "receiver": receiver,
        "failures": 0,
        "next_attempt_ms": 0,
        "last_error": None,
        "last_success_ms": None,
        "last_failure_ms": None,
    }
    if error is None:
        row.update(failures=0, next_attempt_ms=now, last_success_ms=now)
    else:
        failures = int(row["failures"]) + 1
        wait = notify.backoff_ms(failures, to_ms(settings.alert_interval))
        row.update(
            failures=failures, next_attempt_ms=now + wait, last_error=error, last_failure_ms=now
        )
        log.warning("alert receiver %s failed (%d in a row): %s", receiver, failures, error)
    await store.save_alert_receiver(row)


async def _post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> str | None:
    """None on a 2xx answer, else what went wrong."""
    try:
        answer = await client.post(
            url, content=body, headers={"content-type": "application/json", **headers}
        )
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
    if answer.is_success:
        return None
    return f"HTTP {answer.status_code}: {answer.text[:300]}"


async def _alertmanager(
    store: Store, settings: Settings, client: httpx.AsyncClient, now: int, done: Delivered
) -> None:
    if not await _due(store, "alertmanager", now):
        return
    rules = _rules(await store.alert_rules())
    resend = to_ms(settings.alert_resend_delay)
    due = [
        a
        for a in await store.alerts()
        if notify.needs_sending(
            a["state"], a["fired_at"], a["resolved_at"], a["am_sent_ms"], now, resend
        )
    ]
    if not due:
        return
    external = settings.alert_external_url or "http://localhost:8000"
    until = notify.valid_until(now, to_ms(settings.alert_interval), resend)
    outgoing = [_outgoing(rules.get(a["rule_name"]), a, until, external) for a in due]
    error = await _post(
        client, f"{settings.alertmanager_url}/api/v2/alerts", notify.alertmanager_body(outgoing), {}
    )
    await _outcome(store, settings, "alertmanager", now, error)
    if error is None:
        await store.mark_sent_to_alertmanager(
            [(a["rule_name"], a["fingerprint"]) for a in due], now
        )
        done.sent += len(due)
    else:
        done.failed += len(due)


def _rules(rows: list[Row]) -> dict[str, Rule]:
    out = {}
    for row in rows:
        try:
            out[row["name"]] = stored_rule(row)
        except RuleError:
            continue
    return out


def _outgoing(rule: Rule | None, a: Row, valid_until: int, external: str) -> notify.Outgoing:
    labels = orjson.loads(a["labels"])
    firing = a["state"] == "firing"
    series = {
        k: v
        for k, v in labels.items()
        if k != "alertname" and (rule is None or k not in rule.labels)
    }
    return notify.Outgoing(
        rule=a["rule_name"],
        fingerprint=a["fingerprint"],
        status="firing" if firing else "resolved",
        labels=labels,
        annotations=annotate(rule, labels, a["value"], a["score"]) if rule else {},
        starts_at=int(a["fired_at"]),
        ends_at=valid_until if firing else int(a["resolved_at"]),
        generator_url=notify.generator_url(external, rule.metric if rule else "", series),
    )


async def _webhook(
    store: Store, settings: Settings, client: httpx.AsyncClient, now: int, done: Delivered
) -> None:
    if not await _due(store, "webhook", now):
        return
    claimed = await store.claim_notifications("webhook", now, notify.LEASE_MS, WEBHOOK_BATCH)
    error: str | None = None
    for item in claimed:
        if error is None:
            headers = {"idempotency-key": str(item["id"])}
            error = await _post(
                client, settings.alert_webhook_url, item["payload"].encode(), headers
            )
            if error is None:
                await store.finish_notification(
                    item["id"],
                    {"status": "sent", "sent_ms": now, "lease_until": None, "last_error": None},
                )
                done.sent += 1
                continue
        # The receiver failed: this one and the rest wait for the back-off.
        attempts = int(item["attempts"])
        wait = notify.backoff_ms(attempts, to_ms(settings.alert_interval))
        expired = now - int(item["created_ms"]) > notify.GIVE_UP_MS
        await store.finish_notification(
            item["id"],
            {
                "status": "failed" if expired else "pending",
                "next_attempt_ms": now + wait,
                "lease_until": None,
                "last_error": error,
            },
        )
        done.failed += 1
    if claimed:
        await _outcome(store, settings, "webhook", now, error)
