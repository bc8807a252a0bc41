"""Dependencies as Annotated aliases: the store, the settings, API keys, query parameters."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request

from app.config import Settings
from app.matchers import Matcher, parse_label_params, parse_match
from app.storage.group_commit import GroupCommitter
from app.storage.store import Store
from app.timeutil import format_ms, now_ms, parse_time_ms, to_ms

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
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


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


async def require_write_key(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if settings.api_keys and not key_in(presented_key(request), settings.api_keys):
        raise HTTPException(
            401,
            "a write API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_read_key(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if settings.read_api_keys and not key_in(
        presented_key(request), settings.read_api_keys + settings.api_keys
    ):
        raise HTTPException(
            401,
            "a read API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
            headers={"WWW-Authenticate": "Bearer"},
        )


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
        raise HTTPException(422, "start_time: must not be after end_time")
    longest = to_ms(settings.max_query_range)
    if end - start > longest:
        raise HTTPException(
            422, f"start_time: the range is longer than MAX_QUERY_RANGE ({longest // 86_400_000}d)"
        )
    return TimeRange(start, end)


def _parse_param(name: str, value: str) -> int:
    try:
        return parse_time_ms(value)
    except ValueError as exc:
        raise HTTPException(422, f"{name}: {exc}") from None


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
