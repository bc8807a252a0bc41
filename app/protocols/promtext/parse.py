"""The Prometheus text exposition format (`/api/v1/import/prometheus`, what an exporter's
`/metrics` answers), and OpenMetrics text:

    # HELP http_requests_total Requests served.
    # TYPE http_requests_total counter
    http_requests_total{method="get",code="200"} 1027 1700000000000

Timestamps are milliseconds (OpenMetrics, recognised by its closing `# EOF`, has seconds); a
line without one takes the request's `timestamp` (else server time). Values are Go floats
(`NaN`, `+Inf`, `-Inf` included). `# HELP`, `# TYPE` and `# UNIT` become metric metadata; other
comments and OpenMetrics exemplars (`... # {trace_id="x"} 1`) are skipped. Bad lines are refused
one by one, the rest stored.
"""

from __future__ import annotations

import math
import re

from app.model import MetricMetadata
from app.protocols.builder import InvalidSeries, SeriesBuilder
from app.protocols.report import WriteReport
from app.timeutil import MAX_MS, MIN_MS

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})', re.S)
_FLOAT = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
_SPECIAL = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_TYPES = frozenset(
    {"counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown"}
)
Tags = tuple[tuple[str, str], ...]


class LineError(ValueError):
    pass


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), text)


def parse_value(text: str) -> float:
    if _FLOAT.fullmatch(text):
        return float(text)
    special = _SPECIAL.get(text.lower())
    if special is None:
        raise LineError(f"invalid value {text!r}")
    return special


def parse_sample(line: str) -> tuple[str, Tags, float, str | None]:
    """`name{labels} value [timestamp]` -> name, labels, value, timestamp text."""
    found = _NAME.match(line)
    if found is None:
        raise LineError("expected a metric name")
    name, pos, labels = found.group(), found.end(), []
    if line[pos : pos + 1] == "{":
        pos += 1
        if line[pos:].lstrip().startswith("}"):
            pos = line.index("}", pos) + 1
        else:
            while True:
                label = _LABEL.match(line, pos)
                if label is None:
                    raise LineError(f"invalid labels at {line[pos : pos + 40]!r}")
                labels.append((label.group(1), _unescape(label.group(2))))
                pos = label.end()
                if label.group(3) == "}":
                    break
    rest = line[pos:].split("#", 1)[0].split()  # an OpenMetrics exemplar follows a '#'
    if not rest or len(rest) > 2:
        raise LineError("expected a value and an optional timestamp after the labels")
    return name, tuple(labels), parse_value(rest[0]), rest[1] if len(rest) > 1 else None


def _timestamp_ms(text: str, seconds: bool) -> int:
    try:
        ms = round(float(text) * 1000) if seconds else int(text)
    except (ValueError, OverflowError):
        raise LineError(f"invalid timestamp {text!r}") from None
    if not MIN_MS <= ms <= MAX_MS:
        unit = "seconds" if seconds else "milliseconds"
        raise LineError(f"timestamp {text} is outside the years 1 to 9999 (in {unit})")
    return ms


def read_body(
    body: bytes,
    default_ms: int,
    builder: SeriesBuilder,
    report: WriteReport,
    extra: Tags = (),
) -> list[MetricMetadata]:
    """Add every good sample line to `builder`, refuse the bad ones; return the metadata."""
    text = body.decode("utf-8", "replace")
    lines = text.split("\n")
    seconds = any(line.strip() == "# EOF" for line in lines[-3:])  # OpenMetrics
    meta: dict[str, dict[str, str]] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            _comment(line, meta)
            continue
        try:
            name, labels, value, stamp = parse_sample(line)
            ts = default_ms if stamp is None else _timestamp_ms(stamp, seconds)
            if extra:
                names = {n for n, _ in extra}
                labels = (*(p for p in labels if p[0] not in names), *extra)
            builder.add(name, labels, ts, value)
        except (LineError, InvalidSeries) as exc:
            shown = line if len(line) <= 100 else line[:100] + "..."
            report.refuse(f"line {number}: {exc}: {shown}", 1)
    return [
        MetricMetadata(name, m.get("type", "unknown"), m.get("help", ""), m.get("unit", ""))
        for name, m in meta.items()
    ]


def _comment(line: str, meta: dict[str, dict[str, str]]) -> None:
    parts = line[1:].strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in ("HELP", "TYPE", "UNIT") or not _NAME.fullmatch(parts[1]):
        return
    kind, name = parts[0].lower(), parts[1]
    value = parts[2] if len(parts) > 2 else ""
    if kind == "type" and value not in _TYPES:
        return
    meta.setdefault(name, {})[kind] = _unescape(value) if kind == "help" else value
