"""Event-level scoring of detected events against labelled anomaly windows.

- A label counts as found when a detected event overlaps its window widened by `before_ms` on
  the left and `after_ms` on the right (a detector may only know after some delay, as a level
  shift is confirmed after two blocks or a gap when the data returns).
- A detected event is a true positive when it overlaps some widened label window, else a false
  positive. Events and labels before `evaluate_from_ms` (the warm-up) are ignored.
- precision = true-positive events / events, recall = labels found / labels,
  F1 = 2 * precision * recall / (precision + recall). With no events, precision is 1 (nothing
  was claimed); with no labels, recall is 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    start_ms: int
    end_ms: int


@dataclass
class Tally:
    labels: int = 0
    found: int = 0
    events: int = 0
    true_events: int = 0

    def add(self, other: Tally) -> None:
        self.labels += other.labels
        self.found += other.found
        self.events += other.events
        self.true_events += other.true_events

    @property
    def precision(self) -> float:
        return self.true_events / self.events if self.events else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.labels if self.labels else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score(
    labels: Sequence[Window],
    events: Iterable[Window],
    *,
    evaluate_from_ms: int,
    before_ms: int,
    after_ms: int,
) -> Tally:
    """Count labels found and events that are true positives (see the module doc)."""
    windows = [
        (w.start_ms - before_ms, w.end_ms + after_ms)
        for w in labels
        if w.end_ms >= evaluate_from_ms
    ]
    detected = [e for e in events if e.end_ms >= evaluate_from_ms]
    found = sum(
        1 for lo, hi in windows if any(e.start_ms <= hi and e.end_ms >= lo for e in detected)
    )
    true_events = sum(
        1 for e in detected if any(e.start_ms <= hi and e.end_ms >= lo for lo, hi in windows)
    )
    return Tally(len(windows), found, len(detected), true_events)
