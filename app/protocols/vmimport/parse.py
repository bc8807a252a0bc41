"""VictoriaMetrics' JSON lines (`/api/v1/import`, what `vmctl` writes and `/api/v1/export` reads
out): one series per line,

    {"metric": {"__name__": "up", "job": "node"}, "values": [1, 0.5],
     "timestamps": [1700000000000, 1700000015000]}

timestamps in milliseconds; values numbers, or (as VictoriaMetrics reads them) `null`, `"NaN"`,
`"Inf"`, `"-Infinity"` and the like for the non-finite ones. A line's arrays go to the builder
whole (no Python object per sample beyond what the JSON decoder makes). Bad lines are refused
one by one, the rest stored.
"""

from __future__ import annotations

import math

import numpy as np
import orjson

from app.protocols.builder import InvalidSeries, SeriesBuilder, named_series_key
from app.protocols.report import WriteReport
from app.timeutil import MAX_MS, MIN_MS

SPECIAL = {
    "inf": math.inf,
    "infinity": math.inf,
    "+inf": math.inf,
    "+infinity": math.inf,
    "-inf": -math.inf,
    "-infinity": -math.inf,
    "nan": math.nan,
    "null": math.nan,
}
Tags = tuple[tuple[str, str], ...]


class LineError(ValueError):
    pass


def read_body(body: bytes, builder: SeriesBuilder, report: WriteReport, extra: Tags = ()) -> None:
    for number, raw in enumerate(body.split(b"\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            pairs, ts, values = parse_line(line)
            if extra:
                names = {name for name, _ in extra}
                pairs = (*(p for p in pairs if p[0] not in names), *extra)
            slot = builder.slot(named_series_key(pairs))
        except (LineError, InvalidSeries) as exc:
            shown = line[:100].decode("utf-8", "replace") + ("..." if len(line) > 100 else "")
            report.refuse(f"line {number}: {exc}: {shown}", 1)
            continue
        builder.add_columns(slot, ts, values)


def parse_line(line: bytes) -> tuple[Tags, np.ndarray, np.ndarray]:
    try:
        item = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"not valid JSON ({exc})") from None
    if not isinstance(item, dict):
        raise LineError("not a JSON object")
    metric, stamps, values = item.get("metric"), item.get("timestamps"), item.get("values")
    if not isinstance(metric, dict) or not metric:
        raise LineError("'metric' must be a non-empty object of labels")
    if not all(isinstance(v, str) for v in metric.values()):
        raise LineError("'metric' label values must be strings")
    if not isinstance(stamps, list) or not isinstance(values, list) or not values:
        raise LineError("'values' and 'timestamps' must be non-empty arrays")
    if len(stamps) != len(values):
        raise LineError(f"'timestamps' has {len(stamps)} entries, 'values' {len(values)}")
    return tuple(metric.items()), _stamps(stamps), _values(values)


def _stamps(stamps: list[object]) -> np.ndarray:
    if not all(type(t) is int for t in stamps):
        raise LineError("'timestamps' must be integers (milliseconds)")
    try:
        ts = np.asarray(stamps, dtype=np.int64)
    except OverflowError:
        raise LineError("a timestamp is outside the years 1 to 9999") from None
    if not ((ts >= MIN_MS) & (ts <= MAX_MS)).all():
        raise LineError("a timestamp is outside the years 1 to 9999 (milliseconds expected)")
    return ts


def _values(values: list[object]) -> np.ndarray:
    if set(map(type, values)) <= {float, int}:
        try:
            return np.asarray(values, dtype=np.float64)
        except OverflowError:
            pass
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        out[i] = _value(value, i)
    return out


def _value(value: object, i: int) -> float:
    if value is None:
        return math.nan
    if type(value) in (int, float):
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:
            raise LineError(f"values[{i}]: {value} is beyond float range") from None
    if isinstance(value, str) and value.lower() in SPECIAL:
        return SPECIAL[value.lower()]
    raise LineError(f"values[{i}]: {value!r} is not a number")
