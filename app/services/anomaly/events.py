"""Events: the detector's findings merged into incidents. Anomalous points close together, flagged
blocks (level deviation, variance change, flat line), confirmed level shifts and gaps become one
event each when they overlap or follow closely, with a start, an end, a peak and a score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.services.anomaly.calibration import below
from app.services.anomaly.model import BlockModel
from app.services.anomaly.points import PointVerdicts

IntArray = npt.NDArray[np.int64]

# Anomalous points with at most this many normal points between them are one event, and so are
# findings less than MERGE_BLOCKS blocks (or that many intervals) apart: one incident, one event.
MERGE_POINTS = 3
MERGE_BLOCKS = 3
LARGE_Z = 3.0
KINDS = ("spike", "dip", "deviation", "missing", "flatline", "variance_change", "level_shift")
PRIORITY = {kind: rank for rank, kind in enumerate(KINDS)}


@dataclass(frozen=True)
class Event:
    start_ms: int
    end_ms: int
    kind: str
    p: float  # the smallest tail probability among its findings
    peak: int  # index of the point with the largest |z| in it (or the point after a gap)
    points: int  # anomalous points in it


@dataclass
class _Part:
    start: int
    end: int
    kind: str
    p: float
    points: int = 0


def find(ts_ms: IntArray, verdicts: PointVerdicts, model: BlockModel, alpha: float) -> list[Event]:
    """Events over the given points, ascending by start."""
    if ts_ms.size == 0:
        return []
    parts = _point_parts(ts_ms, verdicts, alpha)
    parts += _block_parts(ts_ms, verdicts, model, alpha)
    parts += _gap_parts(ts_ms, verdicts, alpha)
    if not parts:
        return []
    parts.sort(key=lambda part: (part.start, part.end))
    merge_ms = max(_merge_distance(ts_ms), MERGE_BLOCKS * model.blocks.width_ms)
    merged: list[_Part] = [parts[0]]
    for part in parts[1:]:
        last = merged[-1]
        if part.start <= last.end + merge_ms:
            last.end = max(last.end, part.end)
            last.p = min(last.p, part.p)
            last.points += part.points
            if PRIORITY[part.kind] > PRIORITY[last.kind]:
                last.kind = part.kind
        else:
            merged.append(part)
    return [_finish(part, ts_ms, verdicts) for part in merged]


def _merge_distance(ts_ms: IntArray) -> int:
    if ts_ms.size < 2:
        return 0
    return int(np.median(np.diff(ts_ms))) * (MERGE_POINTS + 1)


def _point_parts(ts_ms: IntArray, verdicts: PointVerdicts, alpha: float) -> list[_Part]:
    flagged = np.flatnonzero(below(verdicts.p, alpha))
    if flagged.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(flagged) > MERGE_POINTS + 1) + 1
    parts = []
    for run in np.split(flagged, breaks):
        z = verdicts.zscore[run]
        peak = run[int(np.argmax(np.abs(z)))]
        kind = "spike" if verdicts.zscore[peak] > 0 else "dip"
        p = float(verdicts.p[run].min())
        parts.append(_Part(int(ts_ms[run[0]]), int(ts_ms[run[-1]]), kind, p, int(run.size)))
    return parts


def _block_parts(
    ts_ms: IntArray, verdicts: PointVerdicts, model: BlockModel, alpha: float
) -> list[_Part]:
    first_point = np.searchsorted(verdicts.position, np.arange(len(model.blocks)), side="left")
    last_point = np.searchsorted(verdicts.position, np.arange(len(model.blocks)), side="right") - 1

    def span(first_block: int, last_block: int) -> tuple[int, int] | None:
        lo, hi = int(first_point[first_block]), int(last_point[last_block])
        if hi < lo or hi < 0 or lo >= ts_ms.size:
            return None
        return int(ts_ms[lo]), int(ts_ms[hi])

    parts: list[_Part] = []
    in_shift = np.zeros(len(model.blocks), dtype=bool)
    for first, last in model.shifts:
        in_shift[first : last + 1] = True
        bounds = span(first, last)
        if bounds:
            bounds = _first_large(ts_ms, verdicts, bounds)
            p = float(model.level_p[first : last + 1].min())
            parts.append(_Part(*bounds, "level_shift", p))
    tests = (
        ("deviation", model.level_p),
        ("variance_change", model.var_p),
        ("flatline", model.flat_p),
    )
    for kind, p_values in tests:
        for q in np.flatnonzero(below(p_values, alpha)):
            if kind == "deviation" and in_shift[q]:
                continue
            start_block = int(q)
            if kind == "flatline":
                start_block = int(model.flat_start[q])
            elif kind == "variance_change":
                start_block = int(model.var_start[q])
            bounds = span(start_block, int(q))
            if bounds and kind in ("variance_change", "deviation"):
                bounds = _first_large(ts_ms, verdicts, bounds)
            if bounds:
                parts.append(_Part(*bounds, kind, float(p_values[q])))
    return parts


def _first_large(
    ts_ms: IntArray, verdicts: PointVerdicts, bounds: tuple[int, int]
) -> tuple[int, int]:
    """A block-level finding (variance change, deviation, level shift) from its first to its last
    point 3 sigmas or more off: the block's bounds are only where the evidence was collected."""
    lo = int(np.searchsorted(ts_ms, bounds[0], side="left"))
    hi = int(np.searchsorted(ts_ms, bounds[1], side="right"))
    large = np.flatnonzero(np.abs(np.nan_to_num(verdicts.zscore[lo:hi])) >= LARGE_Z)
    if large.size == 0:
        return bounds
    return int(ts_ms[lo + int(large[0])]), int(ts_ms[lo + int(large[-1])])


def _gap_parts(ts_ms: IntArray, verdicts: PointVerdicts, alpha: float) -> list[_Part]:
    return [
        _Part(int(ts_ms[i - 1]), int(ts_ms[i]), "missing", float(verdicts.gap_p[i]))
        for i in np.flatnonzero(below(verdicts.gap_p, alpha))
        if i > 0
    ]


def _finish(part: _Part, ts_ms: IntArray, verdicts: PointVerdicts) -> Event:
    lo = int(np.searchsorted(ts_ms, part.start, side="left"))
    hi = int(np.searchsorted(ts_ms, part.end, side="right"))
    z = np.abs(np.nan_to_num(verdicts.zscore[lo:hi]))
    peak = lo + int(np.argmax(z)) if hi > lo else min(lo, ts_ms.size - 1)
    if part.kind == "missing" and (hi - lo <= 2 or not np.any(z)):
        peak = hi - 1
    return Event(part.start, part.end, part.kind, part.p, peak, part.points)
