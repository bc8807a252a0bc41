"""Alert rules: parsing and validation (each error names its field), the rules file, labels and
annotation templates."""

from __future__ import annotations

from typing import Any

import pytest

from app.services.alerting import rules
from app.services.alerting.rules import AnomalyCondition, RuleError, ThresholdCondition


def test_an_anomaly_rule_round_trips() -> None:
    body = {
        "metric": "cpu_usage",
        "match": '{host=~"web.*"}',
        "anomaly": {"method": "auto", "likelihood": 0.9999},
        "for": "2m",
        "keep_firing_for": "30s",
        "labels": {"severity": "page"},
        "annotations": {"summary": "{{ $labels.host }}"},
    }
    rule = rules.parse_rule("cpu", body)
    assert rule.condition == AnomalyCondition("auto", 0.9999)
    assert (rule.for_ms, rule.keep_firing_for_ms) == (120_000, 30_000)
    assert [m.name for m in rule.matchers] == ["host"]
    again = rules.parse_rule("cpu", rule.to_json())
    assert again == rule
    assert rule.describe() == 'anomaly(cpu_usage{host=~"web.*"}, method=auto, likelihood>0.9999)'


def test_a_threshold_rule_and_defaults() -> None:
    rule = rules.parse_rule("hot", {"metric": "temp", "threshold": {"op": ">", "value": 90}})
    assert rule.condition == ThresholdCondition(">", 90.0)
    assert (rule.for_ms, rule.match, rule.labels) == (0, None, {})
    assert rule.describe() == "temp > 90"
    assert rules.parse_rule("a", {"metric": "m", "anomaly": {}}).condition.likelihood == 0.99999  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"threshold": {"op": ">", "value": 1}}, "metric"),
        ({"metric": "bad-name", "anomaly": {}}, "metric"),
        ({"metric": "m"}, "anomaly"),
        ({"metric": "m", "anomaly": {}, "threshold": {"op": ">", "value": 1}}, "anomaly"),
        ({"metric": "m", "anomaly": {"likelihood": 1.5}}, "anomaly.likelihood"),
        ({"metric": "m", "anomaly": {"method": "zscore"}}, "anomaly.method"),
        ({"metric": "m", "threshold": {"op": ">=", "value": 1}}, "threshold.op"),
        ({"metric": "m", "threshold": {"op": ">", "value": "x"}}, "threshold.value"),
        ({"metric": "m", "anomaly": {}, "for": "soon"}, "for"),
        ({"metric": "m", "anomaly": {}, "for": "30d"}, "for"),
        ({"metric": "m", "anomaly": {}, "match": "{host="}, "match"),
        ({"metric": "m", "anomaly": {}, "labels": {"bad-name": "x"}}, "labels.bad-name"),
        ({"metric": "m", "anomaly": {}, "annotations": {"a": 1}}, "annotations"),
        ({"metric": "m", "anomaly": {}, "colour": "red"}, "colour"),
        ({"metric": "m", "anomaly": {}, "expr": "rate(x[5m]) > 1"}, "expr"),
        ({"metric": "m", "anomaly": {}, "name": "other"}, "name"),
    ],
)
def test_bad_rules_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(RuleError) as caught:
        rules.parse_rule("r", body)
    assert str(caught.value).startswith(f"{field}:"), str(caught.value)


def test_bad_rule_names() -> None:
    for name in ("", "has space", "x" * 201, "1starts-with-digit"):
        with pytest.raises(RuleError, match="name"):
            rules.parse_rule(name, {"metric": "m", "anomaly": {}})


def test_the_rules_file() -> None:
    text = """
rules:
  - name: cpu_anomaly
    metric: cpu_usage
    anomaly: {likelihood: 0.9999}
    for: 1m
  - name: disk_full
    metric: disk_free
    threshold: {op: "<", value: 5}
"""
    loaded = rules.load_file(text)
    assert [(r.name, r.source) for r in loaded] == [("cpu_anomaly", "file"), ("disk_full", "file")]
    assert rules.load_file("") == []
    with pytest.raises(RuleError, match=r"rules\[1\] \(b\): metric"):
        rules.load_file(
            "rules:\n  - {name: a, metric: m, anomaly: {}}\n  - {name: b, anomaly: {}}\n"
        )
    with pytest.raises(RuleError, match="appears twice"):
        rules.load_file(
            "rules:\n  - {name: a, metric: m, anomaly: {}}\n  - {name: a, metric: m, anomaly: {}}\n"
        )
    with pytest.raises(RuleError, match="not valid YAML"):
        rules.load_file("rules: [")


def test_alert_labels_and_annotations() -> None:
    rule = rules.parse_rule(
        "cpu",
        {
            "metric": "cpu_usage",
            "anomaly": {},
            "labels": {"severity": "page", "host": "overridden"},
            "annotations": {
                "summary": "{{ $metric }} on {{$labels.host}}: {{ $value }}"
                " ({{ $likelihood }}) {{ $labels.none }}"
            },
        },
    )
    labels = rules.alert_labels(rule, {"host": "web1", "region": "eu"})
    assert labels == {"host": "overridden", "region": "eu", "severity": "page", "alertname": "cpu"}
    text = rules.annotate(rule, {"host": "web1"}, 97.5, 0.999999)["summary"]
    assert text == "cpu_usage on web1: 97.5 (0.999999) "
