"""Self-monitoring: Prometheus metrics at `GET /metrics`, one access-log line per request, and a
startup warning when the service listens beyond loopback without API keys.

Every app gets its own `CollectorRegistry` (on `app.state.metrics_registry`), so several apps in
one process (tests) never share counters. Values that live in the database (series count, job
runs) or in the connection pools are read when `/metrics` is scraped, just before the text is
generated: a collector cannot await, the handler can.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import ReadKey
from app.config import Settings
from app.errors import reason_of_status
from app.storage.store import Store

log = logging.getLogger("app.observability")
access_log = logging.getLogger("app.access")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WRITE_ROUTES = frozenset(
    {
        "/metrics/ingest",
        "/backfill/import",
        # outside protocols (app.api.routes.protocols)
        "/api/v1/write",
        "/api/v1/push",
        "/prometheus/api/v1/write",
        "/prometheus/api/v1/push",
        "/write",
        "/api/v2/write",
        "/influx/write",
        "/influx/api/v2/write",
        "/api/v1/import",
        "/api/v1/import/prometheus",
        "/prometheus/api/v1/import",
        "/prometheus/api/v1/import/prometheus",
    }
)
UNMATCHED_ROUTE = "<unmatched>"
SCRAPE_DB_TIMEOUT_SECONDS = 5.0
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _server_timing(elapsed_ms: float) -> tuple[bytes, bytes]:
    return b"server-timing", f"app;dur={elapsed_ms:.2f}".encode()


# Per-job gauges read from the job's last recorded run: (name, help, job_runs column, scale).
JOB_GAUGES = (
    (
        "metrics_job_last_duration_seconds",
        "Duration of the job's last run.",
        "last_duration_ms",
        0.001,
    ),
    (
        "metrics_job_last_run_timestamp_seconds",
        "Unix time the job's last run started.",
        "last_started_ms",
        0.001,
    ),
    (
        "metrics_job_last_finished_timestamp_seconds",
        "Unix time the job's last run finished.",
        "last_finished_ms",
        0.001,
    ),
    (
        "metrics_job_last_error_timestamp_seconds",
        "Unix time of the job's last failure (absent if it never failed).",
        "last_error_ms",
        0.001,
    ),
    (
        "metrics_job_last_buckets_written",
        "Rollup buckets written by the job's last run.",
        "buckets_written",
        1.0,
    ),
    ("metrics_job_last_rows_dropped", "Rows dropped by the job's last run.", "rows_dropped", 1.0),
)


class Metrics:
    """One app's registry and the metrics in it."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.requests = Counter(
            "metrics_http_requests",
            "HTTP requests answered, by route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "metrics_http_request_duration_seconds",
            "Time from request start to the end of its answer, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_progress = Gauge(
            "metrics_http_requests_in_progress", "Requests being handled now.", registry=r
        )
        self.ingested = Counter(
            "metrics_ingested_samples",
            "Samples committed by /metrics/ingest and /backfill/import.",
            registry=r,
        )
        self.rejected = Counter(
            "metrics_rejected_writes",
            "Write requests refused (JSON and outside protocols), by reason: the rejection reason"
            " of the domain error (app.errors.RULES: validation, partial_write, cardinality,"
            " payload_too_large, auth, bad_request, unsupported, retention, unavailable), else"
            " server_error or other.",
            ["route", "reason"],
            registry=r,
        )
        self.protocol_samples = Counter(
            "metrics_protocol_ingested_samples",
            "Samples committed through an outside protocol, by protocol.",
            ["protocol"],
            registry=r,
        )
        self.protocol_refused = Counter(
            "metrics_protocol_refused",
            "Series, lines or samples an outside protocol sent that broke a rule and were"
            " refused while the rest of the request was stored, by protocol and unit.",
            ["protocol", "unit"],
            registry=r,
        )
        self.protocol_refused_samples = Counter(
            "metrics_protocol_refused_samples",
            "Samples in those refusals, by protocol.",
            ["protocol"],
            registry=r,
        )
        self.protocol_ignored = Counter(
            "metrics_protocol_ignored",
            "Things an outside protocol sent that are ignored on purpose, by protocol and what:"
            " exemplars, histograms (native), string_fields (line protocol).",
            ["protocol", "what"],
            registry=r,
        )
        self.protocol_old = Counter(
            "metrics_protocol_old_samples",
            "Samples an outside protocol sent older than raw retention, by protocol and kind:"
            " rollups_only (merged into the rollups that still hold their time) or"
            " beyond_retention (older than every retention: not stored).",
            ["protocol", "kind"],
            registry=r,
        )
        self.series = Gauge("metrics_series", "Series stored (read at scrape time).", registry=r)
        self.db_up = Gauge(
            "metrics_database_up",
            "1 when the last scrape could read from the database, else 0.",
            registry=r,
        )
        self.job_runs = Gauge("metrics_job_runs", "Runs recorded per job.", ["job"], registry=r)
        self.job_ok = Gauge(
            "metrics_job_last_success",
            "1 when the job's last run succeeded (or was stopped by a shutdown), else 0.",
            ["job"],
            registry=r,
        )
        self.job_values = {
            key: (
                Gauge(name, doc, ["job"], registry=r),
                scale,
            )
            for name, doc, key, scale in JOB_GAUGES
        }
        self.alerts = Gauge(
            "metrics_alerts",
            "Alert instances (rule and series) by state: pending, firing, inactive.",
            ["state"],
            registry=r,
        )
        self.alert_notifications = Gauge(
            "metrics_alert_notifications",
            "Webhook notifications by status: pending, sending, sent, failed.",
            ["status"],
            registry=r,
        )
        self.group_commits = Gauge(
            "metrics_ingest_group_commits",
            "Transactions written by single-sample ingestion since start (group commit).",
            registry=r,
        )
        self.group_requests = Gauge(
            "metrics_ingest_group_requests",
            "Single-sample requests those transactions carried since start.",
            registry=r,
        )
        self.pool_size = Gauge(
            "metrics_db_pool_size",
            "Connections the pool keeps open at most (without overflow).",
            ["pool"],
            registry=r,
        )
        self.pool_checked_out = Gauge(
            "metrics_db_pool_checked_out", "Pooled connections in use now.", ["pool"], registry=r
        )
        # (method, route, status) -> the labelled request counter and duration histogram
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.pool_overflow = Gauge(
            "metrics_db_pool_overflow",
            "Connections open beyond the pool size.",
            ["pool"],
            registry=r,
        )

    def observe(
        self, method: str, route: str, status: int, seconds: float, reason: str | None = None
    ) -> None:
        children = self._children.get((method, route, status))
        if children is None:  # first answer of its kind: look the labelled children up once
            children = self._children[(method, route, status)] = (
                self.requests.labels(method, route, str(status)),
                self.duration.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)
        if route in WRITE_ROUTES and status >= 400:
            self.rejected.labels(route, reason or reason_of_status(status)).inc()

    async def refresh(self, store: Store | None) -> None:
        """Read what lives in the database and the pools into the gauges; never raises."""
        if store is None:
            self.db_up.set(0)
            return
        self._refresh_pools(store)
        try:
            series, runs = await asyncio.wait_for(_read_db(store), SCRAPE_DB_TIMEOUT_SECONDS)
        except Exception as exc:
            log.warning(
                "metrics scrape could not read the database: %s: %s", type(exc).__name__, exc
            )
            self.db_up.set(0)
            return
        self.db_up.set(1)
        self.series.set(series)
        for job, row in runs.items():
            self._set_job(job, row)
        await self._refresh_alerts(store)

    async def _refresh_alerts(self, store: Store) -> None:
        try:
            states, statuses = await asyncio.wait_for(
                store.alert_counts(), SCRAPE_DB_TIMEOUT_SECONDS
            )
        except Exception as exc:
            log.warning("metrics scrape could not read the alerts: %s: %s", type(exc).__name__, exc)
            return
        for state in ("pending", "firing", "inactive"):
            self.alerts.labels(state).set(states.get(state, 0))
        for status in ("pending", "sending", "sent", "failed"):
            self.alert_notifications.labels(status).set(statuses.get(status, 0))

    def _set_job(self, job: str, row: Mapping[str, object]) -> None:
        def number(key: str) -> float | None:
            value = row.get(key)
            return float(value) if isinstance(value, int | float) else None

        self.job_runs.labels(job).set(number("runs") or 0)
        # A run a shutdown stopped did not fail: a restart must not look like a failing job.
        self.job_ok.labels(job).set(1 if row.get("last_status") in ("ok", "stopped") else 0)
        for key, (gauge, scale) in self.job_values.items():
            value = number(key)
            if value is not None:
                gauge.labels(job).set(value * scale)

    def _refresh_pools(self, store: Store) -> None:
        for pool in store.pool_figures():
            self.pool_size.labels(pool.name).set(pool.size)
            self.pool_checked_out.labels(pool.name).set(pool.checked_out)
            self.pool_overflow.labels(pool.name).set(pool.overflow)


async def _read_db(store: Store) -> tuple[int, dict[str, dict[str, object]]]:
    return await store.series_count(), await store.job_runs()


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/retention/{metric_name}`), never the raw URL."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


# -- middleware -----------------------------------------------------------------------------


@dataclass
class RequestOutcome:
    status: int | None = None  # set once the answer starts


class RequestRecorder:
    """What every HTTP request leaves behind: its count and latency in the registry, one
    access-log line (no headers, no query) and a `Server-Timing` header on its answer. Shared by
    the middleware and by the framework-free ingest path (app.api.hot_ingest)."""

    def __init__(self, metrics: Metrics, settings: Settings) -> None:
        self.metrics = metrics
        self.settings = settings
        self.log_access = settings.access_log
        self._exposure_checked = False

    def first_request(self, scope: Scope) -> None:
        """On the first request, warn if its socket's local address is beyond loopback."""
        if self._exposure_checked:
            return
        self._exposure_checked = True
        server = scope.get("server")
        if server and _is_ip(str(server[0])):  # a real socket's local address
            _warn_exposed(str(server[0]), self.settings)

    @staticmethod
    def server_timing(started: float) -> tuple[bytes, bytes]:
        """Time spent in the server until the answer starts (W3C Server-Timing)."""
        return _server_timing((time.perf_counter() - started) * 1000)

    @contextlib.contextmanager
    def tracking(
        self, scope: Scope, started: float, route: str | None = None
    ) -> Iterator[RequestOutcome]:
        """Count the request as in progress while the block runs, then record it with the status
        the block set (500 if it raised, 499 if it was cancelled before answering). `route`
        defaults to the template routing matched."""
        outcome = RequestOutcome()
        self.metrics.in_progress.inc()
        try:
            yield outcome
        except Exception:
            outcome.status = outcome.status or 500
            raise
        except BaseException:  # cancelled: the client went away before an answer
            outcome.status = outcome.status or 499
            raise
        finally:
            self.metrics.in_progress.dec()
            self.record(scope, route or route_template(scope), outcome.status or 500, started)

    def record(self, scope: Scope, route: str, status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        method = str(scope.get("method", ""))
        reason = scope.get("state", {}).get("rejection_reason") if status >= 400 else None
        self.metrics.observe(method, route, status, seconds, reason)
        if not (self.log_access and access_log.isEnabledFor(logging.INFO)):
            return
        path = str(scope.get("path", ""))
        duration_ms = round(seconds * 1000, 3)
        access_log.info(
            "%s %s %d %.1fms",
            method,
            path,
            status,
            duration_ms,
            extra={
                "fields": {
                    "method": method,
                    "path": path,
                    "route": route,
                    "status": status,
                    "duration_ms": duration_ms,
                }
            },
        )


class ObservabilityMiddleware:
    """Counts and times every HTTP request and logs one line for it (see RequestRecorder)."""

    def __init__(self, app: ASGIApp, recorder: RequestRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        recorder = self.recorder
        recorder.first_request(scope)
        started = time.perf_counter()
        with recorder.tracking(scope, started) as outcome:

            async def send_and_note(message: Message) -> None:
                if message["type"] == "http.response.start":
                    outcome.status = int(message["status"])
                    headers = [*message.get("headers", []), recorder.server_timing(started)]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_and_note)


# -- the /metrics endpoint ------------------------------------------------------------------

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    dependencies=[ReadKey],
    response_class=Response,
    summary="Prometheus metrics of the service itself",
    responses={
        200: {
            "description": "Prometheus text exposition format 0.0.4.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        401: {"description": "A read API key is required (when READ_API_KEYS is set)"},
    },
)
async def metrics_endpoint(request: Request) -> Response:
    """Requests by route and status, latency, ingested and rejected samples, series count, job
    runs, connection pools, and the process (memory, CPU, file descriptors). The database part
    is read at scrape time; `metrics_database_up` is 0 when that failed."""
    metrics = metrics_of(request.app)
    if metrics is None:  # the router mounted without install(): nothing to show
        return Response(b"", media_type=CONTENT_TYPE)
    await metrics.refresh(getattr(request.app.state, "store", None))
    committer = getattr(request.app.state, "committer", None)
    if committer is not None:
        metrics.group_commits.set(committer.commits)
        metrics.group_requests.set(committer.requests)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE)


OVERWRITTEN_HELP = (
    "Samples that replaced a stored raw sample at the same series and timestamp holding a"
    " different value (exact float64 bits: a stale marker replaced by a NaN counts, -0.0 after"
    " 0.0 too), on every write path, since start; the same value again is not counted."
)


class StoreCounters(Collector):
    """Counters the store keeps itself (it counts after commit), read when `/metrics` is
    generated: so every write path is counted, whichever route or job called the store."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def collect(self) -> Iterator[CounterMetricFamily]:
        store = getattr(self._app.state, "store", None)
        overwritten = getattr(store, "samples_overwritten", 0)
        yield CounterMetricFamily(
            "metrics_overwritten_samples", OVERWRITTEN_HELP, value=overwritten
        )

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("metrics_overwritten_samples", OVERWRITTEN_HELP)


def metrics_of(app: Any) -> Metrics | None:
    found = getattr(app.state, "observability", None)
    return found if isinstance(found, Metrics) else None


def install(app: FastAPI) -> None:
    """Add the metrics registry, the request middleware and `GET /metrics` to `app`. Call it last
    in create_app, after other middleware, so that it sees every answer. Idempotent."""
    if metrics_of(app) is not None:
        return
    metrics = Metrics()
    app.state.observability = metrics
    app.state.metrics_registry = metrics.registry
    metrics.registry.register(StoreCounters(app))
    recorder = RequestRecorder(metrics, app.state.settings)
    app.state.request_recorder = recorder
    app.add_middleware(ObservabilityMiddleware, recorder=recorder)
    app.include_router(router)


def count_ingested(request: Request, n: int) -> None:
    """Count `n` committed samples; call after the commit that made them durable."""
    metrics = metrics_of(request.app)
    if metrics is not None and n > 0:
        metrics.ingested.inc(n)


def count_protocol(request: Request, protocol: str, result: Any, report: Any) -> None:
    """Count what an outside-protocol request stored (an AppendResult), refused and ignored (a
    WriteReport)."""
    metrics = metrics_of(request.app)
    if metrics is None:
        return
    if result.written:
        metrics.protocol_samples.labels(protocol).inc(result.written)
    for kind in ("rollups_only", "beyond_retention"):
        if getattr(result, kind, 0):
            metrics.protocol_old.labels(protocol, kind).inc(getattr(result, kind))
    if report.refused:
        metrics.protocol_refused.labels(protocol, report.unit).inc(report.refused)
        metrics.protocol_refused_samples.labels(protocol).inc(report.refused_samples)
    for what, count in report.ignored.items():
        metrics.protocol_ignored.labels(protocol, what).inc(count)


# -- exposure warning -----------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, localhost, a unix socket; anything else (0.0.0.0, ::, names) is not."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES or host.startswith("unix:"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def bind_host(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The address the server process binds, from its command line; None when unknown.

    uvicorn: `--host H` / `--host=H`, else `UVICORN_HOST`, else its default 127.0.0.1;
    `--uds PATH` gives `unix:PATH`. `metrics-service serve`: `--host`, else 127.0.0.1.
    gunicorn: `-b`/`--bind HOST:PORT` (first one).
    """
    argv = list(sys.argv if argv is None else argv)
    environ = os.environ if environ is None else environ
    if not argv:
        return None
    program = argv[0].replace("\\", "/")
    if program.endswith(("/uvicorn", "/uvicorn/__main__.py")) or program == "uvicorn":
        uds = _option(argv, "--uds")
        if uds is not None:
            return f"unix:{uds}"
        return _option(argv, "--host") or environ.get("UVICORN_HOST") or "127.0.0.1"
    if _is_serve_command(program, argv):  # metrics-service serve, python -m app.cli serve
        return _option(argv, "--host") or "127.0.0.1"
    if program.endswith(("/gunicorn", "/gunicorn/__main__.py")) or program == "gunicorn":
        bind = _option(argv, "--bind") or _option(argv, "-b")
        if bind is None:
            return "127.0.0.1"  # gunicorn's default bind is 127.0.0.1:8000
        if bind.startswith("unix:"):
            return bind
        host, _, _port = bind.rpartition(":")
        return host or bind
    return None


def _is_serve_command(program: str, argv: Sequence[str]) -> bool:
    ours = program.endswith(("/metrics-service", "/app/cli/__main__.py"))
    return (ours or program == "metrics-service") and "serve" in argv[1:2]


def _option(argv: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :]
    return None


def warn_if_exposed(host: str | None, settings: Settings) -> bool:
    """Log a WARNING when the service listens beyond loopback with no API_KEYS; True if it did.
    An unknown host (None) gives no warning: the middleware checks the local address of the first
    request instead. Also warns, wherever it listens, when only READ_API_KEYS is set."""
    if settings.read_api_keys and not settings.api_keys:
        log.warning(
            "READ_API_KEYS is set but API_KEYS is not: reads need a key while writes and "
            "retention changes need none. Set API_KEYS too."
        )
    return _warn_exposed(host, settings)


def _warn_exposed(host: str | None, settings: Settings) -> bool:
    if host is None or settings.api_keys or is_loopback(host):
        return False
    log.warning(
        "SECURITY: listening on %s with no API_KEYS set: anyone who can reach this address can "
        "write, change retention and read all data. Set API_KEYS (and READ_API_KEYS for reads), "
        "or bind to 127.0.0.1.",
        host,
    )
    return True
