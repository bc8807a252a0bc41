"""Metric and label names the Prometheus way.

Our rules are Prometheus' own: metric names match `^[a-zA-Z_:][a-zA-Z0-9_:]*$`, label names
`^[a-zA-Z_][a-zA-Z0-9_]*$`. A name that a protocol allows but these rules do not (InfluxDB's
`cpu.usage`, `disk-io`, `1m_load`) is sanitized as Prometheus' own translators do:

- every character outside the allowed set becomes `_` (`cpu.usage` -> `cpu_usage`; a multi-byte
  character is one `_`), and `:` counts as outside for label names;
- a name that starts with a digit gets a leading `_` (`1m_load` -> `_1m_load`);
- an empty name stays empty, and the series is refused.

Two names that sanitize to the same label name make a duplicate label, and that series is
refused. No name is ever pasted into SQL text: names travel as bound parameters and as JSON.
"""

from __future__ import annotations

import functools
import re

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")


@functools.lru_cache(maxsize=65_536)
def sanitize_metric_name(name: str) -> str:
    if METRIC_NAME_RE.fullmatch(name):
        return name
    fixed = _METRIC_INVALID.sub("_", name)
    return f"_{fixed}" if fixed[:1].isdigit() else fixed


@functools.lru_cache(maxsize=65_536)
def sanitize_label_name(name: str) -> str:
    if LABEL_NAME_RE.fullmatch(name):
        return name
    fixed = _LABEL_INVALID.sub("_", name)
    return f"_{fixed}" if fixed[:1].isdigit() else fixed
