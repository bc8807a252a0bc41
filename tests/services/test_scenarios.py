"""Labelled synthetic series: every kind planted where its label says, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from app.services import scenarios

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a Thursday
GRID = scenarios.grid(T0, 4.0, 60_000)
FROM = T0 + 2 * scenarios.DAY_MS


def series(kind: str | None, base: str = "daily", seed: int = 1) -> scenarios.LabelledSeries:
    return scenarios.labelled_series(
        base,
        [kind] if kind else [],
        GRID,
        evaluate_from_ms=FROM,
        slot_ms=scenarios.DAY_MS // 2,
        seed=seed,
    )


def test_the_same_seed_gives_the_same_series() -> None:
    a, b, c = series("spike"), series("spike"), series("spike", seed=2)
    assert np.array_equal(a.values, b.values) and a.labels == b.labels
    assert not np.array_equal(a.values, c.values)


def test_one_labelled_anomaly_per_slot_after_the_warm_up() -> None:
    s = series("dip")
    assert len(s.labels) == 4
    assert all(label.start_ms >= FROM for label in s.labels)
    assert [label.kind for label in s.labels] == ["dip"] * 4


def test_kinds_alternate() -> None:
    s = scenarios.labelled_series(
        "noise", ["spike", "flatline"], GRID, evaluate_from_ms=FROM, slot_ms=scenarios.DAY_MS // 2
    )
    assert [label.kind for label in s.labels] == ["spike", "flatline", "spike", "flatline"]


@pytest.mark.parametrize("kind", scenarios.KINDS)
def test_each_kind_changes_the_data_inside_its_window_only(kind: str) -> None:
    planted, clean = series(kind), series(None)
    window = np.zeros(GRID.size, dtype=bool)
    for label in planted.labels:
        window |= (label.start_ms <= GRID) & (label.end_ms >= GRID)
    if kind == "level_shift":  # for good: from the label on
        window |= planted.labels[0].start_ms <= GRID
    outside = np.isin(GRID, planted.ts_ms) & ~window
    assert np.array_equal(
        planted.values[np.isin(planted.ts_ms, GRID[outside])],
        clean.values[np.isin(clean.ts_ms, GRID[outside])],
    )
    if kind == "missing":
        assert planted.ts_ms.size < GRID.size
        assert not np.isin(GRID[window], planted.ts_ms).any()
    elif kind == "flatline":
        label = planted.labels[0]
        held = planted.values[(planted.ts_ms >= label.start_ms) & (planted.ts_ms <= label.end_ms)]
        assert np.ptp(held) == 0 and held.size >= 60
    else:
        inside = np.isin(planted.ts_ms, GRID[window])
        assert not np.array_equal(planted.values[inside], clean.values[inside])


def test_seasonal_breaks_need_a_seasonal_base() -> None:
    with pytest.raises(ValueError, match="seasonal base"):
        series("seasonal_break", base="noise")
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        series("earthquake")


def test_weekly_base_is_lower_at_weekends() -> None:
    saturday = T0 + 2 * scenarios.DAY_MS + 14 * 3_600_000  # 2026-01-03, 14:00
    friday = saturday - scenarios.DAY_MS
    values = scenarios.base_signal("weekly", np.array([friday, saturday]), scenarios.Shape())
    assert values[0] - 100 > 3 * (values[1] - 100)
