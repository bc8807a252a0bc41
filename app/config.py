"""Typed settings, read from the environment and `.env`. Every field is documented in README.md."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.timeutil import to_ms

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
MAX_DURATION_SECONDS = 100 * 366 * 86400
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """Parse `30s`, `10m`, `7d`, `1.5h`, `250ms` or a bare number of seconds into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration such as 30s, 10m or 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: use a number with a unit, e.g. 30s, 10m, 7d"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    else:
        raise ValueError("a duration such as 30s, 10m or 7d")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError("a duration longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a duration (`7d`, `90m`, `30s`, `250ms`)."""
    ms = to_ms(value)
    for unit, factor in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms and ms % factor == 0:
            return f"{ms // factor}{unit}"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _split_keys(value: object) -> object:
    if isinstance(value, str):
        return [key.strip() for key in value.split(",") if key.strip()]
    return value


KeyList = Annotated[list[str], NoDecode, BeforeValidator(_split_keys)]


class Settings(BaseSettings):
    """Service configuration. Environment variables use the upper-case field name."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = Field(
        "sqlite:///data/metrics.db",
        description="Where data lives: sqlite:///PATH (embedded default) or postgresql://USER@HOST/DB.",
    )
    max_batch: int = Field(
        100_000, gt=0, description="Most samples in one /backfill/import request."
    )
    max_future_skew: Duration = Field(
        timedelta(minutes=10), description="How far ahead of server time a timestamp may be."
    )
    max_series_per_metric: int = Field(10_000, gt=0, description="Most series one metric may have.")
    max_series_total: int = Field(1_000_000, gt=0, description="Most series in the whole store.")
    max_body_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest request body accepted."
    )
    max_query_points: int = Field(
        1_000_000, gt=0, description="Most points one raw query may return (its `limit` is capped)."
    )
    max_query_range: Duration = Field(
        timedelta(days=400), description="Longest time range one query may cover."
    )
    query_timeout: Duration = Field(
        timedelta(seconds=30),
        description="Raw, rollup and anomaly queries running longer are cancelled with a 503.",
    )

    promql_max_samples: int = Field(
        50_000_000,
        gt=0,
        description="Most samples one PromQL query may load or hold per step array; more is a 422.",
    )

    promql_rollups: bool = Field(
        True,
        description="Serve PromQL *_over_time windows from rollups where that is exact.",
    )

    retention_raw: Duration = Field(timedelta(days=7), description="How long raw samples are kept.")
    retention_1m: Duration = Field(timedelta(days=30), description="How long 1m rollups are kept.")
    retention_5m: Duration = Field(timedelta(days=90), description="How long 5m rollups are kept.")
    retention_1h: Duration = Field(timedelta(days=365), description="How long 1h rollups are kept.")
    rollup_grace: Duration = Field(
        timedelta(seconds=30),
        description="How long after a bucket closes before the rollup job materializes it.",
    )

    scheduler_enabled: bool = Field(
        True, description="Run the rollup, retention and alert jobs in-process."
    )
    rollup_interval: Duration = Field(timedelta(seconds=60), description="Rollup job period.")
    retention_interval: Duration = Field(timedelta(hours=1), description="Retention job period.")
    storage_layout: Literal["rows", "blocks"] = Field(
        "blocks",
        description="Raw samples as recent rows plus compressed 2 h blocks (blocks, the default;"
        " the compact job runs in the server), or one row each (rows).",
    )
    compact_interval: Duration = Field(
        timedelta(minutes=5), description="Compact job period (STORAGE_LAYOUT=blocks, the default)."
    )
    job_transaction_target: Duration = Field(
        timedelta(milliseconds=10),
        description="How long one transaction of the rollup or retention job should take: its"
        " chunk of work shrinks or grows towards it, up to JOB_CHUNK_BUCKETS / JOB_CHUNK_SERIES;"
        " writes take turns with the job between its transactions.",
    )
    job_chunk_buckets: int = Field(
        500,
        gt=0,
        description="Most one-minute buckets one rollup transaction recomputes (5m: a fifth,"
        " 1h: a sixtieth).",
    )
    job_chunk_series: int = Field(
        50,
        gt=0,
        description="Most series whose expired raw samples and rollups one retention"
        " transaction deletes.",
    )
    job_lock_timeout: Duration = Field(
        timedelta(minutes=5),
        description="How long a command-line job waits for another runner to finish.",
    )

    api_keys: KeyList = Field(
        default_factory=list, description="Comma-separated keys; when set, writes need one of them."
    )
    read_api_keys: KeyList = Field(
        default_factory=list,
        description="Comma-separated keys; when set, reads need one of these or of API_KEYS.",
    )

    db_pool_size: int = Field(10, gt=0, description="PostgreSQL connection pool size.")
    db_pool_timeout: Duration = Field(
        timedelta(seconds=5), description="How long a request waits for a pooled connection."
    )
    db_connect_timeout: Duration = Field(
        timedelta(seconds=5), description="How long opening a database connection may take."
    )
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        "FULL",
        description="SQLite fsync policy; FULL keeps every acknowledged write on power loss.",
    )
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    log_level: str = Field("INFO", description="Python logging level.")
    access_log: bool = Field(
        True,
        description="One log line per request (logger app.access); /metrics counts them anyway.",
    )

    # -- alerting (docs/operations.md#alerting) ---------------------------------------------
    alert_rules_file: str = Field(
        "",
        description="YAML file of alert rules loaded at start-up (empty: none); see README.",
    )
    alert_interval: Duration = Field(
        timedelta(seconds=30), description="Period of the alert job (evaluation and delivery)."
    )
    alertmanager_url: str = Field(
        "", description="Alertmanager to send alerts to (its v2 API), e.g. http://am:9093."
    )
    alert_webhook_url: str = Field(
        "", description="A URL that receives a JSON POST for every firing and resolved alert."
    )
    alert_resend_delay: Duration = Field(
        timedelta(minutes=1), description="How often firing alerts are re-sent to Alertmanager."
    )
    alert_notify_timeout: Duration = Field(
        timedelta(seconds=5), description="How long one notification request may take."
    )
    alert_external_url: str = Field(
        "",
        description="This service's address as receivers should link to it (generatorURL).",
    )

    @field_validator("alertmanager_url", "alert_webhook_url", "alert_external_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be empty or an http:// or https:// URL")
        return value.rstrip("/")

    # -- limits against slow, hostile and broken peers (docs/operations.md#limits-and-timeouts)

    http_max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest request head (request line and headers); larger is a 431.",
    )
    http_header_timeout: Duration = Field(
        timedelta(seconds=10),
        description="How long a client may take to send a request head once it has started "
        "(or, on a new connection, to start): past it, 408 and the connection is closed.",
    )
    http_body_timeout: Duration = Field(
        timedelta(seconds=30),
        description="How long the service waits for the next part of a request body: past it, "
        "408 and the connection is closed.",
    )
    http_body_min_rate: int = Field(
        1024,
        ge=0,
        description="Bytes per second a request body must average after its first "
        "HTTP_BODY_TIMEOUT (0: no minimum); slower is a 408.",
    )
    http_linger_timeout: Duration = Field(
        timedelta(seconds=10),
        description="After answering a request before its body was read (413, 401, ...), how "
        "long the rest is read and dropped so the client gets the answer, then the connection "
        "is closed.",
    )
    http_linger_bytes: int = Field(
        64 * 1024 * 1024,
        ge=0,
        description="The most body bytes read and dropped that way per request.",
    )
    max_buffered_body_bytes: int = Field(
        256 * 1024 * 1024,
        gt=0,
        description="Most bytes of request bodies held in memory at once by all requests of a "
        "process (JSON bodies); a body beyond it is answered 503 with Retry-After.",
    )
    db_statement_timeout: Duration = Field(
        timedelta(seconds=60),
        description="PostgreSQL: the longest one statement may run or a transaction may sit "
        "idle (server-side statement_timeout, idle_in_transaction_session_timeout); the client "
        "gives up a connection that stays silent 2 s longer.",
    )
    db_write_timeout: Duration = Field(
        timedelta(seconds=10),
        description="PostgreSQL: how long one write may take once it has the write lock; past "
        "it the request is answered 503 with Retry-After and its connection discarded.",
    )
    db_tcp_timeout: Duration = Field(
        timedelta(seconds=10),
        description="PostgreSQL: how long a connection may go without the peer acknowledging "
        "data or keepalive probes (TCP keepalive, tcp_user_timeout) before it is given up.",
    )

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("DATABASE_URL must start with sqlite:// or postgresql://")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
