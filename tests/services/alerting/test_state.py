"""The alert state machine, table-driven: pending, firing after `for`, resolved at the first point
the condition no longer holds, keep_firing_for, and runs judged once."""

from __future__ import annotations

import numpy as np
import pytest

from app.services.alerting import conditions
from app.services.alerting.conditions import Run
from app.services.alerting.rules import ThresholdCondition, parse_rule
from app.services.alerting.state import AlertState, advance

S = 1000  # ms


def rule(for_s: int = 0, keep_s: int = 0):  # type: ignore[no-untyped-def]
    body = {"metric": "m", "threshold": {"op": ">", "value": 1}, "for": f"{for_s}s"}
    body["keep_firing_for"] = f"{keep_s}s"
    return parse_rule("r", body)


def run(start: int, end: int, open_: bool = False) -> Run:
    return Run(start * S, end * S, open_, 5.0, None)


def points(*seconds: int) -> np.ndarray:
    return np.array([s * S for s in seconds], dtype=np.int64)


def states(moves: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(m.state, m.at_ms // S) for m in moves]


@pytest.mark.parametrize(
    ("for_s", "runs", "pts", "expected", "final"),
    [
        # a spike with for 0: fires and resolves at the next point
        (
            0,
            [run(10, 10)],
            points(10, 20),
            [("pending", 10), ("firing", 10), ("resolved", 20)],
            "inactive",
        ),
        # still holding at the latest point: stays firing
        (0, [run(10, 30, True)], points(10, 20, 30), [("pending", 10), ("firing", 10)], "firing"),
        # for 60 s: fires once the condition has held that long
        (
            60,
            [run(10, 80, True)],
            points(*range(10, 81, 10)),
            [("pending", 10), ("firing", 70)],
            "firing",
        ),
        # for 60 s but only 30 s: dropped, never fired (no resolution either)
        (
            60,
            [run(10, 40)],
            points(10, 20, 30, 40, 50),
            [("pending", 10), ("inactive", 50)],
            "inactive",
        ),
        # two separate runs: two cycles
        (
            0,
            [run(10, 10), run(50, 50)],
            points(10, 20, 50, 60),
            [
                ("pending", 10),
                ("firing", 10),
                ("resolved", 20),
                ("pending", 50),
                ("firing", 50),
                ("resolved", 60),
            ],
            "inactive",
        ),
        # no point after the run yet: neither resolved nor dropped
        (0, [run(10, 10)], points(10), [("pending", 10), ("firing", 10)], "firing"),
    ],
)
def test_transitions(
    for_s: int, runs: list[Run], pts: np.ndarray, expected: list[tuple[str, int]], final: str
) -> None:
    state, moves = advance(AlertState(), runs, pts, rule(for_s))
    assert states(moves) == expected
    assert state.state == final


def test_keep_firing_for_bridges_short_gaps() -> None:
    r = rule(keep_s=60)
    _, moves = advance(AlertState(), [run(10, 10), run(40, 40)], points(10, 20, 40, 50, 200), r)
    assert states(moves) == [("pending", 10), ("firing", 10), ("resolved", 200)]


def test_a_run_is_judged_once_across_evaluations() -> None:
    r = rule(for_s=30)
    first, moves = advance(AlertState(), [run(10, 30, True)], points(10, 20, 30), r)
    assert states(moves) == [("pending", 10)]
    # The next evaluation sees the same run, extended; it is not a new alert.
    second, moves = advance(first, [run(10, 60, True)], points(40, 50, 60), r)
    assert states(moves) == [("firing", 40)]
    third, moves = advance(second, [run(10, 60)], points(70), r)
    assert states(moves) == [("resolved", 70)]
    fourth, moves = advance(third, [run(10, 60)], points(80), r)  # seen already: nothing
    assert moves == [] and fourth == third


def test_threshold_runs() -> None:
    ts = points(0, 10, 20, 30, 40, 50)
    values = np.array([0, 5, 6, 0, 7, 8], dtype=np.float64)
    runs = conditions.threshold_runs(ts, values, ThresholdCondition(">", 1), after_ms=-1)
    assert [(r.start_ms // S, r.end_ms // S, r.open, r.value) for r in runs] == [
        (10, 20, False, 6.0),
        (40, 50, True, 8.0),
    ]
    assert (
        conditions.threshold_runs(ts, values, ThresholdCondition(">", 1), after_ms=30 * S)[
            0
        ].start_ms
        == 40 * S
    )
    below = conditions.threshold_runs(ts, values, ThresholdCondition("<", 1), after_ms=-1)
    assert [(r.start_ms // S, r.end_ms // S) for r in below] == [(0, 0), (30, 30)]
