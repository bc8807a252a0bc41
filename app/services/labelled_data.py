"""The data generator's labelled anomalies (`--anomalies`): the command-line side of
app.services.scenarios. Kept apart from data_generator.py, which owns the other patterns.

    python -m app.services.data_generator --metric cpu_usage --pattern daily \
        --duration 604800 --interval 60 --anomalies spike,level_shift,flatline \
        --labels-out labels.jsonl --base-url http://localhost:8000

writes a week of 1-minute data with a daily curve; after --warmup (default: 2 days, at most half
the duration) one anomaly every --anomaly-every seconds (default 6 h), of the kinds in turn; and
one JSON line per planted anomaly to --labels-out: series labels, kind, start and end (RFC 3339).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.services import scenarios

# --pattern -> the scenario base; the other patterns cannot carry labelled anomalies.
BASES = {"daily": "daily", "weekly": "weekly", "linear_trend": "trend", "noise": "noise"}
SEASONAL_PATTERNS = ("daily", "weekly")
DEFAULT_WARMUP_S = 2 * 86_400.0
DEFAULT_EVERY_S = 6 * 3_600.0


def add_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--anomalies", type=_kinds, default=[], metavar="KIND[,KIND...]",
        help="plant labelled anomalies of these kinds in turn, one per --anomaly-every: "
        f"{', '.join(scenarios.KINDS)} (patterns {', '.join(BASES)})")  # fmt: skip
    add("--anomaly-every", type=float, default=DEFAULT_EVERY_S, metavar="SECONDS",
        help="with --anomalies: seconds between them (default 21600)")  # fmt: skip
    add("--warmup", type=float, metavar="SECONDS",
        help="with --anomalies: anomaly-free seconds first (default: 2 days, or half)")  # fmt: skip
    add("--labels-out", type=Path, metavar="FILE",
        help="with --anomalies: write one JSON line per planted anomaly to FILE")  # fmt: skip


def _kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in scenarios.KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown anomaly kind {', '.join(unknown) or text!r}; choose from "
            f"{', '.join(scenarios.KINDS)}"
        )
    return kinds


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.anomalies:
        if args.labels_out is not None:
            parser.error("--labels-out needs --anomalies")
        return
    if args.live:
        parser.error("--anomalies is for historical data; it cannot be combined with --live")
    if args.pattern not in BASES:
        parser.error(f"--anomalies needs --pattern {', '.join(BASES)}, not {args.pattern}")
    base = BASES[args.pattern]
    seasonal = [k for k in args.anomalies if k in scenarios.SEASONAL_ONLY]
    if seasonal and base not in ("daily", "weekly"):
        parser.error(f"{seasonal[0]} needs --pattern daily or weekly")
    if args.anomaly_every <= 0:
        parser.error("--anomaly-every must be positive")


def shape(args: argparse.Namespace) -> scenarios.Shape:
    return scenarios.Shape(level=args.base, amplitude=args.amplitude, noise=args.noise)


def plant(args: argparse.Namespace, ts_ms: np.ndarray, seed: int) -> scenarios.LabelledSeries:
    """One series of --pattern over `ts_ms`, with the anomalies of --anomalies planted."""
    duration_ms = round(args.duration * 1000)
    if args.warmup is not None:
        warmup_ms = round(args.warmup * 1000)
    else:
        warmup_ms = min(round(DEFAULT_WARMUP_S * 1000), duration_ms // 2)
    return scenarios.labelled_series(
        BASES[args.pattern],
        args.anomalies,
        ts_ms,
        evaluate_from_ms=int(ts_ms[0]) + warmup_ms if ts_ms.size else 0,
        slot_ms=round(args.anomaly_every * 1000),
        seed=seed,
        shape=shape(args),
    )


def write_labels(
    path: Path, planted: Sequence[tuple[dict[str, str], scenarios.LabelledSeries]], rfc3339: Any
) -> None:
    with path.open("w", encoding="utf-8") as out:
        for labels, series in planted:
            for label in series.labels:
                start, end = rfc3339(np.array([label.start_ms, label.end_ms], dtype=np.int64))
                record = {"labels": labels, "kind": label.kind, "start": start, "end": end}
                out.write(json.dumps(record) + "\n")
