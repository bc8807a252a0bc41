"""The labelled evaluation of the causal detector: every anomaly kind over every base it applies
to (app.services.scenarios), scored event by event (app.services.anomaly.scoring).

    python -m app.services.anomaly.evaluation [--seeds 3] [--threshold 0.99999]

prints precision, recall and F1 per kind, and the false alarms per day on anomaly-free series.
The test suite runs a small version of it with floors (tests/services/anomaly/test_evaluation.py).
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.services import scenarios
from app.services.anomaly import detector
from app.services.anomaly.scoring import Tally, Window, score

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a Thursday
WARMUP_DAYS = {"daily": 5.0, "weekly": 22.0, "trend": 3.0, "noise": 3.0}


@dataclass(frozen=True)
class Plan:
    seeds: Sequence[int] = (0,)
    slots: int = 5
    interval_ms: int = 60_000
    threshold: float = detector.DEFAULT_LIKELIHOOD


@dataclass
class Report:
    per_kind: dict[str, Tally] = field(default_factory=dict)
    false_alarms: int = 0
    normal_days: float = 0.0
    points: int = 0
    seconds: float = 0.0

    @property
    def false_alarms_per_day(self) -> float:
        return self.false_alarms / self.normal_days if self.normal_days else 0.0

    def table(self) -> str:
        lines = ["kind              labels  found  events  precision  recall     F1"]
        total = Tally()
        for kind, tally in self.per_kind.items():
            total.add(tally)
            lines.append(_row(kind, tally))
        lines.append(_row("all", total))
        lines.append(
            f"false alarms on anomaly-free series: {self.false_alarms} in"
            f" {self.normal_days:g} days ({self.false_alarms_per_day:.3f} per day)"
        )
        lines.append(f"{self.points} points judged in {self.seconds:.2f} s")
        return "\n".join(lines)


def _row(kind: str, t: Tally) -> str:
    return (
        f"{kind:<17} {t.labels:>6} {t.found:>6} {t.events:>7}"
        f" {t.precision:>10.3f} {t.recall:>7.3f} {t.f1:>6.3f}"
    )


def tolerance(interval_ms: int) -> tuple[int, int]:
    """How far before and after a label window a detection still counts: one interval before;
    after, three blocks (a level shift is confirmed after two) or ten intervals."""
    block = detector.block_width(interval_ms)
    return interval_ms, max(3 * block, 10 * interval_ms)


def run(plan: Plan) -> Report:
    report = Report()
    started = time.perf_counter()
    for kind in scenarios.KINDS:
        tally = Tally()
        for base in scenarios.BASES:
            if kind in scenarios.SEASONAL_ONLY and base not in ("daily", "weekly"):
                continue
            for seed in plan.seeds:
                tally.add(_evaluate(base, kind, seed, plan, report))
        report.per_kind[kind] = tally
    for base in scenarios.BASES:
        for seed in plan.seeds:
            normal = _evaluate(base, None, seed, plan, report)
            report.false_alarms += normal.events
            report.normal_days += plan.slots
    report.seconds = time.perf_counter() - started
    return report


def _evaluate(base: str, kind: str | None, seed: int, plan: Plan, report: Report) -> Tally:
    warmup = WARMUP_DAYS[base]
    series = scenarios.labelled_series(
        base,
        [kind] if kind else [],
        scenarios.grid(START_MS, warmup + plan.slots, plan.interval_ms),
        evaluate_from_ms=START_MS + round(warmup * scenarios.DAY_MS),
        seed=zlib.crc32(f"{base}/{kind}/{seed}".encode()),
    )
    result = detector.detect(
        series.ts_ms,
        series.values,
        block_ms=detector.block_width(plan.interval_ms),
        threshold=plan.threshold,
        judge_from_ms=series.evaluate_from_ms,
    )
    report.points += result.count
    before, after = tolerance(plan.interval_ms)
    return score(
        [Window(label.start_ms, label.end_ms) for label in series.labels],
        [Window(e.start_ms, e.end_ms) for e in result.events],
        evaluate_from_ms=series.evaluate_from_ms,
        before_ms=before,
        after_ms=after,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.services.anomaly.evaluation")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per kind and base (3)")
    parser.add_argument("--slots", type=int, default=5, help="anomalies per series (5)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--threshold", type=float, default=detector.DEFAULT_LIKELIHOOD)
    args = parser.parse_args(argv)
    plan = Plan(
        seeds=tuple(range(args.seeds)),
        slots=args.slots,
        interval_ms=round(args.interval * 1000),
        threshold=args.threshold,
    )
    print(run(plan).table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
