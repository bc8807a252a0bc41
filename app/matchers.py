"""Label sets and label matchers (`label=KEY:VALUE` and Prometheus `{k=~"re"}` syntax).

Regular expressions have Prometheus' semantics: RE2 syntax (Google's RE2, as Go's regexp that
Prometheus uses), fully anchored, and `.` matching a newline too (Prometheus 3). RE2 matches in
time linear in the value, whatever the pattern: a pattern such as `(.*)*X` that makes a
backtracking engine (Python's `re`) take seconds per value, doubling with each character, costs
microseconds here. A pattern RE2 cannot compile (a backreference, a lookaround, a repetition over
1000) is a MatcherError naming it. Shared by the JSON API, PromQL and the dashboard's filter
(which sends its `match` to the API).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import orjson
from re2 import _re2  # the RE2 binding itself; the `re2` module above it emulates `re` slowly

LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
Op = Literal["=", "!=", "=~", "!~"]


class MatcherError(ValueError):
    """A label filter that cannot be parsed."""


def canonical_labels(labels: Mapping[str, str]) -> bytes:
    """The label set as compact JSON with sorted keys: the stable form stored and hashed.
    Copied into a bytes object of its own size: orjson's result keeps a buffer of at least
    4 KiB, and label sets are kept by the thousand (series keys, caches)."""
    return bytes(memoryview(orjson.dumps(dict(sorted(labels.items())))))


def fingerprint(labels_json: bytes) -> str:
    """A stable identity of a label set (unique per metric in the series table)."""
    return hashlib.blake2b(labels_json, digest_size=16).hexdigest()


_OPTIONS = _re2.RE2.Options()
_OPTIONS.dot_nl = True  # Prometheus 3: `.` matches a newline too
_OPTIONS.never_capture = True  # groups only group: nothing reads them
_OPTIONS.log_errors = False  # errors are raised as MatcherError, not printed
_BOTH_ENDS = _re2.RE2.Anchor.ANCHOR_BOTH
_META = frozenset("\\.+*?()|[]{}^$")


class Regex:
    """A compiled, fully anchored label-value regex. Plain alternations of literals
    (`a|b|c`, what Grafana sends for a multi-value variable) and `.*` are answered without
    running RE2 at all, as Prometheus does."""

    __slots__ = ("_literals", "_re", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._literals: frozenset[str] | None = None
        self._re: _re2.RE2 | None = None
        if pattern != ".*" and not _META.intersection(pattern.replace("|", "")):
            self._literals = frozenset(pattern.split("|"))
            return
        compiled = _re2.RE2(pattern.encode("utf-8", "surrogatepass"), _OPTIONS)
        if not compiled.ok():
            reason = compiled.error().decode("utf-8", "replace")
            raise MatcherError(f"invalid regular expression {pattern!r}: {reason}")
        self._re = None if pattern == ".*" else compiled

    def fullmatch(self, value: str) -> bool:
        if self._literals is not None:
            return value in self._literals
        if self._re is None:  # `.*`
            return True
        text = value.encode("utf-8", "surrogatepass")
        start: int = self._re.Match(_BOTH_ENDS, text, 0, len(text))[0][0]
        return start >= 0  # (-1, -1) when it does not match


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> Regex:
    """The compiled form of a label-value regex (remembered: dashboards repeat their queries);
    raises MatcherError when RE2 cannot compile it."""
    return Regex(pattern)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: Regex | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(cls, name: str, op: Op, value: str) -> Matcher:
        if "\x00" in value:
            raise MatcherError(f"match: the value for {name} must not contain NUL characters")
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = compile_regex(value)
            except MatcherError as exc:
                raise MatcherError(f"match: {exc} for {name}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.matches_value(labels.get(self.name, ""))  # missing matches the empty string

    def matches_value(self, actual: str) -> bool:
        """Whether a label value (the empty string for an absent label) satisfies the matcher."""
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(actual)  # anchored, as in Prometheus
        return hit if self.op == "=~" else not hit

    @property
    def is_exact(self) -> bool:
        """An equality with a non-empty value: servable by an index lookup."""
        return self.op == "=" and self.value != ""


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def parse_label_params(values: Iterable[str]) -> list[Matcher]:
    """`label=KEY:VALUE` query parameters: exact matches."""
    matchers = []
    for raw in values:
        key, sep, value = raw.partition(":")
        if not sep or not LABEL_NAME_RE.fullmatch(key):
            raise MatcherError(f"label: {raw!r} must look like KEY:VALUE with a valid label name")
        matchers.append(Matcher.build(key, "=", value))
    return matchers


_MATCHER_RE = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)', re.DOTALL
)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), text)


def parse_match(expr: str) -> list[Matcher]:
    """Prometheus selector braces: `{host=~"server[12]",region!="eu-west"}`."""
    text = expr.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise MatcherError(f'match: {expr!r} must be braces around matchers, e.g. {{host="a"}}')
    body = text[1:-1].strip()
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(body):
        found = _MATCHER_RE.match(body, pos)
        if found is None:
            raise MatcherError(f"match: cannot parse {expr!r} at {body[pos:]!r}")
        name, op, value, _ = found.groups()
        matchers.append(Matcher.build(name, op, _unescape(value)))  # type: ignore[arg-type]
        pos = found.end()
        if found.group(4) == "," and pos >= len(body):
            break  # a trailing comma is allowed
    return matchers
