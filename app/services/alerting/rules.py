"""Alert rules: their shape, validation and the YAML rules file (pure).

A rule selects series (a metric and a Prometheus matcher; a PromQL `expr` is reserved for when
the PromQL engine lands) and fires per series when its condition has held for `for`:

    name: cpu_anomaly                # the URL name and the alert's `alertname`
    metric: cpu_usage
    match: '{region="eu-west"}'      # optional
    anomaly: {method: auto, likelihood: 0.99999}    # or: threshold: {op: ">", value: 90}
    for: 2m                          # default 0: fire on the first anomalous point
    keep_firing_for: 0s
    labels: {severity: warning}
    annotations: {summary: "{{ $labels.host }}: {{ $value }}"}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]

from app.config import format_duration, parse_duration
from app.matchers import LABEL_NAME_RE, Matcher, MatcherError, parse_match
from app.services.anomaly.detector import DEFAULT_LIKELIHOOD

NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_:.-]{0,199}$")
METRIC_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
FIELDS = frozenset(
    {"name", "metric", "match", "expr", "anomaly", "threshold", "for", "keep_firing_for",
     "labels", "annotations"}
)  # fmt: skip
MAX_FOR = timedelta(days=7)
Source = Literal["api", "file"]


class RuleError(ValueError):
    """A rule that cannot be used; the message names the field."""


@dataclass(frozen=True)
class AnomalyCondition:
    method: Literal["auto"] = "auto"
    likelihood: float = DEFAULT_LIKELIHOOD


@dataclass(frozen=True)
class ThresholdCondition:
    op: Literal[">", "<"]
    value: float


Condition = AnomalyCondition | ThresholdCondition


@dataclass(frozen=True)
class Rule:
    name: str
    metric: str
    condition: Condition
    match: str | None = None
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    source: Source = "api"

    @property
    def matchers(self) -> list[Matcher]:
        return parse_match(self.match) if self.match else []

    def to_json(self) -> dict[str, Any]:
        """The rule as written in the API and the rules file (durations spelled out)."""
        body: dict[str, Any] = {"name": self.name, "metric": self.metric, "match": self.match}
        if isinstance(self.condition, AnomalyCondition):
            body["anomaly"] = {
                "method": self.condition.method,
                "likelihood": self.condition.likelihood,
            }
        else:
            body["threshold"] = {"op": self.condition.op, "value": self.condition.value}
        body["for"] = _duration_text(self.for_ms)
        body["keep_firing_for"] = _duration_text(self.keep_firing_for_ms)
        body["labels"] = dict(self.labels)
        body["annotations"] = dict(self.annotations)
        body["source"] = self.source
        return body

    def describe(self) -> str:
        """A PromQL-like line for /api/v1/rules' `query`: what the rule evaluates."""
        selector = f"{self.metric}{self.match or ''}"
        if isinstance(self.condition, ThresholdCondition):
            return f"{selector} {self.condition.op} {self.condition.value:g}"
        c = self.condition
        return f"anomaly({selector}, method={c.method}, likelihood>{c.likelihood:g})"


def _duration_text(ms: int) -> str:
    return format_duration(timedelta(milliseconds=ms))


def parse_rule(name: str, body: object, source: Source = "api") -> Rule:
    """A rule from its JSON (or YAML) body; RuleError naming the field at fault."""
    if not isinstance(body, Mapping):
        raise RuleError("body: a JSON object describing the rule")
    unknown = sorted(set(body) - FIELDS - {"source"})
    if unknown:
        raise RuleError(f"{unknown[0]}: unknown field; use {', '.join(sorted(FIELDS))}")
    if "name" in body and body["name"] != name:
        raise RuleError(f"name: {body['name']!r} differs from the rule's name {name!r}")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RuleError(f"name: {name!r} must match {NAME_RE.pattern}")
    if body.get("expr") is not None:
        raise RuleError("expr: PromQL expressions are not supported yet; use metric and match")
    return Rule(
        name=name,
        metric=_metric(body.get("metric")),
        condition=_condition(body),
        match=_match(body.get("match")),
        for_ms=_duration(body, "for"),
        keep_firing_for_ms=_duration(body, "keep_firing_for"),
        labels=_labels(body.get("labels"), "labels"),
        annotations=_strings(body.get("annotations"), "annotations"),
        source=source,
    )


def _metric(value: object) -> str:
    if not isinstance(value, str) or not METRIC_RE.match(value) or len(value) > 255:
        raise RuleError("metric: required, a metric name such as cpu_usage")
    return value


def _match(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RuleError('match: a Prometheus selector such as {host=~"web.*"}')
    try:
        parse_match(value)
    except MatcherError as exc:
        raise RuleError(str(exc)) from None
    return value


def _condition(body: Mapping[str, Any]) -> Condition:
    anomaly, threshold = body.get("anomaly"), body.get("threshold")
    if (anomaly is None) == (threshold is None):
        raise RuleError("anomaly: give exactly one condition, anomaly or threshold")
    if anomaly is not None:
        spec = {} if anomaly is True else anomaly
        if not isinstance(spec, Mapping) or set(spec) - {"method", "likelihood"}:
            raise RuleError("anomaly: an object with method (auto) and likelihood")
        method = spec.get("method", "auto")
        if method != "auto":
            raise RuleError(f"anomaly.method: {method!r} is not supported; use auto")
        likelihood = spec.get("likelihood", DEFAULT_LIKELIHOOD)
        if not isinstance(likelihood, int | float) or not 0 < likelihood < 1:
            raise RuleError("anomaly.likelihood: a number between 0 and 1, e.g. 0.99999")
        return AnomalyCondition("auto", float(likelihood))
    if not isinstance(threshold, Mapping) or set(threshold) != {"op", "value"}:
        raise RuleError('threshold: an object with op (">" or "<") and value')
    op, value = threshold["op"], threshold["value"]
    if op not in (">", "<"):
        raise RuleError('threshold.op: ">" or "<"')
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RuleError("threshold.value: a finite number")
    return ThresholdCondition(op, float(value))


def _duration(body: Mapping[str, Any], key: str) -> int:
    raw = body.get(key)
    if raw is None:
        return 0
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise RuleError(f"{key}: {exc}") from None
    if value > MAX_FOR:
        raise RuleError(f"{key}: at most 7d")
    return round(value.total_seconds() * 1000)


def _strings(value: object, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise RuleError(f"{key}: an object of string values")
    if len(value) > 64 or any(len(v) > 4096 for v in value.values()):
        raise RuleError(f"{key}: at most 64 entries of at most 4,096 characters")
    return dict(value)


def _labels(value: object, key: str) -> dict[str, str]:
    labels = _strings(value, key)
    for name in labels:
        if not LABEL_NAME_RE.match(name) or name.startswith("__"):
            raise RuleError(f"{key}.{name}: not a valid label name")
    return labels


def load_file(text: str) -> list[Rule]:
    """The rules of a YAML rules file: `rules:` a list of rule objects with a `name` each."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(f"rules file: not valid YAML: {exc}") from None
    if document is None:
        return []
    if not isinstance(document, Mapping) or not isinstance(document.get("rules", []), list):
        raise RuleError("rules file: a mapping with a `rules:` list")
    rules, seen = [], set()
    for i, entry in enumerate(document.get("rules") or []):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str):
            raise RuleError(f"rules[{i}].name: required")
        if name in seen:
            raise RuleError(f"rules[{i}].name: {name!r} appears twice")
        seen.add(name)
        try:
            rules.append(parse_rule(name, entry, "file"))
        except RuleError as exc:
            raise RuleError(f"rules[{i}] ({name}): {exc}") from None
    return rules


def alert_labels(rule: Rule, series_labels: Mapping[str, str]) -> dict[str, str]:
    """Prometheus' rule: the series' labels, the rule's labels over them, and alertname."""
    return {**series_labels, **rule.labels, "alertname": rule.name}


_TEMPLATE = re.compile(
    r"\{\{\s*\$(labels\.([a-zA-Z_][a-zA-Z0-9_]*)|value|likelihood|metric)\s*\}\}"
)


def annotate(
    rule: Rule, labels: Mapping[str, str], value: float | None, score: float | None
) -> dict[str, str]:
    """Annotations with `{{ $labels.NAME }}`, `{{ $value }}`, `{{ $likelihood }}` and
    `{{ $metric }}` filled in (a small subset of Prometheus' templates)."""

    def fill(match: re.Match[str]) -> str:
        what = match.group(1)
        if what == "value":
            return "" if value is None else f"{value:g}"
        if what == "likelihood":
            return "" if score is None else f"{score:.6g}"
        if what == "metric":
            return rule.metric
        return labels.get(match.group(2), "")

    return {key: _TEMPLATE.sub(fill, text) for key, text in rule.annotations.items()}
