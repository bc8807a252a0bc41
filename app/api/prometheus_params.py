"""Parameters of the Prometheus HTTP API, read as Prometheus reads them: from the query string
or a form-encoded POST body (the body first), times as RFC 3339 or Unix seconds, durations as
seconds or PromQL durations (`1m0s`), errors as `bad_data` naming the parameter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import promql_parser
from fastapi import Request
from starlette.requests import ClientDisconnect

from app.matchers import Matcher
from app.promql import ast
from app.promql.errors import BadData
from app.promql.parse import duration_ms, parse
from app.storage.series_index import TimeBounds

FORM = "application/x-www-form-urlencoded"
# Prometheus' MinTime/MaxTime as clients send them for "no bound".
OPEN_BOUNDS = {"-292273086-05-16T16:47:06Z", "292277025-08-18T07:12:54.999999999Z"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Params:
    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    @classmethod
    async def read(cls, request: Request, max_bytes: int) -> Params:
        """Form body values (POST), then query string values: first wins, as r.FormValue."""
        pairs: list[tuple[str, str]] = []
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "POST" and content_type == FORM:
            body = await _read_body(request, max_bytes)
            try:
                pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
            except (UnicodeDecodeError, ValueError) as exc:
                raise BadData(f"error parsing form values: {exc}") from None
        pairs += request.query_params.multi_items()
        return cls(pairs)

    def get(self, name: str) -> str:
        return next((v for k, v in self.pairs if k == name), "")

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadData(f"error parsing form values: body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadData("error parsing form values: the client disconnected") from None
    return b"".join(chunks)


def parse_time(text: str) -> int:
    """Unix seconds (fractions rounded to ms) or RFC 3339, to ms."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or abs(seconds) > 9.2e15:
            raise BadData(f'cannot parse "{text}" to a valid timestamp')
        whole = math.trunc(seconds)
        return whole * 1000 + round((seconds - whole) * 1000)
    if text in OPEN_BOUNDS:
        return -(2**62) if text.startswith("-") else 2**62
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadData(f'cannot parse "{text}" to a valid timestamp') from None
    if parsed.tzinfo is None:
        raise BadData(f'cannot parse "{text}" to a valid timestamp')
    delta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def time_param(params: Params, name: str, default: int | None) -> int | None:
    text = params.get(name)
    if text == "":
        return default
    try:
        return parse_time(text)
    except BadData as exc:
        raise BadData(
            f"invalid parameter \"{name}\": invalid time value for '{name}': {exc}"
        ) from None


def required_time(params: Params, name: str) -> int:
    try:
        return parse_time(params.get(name))
    except BadData as exc:
        raise BadData(f'invalid parameter "{name}": {exc}') from None


def parse_duration_ms(text: str) -> int:
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or abs(seconds) > 9.2e9:
            raise BadData(f'cannot parse "{text}" to a valid duration. It overflows int64')
        return round(seconds * 1000)
    try:
        return duration_ms(promql_parser.parse_duration(text))
    except ValueError:
        if text in ("0", "0s", "0m", "0h"):
            return 0
        raise BadData(f'cannot parse "{text}" to a valid duration') from None


def duration_param(params: Params, name: str) -> int | None:
    text = params.get(name)
    if text == "":
        return None
    try:
        return parse_duration_ms(text)
    except BadData as exc:
        raise BadData(f'invalid parameter "{name}": {exc}') from None


def limit_param(params: Params) -> int:
    text = params.get("limit")
    if text == "":
        return 0
    try:
        limit = int(text)
    except ValueError:
        raise BadData(f'invalid parameter "limit": strconv.Atoi: parsing "{text}"') from None
    if limit < 0:
        raise BadData('invalid parameter "limit": limit must be non-negative')
    return limit


def matcher_sets(params: Params) -> list[tuple[Matcher, ...]]:
    """`match[]` selectors, each with at least one matcher that does not match the empty
    string."""
    sets = []
    for text in params.all("match[]"):
        node = parse(text)
        if not isinstance(node, ast.Selector) or node.at is not None or node.offset_ms:
            raise BadData(f'invalid parameter "match[]": {text!r} is not a series selector')
        if all(m.matches({}) for m in node.matchers):
            raise BadData("match[] must contain at least one non-empty matcher")
        sets.append(node.matchers)
    return sets


def bounds_param(params: Params) -> TimeBounds | None:
    """start/end of the label and series endpoints; None when neither bounds anything."""
    start = time_param(params, "start", None)
    end = time_param(params, "end", None)
    if start is None and end is None:
        return None
    low = -(2**62) if start is None else start
    high = 2**62 if end is None else end
    if low <= -(2**61) and high >= 2**61:
        return None
    return TimeBounds(low, high)
