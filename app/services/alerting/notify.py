"""What to send to whom, and when to try again (pure).

Alertmanager: its v2 API (`POST /api/v2/alerts`, a list of alerts with labels, annotations,
startsAt, endsAt and generatorURL), as Prometheus sends it: a firing alert again every
ALERT_RESEND_DELAY with endsAt = now + 4 * max(interval, resend delay), so Alertmanager keeps it
while we keep sending and resolves it by itself if we stop; a resolved alert with endsAt = the
time it resolved, sent at once and repeated for 15 minutes.

The webhook: one JSON POST per transition (firing or resolved) shaped like Alertmanager's own
webhook body, with the notification's id as the `Idempotency-Key` header, retried until a 2xx.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from app.timeutil import format_ms

RESOLVED_RETENTION_MS = 15 * 60_000
MAX_BACKOFF_MS = 5 * 60_000
GIVE_UP_MS = 24 * 3_600_000
LEASE_MS = 60_000
RECEIVER_NAME = "metrics-service"


@dataclass(frozen=True)
class Outgoing:
    """One alert as a receiver sees it."""

    rule: str
    fingerprint: str
    status: str  # firing or resolved
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: int
    ends_at: int | None
    generator_url: str

    def alertmanager(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": format_ms(self.starts_at),
            "generatorURL": self.generator_url,
        }
        if self.ends_at is not None:
            body["endsAt"] = format_ms(self.ends_at)
        return body


def valid_until(now: int, interval_ms: int, resend_ms: int) -> int:
    """endsAt of a firing alert: room for two missed evaluations or sends (as Prometheus)."""
    return now + 4 * max(interval_ms, resend_ms)


def needs_sending(
    state: str, fired_at: int | None, resolved_at: int | None, sent_at: int | None, now: int,
    resend_ms: int,
) -> bool:  # fmt: skip
    """Prometheus' rule: firing alerts every resend delay; a resolution at once, then again
    every resend delay for 15 minutes; pending alerts never."""
    if state == "firing":
        return fired_at is not None and (sent_at is None or now - sent_at >= resend_ms)
    if resolved_at is None or now - resolved_at > RESOLVED_RETENTION_MS or fired_at is None:
        return False
    return sent_at is None or resolved_at > sent_at or now - sent_at >= resend_ms


def alertmanager_body(alerts: Sequence[Outgoing]) -> bytes:
    return orjson.dumps([a.alertmanager() for a in alerts])


def webhook_body(alert: Outgoing, external_url: str) -> str:
    """Alertmanager's webhook shape (version 4), for one alert."""
    item = {**alert.alertmanager(), "status": alert.status, "fingerprint": alert.fingerprint}
    body = {
        "version": "4",
        "status": alert.status,
        "receiver": RECEIVER_NAME,
        "groupKey": f"{alert.rule}:{alert.fingerprint}",
        "groupLabels": {"alertname": alert.rule},
        "commonLabels": dict(alert.labels),
        "commonAnnotations": dict(alert.annotations),
        "externalURL": external_url,
        "alerts": [item],
    }
    return orjson.dumps(body).decode()


def backoff_ms(failures: int, base_ms: int) -> int:
    """The wait after `failures` failures in a row: doubling from `base_ms`, capped."""
    if failures <= 0:
        return 0
    return int(min(MAX_BACKOFF_MS, max(1000, base_ms) * 2 ** min(failures - 1, 20)))


def generator_url(external_url: str, metric: str, series_labels: Mapping[str, str]) -> str:
    """A link to the series on the dashboard, anomalies shown."""
    query: dict[str, str] = {"metric": metric, "anomalies": "1", "range": "24h"}
    if series_labels:
        query["filter"] = " ".join(f"{k}={v}" for k, v in sorted(series_labels.items()))
    return f"{external_url}/dashboard?{urlencode(query)}"
