"""app.jsonsplit: slices of a body's arrays, parsed piece by piece, equal orjson's whole parse;
anything else is NotSplittable (the caller then parses the body whole)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.jsonsplit import NotSplittable, split_arrays

KEYS = frozenset({"metrics", "series"})
# Strings full of what looks like element borders, nested arrays of objects: every false cut.
tricky = st.text(alphabet='ab},{[]" \\\n\u00e9', max_size=8)
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    tricky,
)
value = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky, inner, max_size=3),
    max_leaves=8,
)
element = st.dictionaries(tricky, value, max_size=4)
body = st.dictionaries(st.sampled_from(sorted(KEYS)), st.lists(element, max_size=8), min_size=1)


def joined(raw: bytes, piece: int) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for key, first, elements in split_arrays(bytearray(raw), KEYS, piece):
        assert first == len(found.setdefault(key, []))
        found[key] += elements
    return found


@settings(max_examples=100, deadline=None)
@given(body, st.integers(1, 200), st.booleans())
def test_slices_add_up_to_the_whole_parse(
    parsed: dict[str, list[Any]], piece: int, indent: bool
) -> None:
    raw = orjson.dumps(parsed, option=orjson.OPT_INDENT_2 if indent else 0)
    assert joined(raw, piece) == orjson.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b"{}",
        b'{"other": []}',
        b'{"metrics": null}',
        b'{"metrics": [1, 2]}',
        b'{"metrics": [{"a": 1}], "metrics": []}',
        b'{"metrics": [{"a": 1}, {"b": 2]}',
        b'{"metrics": [{"a": 1}]} trailing',
        b'{"metrics": [{"a": NaN}]}',
        b'{"metrics": [{"a": "unterminated}]}',
    ],
)
def test_other_shapes_and_invalid_json_are_not_splittable(raw: bytes) -> None:
    with pytest.raises(NotSplittable):
        joined(raw, 8)


def test_a_large_array_comes_in_slices_of_about_the_piece_size() -> None:
    items = [{"metric_name": "m", "value": i, "labels": {"pad": "x" * 100}} for i in range(5000)]
    raw = orjson.dumps({"metrics": items})
    slices = list(split_arrays(bytearray(raw), KEYS, 64 * 1024))
    assert len(slices) == pytest.approx(len(raw) / (64 * 1024), abs=2)
    assert [e for _, _, elements in slices for e in elements] == items


def test_false_borders_inside_an_element_stay_inside_it() -> None:
    """A 6 MB string of `},{`: every cut fails; retried only at doubled lengths, so the work
    stays linear (before any fix of this kind, the naive retry would be quadratic)."""
    raw = b'{"metrics": [{"a": "' + b"},{" * 2_000_000 + b'"}, {"b": 1}]}'
    assert joined(raw, 1024) == orjson.loads(raw)
