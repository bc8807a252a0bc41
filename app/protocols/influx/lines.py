"""InfluxDB line protocol, one line at a time: the general reader, for every line the spec allows.

    measurement[,tag=value...] field=value[,field=value...] [timestamp]

Escapes (https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/): the
measurement escapes comma and space; tag keys, tag values and field keys escape comma, `=` and
space; string field values escape `"` and `\\`; two backslashes are one everywhere. A backslash
before anything else is itself.
Field values: floats (`1`, `-1.5`, `1e3`), integers `12i`, unsigned `12u`, booleans
`t T true True TRUE` / `f F false False FALSE`, and strings in double quotes (skipped: they are
no numbers). Lines starting with `#` are comments; blank lines are skipped.

`app.protocols.influx.fast` reads plain bodies faster; this module is the reference it must agree
with, and what names a bad line.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

FLOAT_RE = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
INT_RE = re.compile(r"^[-+]?[0-9]+$")
TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
STRING = object()  # a string field value: skipped


class LineError(ValueError):
    """A line that is not line protocol; the message says what is wrong."""


@dataclass(frozen=True)
class Line:
    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: list[tuple[str, float]]  # numeric fields, in order
    strings: int  # string fields skipped
    timestamp: int | None  # in the request's precision


_RUNS: dict[tuple[str, bool], re.Pattern[str]] = {}


def _run(stops: str, quotes: bool) -> re.Pattern[str]:
    """A regex matching the longest run without an unescaped stop character (and, with
    `quotes`, treating double-quoted parts as opaque)."""
    found = _RUNS.get((stops, quotes))
    if found is None:
        plain = re.escape(stops) + ('"' if quotes else "")
        quoted = r'|"(?:\\.|[^"\\])*"' if quotes else ""
        found = _RUNS[(stops, quotes)] = re.compile(
            rf"(?:\\.|\\$|[^{plain}\\]{quoted})*", re.DOTALL
        )
    return found


def _scan(text: str, start: int, stops: str, quotes: bool = False) -> int:
    """Index of the first unescaped character of `stops` at or after `start` (len if none);
    with `quotes`, characters inside double quotes do not count."""
    end = _run(stops, quotes).match(text, start).end()  # type: ignore[union-attr]
    if quotes and end < len(text) and text[end] == '"':
        raise LineError("unterminated string field value")
    return end


def _split(text: str, sep: str, quotes: bool = False) -> list[str]:
    parts, start = [], 0
    while True:
        end = _scan(text, start, sep, quotes)
        parts.append(text[start:end])
        if end >= len(text):
            return parts
        start = end + 1


def _unescape(text: str, chars: str) -> str:
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in chars + "\\":
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=65_536)
def parse_key(key: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """`measurement,tag=value,...` -> measurement and tags (unescaped)."""
    parts = _split(key, ",")
    measurement = _unescape(parts[0], ", ")
    if not measurement:
        raise LineError("missing measurement")
    tags = []
    for part in parts[1:]:
        eq = _scan(part, 0, "=")
        name, value = _unescape(part[:eq], ",= "), _unescape(part[eq + 1 :], ",= ")
        if eq >= len(part) or not name or not value:
            raise LineError(f"invalid tag {part!r} (want key=value)")
        tags.append((name, value))
    return measurement, tuple(tags)


def field_value(text: str) -> float | object:
    """A field value as a number, or STRING for a string value."""
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"') or _odd_tail(text):
            raise LineError(f"invalid string field value {text!r}")
        return STRING
    if text in TRUE:
        return 1.0
    if text in FALSE:
        return 0.0
    if text[-1:] in ("i", "u") and INT_RE.fullmatch(text[:-1]):
        number = int(text[:-1])
        low, high = (INT64_MIN, INT64_MAX) if text[-1] == "i" else (0, 2**64 - 1)
        if not low <= number <= high:
            raise LineError(f"integer field value {text!r} out of range")
        return float(number)
    if FLOAT_RE.fullmatch(text):
        return float(text)
    raise LineError(f"invalid field value {text!r}")


def _odd_tail(text: str) -> bool:
    """Whether the closing quote is escaped (an odd run of backslashes before it)."""
    run = len(text) - 1 - len(text[:-1].rstrip("\\"))
    return run % 2 == 1


def parse_line(line: str) -> Line:
    if "\\" not in line and '"' not in line:  # nothing escaped, nothing quoted
        return _parse_plain(line)
    key_end = _scan(line, 0, " ")
    if key_end >= len(line):
        raise LineError("missing fields")
    measurement, tags = parse_key(line[:key_end])
    fields_start = key_end + 1
    fields_end = _scan(line, fields_start, " ", quotes=True)
    fields_text = line[fields_start:fields_end]
    if not fields_text:
        raise LineError("missing fields")
    timestamp = _timestamp(line[fields_end + 1 :].strip(" "))
    fields, strings = [], 0
    for part in _split(fields_text, ",", quotes=True):
        eq = _scan(part, 0, "=")
        name = _unescape(part[:eq], ",= ")
        if eq >= len(part) or not name:
            raise LineError(f"invalid field {part!r} (want key=value)")
        value = field_value(part[eq + 1 :])
        if value is STRING:
            strings += 1
        else:
            fields.append((name, float(value)))  # type: ignore[arg-type]
    return Line(measurement, tags, fields, strings, timestamp)


def _timestamp(text: str) -> int | None:
    if not text:
        return None
    if not INT_RE.fullmatch(text):
        raise LineError(f"invalid timestamp {text!r}")
    timestamp = int(text)
    if not INT64_MIN <= timestamp <= INT64_MAX:
        raise LineError(f"timestamp {text} out of range")
    return timestamp


def _parse_plain(line: str) -> Line:
    """A line without backslashes or quotes: plain splits give the same parts."""
    parts = line.split(" ")
    if len(parts) > 3:  # spaces around the timestamp are allowed; nothing else may follow
        parts = [parts[0], parts[1], " ".join(parts[2:]).strip(" ")]
    if len(parts) < 2 or not parts[1]:
        raise LineError("missing fields")
    measurement, tags = parse_key(parts[0])
    fields = []
    for part in parts[1].split(","):
        name, eq, value = part.partition("=")
        if not eq or not name:
            raise LineError(f"invalid field {part!r} (want key=value)")
        fields.append((name, float(field_value(value))))  # type: ignore[arg-type]
    return Line(measurement, tags, fields, 0, _timestamp(parts[2] if len(parts) > 2 else ""))
