"""A line-protocol body -> the builder: each numeric field the series `measurement_field`, tags as
labels, the `db` of the request as a label unless a tag has that name.

Plain bodies (no escapes, no quotes, no comments: what Telegraf and most libraries send) are read
by `fast` with numpy; anything else, and any body `fast` declines, line by line by `lines`,
which names each bad line. Bad lines are refused one by one while the good ones are stored (a
"partial write", as InfluxDB answers it).
"""

from __future__ import annotations

from app.protocols.builder import InvalidSeries, SeriesBuilder
from app.protocols.influx import fast
from app.protocols.influx.common import Tags, merge_tags, stamp_to_ms, with_db
from app.protocols.influx.lines import LineError, parse_line
from app.protocols.report import WriteReport


def read_body(
    body: bytes,
    precision: tuple[int, int],
    db: str | None,
    now_ms: int,
    builder: SeriesBuilder,
    report: WriteReport,
    extra: Tags = (),
) -> None:
    """Add every numeric field of every good line to `builder`; refuse the bad lines."""
    if fast.read(body, precision, db, now_ms, builder, extra):
        return
    for number, raw in enumerate(body.split(b"\n"), start=1):
        _read_line(raw, number, precision, db, now_ms, builder, report, extra)


def _read_line(
    raw: bytes,
    number: int,
    precision: tuple[int, int],
    db: str | None,
    now_ms: int,
    builder: SeriesBuilder,
    report: WriteReport,
    extra: Tags,
) -> None:
    text = raw.decode("utf-8", "replace").rstrip("\r")
    if not text.strip() or text.lstrip().startswith("#"):
        return
    try:
        raw.decode("utf-8")
        line = parse_line(text)
        ts = now_ms
        if line.timestamp is not None:
            found = stamp_to_ms(line.timestamp, precision)
            if found is None:
                raise LineError(f"timestamp {line.timestamp} is outside the years 1 to 9999")
            ts = found
        report.ignore("string_fields", line.strings)
        tags = merge_tags(with_db(line.tags, db), extra)
        slots = [builder.series(f"{line.measurement}_{name}", tags) for name, _ in line.fields]
    except (LineError, InvalidSeries, UnicodeDecodeError) as exc:
        shown = text if len(text) <= 100 else text[:100] + "..."
        report.refuse(f"line {number}: unable to parse '{shown}': {exc}")
        return
    for slot, (_, value) in zip(slots, line.fields, strict=True):
        builder.add_at(slot, ts, value)
