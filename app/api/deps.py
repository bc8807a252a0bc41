"""Dependencies as Annotated aliases: the store, the settings, API keys, query parameters."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from app.config import Settings
from app.errors import Unauthorized
from app.matchers import Matcher, parse_label_params, parse_match
from app.storage.group_commit import GroupCommitter
from app.storage.store import Store
from app.timeutil import (
    Precision,
    TimeParseError,
    format_ms,
    now_ms,
    parse_query_time_ms,
    to_ms,
)
from app.validation import InvalidInput

HOUR_MS = 3_600_000


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_committer(request: Request) -> GroupCommitter:
    committer: GroupCommitter = request.app.state.committer
    return committer


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
CommitterDep = Annotated[GroupCommitter, Depends(get_committer)]


def presented_key(request: Request) -> str | None:
    """The API key a request carries, in any of the forms clients send: `Authorization: Bearer
    KEY` (also `Token KEY`, as InfluxDB 2 clients send it), HTTP Basic auth (the password is the
    key; the user name when the password is empty), or `X-API-Key: KEY`."""
    auth = request.headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    scheme = scheme.lower()
    if scheme in ("bearer", "token"):
        return credentials.strip()
    if scheme == "basic":
        return basic_auth_key(credentials.strip())
    return request.headers.get("x-api-key")


def basic_auth_key(credentials: str) -> str | None:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return password or user


def key_in(key: str | None, keys: list[str]) -> bool:
    """Constant-time membership: every key is compared, whatever matches."""
    if key is None:
        return False
    found = False
    for candidate in keys:
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


# The key checks read the settings from the app directly rather than through a nested dependency:
# they run on every request, ingestion included.


KEY_FORMS = "send 'Authorization: Bearer KEY', 'X-API-Key: KEY' or the key as Basic auth password"


async def require_write_key(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if settings.api_keys and not key_in(presented_key(request), settings.api_keys):
        raise Unauthorized(f"a write API key is required: {KEY_FORMS}")


async def require_influx_write_key(request: Request) -> None:
    """The write key, also as InfluxDB 1.x clients send it: query parameters `u` and `p`."""
    settings: Settings = request.app.state.settings
    if not settings.api_keys:
        return
    key = presented_key(request)
    if key is None:
        key = request.query_params.get("p") or request.query_params.get("u")
    if not key_in(key, settings.api_keys):
        raise Unauthorized(f"a write API key is required: {KEY_FORMS}, or as the 'p' parameter")


async def require_read_key(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if settings.read_api_keys and not key_in(
        presented_key(request), settings.read_api_keys + settings.api_keys
    ):
        raise Unauthorized(f"a read API key is required: {KEY_FORMS}")


@dataclass(frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int

    @property
    def start_text(self) -> str:
        return format_ms(self.start_ms)

    @property
    def end_text(self) -> str:
        return format_ms(self.end_ms)


async def time_range(
    settings: SettingsDep,
    start_time: Annotated[
        str | None, Query(description="Inclusive; RFC 3339 or epoch seconds. Default end - 1h.")
    ] = None,
    end_time: Annotated[
        str | None, Query(description="Inclusive; RFC 3339 or epoch seconds. Default now.")
    ] = None,
) -> TimeRange:
    end = _parse_param("end_time", end_time) if end_time is not None else now_ms()
    start = _parse_param("start_time", start_time) if start_time is not None else end - HOUR_MS
    if start > end:
        raise InvalidInput("start_time: must not be after end_time")
    longest = to_ms(settings.max_query_range)
    if end - start > longest:
        raise InvalidInput(
            f"start_time: the range is longer than MAX_QUERY_RANGE ({longest // 86_400_000}d)"
        )
    return TimeRange(start, end)


def _parse_param(name: str, value: str) -> int:
    try:
        return parse_query_time_ms(value)
    except TimeParseError as exc:
        raise InvalidInput(f"{name}: {exc}") from None


async def label_filters(
    label: Annotated[
        list[str] | None,
        Query(description="KEY:VALUE exact match; repeatable, AND-ed.", examples=["host:server1"]),
    ] = None,
    match: Annotated[
        list[str] | None,
        Query(
            description='Prometheus matchers, e.g. {host=~"server[12]",region!="eu-west"}.',
        ),
    ] = None,
) -> list[Matcher]:
    matchers = parse_label_params(label or [])
    for expr in match or []:
        matchers += parse_match(expr)
    return matchers


PrecisionParam = Annotated[
    Precision,
    Query(
        description="The unit of numeric timestamps in the body: s (default), ms, us or ns."
        " RFC 3339 timestamps are unaffected.",
    ),
]

MetricName = Annotated[
    str,
    Query(
        min_length=1,
        max_length=255,
        pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
        examples=["cpu_usage"],
        description="The metric to query.",
    ),
]
RangeDep = Annotated[TimeRange, Depends(time_range)]
FiltersDep = Annotated[list[Matcher], Depends(label_filters)]
ReadKey = Depends(require_read_key)
WriteKey = Depends(require_write_key)
InfluxWriteKey = Depends(require_influx_write_key)
