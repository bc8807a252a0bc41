"""The line-protocol readers: the general one against the spec's cases, and the numpy one
(app.protocols.influx.fast) against the general one on generated plain bodies, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.protocols.builder import SeriesBuilder
from app.protocols.influx import fast
from app.protocols.influx.common import precision_of
from app.protocols.influx.lines import LineError, parse_line
from app.protocols.influx.parse import read_body
from app.protocols.report import WriteReport

NS = precision_of("ns")


@pytest.mark.parametrize(
    ("line", "measurement", "tags", "fields", "strings", "ts"),
    [
        ("cpu v=1", "cpu", (), [("v", 1.0)], 0, None),
        (
            "cpu,a=1,b=2 x=1.5,y=-2i,z=3u,t=T,f=false 99",
            "cpu",
            (("a", "1"), ("b", "2")),
            [("x", 1.5), ("y", -2.0), ("z", 3.0), ("t", 1.0), ("f", 0.0)],
            0,
            99,
        ),
        (
            "a\\,b\\ c,k\\=1=v\\,2\\ 3 f\\ g=1",
            "a,b c",
            (("k=1", "v,2 3"),),
            [("f g", 1.0)],
            0,
            None,
        ),
        ('m s="x, y=\\"z\\" \\\\",v=2 -5', "m", (), [("v", 2.0)], 1, -5),
        ("m v=1e3,w=.5,u=5.  7", "m", (), [("v", 1000.0), ("w", 0.5), ("u", 5.0)], 0, 7),
        ("m\\\\ v=1", "m\\", (), [("v", 1.0)], 0, None),
    ],
)
def test_lines(
    line: str, measurement: str, tags: tuple, fields: list, strings: int, ts: int | None
) -> None:
    parsed = parse_line(line)
    assert (parsed.measurement, parsed.tags, parsed.fields) == (measurement, tags, fields)
    assert (parsed.strings, parsed.timestamp) == (strings, ts)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("cpu", "missing fields"),
        ("cpu ", "missing fields"),
        (",a=1 v=1", "missing measurement"),
        ("cpu,a v=1", "invalid tag"),
        ("cpu v=", "invalid field value"),
        ("cpu v=nan", "invalid field value"),
        ("cpu v=1x", "invalid field value"),
        ("cpu v=99999999999999999999i", "out of range"),
        ("cpu v=-1u", "out of range"),
        ('cpu s="open', "unterminated"),
        ("cpu v=1 12a", "invalid timestamp"),
        ("cpu v=1 1 2", "invalid timestamp"),
        ("cpu =1", "invalid field"),
    ],
)
def test_bad_lines(line: str, reason: str) -> None:
    with pytest.raises(LineError, match=reason):
        parse_line(line)


def general(body: bytes) -> tuple[list[object], np.ndarray, np.ndarray, WriteReport]:
    builder, report = SeriesBuilder(), WriteReport()
    for number, raw in enumerate(body.split(b"\n"), 1):
        from app.protocols.influx.parse import _read_line

        _read_line(raw, number, NS, "db1", 42, builder, report, ())
    batch = builder.build()
    return [batch.keys[i] for i in batch.series_index], batch.ts, batch.values, report


names = st.text("abcxyz_.-0123456789", min_size=1, max_size=6)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: f"{i}i"),
    st.integers(0, 2**64 - 1).map(lambda i: f"{i}u"),
    st.sampled_from(["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"]),
    st.sampled_from(["1", "-1", "1.", ".5", "1e5", "-2.5E-3", "+3"]),
)
line = st.tuples(
    names,
    st.lists(st.tuples(names, names), max_size=3, unique_by=lambda t: t[0]),
    st.lists(st.tuples(names, values), min_size=1, max_size=4, unique_by=lambda t: t[0]),
    st.one_of(st.none(), st.integers(0, 2**62)),
).map(
    lambda p: (
        f"{p[0]}{''.join(f',{k}={v}' for k, v in p[1])} "
        + ",".join(f"{k}={v}" for k, v in p[2])
        + ("" if p[3] is None else f" {p[3]}")
    )
)


@settings(max_examples=150, deadline=None)
@given(st.lists(line, min_size=1, max_size=20), st.booleans())
def test_the_fast_reader_agrees_with_the_general_one(lines: list[str], newline: bool) -> None:
    body = ("\n".join(lines) + ("\n" if newline else "")).encode()
    keys, ts, vals, report = general(body)
    builder = SeriesBuilder()
    if not fast.read(body, NS, "db1", 42, builder):
        assert report.refused, "the fast reader declined a body the general one reads"
        return
    assert not report.refused
    batch = builder.build()
    assert [batch.keys[i] for i in batch.series_index] == keys
    assert batch.ts.tolist() == ts.tolist()
    assert batch.values.view(np.uint64).tolist() == vals.view(np.uint64).tolist()


def test_the_fast_reader_declines_what_it_does_not_read() -> None:
    for body in (
        b'm s="x" 1',
        b"m\\ x v=1",
        b"# c\nm v=1",
        b"m v=1\r\n",
        b"m v=1\n\nm v=2",
        b"m v=x",
    ):
        assert not fast.read(body, NS, None, 0, SeriesBuilder())
        builder = SeriesBuilder()
        read_body(body, NS, None, 0, builder, WriteReport())  # the general reader takes it
