"""Synthetic data for the metrics service.

    python -m app.services.data_generator --metric cpu_usage --pattern sine_wave \
        --duration 300 --interval 5 --base-url http://localhost:8000

writes the points of the last `duration` seconds, one every `interval` seconds (here 60), through
`POST /backfill/import` and exits. `--live` instead sends one point per series per interval in real
time through `POST /metrics/ingest`. The pure part (`generate`, `generate_series`) is separate from
the I/O so tests can check values and spike positions without a server.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson
from tqdm import tqdm  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PATTERNS = ("noise", "sine_wave", "linear_trend", "spike", "combined")
# Noise is Gaussian truncated at +-3.5 sigma, so pure noise never trips a threshold-4 detector.
NOISE_CLIP = 3.5
LIVE_CHUNK = 10_000  # live mode generates at most this many points per series at a time
_LABEL_RE = re.compile(r"^([a-zA-Z_][a-zA-Z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class PatternParams:
    """Shape of the signal. `span` (seconds) is the run length the pattern is laid over."""

    span: float = 3600.0
    base: float = 50.0
    amplitude: float = 20.0  # sine amplitude; also the rise of linear_trend over `span`
    noise: float = 3.0  # standard deviation of the Gaussian noise
    period: float | None = None  # sine period in seconds; default span / 2 (two cycles)
    spike_sigmas: float = 10.0  # spike height in standard deviations of the spike-free signal

    @property
    def sine_period(self) -> float:
        return self.period if self.period else self.span / 2

    def spread(self, pattern: str) -> float:
        """Standard deviation of the spike-free signal (noise, sine and trend are independent)."""
        var = self.noise**2
        if pattern in ("sine_wave", "combined"):
            var += self.amplitude**2 / 2
        if pattern in ("linear_trend", "combined"):
            var += self.amplitude**2 / 12
        return math.sqrt(var)


@dataclass(frozen=True, eq=False)
class GeneratedSeries:
    timestamps_ms: IntArray  # epoch milliseconds, ascending
    values: FloatArray
    spike_indices: IntArray  # positions of the planted spikes, ascending


class GeneratorError(Exception):
    """A failure reported to the user as one line on stderr."""


def truncated_normal(rng: np.random.Generator, n: int, clip: float = NOISE_CLIP) -> FloatArray:
    """n standard normal draws, redrawing (vectorized) any beyond +-clip."""
    draws = rng.standard_normal(n)
    outside = np.flatnonzero(np.abs(draws) > clip)
    while outside.size:
        draws[outside] = rng.standard_normal(outside.size)
        outside = outside[np.abs(draws[outside]) > clip]
    return draws


def spike_positions(rng: np.random.Generator, n: int) -> IntArray:
    """About 1% of n (at least 1 when n >= 20): one per equal stratum, in its middle half."""
    if n < 20:
        return np.empty(0, dtype=np.int64)
    k = max(1, round(n / 100))
    edges = np.linspace(0, n, k + 1).astype(np.int64)
    quarter = (edges[1:] - edges[:-1]) // 4
    return rng.integers(edges[:-1] + quarter, edges[1:] - quarter).astype(np.int64)


def generate(
    pattern: str,
    n: int,
    seed: int | tuple[int, ...] = 42,
    *,
    interval: float = 1.0,
    params: PatternParams | None = None,
    first: int = 0,
) -> tuple[FloatArray, IntArray]:
    """n values of `pattern`, point i at (first + i) * interval seconds; and the spike positions.

    The same arguments always give the same values. Only `spike` and `combined` have spikes.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {', '.join(PATTERNS)}")
    p = params or PatternParams()
    rng = np.random.default_rng(seed)
    t = np.arange(first, first + n, dtype=np.float64) * interval
    values = p.base + p.noise * truncated_normal(rng, n)
    if pattern in ("sine_wave", "combined"):
        values += p.amplitude * np.sin(2 * np.pi * t / p.sine_period)
    if pattern in ("linear_trend", "combined"):
        values += p.amplitude * (t / p.span - 0.5)
    spikes = spike_positions(rng, n) if pattern in ("spike", "combined") else np.empty(0, np.int64)
    values[spikes] += p.spike_sigmas * p.spread(pattern)
    return values, spikes


def point_count(duration: float, interval: float) -> int:
    """How many points at `interval` spacing fit in `duration` seconds (300 s at 5 s: 60)."""
    return round(duration * 1000) // interval_ms(interval)


def interval_ms(interval: float) -> int:
    return max(1, round(interval * 1000))


def generate_series(
    pattern: str,
    *,
    duration: float,
    interval: float,
    end_ms: int,
    seed: int = 42,
    params: PatternParams | None = None,
) -> GeneratedSeries:
    """The points of the `duration` seconds ending at end_ms (the last point is at end_ms)."""
    n = point_count(duration, interval)
    step = interval_ms(interval)
    timestamps = end_ms - step * np.arange(n - 1, -1, -1, dtype=np.int64)
    values, spikes = generate(
        pattern, n, seed, interval=step / 1000, params=params or PatternParams(span=duration)
    )
    return GeneratedSeries(timestamps, values, spikes)


def series_label_sets(labels: dict[str, str], series: int, vary: str) -> list[dict[str, str]]:
    """One label set per series: with series > 1, `vary` takes PREFIX1..PREFIXn.

    PREFIX is the value given for `vary` with --label, else "server" (host=server1..serverN).
    """
    if series == 1:
        return [dict(labels)]
    prefix = labels.get(vary, "server")
    return [{**labels, vary: f"{prefix}{i}"} for i in range(1, series + 1)]


def rfc3339_ms(timestamps_ms: IntArray) -> list[str]:
    """Epoch milliseconds as RFC 3339 UTC strings with milliseconds (`...T12:00:00.250Z`)."""
    as_dt = timestamps_ms.astype("datetime64[ms]")
    return [str(s) for s in np.datetime_as_string(as_dt, unit="ms", timezone="UTC")]


def parse_time(text: str) -> int:
    """RFC 3339 (no offset means UTC) or epoch seconds, as epoch milliseconds."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds):
        return round(seconds * 1000)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use RFC 3339 (2025-12-03T12:00:00Z) or epoch seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _label(text: str) -> tuple[str, str]:
    match = _LABEL_RE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"invalid label {text!r}: use KEY=VALUE, e.g. host=a")
    return match.group(1), match.group(2)


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
        return value

    return parse


def build_parser(prog: str = "python -m app.services.data_generator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The generator's options and help, on this parser (also `metrics-service generate`)."""
    parser.description = (
        "Send synthetic metrics to the service: by default the points of the last "
        "--duration seconds in one go through POST /backfill/import; with --live, one point per "
        "series per --interval in real time through POST /metrics/ingest."
    )
    parser.epilog = (
        "Noise is Gaussian (sigma --noise, truncated at 3.5 sigma); spikes (patterns spike "
        "and combined) are about 1% of the points (at least 1 from 20 points), --spike-sigmas "
        "standard deviations of the spike-free signal high, at positions fixed by --seed."
    )
    _add_data_options(parser)
    _add_delivery_options(parser)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--metric", default="cpu_usage", help="metric name (default: cpu_usage)")
    add("--pattern", choices=PATTERNS, default="sine_wave", help="signal shape (sine_wave)")
    add("--duration", type=_positive(float), default=3600.0, help="seconds covered (default 3600)")
    add("--interval", type=_positive(float), default=10.0, help="seconds between points (def. 10)")
    add("--end", type=parse_time, help="time of the last point, RFC 3339 or epoch (default: now)")
    add("--label", type=_label, action="append", default=[], metavar="KEY=VALUE",
        help="label of every series; repeatable")  # fmt: skip
    add("--series", type=_positive(int), default=1, metavar="N",
        help="number of series (default 1, no extra label); with N > 1 the label --vary-label "
        "takes the values PREFIX1..PREFIXN, PREFIX being its --label value if given, else "
        "'server': host=server1..serverN")  # fmt: skip
    add("--vary-label", default="host", metavar="KEY", help="label varied by --series (host)")
    add("--seed", type=int, default=42, help="random seed; series i (from 0) uses seed + i (42)")
    add("--base", type=float, default=50.0, help="signal level (default 50)")
    add("--amplitude", type=float, default=20.0, help="sine amplitude and trend rise (default 20)")
    add("--noise", type=float, default=3.0, help="noise standard deviation (default 3)")
    add("--period", type=_positive(float), help="sine period in seconds (default: duration / 2)")
    add("--spike-sigmas", type=float, default=10.0, help="spike height in sigmas (default 10)")


def _add_delivery_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--base-url", default="http://localhost:8000", help="the service (http://localhost:8000)")
    add("--api-key", help="sent as 'Authorization: Bearer KEY'")
    add("--batch-size", type=_positive(int), default=10_000, help="points per import (10000)")
    add("--live", action="store_true", help="send points in real time until Ctrl-C or --count")
    add("--count", type=_positive(int), metavar="N", help="with --live: stop after N intervals")


class Sender:
    """POSTs JSON to the service, turning every failure into a one-line GeneratorError."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float = 60.0) -> None:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def post(self, path: str, payload: object) -> None:
        try:
            response = self._client.post(path, content=orjson.dumps(payload))
        except httpx.TimeoutException:
            raise GeneratorError(f"{self.base_url} did not answer POST {path} in time") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise GeneratorError(f"cannot reach {self.base_url}: {exc}") from None
        if not response.is_success:
            raise GeneratorError(
                f"POST {path} rejected with HTTP {response.status_code}: {_detail(response)}"
            )


def _detail(response: httpx.Response) -> str:
    """The server's `detail`, flattening FastAPI's list of validation errors."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(detail, list):
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', e)}"
            if isinstance(e, dict)
            else str(e)
            for e in detail[:3]
        ]
        return "; ".join(parts) + (f" (and {len(detail) - 3} more)" if len(detail) > 3 else "")
    return str(detail)


def _params(args: argparse.Namespace) -> PatternParams:
    names = ("base", "amplitude", "noise", "period", "spike_sigmas")
    return PatternParams(span=args.duration, **{name: getattr(args, name) for name in names})


def _items(
    metric: str, series: list[GeneratedSeries], labels: list[dict[str, str]]
) -> Iterator[dict[str, object]]:
    for data, label_set in zip(series, labels, strict=True):
        stamps = rfc3339_ms(data.timestamps_ms)
        for value, stamp in zip(data.values.tolist(), stamps, strict=True):
            yield {"metric_name": metric, "value": value, "timestamp": stamp, "labels": label_set}


class CtrlC:
    """Ctrl-C stops a run at a safe point. Raised at an arbitrary point, KeyboardInterrupt can
    leave the HTTP client's connection pool locked, and closing the client then hangs; so while a
    request is under way Ctrl-C is only noted, and the run stops once it is answered. While the run
    waits for its next tick, or on a second Ctrl-C, it stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.waiting = False

    def __enter__(self) -> CtrlC:
        self._previous = None
        if threading.current_thread() is threading.main_thread():  # where handlers can be set
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: object) -> None:
        if self.waiting or self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def sleep(self, seconds: float) -> None:
        self.check()
        self.waiting = True
        try:
            time.sleep(seconds)
        finally:
            self.waiting = False


class Tally:
    """Points delivered so far, on a progress bar shown only when stderr is a terminal."""

    def __init__(self, ctrl_c: CtrlC | None = None) -> None:
        self.points = 0
        self.bar = tqdm(disable=True)
        self.ctrl_c = ctrl_c or CtrlC()

    def start(self, total: int | None) -> None:
        self.bar = tqdm(total=total, unit="pt", file=sys.stderr, disable=not sys.stderr.isatty())

    def add(self, points: int) -> None:
        """Count points delivered; the point between requests where Ctrl-C takes effect."""
        self.points += points
        self.bar.update(points)
        self.ctrl_c.check()


def run_backfill(args: argparse.Namespace, sender: Sender, tally: Tally) -> None:
    """Import every point, --batch-size at a time."""
    end_ms = args.end if args.end is not None else round(time.time() * 1000)
    labels = series_label_sets(dict(args.label), args.series, args.vary_label)
    params = _params(args)
    series = [
        generate_series(args.pattern, duration=args.duration, interval=args.interval,
                        end_ms=end_ms, seed=args.seed + i, params=params)
        for i in range(len(labels))
    ]  # fmt: skip
    tally.start(sum(s.values.size for s in series))
    items = _items(args.metric, series, labels)
    while batch := list(islice(items, args.batch_size)):
        sender.post("/backfill/import", {"metrics": batch})
        tally.add(len(batch))


def _live_values(args: argparse.Namespace, seed: int, chunk: int, n: int) -> FloatArray:
    """The values of ticks chunk * n ... chunk * n + n - 1 of one series."""
    key: int | tuple[int, ...] = seed if chunk == 0 else (seed, chunk)
    step = interval_ms(args.interval) / 1000
    values, _ = generate(args.pattern, n, key, interval=step, params=_params(args), first=chunk * n)
    return values


def run_live(args: argparse.Namespace, sender: Sender, tally: Tally) -> None:
    """One point per series per interval, until --count intervals have passed or forever."""
    labels = series_label_sets(dict(args.label), args.series, args.vary_label)
    step = interval_ms(args.interval)
    origin = round(time.time() * 1000)
    tally.start(args.count * len(labels) if args.count else None)
    size = min(args.count or LIVE_CHUNK, LIVE_CHUNK)
    tick = 0
    while args.count is None or tick < args.count:
        chunk, offset = divmod(tick, size)
        if offset == 0:
            values = [_live_values(args, args.seed + i, chunk, size) for i in range(len(labels))]
        due = origin + tick * step
        tally.ctrl_c.sleep(max(0.0, due / 1000 - time.time()))
        stamp = rfc3339_ms(np.array([due], dtype=np.int64))[0]
        for series_values, label_set in zip(values, labels, strict=True):
            sample = {"metric_name": args.metric, "value": float(series_values[offset])}
            sender.post("/metrics/ingest", {**sample, "timestamp": stamp, "labels": label_set})
            tally.add(1)
        tick += 1


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.live and args.end is not None:
        parser.error("--end is for historical data; it cannot be combined with --live")
    if args.count is not None and not args.live:
        parser.error("--count only applies with --live")
    if not args.live and point_count(args.duration, args.interval) == 0:
        parser.error("--duration must be at least one --interval")
    if not re.match(r"^https?://", args.base_url):
        parser.error(f"--base-url must start with http:// or https://, got {args.base_url!r}")
    if not _LABEL_RE.match(f"{args.vary_label}="):
        parser.error(f"invalid --vary-label {args.vary_label!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run(parser, parser.parse_args(argv))


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Send what the parsed options ask for; the exit code."""
    _validate(parser, args)
    sender, started = Sender(args.base_url, args.api_key), time.monotonic()
    prefix, code = "", 0
    tally = Tally()
    try:
        with tally.ctrl_c:
            (run_live if args.live else run_backfill)(args, sender, tally)
    except GeneratorError as exc:
        tally.bar.close()
        print(f"data_generator: error: {exc} (after {tally.points} points)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        prefix, code = ("stopped by Ctrl-C: ", 0) if args.live else ("interrupted: ", 130)
    finally:
        sender.close()
        tally.bar.close()
    print(
        f"{prefix}{'sent' if args.live else 'imported'} {tally.points} points of {args.metric} "
        f"({args.pattern}, {args.series} series) to {args.base_url} "
        f"in {time.monotonic() - started:.1f} s"
    )
    return code


if __name__ == "__main__":
    raise SystemExit(main())
