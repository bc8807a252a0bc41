"""Fixtures shared by the whole suite.

Every test that takes `backend` (directly or through `database_url`, `client`, `live_server`)
runs twice: on SQLite (a fresh file per test) and on PostgreSQL (a database created for this test
run from TEST_DATABASE_URL, emptied before each test, dropped at the end). The schema is always
built by running the migrations.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.jobs.runner import run_once
from app.jobs.work import JobOutcome
from app.main import create_app
from app.migrate import upgrade
from app.storage.store import Store

# No per-example deadline: the suite shares two cores with servers and real clients, and a slow
# example is not a wrong one (speed is measured by `make bench`, never by a test).
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")

ROOT = Path(__file__).resolve().parents[1]

# Retention for the whole test run, servers and jobs started by the tests included: many tests
# write the original specification's samples of December 2025, which with the defaults (raw 7
# days, rollups 30, 90 and 365 days) would be history, merged into the 1h rollups only
# (docs/rollups-and-retention.md), and from 2026-12-03 on beyond every retention. Tests of
# retention itself set their own (settings or per-metric overrides).
for _kind in ("RAW", "1M", "5M", "1H"):
    os.environ.setdefault(f"RETENTION_{_kind}", "36500d")

# SUITE_COMPACT=after runs the suite with the block layout compacting every span, open ones
# included, after each write of the stores this process opens, so that every test reads what
# earlier writes left in blocks (as the contract suite's compacting variants do); servers and
# jobs started as processes compact as usual, and a module that counts what compaction finds
# opts out (`HEAD_ROWS_EXPECTED = True`). A way to run the suite, not a test of its own.
SUITE_COMPACT = os.environ.get("SUITE_COMPACT") == "after"


@pytest.fixture(autouse=True)
def _suite_compacting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if not SUITE_COMPACT or getattr(request.module, "HEAD_ROWS_EXPECTED", False):
        return
    from app.storage.samples import layout
    from app.storage.samples.blocks_store import BlockSampleStore

    class CompactingAfter(BlockSampleStore):
        async def append(self, *args: Any, **kwargs: Any) -> Any:
            result = await super().append(*args, **kwargs)
            await self.compact(2**62)
            return result

    monkeypatch.setattr(layout, "BlockSampleStore", CompactingAfter)


DATA_TABLES = (
    "series",
    "samples",
    "blocks",
    "rollup_blocks",
    "rollup_1m",
    "rollup_5m",
    "rollup_1h",
    "rollup_dirty_1m",
    "rollup_dirty_5m",
    "rollup_dirty_1h",
    "rollup_state",
    "retention_overrides",
    "raw_horizon",
    "job_runs",
    # alerting (issue 16)
    "alert_rules",
    "alerts",
    "alert_history",
    "alert_notifications",
    "alert_receivers",
    "metric_metadata",
)


async def _pg_admin(url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE need that)."""
    import asyncpg

    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


DROP_PARTITIONS = (
    "DO $$ DECLARE r record; BEGIN FOR r IN SELECT inhrelid::regclass AS t FROM pg_inherits"
    " WHERE inhparent = 'samples'::regclass LOOP EXECUTE 'DROP TABLE ' || r.t; END LOOP; END $$"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this run, or None when TEST_DATABASE_URL is not set."""
    admin = os.environ.get("TEST_DATABASE_URL")
    if not admin:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        yield None
        return
    name = f"metrics_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(admin, f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    upgrade(test_settings(url))
    try:
        yield url
    finally:
        asyncio.run(_pg_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: no .env file, no scheduler unless asked for."""
    values: dict[str, Any] = {"database_url": database_url, "scheduler_enabled": False}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


test_settings.__test__ = False  # type: ignore[attr-defined]


@contextmanager
def fresh_database(
    backend: str, directory: Path, tag: str, revision: str = "head"
) -> Iterator[str]:
    """A database of its own migrated to `revision`: a SQLite file in `directory`, or a
    PostgreSQL database created from TEST_DATABASE_URL and dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{directory / 'metrics.db'}"
        upgrade(test_settings(url), revision)
        yield url
        return
    admin = os.environ.get("TEST_DATABASE_URL")
    if not admin:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    name = f"metrics_test_{os.getpid()}_{uuid.uuid4().hex[:8]}_{tag}"
    asyncio.run(_pg_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        upgrade(test_settings(url), revision)
        yield url
    finally:
        asyncio.run(_pg_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database per test module and backend, for tests that each write their own metric."""
    with fresh_database(request.param, tmp_path_factory.mktemp("shared"), "shared") as url:
        yield url


@pytest.fixture(scope="module")
def shared_client(shared_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(test_settings(shared_url))) as client:
        yield client


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, postgres_url: str | None) -> str:
    """An empty, migrated database on the test's backend."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'metrics.db'}"
        upgrade(test_settings(url))
        return url
    if postgres_url is None:
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL")
    tables = ", ".join(DATA_TABLES)
    asyncio.run(_pg_admin(postgres_url, f"TRUNCATE {tables} RESTART IDENTITY", DROP_PARTITIONS))
    return postgres_url


@pytest.fixture
def make_client(database_url: str) -> Iterator[Callable[..., TestClient]]:
    """Build clients over the real app on this test's database, with setting overrides."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        client = TestClient(create_app(test_settings(database_url, **overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def restore_app_logging() -> Iterator[None]:
    """create_app replaces the `app` logger's handler; put the previous one back afterwards."""
    logger = logging.getLogger("app")
    handlers, level = logger.handlers[:], logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds the socket listening on 127.0.0.1:`port` (Linux /proc;
    elsewhere assumed)."""
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return True
    wanted = f"0100007F:{port:04X}"
    inodes = {
        fields[9]
        for fields in (line.split() for line in table)
        if fields[1] == wanted and fields[3] == "0A"  # LISTEN
    }
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _log_path() -> Path:
    fd, name = tempfile.mkstemp(prefix="live-server-", suffix=".log")
    os.close(fd)
    return Path(name)


@dataclass
class LiveServer:
    """A real `uvicorn app.main:app` process on this test's database."""

    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=_log_path)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers /health. The port came from free_port():
        another process (a test in the other xdist worker) may bind it first, so an answer
        counts only from a socket this process listens on, and a server that lost the port to
        another is started again on a new one."""
        env = {**os.environ, "DATABASE_URL": self.database_url, "SCHEDULER_ENABLED": "false"}
        env.update(self.env)
        for _attempt in range(3):
            command = [sys.executable, "-m", "uvicorn", "app.main:app"]
            command += ["--host", "127.0.0.1", "--port", str(self.port)]
            # The log goes to a file: an unread pipe would fill up and stall the server.
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    answered = httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200
                except httpx.HTTPError:
                    answered = False
                if answered and _listens_on(self.process.pid, self.port):
                    return
                time.sleep(0.1)
            else:
                raise RuntimeError(f"server did not answer /health in time: {self.log_tail()}")
            if "address already in use" not in self.log_tail().lower():
                raise RuntimeError(f"server exited: {self.log_tail()}")
            self.port = free_port()
        raise RuntimeError(f"server lost its port three times: {self.log_tail()}")

    def stop(self, sig: str = "term") -> int:
        """Stop the server (`term` graceful, `kill` SIGKILL); returns its exit code."""
        assert self.process is not None
        if sig == "kill":
            self.process.kill()
        else:
            self.process.terminate()
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def log_tail(self, size: int = 4000) -> str:
        return self.log_path.read_bytes()[-size:].decode(errors="replace")


@pytest.fixture
def live_server(database_url: str) -> Iterator[LiveServer]:
    server = LiveServer(database_url)
    server.start()
    yield server
    if server.process is not None:
        server.stop()


def run_module(
    database_url: str, module: str, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m <module>` on this database as a user would; fails the test on a non-zero
    exit."""
    full_env = {**os.environ, "DATABASE_URL": database_url, **env}
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done


def run_job(
    database_url: str, job: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m app.jobs.<job>_job` as a user would; fails the test on a non-zero exit."""
    return run_module(database_url, f"app.jobs.{job}_job", *args, **env)


def run_migrate(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m app.migrate` (upgrade, or `--downgrade REV`) as a user would."""
    return run_module(database_url, "app.migrate", *args, timeout=300, **env)


def run_with_store(
    database_url: str, work: Callable[[Store, Settings], Awaitable[Any]], **overrides: Any
) -> Any:
    """`work` on a store of its own over this database (settings with `overrides`), closed
    after."""

    async def go() -> Any:
        settings = test_settings(database_url, **overrides)
        store = Store.open(settings)
        try:
            return await work(store, settings)
        finally:
            await store.close()

    return asyncio.run(go())


def run_inline(database_url: str, job: str, now: int | None = None, **overrides: Any) -> JobOutcome:
    """Run a job once in this process (same runner and lock as the CLI), optionally at `now`."""

    async def go() -> JobOutcome:
        settings = test_settings(database_url, **overrides)
        store = Store.open(settings)
        try:
            outcome = await run_once(store, settings, job, wait_seconds=60, now=now)
        finally:
            await store.close()
        assert outcome is not None
        return outcome

    return asyncio.run(go())


def sql_rows(database_url: str, statement: str) -> list[tuple[Any, ...]]:
    """Read our own tables directly, to check what the jobs stored."""

    async def go() -> list[tuple[Any, ...]]:
        store = Store.open(test_settings(database_url))
        try:
            async with store.engines.reader.connect() as conn:
                return [tuple(row) for row in await conn.execute(text(statement))]
        finally:
            await store.close()

    return asyncio.run(go())
