"""Point verdicts of the causal detector: each point against the prediction of its block, which
only earlier blocks made; and gaps (missing data) before points. Pure and vectorized."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.services.anomaly import calibration
from app.services.anomaly.model import BlockModel

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# A gap is judged by how many expected samples it lacks, each missing with at least this chance:
# scrapes fail now and then, so a few missing samples in a row are no anomaly.
MIN_MISSING_RATE = 0.1
MIN_MISSING_SAMPLES = 2.0


@dataclass(frozen=True, eq=False)
class PointVerdicts:
    position: IntArray  # block position of each point in the model
    judged: BoolArray
    expected: FloatArray
    zscore: FloatArray  # NaN where not judged
    p: FloatArray  # tail probability of the deviation; 1 where not judged
    gap_p: FloatArray  # probability of the gap before the point; 1 where not judged or none


def judge(ts_ms: IntArray, values: FloatArray, model: BlockModel) -> PointVerdicts:
    """Verdicts for points whose blocks are in `model` (ascending, finite values)."""
    index = model.blocks.index
    position = np.searchsorted(index, ts_ms // model.blocks.width_ms).astype(np.int64)
    if position.size and (
        position.max() >= index.size or np.any(index[position] != ts_ms // model.blocks.width_ms)
    ):
        raise ValueError("every point's block must be in the model")
    judged = model.judged[position]
    expected = model.expected[position]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (values - expected) / model.sigma[position]
    z = np.where(judged, z, np.nan)
    # The heavy-tail factor first, then the estimated spread's t tail (both widen the tails).
    scaled = np.nan_to_num(z) / model.tail[position]
    t = calibration.student_to_normal(scaled, model.tuning.spread_dof)
    p = np.where(judged, calibration.two_sided_p(t), 1.0)
    return PointVerdicts(position, judged, expected, z, p, _gap_p(ts_ms, position, judged, model))


def _gap_p(ts_ms: IntArray, position: IntArray, judged: BoolArray, model: BlockModel) -> FloatArray:
    out = np.ones(ts_ms.size)
    if ts_ms.size < 2:
        return out
    gap = np.diff(ts_ms).astype(np.float64)
    pos = position[1:]
    out[1:] = gap_probability(gap, model.interval[pos], model.missing_rate[pos])
    out[~judged] = 1.0
    return out


def gap_probability(
    gap_ms: npt.ArrayLike, interval_ms: npt.ArrayLike, rate: npt.ArrayLike
) -> FloatArray:
    """The chance of losing (gap / interval - 1) expected samples in a row, each lost with the
    recent missing rate (at least MIN_MISSING_RATE); 1 for fewer than MIN_MISSING_SAMPLES."""
    gap = np.asarray(gap_ms, dtype=np.float64)
    interval = np.asarray(interval_ms, dtype=np.float64)
    q = np.maximum(np.nan_to_num(np.asarray(rate, dtype=np.float64), nan=1.0), MIN_MISSING_RATE)
    q = np.minimum(q, 1.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        missing = gap / interval - 1.0
        p = np.exp(missing * np.log(q))
    return np.where(np.isfinite(missing) & (missing >= MIN_MISSING_SAMPLES), p, 1.0)


def trailing_gap_p(model: BlockModel, last_ts_ms: int, now_ms: int) -> float:
    """The probability of the silence since the last point, seen at `now_ms`."""
    if len(model.blocks) == 0:
        return 1.0
    position = min(
        int(np.searchsorted(model.blocks.index, last_ts_ms // model.blocks.width_ms)),
        len(model.blocks) - 1,
    )
    if not model.judged[position]:
        return 1.0
    p = gap_probability(
        [now_ms - last_ts_ms], [model.interval[position]], [model.missing_rate[position]]
    )
    return float(p[0])
