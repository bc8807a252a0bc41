"""From scores to probabilities: the anomaly likelihood and the tests behind it. Pure numpy.

The likelihood of a point is 1 - p, p being the probability of a deviation at least this large
under the series' normal behaviour: for a score z (a deviation in units of the expected spread),
p = erfc(|z| / (c * sqrt(2))), the two-sided tail of a normal distribution, with c >= 1 a
per-series heavy-tail factor (see `tail_factor`). A likelihood is comparable across series and
methods because it is a probability, not a raw score: 0.99999 means "one point in 100,000 of
normal data deviates this much".
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
SQRT2 = float(np.sqrt(2.0))
_CLIP = 38.0  # erfc(38) < 1e-600: beyond it every tail probability is 0 in float64
_ERFCC = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def erfc(x: npt.ArrayLike) -> FloatArray:
    """The complementary error function, vectorized, with a fractional error below 1.2e-7: the
    Chebyshev fit `erfcc` of Press et al., Numerical Recipes (2nd ed., section 6.2)."""
    arr = np.asarray(x, dtype=np.float64)
    z = np.minimum(np.abs(arr), _CLIP)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.full_like(t, _ERFCC[-1])
    for coefficient in _ERFCC[-2::-1]:  # Horner's scheme
        poly = coefficient + t * poly
    ans = t * np.exp(-z * z + poly)
    return np.where(arr >= 0, ans, 2.0 - ans)


def two_sided_p(z: npt.ArrayLike, factor: npt.ArrayLike = 1.0) -> FloatArray:
    """P(|Z| >= |z| / factor) for a standard normal Z: the tail of a deviation z scaled down by
    the heavy-tail factor."""
    scaled = np.abs(np.asarray(z, dtype=np.float64)) / np.asarray(factor, dtype=np.float64)
    return erfc(scaled / SQRT2)


def student_to_normal(t: npt.ArrayLike, dof: float) -> FloatArray:
    """A Student-t score with `dof` degrees of freedom as the normal score of (nearly) the same
    tail: t (1 - 1 / (4 dof)) / sqrt(1 + t^2 / (2 dof)) (Abramowitz and Stegun 26.7.8). A
    deviation divided by an estimated spread follows t rather than the normal distribution; its
    extreme tail is markedly heavier."""
    arr = np.asarray(t, dtype=np.float64)
    with np.errstate(over="ignore"):
        return arr * (1.0 - 0.25 / dof) / np.sqrt(1.0 + np.minimum(arr * arr, 1e300) / (2.0 * dof))


def upper_p(z: npt.ArrayLike) -> FloatArray:
    """P(Z >= z) for a standard normal Z (one-sided)."""
    return 0.5 * erfc(np.asarray(z, dtype=np.float64) / SQRT2)


def likelihood(p: npt.ArrayLike) -> FloatArray:
    """1 - p, clipped into [0, 1]."""
    return np.clip(1.0 - np.asarray(p, dtype=np.float64), 0.0, 1.0)


def gaussian_likelihood(z: npt.ArrayLike) -> FloatArray:
    """The likelihood of a plain z-score (the classic methods): a normal two-sided tail."""
    return likelihood(two_sided_p(z))


TIE_TOLERANCE = 1e-9  # probabilities within this relative distance of alpha count as equal


def below(p: npt.ArrayLike, alpha: float) -> npt.NDArray[np.bool_]:
    """p strictly below alpha (likelihood strictly above 1 - alpha), ties within rounding not."""
    return np.asarray(p, dtype=np.float64) < alpha * (1.0 - TIE_TOLERANCE)


def z_for_p(p: float) -> float:
    """The |z| whose two-sided normal tail is p (bisection; p in (0, 1))."""
    lo, hi = 0.0, _CLIP * SQRT2
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if float(erfc(mid / SQRT2)) > p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


_MAX_QUANTILES: dict[tuple[float, float], float] = {}  # (n, q) -> quantile, computed once


def max_abs_quantile(n: npt.ArrayLike, q: float) -> FloatArray:
    """The q-quantile of max(|Z_1|, ..., |Z_n|) for n independent standard normals: the m with
    (1 - erfc(m / sqrt 2)) ** n = q. The reference a block's largest deviation is compared with
    (the heavy-tail factor). Vectorized bisection over the distinct n not seen before."""
    counts = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    distinct, inverse = np.unique(counts, return_inverse=True)
    missing = np.array([c for c in distinct.tolist() if (c, q) not in _MAX_QUANTILES])
    if missing.size:
        target = 1.0 - q ** (1.0 / missing)  # the per-sample two-sided tail at the quantile
        lo = np.zeros_like(missing)
        hi = np.full_like(missing, _CLIP * SQRT2)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = erfc(mid / SQRT2) > target
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        for count, value in zip(missing.tolist(), (0.5 * (lo + hi)).tolist(), strict=True):
            _MAX_QUANTILES[(count, q)] = value
    values = np.array([_MAX_QUANTILES[(c, q)] for c in distinct.tolist()])
    found: FloatArray = values[inverse].reshape(counts.shape)
    return found


def wilson_hilferty_z(ratio: npt.ArrayLike, dof: npt.ArrayLike) -> FloatArray:
    """A variance ratio s^2 / sigma^2 with `dof` degrees of freedom as a standard normal score:
    (k * ratio) follows chi-square(k), and the cube root of chi-square / k is close to normal
    with mean 1 - 2 / (9k) and variance 2 / (9k) (Wilson and Hilferty, 1931)."""
    k = np.maximum(np.asarray(dof, dtype=np.float64), 1.0)
    r = np.maximum(np.asarray(ratio, dtype=np.float64), 0.0)
    spread = np.sqrt(2.0 / (9.0 * k))
    return (np.cbrt(r) - (1.0 - 2.0 / (9.0 * k))) / spread
