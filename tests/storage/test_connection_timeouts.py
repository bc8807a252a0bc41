"""Every PostgreSQL connection of the service carries its timeouts (app.storage.engine): the
server-side statement and idle-in-transaction timeouts, keepalive probes and a TCP user timeout
on both ends, and a client-side read timeout; the errors they raise are classified as 503s
(app.storage.faults)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from conftest import test_settings
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.storage import faults
from app.storage.engine import keepalive_timing
from app.storage.store import Store

SETTINGS = {"db_statement_timeout": "1500ms", "db_tcp_timeout": "8s", "db_write_timeout": "3s"}
SERVER_SIDE = (
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "tcp_keepalives_idle",
    "tcp_keepalives_interval",
    "tcp_keepalives_count",
    "tcp_user_timeout",
)


def client_socket_options(raw: Any) -> tuple[int, ...]:
    sock = raw._transport.get_extra_info("socket")
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    )


def test_keepalive_timing_adds_up_to_db_tcp_timeout() -> None:
    for seconds, expected in ((10, (7, 1, 10_000)), (8, (5, 1, 8000)), (60, (30, 10, 60_000))):
        idle, interval, user_ms = keepalive_timing(
            test_settings("sqlite://", db_tcp_timeout=seconds)
        )
        assert (idle, interval, user_ms) == expected
        assert idle + 3 * interval <= seconds


def test_pool_and_kept_connections_carry_the_timeouts(database_url: str, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL connections")

    async def go() -> tuple[dict[str, str], tuple[int, ...], dict[str, str], tuple[int, ...]]:
        store = Store.open(test_settings(database_url, **SETTINGS))
        try:
            async with store.engines.reader.connect() as conn:
                pooled = {
                    n: (await conn.execute(text(f"SHOW {n}"))).scalar_one() for n in SERVER_SIDE
                }
                raw = (await conn.get_raw_connection()).driver_connection
                pooled_socket = client_socket_options(raw)
                assert raw._config.command_timeout == pytest.approx(3.5)
            assert await store.samples.writer_read_only() is False  # opens the kept connection
            kept_conn = store.samples.backend._small_writes._conn  # type: ignore[union-attr]
            kept = {n: await kept_conn.fetchval(f"SHOW {n}") for n in SERVER_SIDE}
            assert kept_conn._config.command_timeout == pytest.approx(3.0)  # DB_WRITE_TIMEOUT
            return pooled, pooled_socket, kept, client_socket_options(kept_conn)
        finally:
            await store.close()

    pooled, pooled_socket, kept, kept_socket = asyncio.run(go())
    expected = {
        "statement_timeout": "1500ms",
        "idle_in_transaction_session_timeout": "1500ms",
        "tcp_keepalives_idle": "5",
        "tcp_keepalives_interval": "1",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": "8000",
    }
    assert pooled == expected
    assert kept == expected
    assert pooled_socket == kept_socket == (1, 5, 1, 3, 8000)


def test_a_statement_past_db_statement_timeout_is_cancelled_by_the_server(
    database_url: str, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL's statement_timeout")

    async def go() -> BaseException:
        store = Store.open(test_settings(database_url, **SETTINGS))
        try:
            async with store.engines.reader.connect() as conn:
                with pytest.raises(DBAPIError) as caught:
                    await conn.execute(text("SELECT pg_sleep(30)"))
            return caught.value
        finally:
            await store.close()

    fault = faults.classify(asyncio.run(go()))
    assert fault is not None and fault.kind == "timeout"
    assert fault.message.startswith("database too slow: ")
    assert "statement timeout" in fault.message
