"""The rules of the JSON contract (names, labels, values, times) as checks that name the
fault, and the errors they raise. The JSON formats that apply them live in
app.protocols.native; the pydantic models in `schemas.py` describe the same shapes for the
OpenAPI page."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from app.matchers import LABEL_NAME_RE, canonical_labels, fingerprint
from app.model import SeriesKey
from app.timeutil import Precision, TimeParseError, now_ms, parse_time_ms, to_ms

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
MAX_METRIC_NAME = 255
MAX_LABELS = 32
MAX_LABEL_VALUE = 1024
LABEL_CACHE_SIZE = 4096  # label sets of a request remembered as already checked
MAX_ABS_VALUE = 1e100  # so sums of squares in rollups stay within double range


class InvalidInput(ValueError):
    """Input that breaks a rule of the contract; the message names the field or item."""


@dataclass(frozen=True)
class TimeBounds:
    """What timestamps are acceptable now: the default for a missing one and the latest allowed.
    (The earliest allowed depends on what retention has dropped; the store checks that.)"""

    now_ms: int
    max_ms: int

    @classmethod
    def starting_now(cls, max_future_skew: timedelta) -> TimeBounds:
        now = now_ms()
        return cls(now_ms=now, max_ms=now + to_ms(max_future_skew))


def check_metric_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where}metric_name: required, a non-empty string")
    if len(name) > MAX_METRIC_NAME:
        raise InvalidInput(f"{where}metric_name: longer than {MAX_METRIC_NAME} characters")
    if not METRIC_NAME_RE.fullmatch(name):
        raise InvalidInput(f"{where}metric_name: {name!r} must match ^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    return name


def check_labels(labels: object, where: str) -> bytes:
    if labels is None:
        return b"{}"
    if not isinstance(labels, Mapping):
        raise InvalidInput(f"{where}labels: must be an object of string values")
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"{where}labels: {len(labels)} labels, at most {MAX_LABELS} allowed")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_NAME_RE.fullmatch(key):
            raise InvalidInput(f"{where}labels: name {key!r} must match ^[a-zA-Z_][a-zA-Z0-9_]*$")
        if not isinstance(value, str):
            raise InvalidInput(f"{where}labels.{key}: value must be a string")
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidInput(f"{where}labels.{key}: longer than {MAX_LABEL_VALUE} characters")
        if "\x00" in value:
            raise InvalidInput(f"{where}labels.{key}: must not contain NUL characters")
    return canonical_labels(labels)


def check_value(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{field}: required, a finite number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(f"{field}: must be a finite number")
    if abs(number) > MAX_ABS_VALUE:
        raise InvalidInput(f"{field}: magnitude above 1e100, whose squares rollups cannot hold")
    return number


def check_timestamp(raw: object, bounds: TimeBounds, field: str, precision: Precision = "s") -> int:
    if raw is None:
        ts = bounds.now_ms
    else:
        try:
            ts = parse_time_ms(raw, precision)
        except TimeParseError as exc:
            raise InvalidInput(f"{field}: {exc}") from None
    if ts > bounds.max_ms:
        raise InvalidInput(f"{field}: more than MAX_FUTURE_SKEW ahead of server time")
    return ts


@functools.lru_cache(maxsize=65_536)
def series_key(metric: str, labels_json: bytes) -> SeriesKey:
    """The key of a series, remembered: single samples mostly write series seen moments ago,
    and need not hash their labels again."""
    return SeriesKey(metric, labels_json, fingerprint(labels_json))


class BatchTooLarge(InvalidInput):
    """More samples than MAX_BATCH in one request."""
