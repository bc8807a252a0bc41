"""Notification payloads and schedules, and the Prometheus API view of rules and alerts."""

from __future__ import annotations

import json

import orjson

from app.services.alerting import notify, view
from app.services.alerting.rules import parse_rule

MIN = 60_000


def outgoing(status: str = "firing", ends: int | None = None) -> notify.Outgoing:
    return notify.Outgoing(
        rule="cpu",
        fingerprint="f" * 32,
        status=status,
        labels={"alertname": "cpu", "host": "a"},
        annotations={"summary": "hot"},
        starts_at=1_767_225_600_000,
        ends_at=ends,
        generator_url="http://x/dashboard?metric=cpu",
    )


def test_alertmanager_payload_is_its_v2_shape() -> None:
    body = json.loads(notify.alertmanager_body([outgoing(ends=1_767_225_900_000)]))
    assert body == [
        {
            "labels": {"alertname": "cpu", "host": "a"},
            "annotations": {"summary": "hot"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "2026-01-01T00:05:00Z",
            "generatorURL": "http://x/dashboard?metric=cpu",
        }
    ]


def test_webhook_payload_is_alertmanagers_webhook_shape() -> None:
    body = json.loads(notify.webhook_body(outgoing("resolved", 1_767_225_900_000), "http://svc"))
    assert body["version"] == "4" and body["status"] == "resolved"
    assert body["alerts"][0]["status"] == "resolved"
    assert body["alerts"][0]["endsAt"] == "2026-01-01T00:05:00Z"
    assert body["groupLabels"] == {"alertname": "cpu"} and body["externalURL"] == "http://svc"


def test_resend_rules_follow_prometheus() -> None:
    now = 100 * MIN
    assert notify.needs_sending("firing", 90 * MIN, None, None, now, MIN)
    assert not notify.needs_sending("firing", 90 * MIN, None, now - 30_000, now, MIN)
    assert notify.needs_sending("firing", 90 * MIN, None, now - MIN, now, MIN)
    assert not notify.needs_sending("pending", None, None, None, now, MIN)
    # resolved: at once, again every resend delay, for 15 minutes
    assert notify.needs_sending("inactive", 90 * MIN, now - 5_000, now - 10_000, now, MIN)
    assert not notify.needs_sending("inactive", 90 * MIN, now - 5 * MIN, now - 30_000, now, MIN)
    assert notify.needs_sending("inactive", 90 * MIN, now - 5 * MIN, now - 2 * MIN, now, MIN)
    assert not notify.needs_sending("inactive", 90 * MIN, now - 16 * MIN, now - 20 * MIN, now, MIN)
    assert not notify.needs_sending("inactive", None, now - MIN, None, now, MIN)  # never fired
    assert notify.valid_until(now, 30_000, MIN) == now + 4 * MIN


def test_backoff_doubles_and_is_capped() -> None:
    waits = [notify.backoff_ms(n, 30_000) for n in range(0, 8)]
    assert waits == [0, 30_000, 60_000, 120_000, 240_000, 300_000, 300_000, 300_000]


def test_prometheus_view_of_rules_and_alerts() -> None:
    rule = parse_rule(
        "cpu", {"metric": "cpu", "anomaly": {}, "for": "1m", "annotations": {"s": "{{ $value }}"}}
    )
    rule_row = {
        "name": "cpu",
        "spec": orjson.dumps(rule.to_json()).decode(),
        "source": "api",
        "last_eval_ms": 1_767_225_600_000,
        "last_duration_ms": 12,
        "last_error": None,
    }
    alert_row = {
        "rule_name": "cpu",
        "labels": orjson.dumps({"alertname": "cpu", "host": "a"}).decode(),
        "state": "firing",
        "active_at": 1_767_225_540_000,
        "value": 95.0,
        "score": 0.999999,
    }
    data = view.rules_data([rule_row], [alert_row], 30.0)
    [group] = data["groups"]
    [r] = group["rules"]
    assert (r["state"], r["type"], r["health"], r["duration"]) == ("firing", "alerting", "ok", 60.0)
    assert r["alerts"] == [
        {
            "labels": {"alertname": "cpu", "host": "a"},
            "annotations": {"s": "95"},
            "state": "firing",
            "activeAt": "2026-01-01T00:59:00Z".replace("00:59", "23:59").replace(
                "2026-01-01T23", "2025-12-31T23"
            ),
            "value": "9.5e+01",
        }
    ]
    assert view.alerts_data([rule_row], [alert_row])["alerts"] == r["alerts"]
    assert view.prometheus_value(1.0) == "1e+00" and view.prometheus_value(None) == "NaN"
