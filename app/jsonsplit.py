"""Parse a large JSON object's arrays a piece at a time: the elements of its top-level arrays in
slices of about PIECE_BYTES, each slice parsed by orjson on its own.

A body of tens of MB parsed whole becomes a Python object per value, several times its size
(a 61 MB import cost 245 MB at its peak), and holds the event loop for the whole parse and
validation. In pieces, only one slice's objects exist at a time and the caller can yield to the
event loop between slices.

How a slice is found without a parser of our own: a cut is tried where an object element ends,
`}` followed by `,{` or `]`, and orjson checks it by parsing `[` + slice + `]`. A cut that is not
an element border (inside a string, inside a nested array) can never parse, since the slice would
end inside that string or array; a slice that runs past the array's end parses up to that end and
stops at the rest ("content after document"), which tells where the array ends. After a failed
cut the next one is tried only at twice the length, so the work stays linear in the body whatever
it holds. Anything not in the expected shape (another key, a value that is not an array of
objects, invalid JSON, a key given twice) raises NotSplittable: parse that body whole instead,
which gives the same answers and messages as before.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator

import orjson

PIECE_BYTES = 256 * 1024

_WS = re.compile(rb"[ \t\r\n]*")
_MEMBER = re.compile(rb'[ \t\r\n]*"([A-Za-z_]+)"[ \t\r\n]*:[ \t\r\n]*\[')
_ELEMENT_END = re.compile(rb"\}[ \t\r\n]*(?:,[ \t\r\n]*\{|\])")


class NotSplittable(ValueError):
    """The body is not in the shape split_arrays handles; parse it whole."""


def split_arrays(
    body: bytes | bytearray, keys: frozenset[str], piece_bytes: int = PIECE_BYTES
) -> Iterator[tuple[str, int, list[object]]]:
    """For a body `{"key": [{...}, ...], ...}` whose members are all arrays of objects under
    `keys`: (key, index of the first element, elements) for consecutive slices of each array,
    in body order."""
    pos = _skip(body, 0)
    if body[pos : pos + 1] != b"{":
        raise NotSplittable("not an object")
    pos, seen = pos + 1, set()
    while True:
        member = _MEMBER.match(body, pos)
        if member is None or member.group(1).decode() not in keys:
            raise NotSplittable("another member")
        key = member.group(1).decode()
        if key in seen:
            raise NotSplittable(f"{key} given twice")
        seen.add(key)
        pos = yield from _elements(body, member.end(), key, piece_bytes)
        pos = _skip(body, pos)
        following = body[pos : pos + 1]
        if following == b"}":
            if _skip(body, pos + 1) != len(body):
                raise NotSplittable("content after the object")
            return
        if following != b",":
            raise NotSplittable("no comma between members")
        pos += 1


def _skip(body: bytes | bytearray, pos: int) -> int:
    found = _WS.match(body, pos)
    return pos if found is None else found.end()


def _elements(
    body: bytes | bytearray, start: int, key: str, piece_bytes: int
) -> Generator[tuple[str, int, list[object]], None, int]:
    """The slices of the array whose `[` ends just before `start`; returns the position just
    after its `]`."""
    pos, index = _skip(body, start), 0
    if body[pos : pos + 1] == b"]":
        yield key, 0, []  # present, and empty
        return pos + 1
    view = memoryview(body)
    least = piece_bytes
    while True:
        if body[pos : pos + 1] != b"{":
            raise NotSplittable("an element that is not an object")
        cut = _cut(body, pos, least)
        wrapped = b"".join((b"[", view[pos : cut + 1], b"]"))
        elements, end = _parse_slice(wrapped)
        if elements is None:
            if _ELEMENT_END.search(body, cut + 1) is None:
                raise NotSplittable("not valid JSON")  # no later cut to try
            least = 2 * (cut + 1 - pos)  # linear: each failure doubles the next try
            continue
        yield key, index, elements
        index += len(elements)
        least = piece_bytes
        if end is not None:  # the array ended inside this slice, at body[pos - 1 + end]
            return pos + end
        after = _skip(body, cut + 1)
        if body[after : after + 1] == b"]":
            return after + 1
        pos = _skip(body, after + 1)  # past the comma, at the next element's `{`


def _cut(body: bytes | bytearray, pos: int, least: int) -> int:
    """Index of the `}` of the first possible element end at least `least` bytes on, else of
    the last one there is."""
    found = _ELEMENT_END.search(body, pos + least - 1) if pos + least - 1 < len(body) else None
    if found is not None:
        return found.start()
    last = _last_cut(body, pos)
    if last is None:
        raise NotSplittable("no element end")
    return last


def _last_cut(body: bytes | bytearray, pos: int) -> int | None:
    last = None
    for found in _ELEMENT_END.finditer(body, pos):
        last = found.start()
    return last


def _parse_slice(wrapped: bytes) -> tuple[list[object] | None, int | None]:
    """(elements, None) when `wrapped` is an array; (elements, index of the array's `]` in
    `wrapped`) when an array ends inside it and other content follows; (None, None) else."""
    try:
        parsed = orjson.loads(wrapped)
    except orjson.JSONDecodeError as exc:
        stop = _byte_offset(wrapped, exc.pos)
        if stop is None or not 0 < stop < len(wrapped) - 1:
            return None, None
        head = wrapped[:stop]
        try:
            parsed = orjson.loads(head)  # parses only if the array ended before exc.pos
        except orjson.JSONDecodeError:
            return None, None
        if not isinstance(parsed, list):
            return None, None
        return parsed, len(head.rstrip()) - 1
    return (parsed, None) if isinstance(parsed, list) else (None, None)


def _byte_offset(data: bytes, chars: int) -> int | None:
    """orjson reports an error's position in characters of the decoded text: as a byte offset."""
    try:
        return len(data[: chars * 4].decode("utf-8", "ignore")[:chars].encode("utf-8"))
    except UnicodeError:  # pragma: no cover - "ignore" does not raise
        return None
