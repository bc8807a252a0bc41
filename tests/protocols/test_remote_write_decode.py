"""The remote-write decoder: field numbers checked against bytes written by hand, and the numpy
reading of samples (app.protocols.remote_write.columns) checked against the protobuf runtime on
generated messages, bit for bit, whatever the shape of their records."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_clients import snappy

from app.errors import BadRequest, PayloadTooLarge
from app.protocols.remote_write import columns
from app.protocols.remote_write.decode import decode_write_request, snappy_block
from app.protocols.remote_write.proto import WriteRequest


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def label(name: str, value: str) -> bytes:
    return field(1, field(1, name.encode()) + field(2, value.encode()))


def sample(value: float, ts: int) -> bytes:
    body = b"\x09" + struct.pack("<d", value) if value != 0 else b""
    return field(2, body + (b"\x10" + varint(ts) if ts else b""))


def by_series(payload: bytes) -> dict[str, list[tuple[int, int]]]:
    """Decoded samples per series (its labels JSON), as (ts, value bits), in arrival order."""
    batch = decode_write_request(payload).builder.build()
    out: dict[str, list[tuple[int, int]]] = {}
    bits = batch.values.view(np.uint64)
    for slot, ts, value in zip(
        batch.series_index.tolist(), batch.ts.tolist(), bits.tolist(), strict=True
    ):
        key = batch.keys[slot]
        out.setdefault(f"{key.metric}{key.labels_json.decode()}", []).append((ts, value))
    return out


def test_field_numbers_match_hand_written_bytes() -> None:
    series = label("__name__", "up") + label("job", "node") + sample(1.5, 1_700_000_000_000)
    gauge = b"\x08\x02"  # field 1 (type), varint 2
    metadata = gauge + field(2, b"up") + field(4, b"Is it up.") + field(5, b"")
    payload = field(1, series) + field(3, metadata)
    decoded = decode_write_request(payload)
    assert by_series(payload) == {
        'up{"job":"node"}': [(1_700_000_000_000, struct.unpack("<Q", struct.pack("<d", 1.5))[0])]
    }
    [meta] = decoded.metadata
    assert (meta.metric, meta.type, meta.help, meta.unit) == ("up", "gauge", "Is it up.", "")


def test_fields_in_any_order_and_interleaved() -> None:
    samples = [sample(float(i + 1), 1_700_000_000_000 + i) for i in range(40)]
    series = b"".join(samples[:20]) + label("__name__", "m") + b"".join(samples[20:])
    got = by_series(field(1, series))
    assert [ts for ts, _ in got["m{}"]] == [1_700_000_000_000 + i for i in range(40)]


def test_snappy_block_checks_the_announced_size_first() -> None:
    data = snappy(b"x" * 10_000)
    assert snappy_block(data, 10_000) == b"x" * 10_000
    with pytest.raises(PayloadTooLarge):
        snappy_block(data, 9_999)
    with pytest.raises(BadRequest):
        snappy_block(b"\x00garbage", 10)


floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(0.0),
    st.integers(0, 2**64 - 1).map(lambda b: struct.unpack("<d", struct.pack("<Q", b))[0]),
)
timestamps = st.one_of(
    st.integers(1_600_000_000_000, 1_900_000_000_000),
    st.integers(-(2**63), 2**63 - 1),
    st.just(0),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(timestamps, floats), min_size=0, max_size=60),
        min_size=1,
        max_size=6,
    )
)
def test_columns_agree_with_the_runtime(series: list[list[tuple[int, float]]]) -> None:
    request = WriteRequest()
    for i, samples in enumerate(series):
        entry = request.timeseries.add()
        entry.labels.add(name="__name__", value="gen")
        entry.labels.add(name="i", value=str(i))
        for ts, value in samples:
            entry.samples.add(timestamp=ts, value=value)
    payload = request.SerializeToString()
    expected = {
        f'gen{{"i":"{i}"}}': [(ts, struct.unpack("<Q", struct.pack("<d", v))[0]) for ts, v in s]
        for i, s in enumerate(series)
        if s
    }
    assert by_series(payload) == expected


def test_uniform_records_are_read_by_numpy() -> None:
    request = WriteRequest()
    entry = request.timeseries.add()
    entry.labels.add(name="__name__", value="u")
    for i in range(50):
        entry.samples.add(timestamp=1_700_000_000_000 + i, value=i + 0.5)
    payload = request.SerializeToString()
    [found] = columns.read_samples(payload, [(0, 50)])
    assert found is not None
    assert found[0].tolist() == [1_700_000_000_000 + i for i in range(50)]
    assert found[1].tolist() == [i + 0.5 for i in range(50)]
