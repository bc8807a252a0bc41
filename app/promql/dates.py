"""PromQL's date functions (`hour()`, `day_of_week()`, ...) on arrays of Unix seconds, UTC."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from app.timeutil import civil_from_days

DAY = 86_400


def _parts(
    seconds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(days since epoch, second of day, year, month, day) of truncated seconds."""
    whole = np.trunc(np.nan_to_num(seconds, nan=0, posinf=0, neginf=0)).astype(np.int64)
    days, second = np.divmod(whole, DAY)
    year, month, day = civil_from_days(days)
    return days, second, year, month, day


def _leap(year: np.ndarray) -> np.ndarray:
    leap: np.ndarray = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    return leap


_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_CUMULATIVE = np.concatenate([[0], np.cumsum(_MONTH_DAYS)[:-1]])


def _day_of_year(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    out: np.ndarray = _CUMULATIVE[month - 1] + day + ((month > 2) & _leap(year))
    return out


def _days_in_month(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    out: np.ndarray = _MONTH_DAYS[month - 1] + ((month == 2) & _leap(year))
    return out


DATE_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "year": lambda s: _parts(s)[2],
    "month": lambda s: _parts(s)[3],
    "day_of_month": lambda s: _parts(s)[4],
    "day_of_week": lambda s: (_parts(s)[0] + 4) % 7,  # 1970-01-01 was a Thursday
    "day_of_year": lambda s: _day_of_year(*_parts(s)[2:]),
    "days_in_month": lambda s: _days_in_month(*_parts(s)[2:4]),
    "hour": lambda s: _parts(s)[1] // 3600,
    "minute": lambda s: _parts(s)[1] % 3600 // 60,
}


def date_function(name: str, seconds: np.ndarray) -> np.ndarray:
    """The date part of each time; NaN for NaN or infinite input."""
    out = DATE_FUNCTIONS[name](seconds).astype(np.float64)
    return np.where(np.isfinite(seconds), out, np.nan)
