"""The Prometheus HTTP query API (`/api/v1/...`, also under `/prometheus`), for Grafana,
promtool and vmalert. Thin: read the parameters (app.api.prometheus_params), call the query
engine or the catalogue (app.promql), answer in Prometheus' envelope. Errors are answered in
that envelope too, with Prometheus' `errorType` and status (`PrometheusRoute`)."""

from __future__ import annotations

import platform
import re
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError

from app.api.deps import ReadKey, SettingsDep, StoreDep
from app.api.prometheus_params import (
    Params,
    bounds_param,
    duration_param,
    limit_param,
    matcher_sets,
    required_time,
    time_param,
)
from app.api.prometheus_schemas import ERRORS
from app.promql import catalog
from app.promql.errors import BadData, PromQLError
from app.promql.parse import parse, prettify
from app.promql.query import QueryOptions, instant_query, range_query
from app.promql.selectors import LOOKBACK_MS
from app.storage.store import QueryTimeout, is_connection_error
from app.timeutil import now_ms

# The Prometheus version whose HTTP API and PromQL this server answers like (3.x semantics);
# clients such as Grafana enable features by it. The service's own version is `revision`.
PROMETHEUS_COMPATIBLE_VERSION = "3.0.0"
JSON = "application/json"
Handler = Callable[..., Coroutine[Any, Any, Response]]


class RulesSource(Protocol):
    """What `/api/v1/rules` and `/api/v1/alerts` read, once set as `app.state.rules_source`
    (the alerting stream provides it); both answer empty lists without one."""

    async def rule_groups(self) -> list[dict[str, Any]]: ...

    async def alerts(self) -> list[dict[str, Any]]: ...


def success(data: object, warnings: list[str] | None = None) -> Response:
    body: dict[str, object] = {"status": "success", "data": data}
    if warnings:
        body["warnings"] = warnings
    return Response(orjson.dumps(body), media_type=JSON)


def failure(error_type: str, message: str, status: int) -> Response:
    body = {"status": "error", "errorType": error_type, "error": message}
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


class PrometheusRoute(APIRoute):
    """Answers this router's errors in Prometheus' envelope (clients read `errorType`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except PromQLError as exc:
                return failure(exc.error_type, str(exc), exc.status)
            except QueryTimeout as exc:
                return failure("timeout", str(exc), 503)
            except (SQLAlchemyError, OSError, ConnectionError, TimeoutError) as exc:
                if is_connection_error(exc) or isinstance(exc, TimeoutError):
                    return failure("unavailable", f"database unavailable: {exc}"[:500], 503)
                raise

        return answer


router = APIRouter(
    prefix="/api/v1",
    tags=["prometheus"],
    dependencies=[ReadKey],
    route_class=PrometheusRoute,
    responses=ERRORS,
)


def get_and_post(path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
    """Register one handler for GET and for form-encoded POST (two operations in OpenAPI)."""

    def register(handler: Handler) -> Handler:
        router.get(path, **kwargs)(handler)
        router.post(path, **kwargs)(handler)
        return handler

    return register


PARAMETERS = {
    "query": "A PromQL expression.",
    "time": "Evaluation time: RFC 3339 or Unix seconds; default now.",
    "start": "RFC 3339 or Unix seconds.",
    "end": "RFC 3339 or Unix seconds.",
    "step": "Seconds or a duration (`15s`, `1m0s`).",
    "timeout": "Seconds or a duration; at most QUERY_TIMEOUT.",
    "limit": "Most series (or names, values) in the answer; 0 for all.",
    "lookback_delta": "Lookback of instant selectors; default 5m.",
    "metric": "Only this metric.",
    "limit_per_metric": "Most entries per metric.",
}


def documented(*names: str) -> dict[str, Any]:
    """OpenAPI text for parameters read from the query string or a form body (POST)."""
    parameters: list[dict[str, Any]] = [
        {
            "name": n,
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": PARAMETERS[n],
        }
        for n in names
        if n != "match[]"
    ]
    if "match[]" in names:
        parameters.append(
            {
                "name": "match[]",
                "in": "query",
                "required": False,
                "style": "form",
                "explode": True,
                "schema": {"type": "array", "items": {"type": "string"}},
                "description": 'Series selectors, e.g. `up{job="api"}`; repeatable.',
            }
        )
    return {"parameters": parameters}


def _options(settings: SettingsDep, params: Params) -> QueryOptions:
    timeout = settings.query_timeout.total_seconds()
    requested = duration_param(params, "timeout")
    if requested is not None and requested > 0:
        timeout = min(timeout, requested / 1000)
    lookback = duration_param(params, "lookback_delta")
    return QueryOptions(
        settings.promql_max_samples,
        timeout,
        lookback or LOOKBACK_MS,
        use_rollups=settings.promql_rollups,
    )


@get_and_post(
    "/query",
    summary="PromQL instant query",
    openapi_extra=documented("query", "time", "timeout", "limit", "lookback_delta"),
)
async def query(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """`query`, `time` (default now), `timeout`, `limit`: the expression's value at one time."""
    params = await Params.read(request, settings.max_body_bytes)
    limit = limit_param(params)
    at = time_param(params, "time", now_ms())
    assert at is not None
    result = await instant_query(store, params.get("query"), at, _options(settings, params))
    return _truncated(result.result_type, result.result, limit)


@get_and_post(
    "/query_range",
    summary="PromQL range query",
    openapi_extra=documented("query", "start", "end", "step", "timeout", "limit", "lookback_delta"),
)
async def query_range(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """`query`, `start`, `end`, `step` (seconds or a duration), `timeout`, `limit`: the value
    at start, start + step, ... up to end; at most 11,000 steps."""
    params = await Params.read(request, settings.max_body_bytes)
    limit = limit_param(params)
    start, end = required_time(params, "start"), required_time(params, "end")
    if end < start:
        raise BadData('invalid parameter "end": end timestamp must not be before start time')
    step = duration_param(params, "step")
    if step is None:
        raise BadData('invalid parameter "step": cannot parse "" to a valid duration')
    options = _options(settings, params)
    result = await range_query(store, params.get("query"), start, end, step, options)
    return _truncated(result.result_type, result.result, limit)


def _truncated(result_type: str, result: object, limit: int) -> Response:
    warnings = []
    truncatable = isinstance(result, list) and result_type in ("vector", "matrix")
    if limit and truncatable and len(result) > limit:  # type: ignore[arg-type]
        result, warnings = result[:limit], [catalog.TRUNCATED]  # type: ignore[index]
    return success({"resultType": result_type, "result": result}, warnings)


@get_and_post(
    "/query_exemplars",
    summary="Exemplars (none are stored)",
    openapi_extra=documented("query", "start", "end"),
)
async def query_exemplars(request: Request, settings: SettingsDep) -> Response:
    params = await Params.read(request, settings.max_body_bytes)
    start = time_param(params, "start", None)
    end = time_param(params, "end", None)
    if start is not None and end is not None and end < start:
        raise BadData("end timestamp must not be before start timestamp")
    parse(params.get("query"))
    return success([])


@get_and_post(
    "/format_query",
    summary="Format a PromQL expression",
    openapi_extra=documented("query"),
)
async def format_query(request: Request, settings: SettingsDep) -> Response:
    params = await Params.read(request, settings.max_body_bytes)
    return success(prettify(params.get("query")))


@get_and_post(
    "/labels",
    summary="Label names",
    openapi_extra=documented("match[]", "start", "end", "limit"),
)
async def labels(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """Label names of the series matching any `match[]` (all series without one), optionally
    only of series with samples in [`start`, `end`]; `limit`."""
    params = await Params.read(request, settings.max_body_bytes)
    names, warnings = await catalog.label_names(
        store, matcher_sets(params), bounds_param(params), limit_param(params)
    )
    return success(names, warnings)


@router.get(
    "/label/{name}/values",
    summary="Values of one label",
    openapi_extra=documented("match[]", "start", "end", "limit"),
)
async def label_values(
    name: str, request: Request, store: StoreDep, settings: SettingsDep
) -> Response:
    """Values of label `name` (`U__`-escaped names are unescaped; `__name__` gives the metric
    names), with `match[]`, `start`, `end`, `limit` as for `/labels`."""
    label = catalog.unescape_label_name(name)
    if not label:
        raise BadData(f'invalid label name: "{name}"')
    params = await Params.read(request, settings.max_body_bytes)
    values, warnings = await catalog.label_values(
        store, label, matcher_sets(params), bounds_param(params), limit_param(params)
    )
    return success(values, warnings)


@get_and_post(
    "/series",
    summary="Series matching selectors",
    openapi_extra=documented("match[]", "start", "end", "limit"),
)
async def series(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """The label sets of the series matching any `match[]` (required), optionally only those
    with samples in [`start`, `end`]; `limit`."""
    params = await Params.read(request, settings.max_body_bytes)
    if not params.all("match[]"):
        raise BadData("no match[] parameter provided")
    found, warnings = await catalog.series(
        store, matcher_sets(params), bounds_param(params), limit_param(params)
    )
    return success(found, warnings)


@router.get(
    "/metadata",
    summary="Metric metadata (type, help, unit)",
    openapi_extra=documented("metric", "limit", "limit_per_metric"),
)
async def metadata(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """`metric`, `limit`, `limit_per_metric`: what remote-write senders reported about their
    metrics, as `{metric: [{type, help, unit}]}`."""
    params = await Params.read(request, settings.max_body_bytes)
    limit = _int_param(params, "limit")
    per_metric = _int_param(params, "limit_per_metric")
    data = await store.metric_metadata(params.get("metric") or None, limit if limit > 0 else None)
    if per_metric > 0:
        data = {metric: entries[:per_metric] for metric, entries in data.items()}
    if limit > 0:
        data = dict(list(data.items())[:limit])
    return success(data)


def _int_param(params: Params, name: str) -> int:
    text = params.get(name)
    if text == "":
        return -1
    try:
        return int(text)
    except ValueError:
        raise BadData(f"{name} must be a number") from None


def build_version(own: str) -> str:
    """The Prometheus-compatible version with the service's own as semver build metadata
    (`3.0.0+metrics-service.0.2.0`): clients compare the first part, people read the rest."""
    metadata = re.sub(r"[^0-9A-Za-z.-]", "-", own).strip(".") or "unknown"
    return f"{PROMETHEUS_COMPATIBLE_VERSION}+metrics-service.{metadata}"


@router.get("/status/buildinfo", summary="Build information")
async def buildinfo(request: Request) -> Response:
    """`version`: the Prometheus version this server answers like, with the service's own
    version (app/version.py, through the app) as build metadata; `revision`: that version."""
    return success(
        {
            "version": build_version(request.app.version),
            "revision": request.app.version,
            "branch": "metrics-service",
            "buildUser": "",
            "buildDate": "",
            "goVersion": f"python{platform.python_version()}",
        }
    )


def _rules_source(request: Request) -> RulesSource | None:
    return getattr(request.app.state, "rules_source", None)


@router.get("/rules", summary="Recording and alerting rules")
async def rules(request: Request) -> Response:
    source = _rules_source(request)
    return success({"groups": await source.rule_groups() if source else []})


@router.get("/alerts", summary="Active alerts")
async def alerts(request: Request) -> Response:
    source = _rules_source(request)
    return success({"alerts": await source.alerts() if source else []})
