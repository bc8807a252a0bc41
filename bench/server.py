"""The real server as a subprocess, and wrk driving single-sample ingestion against it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parents[1]

# Each request writes one sample (server time) to one of 100 existing-or-new series.
WRK_SCRIPT = """
counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  local body = string.format(
    '{"metric_name":"wrk_ingest","value":%d,"labels":{"host":"host%03d"}}',
    counter % 1000, counter % 100)
  return wrk.format(nil, "/metrics/ingest", nil, body)
end
"""


class Server:
    def __init__(self, env: dict[str, str], app: str = "app.main:app", workers: int = 1) -> None:
        self.app = app
        self.workers = workers
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=60)


def run_wrk(base_url: str, clients: int, seconds: int) -> float:
    """Requests per second of single-sample ingestion; every answer must be 201."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    try:
        done = subprocess.run(
            [
                "wrk",
                "-t",
                "2",
                "-c",
                str(clients),
                "-d",
                f"{seconds}s",
                "-s",
                script.name,
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(script.name)
    if "Non-2xx" in done.stdout:
        raise SystemExit(f"single-sample ingestion answered errors:\n{done.stdout}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if match is None:
        raise SystemExit(f"could not read wrk output:\n{done.stdout}")
    return float(match.group(1))
