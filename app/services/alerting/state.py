"""The alert state machine of one rule and one series, as Prometheus runs it (pure): pending
when the condition starts to hold, firing once it has held for `for`, resolved at the first point
at which it no longer holds (after `keep_firing_for`). A pending alert whose condition stops is
dropped without a notification. Runs already consumed (by their end) are skipped, so every
point is judged once however often the job runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from app.services.alerting.conditions import Run
from app.services.alerting.rules import Rule

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"


@dataclass(frozen=True)
class AlertState:
    state: str = INACTIVE
    active_at: int | None = None
    fired_at: int | None = None
    resolved_at: int | None = None
    run_end: int | None = None  # where the condition last held
    open: bool = False
    consumed_until: int = -(2**62)  # the latest run end already taken into account
    value: float | None = None
    score: float | None = None

    @property
    def active(self) -> bool:
        return self.state in (PENDING, FIRING)


@dataclass(frozen=True)
class Transition:
    state: str  # pending, firing, resolved, or inactive (a pending alert dropped)
    at_ms: int
    value: float | None
    score: float | None
    fired_at: int | None = None  # for a resolution: when the alert had fired


def advance(
    state: AlertState, runs: Sequence[Run], point_ts: np.ndarray, rule: Rule
) -> tuple[AlertState, list[Transition]]:
    """The state after the new runs and the points judged with them (ascending timestamps,
    possibly ending with `now` for a series that went stale)."""
    machine = _Machine(state, rule, point_ts)
    for run in sorted(runs, key=lambda r: (r.start_ms, r.end_ms)):
        if run.end_ms <= machine.s.consumed_until and not run.open and not machine.s.open:
            continue  # taken into account before (an open one may since have closed)
        machine.take(run)
    s = machine.s
    later = point_ts[point_ts > (s.run_end if s.run_end is not None else point_ts.max(initial=0))]
    if s.open and not any(r.open for r in runs) and later.size:
        machine.s = replace(s, open=False)  # points came after it and none holds: it ended
    machine.settle()
    return machine.s, machine.out


class _Machine:
    def __init__(self, state: AlertState, rule: Rule, point_ts: np.ndarray) -> None:
        self.s, self.rule, self.points = state, rule, point_ts
        self.out: list[Transition] = []

    def take(self, run: Run) -> None:
        s = self.s
        if (
            s.active
            and not s.open
            and s.run_end is not None
            and run.start_ms > s.run_end + self.rule.keep_firing_for_ms
        ):
            self._close_after(s.run_end, run.start_ms)
        s = self.s
        if not s.active:
            s = replace(s, state=PENDING, active_at=run.start_ms, fired_at=None, run_end=run.end_ms)
            self.out.append(Transition(PENDING, run.start_ms, run.value, run.score))
        end = max(s.run_end or run.end_ms, run.end_ms)
        self.s = replace(
            s,
            run_end=end,
            open=run.open,
            consumed_until=max(s.consumed_until, run.end_ms),
            value=run.value,
            score=run.score,
        )
        self._maybe_fire()

    def _maybe_fire(self) -> None:
        s = self.s
        if s.state != PENDING or s.active_at is None or s.run_end is None:
            return
        due = s.active_at + self.rule.for_ms
        if s.run_end >= due:
            self.s = replace(s, state=FIRING, fired_at=due)
            self.out.append(Transition(FIRING, due, s.value, s.score, due))

    def settle(self) -> None:
        """Close the alert if a later point shows the condition no longer holds."""
        s = self.s
        if s.active and not s.open and s.run_end is not None:
            self._close_after(s.run_end, None)

    def _close_after(self, run_end: int, before: int | None) -> None:
        earliest = run_end + self.rule.keep_firing_for_ms
        later = self.points[(self.points > run_end) & (self.points >= earliest)]
        if before is not None:
            later = later[later <= before]
            if later.size == 0:  # no point in between: the next run itself closes it
                later = np.array([max(earliest, run_end + 1)])
        if later.size == 0:
            return
        at = int(later[0])
        s = self.s
        if s.state == FIRING:
            self.out.append(Transition(RESOLVED, at, s.value, s.score, s.fired_at))
        else:
            self.out.append(Transition(INACTIVE, at, s.value, s.score))
        resolved = at if s.state == FIRING else s.resolved_at
        self.s = replace(s, state=INACTIVE, active_at=None, resolved_at=resolved, open=False)
