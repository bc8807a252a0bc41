"""Per-backend engine setup: the one place that knows SQLite from PostgreSQL connection details.

SQLite: WAL, a busy timeout, and two engines: a single-connection writer whose transactions start
with BEGIN IMMEDIATE (one writer; no lock upgrades that fail under concurrency) and a reader pool.
PostgreSQL: asyncpg with one pool for reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.config import Settings

SQLITE_BUSY_TIMEOUT_MS = 60_000


def async_url(database_url: str) -> str:
    """`sqlite:///x.db` -> aiosqlite, `postgresql://` -> asyncpg."""
    url = make_url(database_url.replace("postgres://", "postgresql://", 1))
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def sqlite_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


@dataclass
class Engines:
    backend: str
    reader: AsyncEngine
    writer: AsyncEngine

    async def dispose(self) -> None:
        await self.reader.dispose()
        if self.writer is not self.reader:
            await self.writer.dispose()


def _sqlite_engine(url: str, settings: Settings, *, immediate: bool) -> AsyncEngine:
    # The writer keeps exactly one connection: one writer per process, requests queue for it.
    # Its transactions always end in COMMIT or ROLLBACK (engine.begin()), so the pool's extra
    # rollback on every check-in would only cost a round trip to aiosqlite's thread.
    sizing: dict[str, Any] = (
        {"pool_size": 1, "max_overflow": 0, "pool_timeout": 3600, "pool_reset_on_return": None}
        if immediate
        else {}
    )
    engine = create_async_engine(url, **sizing)
    pragmas = (
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={settings.sqlite_synchronous}",
        f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        "PRAGMA temp_store=MEMORY",
        "PRAGMA cache_size=-65536",
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_engines(settings: Settings) -> Engines:
    """Build engines; nothing connects until first use."""
    url = async_url(settings.database_url)
    if settings.backend == "sqlite":
        path = sqlite_path(settings.database_url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        return Engines(
            "sqlite",
            reader=_sqlite_engine(url, settings, immediate=False),
            writer=_sqlite_engine(url, settings, immediate=True),
        )
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout.total_seconds(),
        pool_pre_ping=True,
        connect_args=postgres_connect_args(settings),
    )
    return Engines("postgresql", reader=engine, writer=engine)


def postgres_connect_args(settings: Settings, name: str = "metrics-service") -> dict[str, Any]:
    """asyncpg's connect arguments, for the pool and for connections opened directly; `name` is
    the application_name that pg_stat_activity shows."""
    return {
        "timeout": settings.db_connect_timeout.total_seconds(),
        "server_settings": {"application_name": name},
    }


def asyncpg_dsn(database_url: str) -> str:
    """The URL as asyncpg takes it (`postgresql://...`), for connections opened directly."""
    url = make_url(async_url(database_url))
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
