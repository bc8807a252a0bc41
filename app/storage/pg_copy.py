"""PostgreSQL's binary COPY format, written and read by numpy.

Rows of fixed-size NOT NULL columns have a fixed layout (a field count, then each field's length
and big-endian value), so a whole batch is one packed numpy record array: built from columns
without a Python object per row for `COPY ... FROM STDIN`, and read in place from the bytes of
`COPY ... TO STDOUT`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Column layouts for binary COPY: name and the big-endian numpy type of its PostgreSQL type.
SAMPLE_COLUMNS = (("series_id", ">i4"), ("ts", ">i8"), ("value", ">f8"))
MARK_COLUMNS = (("series_id", ">i4"), ("bucket", ">i8"))
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, no flags, no extension
COPY_TRAILER = b"\xff\xff"


def encode(layout: Sequence[tuple[str, str]], arrays: Sequence[np.ndarray]) -> bytes:
    """Rows in PostgreSQL's binary COPY format, built by numpy: per row a field count, then each
    field's length and value, big-endian. No Python object per row or per value."""
    rows = np.empty(len(arrays[0]), dtype=_binary_row(layout))  # packed: no padding
    rows["fields"] = len(layout)
    for i, ((_, kind), column) in enumerate(zip(layout, arrays, strict=True)):
        rows[f"size{i}"] = np.dtype(kind).itemsize
        rows[f"value{i}"] = column
    return COPY_HEADER + rows.tobytes() + COPY_TRAILER


def _binary_row(layout: Sequence[tuple[str, str]]) -> np.dtype[np.void]:
    """One row of binary COPY with these NOT NULL fixed-size columns, as a packed numpy record."""
    fields: list[tuple[str, str]] = [("fields", ">i2")]
    for i, (_, kind) in enumerate(layout):
        fields += [(f"size{i}", ">i4"), (f"value{i}", kind)]
    return np.dtype(fields)


def decode(data: bytes, layout: Sequence[tuple[str, str]]) -> np.ndarray:
    """Rows of a binary `COPY ... TO STDOUT` as a numpy record array (fields value0, value1, ...),
    read in place: no Python object per row or value."""
    if not data.startswith(COPY_HEADER[:11]):
        raise ValueError("not PostgreSQL binary COPY data")
    start = 19 + int.from_bytes(data[15:19], "big")  # after the header and its extension
    row = _binary_row(layout)
    body = len(data) - start - len(COPY_TRAILER)
    if body % row.itemsize or not data.endswith(COPY_TRAILER):
        raise ValueError("binary COPY data does not match the expected columns")
    return np.frombuffer(data, dtype=row, offset=start, count=body // row.itemsize)
