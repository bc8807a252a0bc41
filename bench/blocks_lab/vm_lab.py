"""VictoriaMetrics on the same samples, for its disk use: started from Debian's package on
127.0.0.1 with a temporary data directory, fed by its JSON-lines import, flushed, measured with
du, stopped. (Only when `victoria-metrics` is installed.)"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import workload
from bench.blocks_lab.workloads import END_MS, SEED


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bodies(per_request: int = 10_000) -> tuple[list[bytes], int]:
    work = workload.build(100, 10_000, SEED, END_MS)
    lines = [
        orjson.dumps(
            {
                "metric": {"__name__": workload.METRIC, **labels},
                "values": row,
                "timestamps": work.ts.tolist(),
            }
        )
        for labels, row in zip(work.labels, work.values.tolist(), strict=True)
    ]
    per = max(1, per_request // work.ts.size)
    return [b"\n".join(lines[i : i + per]) for i in range(0, len(lines), per)], work.samples


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def settled(path: Path, quiet_s: float = 3.0, limit_s: float = 60.0) -> int:
    """The directory's size once it has not changed for `quiet_s` (VictoriaMetrics writes its
    in-memory parts out in the background)."""
    deadline, last, since = time.monotonic() + limit_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        size = size_of(path)
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.5)
    return last


def run() -> dict[str, Any] | None:
    binary = shutil.which("victoria-metrics")
    if binary is None:
        print("victoria-metrics is not installed: skipped")
        return None
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="blocks-lab-vm-") as tmp:
        data = Path(tmp) / "data"
        proc = subprocess.Popen(
            [
                binary,
                f"-storageDataPath={data}",
                f"-httpListenAddr=127.0.0.1:{port}",
                "-retentionPeriod=100y",
                "-loggerLevel=ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            result = measure(f"http://127.0.0.1:{port}", data)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        result["bytes_per_sample_after_shutdown"] = size_of(data) / result.pop("samples")
        return result


def measure(base: str, data: Path) -> dict[str, Any]:
    payloads, samples = bodies()
    with httpx.Client(timeout=60) as client:
        for _ in range(100):
            try:
                if client.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        started = time.perf_counter()
        for body in payloads:
            client.post(f"{base}/api/v1/import", content=body).raise_for_status()
        elapsed = time.perf_counter() - started
        client.get(f"{base}/internal/force_flush").raise_for_status()
        flushed = settled(data)
        client.get(f"{base}/internal/force_merge").raise_for_status()
        merged = settled(data)
        small = data / "data" / "small"
        big = data / "data" / "big"
        parts = (size_of(small) if small.exists() else 0) + (size_of(big) if big.exists() else 0)
    return {
        "samples": samples,
        "samples_per_s": samples / elapsed,
        "bytes_per_sample_after_flush": flushed / samples,
        "bytes_per_sample_after_force_merge": merged / samples,
        "data_parts_bytes_per_sample": parts / samples,
    }


def show(result: dict[str, Any] | None) -> None:
    if result:
        print("\nVictoriaMetrics, same samples:", {k: round(v, 3) for k, v in result.items()})
