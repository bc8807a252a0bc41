"""What a protocol request did besides storing samples: what it refused and what it ignored."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from app.model import SampleBatch
from app.timeutil import MAX_MS, MIN_MS, format_ms

NAMED_OFFENDERS = 5  # refusals spelled out in an answer; the rest are counted


@dataclass
class WriteReport:
    """Refusals (series, lines or samples that break a rule; the rest of the request is stored)
    and things ignored on purpose (exemplars, native histograms, string fields), counted."""

    refused: int = 0  # series, lines or samples refused
    refused_samples: int = 0
    messages: list[str] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    unit: str = "series"  # what `refused` counts, for the answer
    influx: bool = False  # answer as InfluxDB does: "partial write: ... dropped=N"

    def refuse(self, message: str, samples: int = 1) -> None:
        self.refused += 1
        self.refused_samples += samples
        if len(self.messages) < NAMED_OFFENDERS:
            self.messages.append(message)

    def ignore(self, what: str, count: int = 1) -> None:
        if count:
            self.ignored[what] += count

    def summary(self) -> str:
        """The first offenders, and how many there were. Line refusals read as InfluxDB's
        ("partial write: ... dropped=N", what Telegraf looks for)."""
        more = self.refused - len(self.messages)
        text = "; ".join(self.messages)
        if more > 0:
            text += f"; and {more} more"
        if self.influx:
            return f"partial write: {text}; dropped={self.refused}"
        return f"{self.refused} {self.unit} refused ({self.refused_samples} samples): {text}"


def describe(batch: SampleBatch, slot: int) -> str:
    key = batch.keys[slot]
    return f"{key.metric}{key.labels_json.decode()}"


def drop_out_of_bounds(batch: SampleBatch, max_ms: int, report: WriteReport) -> SampleBatch:
    """Leave out samples more than MAX_FUTURE_SKEW ahead or outside the years 1 to 9999,
    refusing them by series."""
    bad = (batch.ts > max_ms) | (batch.ts < MIN_MS) | (batch.ts > MAX_MS)
    if not bad.any():
        return batch
    bad_slots = np.unique(batch.series_index[bad])
    counts = np.bincount(batch.series_index[bad], minlength=len(batch.keys))
    for slot in bad_slots.tolist():
        first = int(batch.ts[bad & (batch.series_index == slot)][0])
        reason = "more than MAX_FUTURE_SKEW ahead of server time" if first > 0 else "out of range"
        report.refuse(
            f"series {describe(batch, slot)}: timestamp {first} ms ({_when(first)}) is {reason}",
            int(counts[slot]),
        )
    keep = ~bad
    return SampleBatch(batch.keys, batch.series_index[keep], batch.ts[keep], batch.values[keep])


def _when(ms: int) -> str:
    return format_ms(ms) if MIN_MS <= ms <= MAX_MS else "outside the years 1 to 9999"
