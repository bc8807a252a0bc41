"""What a database failure means for the client: the one place that reads driver error codes.

Every error raised by a database call is one of: unreachable (the network, the server down or
restarting, a connection given up), too slow (a statement or write past its timeout), the disk
full, or the database read-only; or none of these (a fault in a statement: a 500). The HTTP layer
answers the first four with 503, a message saying which, and `Retry-After`; `/db/status` reports
the last one a write met.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

FaultKind = Literal["unavailable", "timeout", "disk_full", "read_only"]

# Seconds a client is asked to wait before retrying, per kind.
RETRY_AFTER: dict[FaultKind, int] = {
    "unavailable": 5,
    "timeout": 5,
    "disk_full": 30,
    "read_only": 30,
}
PREFIX: dict[FaultKind, str] = {
    "unavailable": "database unavailable",
    "timeout": "database too slow",
    "disk_full": "disk full",
    "read_only": "database read-only",
}

# PostgreSQL SQLSTATEs (appendix A of its manual) by what they mean here.
PG_DISK_FULL = ("53100",)  # disk_full
PG_READ_ONLY = ("25006",)  # read_only_sql_transaction (a standby, default_transaction_read_only)
PG_TIMEOUT = ("57014", "55P03")  # query_canceled (statement_timeout), lock_not_available
PG_UNAVAILABLE_CLASSES = ("08", "57P", "53")  # connection, operator intervention, resources


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    detail: str  # the driver's own words

    @property
    def message(self) -> str:
        return f"{PREFIX[self.kind]}: {self.detail}"[:500]

    @property
    def retry_after(self) -> int:
        return RETRY_AFTER[self.kind]


def classify(exc: BaseException) -> Fault | None:
    """The fault an exception from a database call stands for; None for anything else."""
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    detail = f"{type(orig).__name__}: {orig}".strip().rstrip(":")
    if isinstance(orig, TimeoutError) and not str(orig):
        detail = "TimeoutError: no answer in time; the connection was given up"
    kind = _sqlite_kind(orig) or _postgres_kind(orig) or _generic_kind(exc, orig)
    return None if kind is None else Fault(kind, detail)


def _sqlite_kind(orig: BaseException) -> FaultKind | None:
    if not isinstance(orig, sqlite3.Error):
        return None
    name = str(getattr(orig, "sqlite_errorname", ""))
    if name == "SQLITE_FULL":
        return "disk_full"
    if name.startswith("SQLITE_READONLY"):
        return "read_only"
    if isinstance(orig, sqlite3.OperationalError):
        return "unavailable"  # locked by another process past the busy timeout, I/O errors
    return None


def _postgres_kind(orig: BaseException) -> FaultKind | None:
    sqlstate = str(getattr(orig, "sqlstate", "") or "")
    if not sqlstate:
        return None
    if sqlstate in PG_DISK_FULL:
        return "disk_full"
    if sqlstate in PG_READ_ONLY:
        return "read_only"
    if sqlstate in PG_TIMEOUT:
        return "timeout"
    if sqlstate.startswith(PG_UNAVAILABLE_CLASSES):
        return "unavailable"
    return None


def _generic_kind(exc: BaseException, orig: BaseException) -> FaultKind | None:
    if isinstance(exc, PoolTimeout | OperationalError | OSError | ConnectionError):
        return "unavailable"  # TimeoutError too: a connection that did not answer in time
        return "unavailable"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "unavailable"
    name = type(orig).__name__
    if "Connection" in name or "CannotConnectNow" in name or "Interface" in name:
        return "unavailable"
    return None
