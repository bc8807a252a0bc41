"""The application factory. `app` exists for `uvicorn app.main:app`; nothing connects at import."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.types import Receive, Scope, Send

from app import observability, server
from app.api import hot_ingest
from app.api.routes import (
    anomaly,
    dashboard,
    docs,
    health,
    imports,
    influx,
    ingest,
    jobs,
    prometheus,
    query,
    remote_write,
)
from app.config import Settings, get_settings
from app.errors import (
    BadRequest,
    Unauthorized,
    Unavailable,
    install_error_handlers,
    responses_for,
)
from app.http_guard import BodyGuard, BodyTimeout, Overloaded
from app.logging_setup import configure_logging
from app.migrate import upgrade
from app.scheduler import Scheduler
from app.schemas import DOCUMENTED_MODELS
from app.storage.group_commit import GroupCommitter
from app.storage.store import Store
from app.version import __version__

log = logging.getLogger("app")
DESCRIPTION = (
    "Send numbers over HTTP, query them back raw or as exact rollups (1m, 5m, 1h), "
    "find anomalies, and watch them on the dashboard at `/`."
)


class MetricsApp(FastAPI):
    """FastAPI, with plain single-sample writes answered below the framework once the app has
    started (app.api.hot_ingest says why and how)."""

    hot_ingest: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
    body_guard: BodyGuard | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.body_guard is not None:
            await self.body_guard(scope, receive, send, self._dispatch)  # app.http_guard
        else:
            await super().__call__(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot_ingest is not None and hot_ingest.is_hot(scope):
            await self.hot_ingest(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    def serve_hot_ingest(self, committer: GroupCommitter | None) -> None:
        """Start (with the running committer) or stop answering writes below the framework."""
        if committer is None:
            self.hot_ingest = None
            return
        self.hot_ingest = functools.partial(
            hot_ingest.ingest,
            settings=self.state.settings,
            committer=committer,
            recorder=self.state.request_recorder,
            handlers=self.exception_handlers,
            framework=super().__call__,
        )


def create_app(settings: Settings | None = None) -> MetricsApp:
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: MetricsApp) -> AsyncIterator[None]:
        await _migrate(settings)
        store = Store.open(settings)
        committer = GroupCommitter(store)
        committer.start()
        scheduler = Scheduler(store, settings)
        if settings.scheduler_enabled:
            scheduler.start()
        app.state.store, app.state.committer = store, committer
        app.serve_hot_ingest(committer)
        _tune_gc()
        log.info("serving on %s (%s)", settings.backend, _safe_url(settings.database_url))
        observability.warn_if_exposed(observability.bind_host(), settings)
        try:
            yield
        finally:
            app.state.shutting_down = True  # outside protocols answer 503 + Retry-After now
            app.serve_hot_ingest(None)
            await scheduler.stop()
            await committer.stop()
            await store.close()

    app = MetricsApp(
        title="Metrics service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from app.api.routes.docs, with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.body_guard = BodyGuard(settings)
    install_error_handlers(app)
    routers = (ingest, query, anomaly, jobs, health, dashboard, docs, remote_write, influx, imports)
    for module in routers:
        app.include_router(module.router)
    # The Prometheus query API, also under /prometheus as VictoriaMetrics serves it.
    app.include_router(prometheus.router)
    app.include_router(prometheus.router, prefix="/prometheus", include_in_schema=False)
    observability.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _tune_gc() -> None:
    """Keep full garbage collections off the request path. The objects alive after start-up
    (modules, routes, schemas) are frozen out of collection, and collections run less often:
    otherwise a full pass over them every few thousand allocations stalls a query answer by
    tens of milliseconds."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def _migrate(settings: Settings) -> None:
    """Apply migrations; if the database is down, start anyway and answer 503 until it is up."""
    try:
        await asyncio.to_thread(upgrade, settings)
    except Exception as exc:
        log.error("migrations not applied (database unreachable?): %s", exc)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema plus the request-body models that routes read themselves."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, defs = models_json_schema(
            [(m, "validation") for m in DOCUMENTED_MODELS],
            ref_template="#/components/schemas/{model}",
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(defs["$defs"])
        _document_errors(schema)
        app.openapi_schema = schema
    return app.openapi_schema


# Statuses any operation may answer, described from the error table (app.errors.RULES).
ERROR_STATUSES = {
    str(status): entry["description"]
    for status, entry in responses_for(
        BadRequest, Unauthorized, RequestValidationError, BodyTimeout, Unavailable, Overloaded
    ).items()
}


def _answers_own_model(entry: dict[str, Any]) -> bool:
    """A route that documents its own error model (the Prometheus API's envelope) keeps it."""
    ref = entry.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
    return bool(ref) and not ref.endswith(("/ErrorResponse", "/HTTPValidationError"))


def _document_errors(schema: dict[str, Any]) -> None:
    """Every error answer is `{"detail": "<message>"}`: say so instead of FastAPI's default."""
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for operations in schema.get("paths", {}).values():
        for op in operations.values():
            responses = op.setdefault("responses", {})
            for status, text in ERROR_STATUSES.items():
                entry = responses.setdefault(status, {"description": text})
                if not _answers_own_model(entry):
                    entry["content"] = {"application/json": {"schema": ref}}
    for unused in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(unused, None)


app = create_app()
server.adopt_loading_server(app.state.settings)  # the request-head limits (app.server)
