"""Property tests of the label-matcher parser (`match={...}`) and of matching itself."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.matchers import Matcher, MatcherError, parse_label_params, parse_match

names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)
values = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=12)
ops = st.sampled_from(["=", "!=", "=~", "!~"])


def render(name: str, op: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}{op}"{escaped}"'


def literal(op: str, value: str) -> str:
    """The value as written in a matcher: regex operators get it escaped, so it matches itself."""
    return re.escape(value) if op in ("=~", "!~") else value


@given(st.lists(st.tuples(names, ops, values), max_size=5), st.sampled_from([",", ", "]))
def test_rendered_matchers_parse_back(parts: list[tuple[str, str, str]], sep: str) -> None:
    text = "{" + sep.join(render(n, op, literal(op, v)) for n, op, v in parts) + "}"
    parsed = parse_match(text)
    assert [(m.name, m.op, m.value) for m in parsed] == [
        (n, op, literal(op, v)) for n, op, v in parts
    ]


@given(
    st.dictionaries(names, values, max_size=4),
    names,
    ops,
    values,
)
def test_matching_agrees_with_a_plain_oracle(
    labels: dict[str, str], name: str, op: str, value: str
) -> None:
    matcher = Matcher.build(name, op, literal(op, value))  # type: ignore[arg-type]
    actual = labels.get(name, "")  # an absent label matches "" as in Prometheus
    equal = actual == value
    expected = {"=": equal, "!=": not equal, "=~": equal, "!~": not equal}[op]
    assert matcher.matches(labels) is expected


@given(values, st.text(min_size=1, max_size=3))
def test_regexes_are_anchored_at_both_ends(value: str, extra: str) -> None:
    matcher = Matcher.build("host", "=~", re.escape(value))
    assert matcher.matches({"host": value})
    assert not matcher.matches({"host": value + extra})
    assert not matcher.matches({"host": extra + value})


@given(st.text(max_size=40))
def test_any_text_parses_or_is_a_matcher_error(text: str) -> None:
    try:
        matchers = parse_match(text)
    except MatcherError as exc:
        assert str(exc).startswith("match:")  # noqa: PT017 - either outcome is valid
        return
    assert all(isinstance(m, Matcher) for m in matchers)


@given(st.text(max_size=20))
def test_label_params_parse_or_name_the_label_parameter(text: str) -> None:
    try:
        parsed = parse_label_params([text])
    except MatcherError as exc:
        assert str(exc).startswith(("label:", "match:"))  # noqa: PT017 - either outcome is valid
        return
    assert parsed[0].op == "="
    assert f"{parsed[0].name}:{parsed[0].value}" == text


# -- RE2 semantics, as Prometheus has them --------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "hit"),
    [
        pytest.param("(.*)*X", "web-server-01.prod.exampl" * 4, False, id="backtracking-trap"),
        pytest.param("(a+)+$", "a" * 5000 + "b", False, id="nested-quantifier"),
        pytest.param("a.b", "a\nb", True, id="dot-matches-newline"),
        pytest.param("server[12]", "server1", True, id="class"),
        pytest.param("server[12]", "xserver1", False, id="anchored-start"),
        pytest.param("server[12]", "server12", False, id="anchored-end"),
        pytest.param("(?i)SERVER1", "server1", True, id="flags"),
        pytest.param("a|b|", "", True, id="literal-alternation-empty"),
        pytest.param("a|b", "ab", False, id="literal-alternation-anchored"),
        pytest.param(".*", "", True, id="match-all"),
        pytest.param(".+", "", False, id="non-empty"),
        pytest.param("é.", "éü", True, id="utf-8"),
        pytest.param(r"\d+", "٣", False, id="perl-classes-ascii"),
    ],
)
def test_regexes_have_re2_semantics(pattern: str, value: str, hit: bool) -> None:
    assert Matcher.build("host", "=~", pattern).matches({"host": value}) is hit
    assert Matcher.build("host", "!~", pattern).matches({"host": value}) is not hit


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        pytest.param(r"(a)\1", "invalid escape sequence", id="backreference"),
        pytest.param("(?=a)", "invalid perl operator", id="lookahead"),
        pytest.param("a{1001}", "invalid repetition size", id="repetition"),
        pytest.param("[a", "missing ]", id="unclosed-class"),
    ],
)
def test_patterns_re2_cannot_compile_are_matcher_errors(pattern: str, reason: str) -> None:
    with pytest.raises(MatcherError) as caught:
        parse_match('{host=~"' + pattern.replace("\\", "\\\\") + '"}')
    message = str(caught.value)
    assert message.startswith("match: invalid regular expression")
    assert reason in message and "host" in message
