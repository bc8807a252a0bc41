"""Per-backend engine setup: the one place that knows SQLite from PostgreSQL connection details.

SQLite: WAL, a busy timeout, and two engines: a single-connection writer whose transactions start
with BEGIN IMMEDIATE (one writer; no lock upgrades that fail under concurrency) and a reader pool.
PostgreSQL: asyncpg with one pool for reads and writes. No connection can hang: every one has a
server-side statement and idle-in-transaction timeout, a client-side read timeout a little longer,
and TCP keepalive probes and a TCP user timeout on both ends, so a peer that vanished (or a network
that drops everything) is noticed within DB_TCP_TIMEOUT and the connection discarded.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

from app.config import Settings

SQLITE_BUSY_TIMEOUT_MS = 60_000
READ_GRACE_SECONDS = 2.0  # the client waits this much longer than the server's own timeout
KEEPALIVE_PROBES = 3


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


@dataclass(frozen=True)
class PoolFigures:
    """One connection pool as /metrics reports it: `name` is "main" (one pool for reads and
    writes), "writer" or "reader"."""

    name: str
    size: int
    checked_out: int
    overflow: int


@dataclass
class Engines:
    backend: str
    reader: AsyncEngine
    writer: AsyncEngine

    def pool_figures(self) -> list[PoolFigures]:
        """The figures of the pools that keep a bounded number of connections (QueuePool)."""
        pools = (
            [("main", self.writer)]
            if self.writer is self.reader
            else [("writer", self.writer), ("reader", self.reader)]
        )
        figures = []
        for name, engine in pools:
            pool = engine.sync_engine.pool
            if isinstance(pool, QueuePool):
                figures.append(
                    PoolFigures(name, pool.size(), pool.checkedout(), max(pool.overflow(), 0))
                )
        return figures

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


def postgres_connect_args(
    settings: Settings, name: str = "metrics-service", read_timeout: float | None = None
) -> dict[str, Any]:
    """asyncpg's connect arguments, for the pool and for connections opened directly; `name` is
    the application_name that pg_stat_activity shows. `read_timeout` (seconds) is how long the
    client waits for any one answer; by default DB_STATEMENT_TIMEOUT plus a little, so that the
    server cancels a slow statement itself first and only a silent connection is given up."""
    statement_ms = max(1, round(settings.db_statement_timeout.total_seconds() * 1000))
    idle_s, interval_s, tcp_ms = keepalive_timing(settings)
    if read_timeout is None:
        read_timeout = statement_ms / 1000 + READ_GRACE_SECONDS
    return {
        "timeout": settings.db_connect_timeout.total_seconds(),
        "command_timeout": read_timeout,
        "connection_class": KeepaliveConnection.with_timing(idle_s, interval_s, tcp_ms),
        "server_settings": {
            "application_name": name,
            "statement_timeout": str(statement_ms),
            "idle_in_transaction_session_timeout": str(statement_ms),
            "tcp_keepalives_idle": str(idle_s),
            "tcp_keepalives_interval": str(interval_s),
            "tcp_keepalives_count": str(KEEPALIVE_PROBES),
            "tcp_user_timeout": str(tcp_ms),
        },
    }


def keepalive_timing(settings: Settings) -> tuple[int, int, int]:
    """(keepalive idle s, probe interval s, TCP user timeout ms) for DB_TCP_TIMEOUT: probes
    start after half of it and KEEPALIVE_PROBES unanswered ones end the connection, so a silent
    peer is noticed within about DB_TCP_TIMEOUT whether or not data is outstanding."""
    total = max(2.0, settings.db_tcp_timeout.total_seconds())
    interval = max(1, int(total / 2 / KEEPALIVE_PROBES))
    idle = max(1, int(total - interval * KEEPALIVE_PROBES))
    return idle, interval, round(total * 1000)


class KeepaliveConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection whose socket has keepalive probes and a TCP user timeout (asyncpg
    sets neither; the server side gets the same through its tcp_* settings)."""

    timing: tuple[int, int, int] = (5, 1, 10_000)

    @classmethod
    def with_timing(cls, idle_s: int, interval_s: int, user_timeout_ms: int) -> type:
        if (idle_s, interval_s, user_timeout_ms) == cls.timing:
            return cls
        name = f"KeepaliveConnection_{idle_s}_{interval_s}_{user_timeout_ms}"
        return type(name, (cls,), {"timing": (idle_s, interval_s, user_timeout_ms)})

    def __init__(self, protocol: Any, transport: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(protocol, transport, *args, **kwargs)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            set_keepalive(sock, *self.timing)


def set_keepalive(sock: socket.socket, idle_s: int, interval_s: int, user_timeout_ms: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", idle_s),
        ("TCP_KEEPINTVL", interval_s),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
        ("TCP_USER_TIMEOUT", user_timeout_ms),
    ):
        if hasattr(socket, option):  # Linux has all of them; others some
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def asyncpg_dsn(database_url: str) -> str:
    """The URL as asyncpg takes it (`postgresql://...`), for connections opened directly."""
    url = make_url(async_url(database_url))
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
