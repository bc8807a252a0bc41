"""LEB128 varints and zigzag signed integers for the few header fields of a block."""

from __future__ import annotations

MAX_BYTES = 10  # an unsigned 64-bit integer in 7-bit groups


def put_uint(out: bytearray, value: int) -> None:
    if not 0 <= value < 2**64:
        raise ValueError(f"{value} is not an unsigned 64-bit integer")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def put_int(out: bytearray, value: int) -> None:
    """A signed 64-bit integer, zigzag-encoded so that small magnitudes take few bytes."""
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{value} is not a signed 64-bit integer")
    put_uint(out, (value << 1) ^ (value >> 63))


def get_uint(buf: bytes, at: int) -> tuple[int, int]:
    """The unsigned varint at byte `at`, and the offset after it."""
    if at < len(buf) and buf[at] < 0x80:  # one byte: most counts, steps and gaps
        return buf[at], at + 1
    value = shift = 0
    for i in range(at, min(at + MAX_BYTES, len(buf))):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    raise ValueError(f"no complete varint at byte {at}")


def get_int(buf: bytes, at: int) -> tuple[int, int]:
    raw, at = get_uint(buf, at)
    return (raw >> 1) ^ -(raw & 1), at
