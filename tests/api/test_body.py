"""app.api.body.decompress: what protocol endpoints use to decode bodies, bounded in output."""

from __future__ import annotations

import gzip
import zlib

import cramjam
import pytest

from app.api.body import decompress
from app.errors import BadRequest, PayloadTooLarge

DATA = b"cpu_usage,host=a value=1 1764763200000000000\n" * 1000


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(DATA)),
        ("GZIP", gzip.compress(DATA[:100]) + gzip.compress(DATA[100:])),  # two members
        ("deflate", zlib.compress(DATA)),
        ("snappy", bytes(cramjam.snappy.compress_raw(DATA))),
        (None, DATA),
        ("identity", DATA),
    ],
)
def test_bodies_decode_within_the_limit(encoding: str | None, encoded: bytes) -> None:
    assert decompress(encoded, encoding, len(DATA)) == DATA
    with pytest.raises(PayloadTooLarge):
        decompress(encoded, encoding, len(DATA) - 1)


def test_a_compression_bomb_is_refused_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024))  # 200 MiB in about 200 KB
    assert len(bomb) < 300_000
    with pytest.raises(PayloadTooLarge, match="once decompressed"):
        decompress(bomb, "gzip", 1024 * 1024)
    snappy_bomb = bytes(cramjam.snappy.compress_raw(b"\0" * (50 * 1024 * 1024)))
    with pytest.raises(PayloadTooLarge, match="once decompressed"):
        decompress(snappy_bomb, "snappy", 1024 * 1024)  # refused from its length header


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", b"not gzip"),
        ("gzip", gzip.compress(DATA)[:-20]),
        ("snappy", b"\xff\xff\xff"),
        ("snappy", b"\x80" * 12),
        ("br", b"x"),
    ],
)
def test_bad_data_is_a_bad_request(encoding: str, data: bytes) -> None:
    with pytest.raises(BadRequest):
        decompress(data, encoding, 10 * len(DATA))
