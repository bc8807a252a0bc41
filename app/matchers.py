"""Label sets and label matchers (`label=KEY:VALUE` and Prometheus `{k=~"re"}` syntax)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import orjson

LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
Op = Literal["=", "!=", "=~", "!~"]


class MatcherError(ValueError):
    """A label filter that cannot be parsed."""


def canonical_labels(labels: Mapping[str, str]) -> bytes:
    """The label set as compact JSON with sorted keys: the stable form stored and hashed."""
    return orjson.dumps(dict(sorted(labels.items())))


def fingerprint(labels_json: bytes) -> str:
    """A stable identity of a label set (unique per metric in the series table)."""
    return hashlib.blake2b(labels_json, digest_size=16).hexdigest()


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(cls, name: str, op: Op, value: str) -> Matcher:
        if "\x00" in value:
            raise MatcherError(f"match: the value for {name} must not contain NUL characters")
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(value)  # fullmatch anchors it, as Prometheus does
            except re.error as exc:
                raise MatcherError(
                    f"match: invalid regular expression {value!r} for {name}: {exc}"
                ) from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")  # a missing label matches the empty string
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(actual) is not None  # anchored, as in Prometheus
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
