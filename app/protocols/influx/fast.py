"""Plain line-protocol bodies read with numpy string operations, a column at a time.

"Plain": no backslash, no double quote, no comment, no carriage return, no blank line, no tab.
Then every line splits at its spaces into key, fields and timestamp, and its fields at commas
and `=`, with no escape to mind; numbers are parsed by numpy in bulk. The work per line is a few
C loops over byte strings instead of a Python function call per character class.

Anything unusual makes `read` decline (return False, having added nothing), and the general
reader (app.protocols.influx.lines) reads the body line by line instead, naming bad lines. So
this is only ever a faster way to the same samples (tests/protocols/test_influx_parse.py checks
that on generated bodies).
"""

from __future__ import annotations

import numpy as np

from app.model import SeriesKey
from app.protocols.builder import InvalidSeries, SeriesBuilder, protocol_series_key
from app.protocols.influx.common import Tags, merge_tags, stamps_to_ms, with_db
from app.protocols.influx.lines import FALSE, TRUE, LineError, parse_key

DECLINE = (b"\\", b'"', b"\r", b"\x00", b"\t")  # bytes that make a body not plain
_NO_LINE_START = np.zeros(256, dtype=bool)  # blank line, comment, leading space
_NO_LINE_START[list(b"\n# ")] = True
_FLOAT_CHARS = np.zeros(256, dtype=bool)
_FLOAT_CHARS[list(b"0123456789.+-eE\x00")] = True
_INT_CHARS = np.zeros(256, dtype=bool)
_INT_CHARS[list(b"0123456789+-\x00")] = True
_TRUE = np.array(sorted(t.encode() for t in TRUE))
_FALSE = np.array(sorted(f.encode() for f in FALSE))


class Decline(Exception):
    """Not a plain body (or not all of it valid): the general reader takes it."""


def read(
    body: bytes,
    precision: tuple[int, int],
    db: str | None,
    now_ms: int,
    builder: SeriesBuilder,
    extra: Tags = (),
) -> bool:
    """Add the body's samples to `builder` and return True; or add nothing and return False."""
    if not _plain(body):
        return False
    try:
        keys, line_of, ts, names, values = _columns(body, precision, now_ms)
        slots = _slots(keys, line_of, names, db, extra)
    except (Decline, ValueError, OverflowError, InvalidSeries, LineError):
        return False
    key_slots = np.array([builder.slot(key) for key in slots[0]], dtype=np.int64)
    builder.add_columns(key_slots[slots[1]], ts, values)
    return True


def _plain(body: bytes) -> bool:
    """No escape, quote, carriage return, NUL or tab; no blank, comment or indented line."""
    if not body or body[:1] in (b"#", b" ", b"\n"):
        return False
    if any(mark in body for mark in DECLINE):  # single bytes: memchr, nearly free
        return False
    data = np.frombuffer(body, dtype=np.uint8)
    starts = np.flatnonzero(data[:-1] == 10) + 1
    return not _NO_LINE_START[data[starts]].any()


def _columns(
    body: bytes, precision: tuple[int, int], now_ms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per sample, in line order: its line's key, its line number (0-based), timestamp (ms),
    field name and value."""
    lines = np.array((body[:-1] if body.endswith(b"\n") else body).split(b"\n"))
    key, space, rest = np.strings.partition(lines, b" ")
    fields, space2, stamp = np.strings.partition(rest, b" ")
    if not (space == b" ").all() or (np.strings.str_len(fields) == 0).any():
        raise Decline
    has_ts = space2 == b" "
    stamped = stamp[has_ts]
    if (np.strings.str_len(stamped) == 0).any() or not _only(stamped, _INT_CHARS):
        raise Decline
    ms = np.full(lines.size, now_ms, dtype=np.int64)
    if stamped.size:
        found = stamps_to_ms(stamped.astype(np.int64), precision)
        if found is None:
            raise Decline
        ms[has_ts] = found
    line_of, names, values = _fields(fields)
    return key, line_of, ms[line_of], names, values


def _fields(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every `name=value` of every line, in line order then field order (so that the last of
    two writes of a series and time wins): line number, name, value."""
    commas = np.strings.count(fields, b",")
    groups = np.unique(commas).tolist()
    lines, positions, names, values = [], [], [], []
    for count in groups:
        rows = np.flatnonzero(commas == count) if len(groups) > 1 else np.arange(fields.size)
        rest = fields[rows]
        for position in range(count + 1):
            head, _, rest = np.strings.partition(rest, b",")
            name, eq, text = np.strings.partition(head, b"=")
            if not (eq == b"=").all() or (np.strings.str_len(name) == 0).any():
                raise Decline
            lines.append(rows)
            positions.append(position)
            names.append(name)
            values.append(_numbers(text))
    if len(groups) == 1:  # every line has the same number of fields: interleave the columns
        return (
            np.stack(lines, axis=1).ravel(),
            np.stack(names, axis=1).ravel(),
            np.stack(values, axis=1).ravel(),
        )
    line_of = np.concatenate(lines)
    position_of = np.concatenate(
        [np.full(r.size, p) for r, p in zip(lines, positions, strict=True)]
    )
    order = np.lexsort((position_of, line_of))
    return line_of[order], np.concatenate(names)[order], np.concatenate(values)[order]


def _only(texts: np.ndarray, allowed: np.ndarray) -> bool:
    """Whether every byte of every (NUL-padded) text is allowed."""
    if texts.size == 0:
        return True
    matrix = np.ascontiguousarray(texts).view(np.uint8).reshape(texts.size, -1)
    return bool(allowed[matrix].all())


def _numbers(texts: np.ndarray) -> np.ndarray:
    """Field values as floats: `1.5`, `12i`, `12u`, booleans. Raises Decline (or ValueError)
    for anything else; strings never get here (no quotes in a plain body)."""
    if (np.strings.str_len(texts) == 0).any():
        raise Decline
    if _only(texts, _FLOAT_CHARS):  # floats only, the usual case
        return texts.astype(np.float64)
    out = np.empty(texts.size, dtype=np.float64)
    is_true, is_false = np.isin(texts, _TRUE), np.isin(texts, _FALSE)
    out[is_true], out[is_false] = 1.0, 0.0
    suffix = np.strings.slice(texts, -1, None)
    for mark, dtype in ((b"i", np.int64), (b"u", np.uint64)):
        rows = suffix == mark
        if rows.any():
            digits = np.strings.slice(texts[rows], 0, -1)
            if (np.strings.str_len(digits) == 0).any() or not _only(digits, _INT_CHARS):
                raise Decline
            if dtype is np.uint64 and (np.strings.find(digits, b"-") >= 0).any():
                raise Decline
            out[rows] = digits.astype(dtype).astype(np.float64)
    floats = ~(is_true | is_false | (suffix == b"i") | (suffix == b"u"))
    if floats.any():
        chosen = texts[floats]
        if not _only(chosen, _FLOAT_CHARS):
            raise Decline
        out[floats] = chosen.astype(np.float64)
    return out


def _slots(
    keys: np.ndarray, line_of: np.ndarray, names: np.ndarray, db: str | None, extra: Tags
) -> tuple[list[SeriesKey], np.ndarray]:
    """The distinct series keys of the samples and, per sample, the index of its key. Raises
    InvalidSeries or LineError for a series the general reader must name."""
    key_list = keys.tolist()
    distinct_keys = list(dict.fromkeys(key_list))
    key_index = {key: i for i, key in enumerate(distinct_keys)}
    key_of_line = np.fromiter(map(key_index.__getitem__, key_list), np.int64, len(key_list))
    field_names, name_of = np.unique(names, return_inverse=True)
    width = len(field_names)
    pair = key_of_line[line_of] * width + name_of
    distinct, index = np.unique(pair, return_inverse=True)
    parsed = [parse_key(k.decode()) for k in distinct_keys]
    name_list = [n.decode() for n in field_names.tolist()]
    series = []
    for code in distinct.tolist():
        measurement, tags = parsed[code // width]
        field = name_list[code % width]
        tags = merge_tags(with_db(tags, db), extra)
        series.append(protocol_series_key(f"{measurement}_{field}", tags))
    return series, index.astype(np.int64)
