"""Numbers as Prometheus writes them.

Sample values are strings formatted like Go's `strconv.FormatFloat(v, 'f', -1, 64)`, switching
to the exponent form below 1e-6 and from 1e21 on (Prometheus' jsonutil.MarshalFloat), with
`NaN`, `+Inf` and `-Inf`. Python's `repr` gives the same shortest digits; only the layout
differs (it switches to exponents from 1e16 and below 1e-4, and writes `5.0` for 5), so most
values are formatted in bulk (integers by `str`, the rest by orjson, whose digits are repr's)
and a few one by one. Timestamps are seconds with up to three
decimals.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import orjson

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
    """`go_float_json` for an array: integers through int's str, the rest through repr, and
    only the few that Go writes differently (exponents, -0, NaN, infinities) one by one."""
    if values.size == 0:
        return []
    magnitude = np.abs(values)
    with np.errstate(invalid="ignore"):
        negative_zero = (values == 0) & np.signbit(values)
        whole = (values == np.floor(values)) & (magnitude < 1e16) & ~negative_zero
        small = (magnitude < 1e-4) & (magnitude != 0)
        odd = ~whole & (~np.isfinite(values) | (magnitude >= 1e16) | small | negative_zero)
    out = np.empty(values.size, dtype=object)
    if whole.any():
        out[whole] = list(map(str, values[whole].astype(np.int64).tolist()))
    rest = ~whole & ~odd
    if rest.any():
        # orjson writes these (no exponent between 1e-4 and 1e16) with repr's shortest digits.
        text = orjson.dumps(values[rest], option=orjson.OPT_SERIALIZE_NUMPY).decode()
        out[rest] = text[1:-1].split(",")
    for i in np.flatnonzero(odd).tolist():
        out[i] = go_float_json(float(values[i]))
    texts: list[str] = out.tolist()
    return texts


def format_timestamps(ms: np.ndarray) -> list[float | int]:
    """Seconds as JSON numbers: whole seconds as integers, else with their milliseconds."""
    whole = ms % 1000 == 0
    if whole.all():
        seconds: list[float | int] = (ms // 1000).tolist()
        return seconds
    out = np.empty(ms.size, dtype=object)
    out[whole] = (ms[whole] // 1000).tolist()
    out[~whole] = (ms[~whole] / 1000).tolist()
    stamps: list[float | int] = out.tolist()
    return stamps


def format_timestamp(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000
