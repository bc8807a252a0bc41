"""Numbers as Prometheus writes them.

Sample values are strings formatted like Go's `strconv.FormatFloat(v, 'f', -1, 64)`, switching
to the exponent form below 1e-6 and from 1e21 on (Prometheus' jsonutil.MarshalFloat), with
`NaN`, `+Inf` and `-Inf`. Python's `repr` gives the same shortest digits; only the layout
differs (it switches to exponents from 1e16 and below 1e-4, and writes `5.0` for 5), so most
values are formatted by `repr` and a few fixed up. Timestamps are seconds with up to three
decimals.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def go_float_f(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64): shortest digits, never an exponent."""
    text = repr(value)
    if text in _SPECIAL:
        return _SPECIAL[text]
    if "e" in text:
        return format(Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def go_float_json(value: float) -> str:
    """Prometheus' MarshalFloat (without the quotes)."""
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21) and magnitude == magnitude:
        if magnitude == float("inf"):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)  # Python's exponent form: 1e-07, 1.5e+21, as Go's 'e' with -1
    return go_float_f(value)


def format_values(values: np.ndarray) -> list[str]:
    """`go_float_json` for an array, the common cases without per-value Python branches."""
    if values.size == 0:
        return []
    out = list(map(repr, values.tolist()))
    magnitude = np.abs(values)
    with np.errstate(invalid="ignore"):
        negative_zero = (values == 0) & np.signbit(values)
        whole = (values == np.floor(values)) & (magnitude < 1e16) & ~negative_zero
        small = (magnitude < 1e-4) & (magnitude != 0)
        odd = ~whole & (~np.isfinite(values) | (magnitude >= 1e16) | small | negative_zero)
    for i in np.flatnonzero(whole).tolist():
        out[i] = out[i][:-2]  # "5.0" -> "5"
    for i in np.flatnonzero(odd).tolist():
        out[i] = go_float_json(float(values[i]))
    return out


def format_timestamps(ms: np.ndarray) -> list[float | int]:
    """Seconds as JSON numbers: whole seconds as integers, else with their milliseconds."""
    whole = ms % 1000 == 0
    out: list[float | int] = (ms / 1000).tolist()
    for i in np.flatnonzero(whole).tolist():
        out[i] = int(ms[i]) // 1000
    return out


def format_timestamp(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000
