"""The one typed adapter over pcodec (PyPI `pcodec`, which ships no type information).

A block holds one pcodec *wrapped* file: pcodec's 2-byte file header, then one chunk per array,
each chunk its metadata and exactly one page. The wrapped form leaves counts and dtypes to us
(the block header has them), which saves 13 bytes per array against pcodec's standalone form;
on a 2-hour block of 720 samples that is about 1% of the block.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
import pcodec  # type: ignore[import-untyped]
from pcodec import wrapped

MAX_CHUNK = 2**24  # pcodec's limit of numbers per chunk
Dtype = Literal["i64", "f64"]
Delta = Literal["none", "first", "auto"]
NUMPY: dict[Dtype, type[np.generic]] = {"i64": np.int64, "f64": np.float64}


def file_header() -> bytes:
    """pcodec's file header (its format version), written once per block."""
    header: bytes = wrapped.FileCompressor().write_header()
    return header


def _delta_spec(delta: Delta) -> object:
    if delta == "none":
        return pcodec.DeltaSpec.no_op()
    if delta == "first":
        return pcodec.DeltaSpec.try_consecutive(1)
    return pcodec.DeltaSpec.auto()


def chunk(values: np.ndarray, level: int, delta: Delta) -> bytes:
    """One chunk (metadata and its single page) of a non-empty 1-D int64 or float64 array.

    `delta`: "none" or "first" differences, or "auto", pcodec's own choice, which also tries
    its float modes and costs about three times as much to encode."""
    if not 0 < values.size <= MAX_CHUNK:
        raise ValueError(f"a chunk holds 1 to {MAX_CHUNK} numbers, not {values.size}")
    src = np.ascontiguousarray(values)
    cfg = pcodec.ChunkConfig(
        compression_level=level,
        delta_spec=_delta_spec(delta),
        paging_spec=pcodec.PagingSpec.exact_page_sizes([src.size]),
    )
    compressor = wrapped.FileCompressor().chunk_compressor(src, cfg)
    return bytes(compressor.write_meta()) + bytes(compressor.write_page(0))


@functools.lru_cache(maxsize=16)
def _file_decompressor(header: bytes) -> object:
    """pcodec's reader of a file header: one per pcodec format version, so kept."""
    return wrapped.FileDecompressor.new(header)[0]


def read_chunk(buf: bytes, at: int, header: bytes, n: int, dtype: Dtype) -> tuple[np.ndarray, int]:
    """Decode the chunk of `n` numbers starting at byte `at`: the array and the next offset."""
    decompressor: Any = _file_decompressor(header)
    chunk_decompressor, meta_len = decompressor.chunk_decompressor(buf[at:], dtype)
    out = np.empty(n, dtype=NUMPY[dtype])
    progress, page_len = chunk_decompressor.read_page_into(buf[at + meta_len :], n, out)
    if progress.n_processed != n:
        raise ValueError(f"a chunk decoded {progress.n_processed} numbers instead of {n}")
    return out, at + meta_len + page_len
