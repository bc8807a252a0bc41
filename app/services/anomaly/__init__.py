"""Anomaly detection, pure numpy: the classic range methods (`classic`), and the causal,
streaming detector behind `method=auto` (`detector`, built from `blocks`, `model`, `points`,
`events`, `calibration`). docs/anomaly-detection.md explains the methods and their reasoning."""

from app.services.anomaly.classic import (
    SeriesAnomalies,
    default_lookback_ms,
    mad,
    rolling_zscore,
    validate_threshold,
    zscore,
    zscore_from_buckets,
)

__all__ = [
    "SeriesAnomalies",
    "default_lookback_ms",
    "mad",
    "rolling_zscore",
    "validate_threshold",
    "zscore",
    "zscore_from_buckets",
]
