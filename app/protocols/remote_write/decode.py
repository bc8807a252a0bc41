"""A remote-write 1.0 body -> the builder, the report and the metadata.

The protobuf runtime parses (and so validates) the whole message in one call. Series are read
from it one by one; their samples too when a series holds few of them (what Prometheus sends:
mostly one sample per series). A series with many samples (backfills, vmagent, the benchmark)
is read from the wire bytes with numpy instead (`columns`), without a Python object per sample.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import cramjam
from google.protobuf.message import DecodeError

from app.errors import BadRequest, PayloadTooLarge
from app.model import MetricMetadata
from app.protocols.builder import InvalidSeries, Pairs, SeriesBuilder, named_series_key
from app.protocols.remote_write import columns
from app.protocols.remote_write.proto import METRIC_TYPES, WriteRequest
from app.protocols.report import WriteReport

COLUMNS_FROM = 16  # samples in a series from which reading them with numpy pays


@dataclass
class Decoded:
    builder: SeriesBuilder = field(default_factory=SeriesBuilder)
    report: WriteReport = field(default_factory=WriteReport)
    metadata: list[MetricMetadata] = field(default_factory=list)


def snappy_block(data: bytes, limit: int) -> bytes:
    """Decompress the snappy *block* format, checking the size it announces first."""
    try:
        size = cramjam.snappy.decompress_raw_len(data)
    except Exception:
        raise BadRequest("body: not snappy block-compressed data") from None
    if size > limit:
        raise PayloadTooLarge(
            f"body: {size} bytes once decompressed, more than MAX_BODY_BYTES ({limit})"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except Exception as exc:
        raise BadRequest(f"body: cannot decompress the snappy block ({exc})") from None


def describe_labels(pairs: Pairs) -> str:
    text = ",".join(f'{name}="{value}"' for name, value in pairs)
    return "{" + (text if len(text) <= 200 else text[:200] + "...") + "}"


def decode_write_request(payload: bytes) -> Decoded:
    try:
        request = WriteRequest.FromString(payload)
    except DecodeError as exc:
        raise BadRequest(f"body: not a remote-write 1.0 WriteRequest ({exc})") from None
    out = Decoded()
    large: list[tuple[int, int]] = []  # (series position, slot) read with numpy afterwards
    for position, series in enumerate(request.timeseries):
        _read_series(series, position, out, large)
    if large:
        _read_large(payload, request, large, out.builder)
    for entry in request.metadata:
        if entry.metric_family_name:
            kind = entry.type if 0 <= entry.type < len(METRIC_TYPES) else 0
            out.metadata.append(
                MetricMetadata(entry.metric_family_name, METRIC_TYPES[kind], entry.help, entry.unit)
            )
    return out


def _read_large(
    payload: bytes, request: object, large: list[tuple[int, int]], builder: SeriesBuilder
) -> None:
    timeseries = request.timeseries  # type: ignore[attr-defined]
    counts = [(position, len(timeseries[position].samples)) for position, _ in large]
    read = columns.read_samples(payload, counts)
    for (position, slot), found in zip(large, read, strict=True):
        samples = timeseries[position].samples
        if found is not None and _agrees(found, samples):
            builder.add_columns(slot, found[0], found[1])
            continue
        for sample in samples:  # not of the usual shape: through the runtime
            builder.add_at(slot, sample.timestamp, sample.value)


def _agrees(found: columns.Columns, samples: object) -> bool:
    """The first and last samples read from the bytes equal the runtime's, bit for bit."""
    ts, values = found
    first, last = samples[0], samples[-1]  # type: ignore[index]
    return bool(
        int(ts[0]) == first.timestamp
        and int(ts[-1]) == last.timestamp
        and values[0].tobytes() == _DOUBLE.pack(first.value)
        and values[-1].tobytes() == _DOUBLE.pack(last.value)
    )


_DOUBLE = struct.Struct("<d")


def _read_series(series: object, position: int, out: Decoded, large: list[tuple[int, int]]) -> None:
    samples = series.samples  # type: ignore[attr-defined]
    out.report.ignore("exemplars", len(series.exemplars))  # type: ignore[attr-defined]
    out.report.ignore("histograms", len(series.histograms))  # type: ignore[attr-defined]
    count = len(samples)
    if count == 0:
        return
    pairs = tuple((label.name, label.value) for label in series.labels)  # type: ignore[attr-defined]
    try:
        slot = out.builder.slot(named_series_key(pairs))
    except InvalidSeries as exc:
        out.report.refuse(f"series {describe_labels(pairs)}: {exc}", count)
        return
    if count >= COLUMNS_FROM:
        large.append((position, slot))
        return
    for sample in samples:
        out.builder.add_at(slot, sample.timestamp, sample.value)
