"""The package: dependencies that agree with the pinned set, and a wheel that works on its own.

The wheel test builds the wheel from this checkout, installs it with its dependencies (pinned by
requirements.txt, from pip's cache) into a new virtual environment in a temporary directory, and
runs `metrics-service` from there, outside the checkout and without Node.js on its path: the
server's dashboard, its assets, `/docs` and `/redoc` must load, and the other subcommands work.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from app.assets import VENDOR_FILES
from app.version import __version__

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
ASSET_URL = re.compile(r"""(?:src|href)=["'](/(?:vendor|static)/[^"']+)["']""")


def pinned() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_declared_dependencies_are_pinned_and_the_pins_satisfy_them() -> None:
    pins = pinned()
    for text in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared but not pinned in requirements.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} vs {text}"


def test_the_version_comes_from_pyproject() -> None:
    assert __version__ == PYPROJECT["project"]["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


@dataclass(frozen=True)
class Installed:
    venv: Path
    work: Path
    wheel: Path

    def command(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "metrics-service"), *args],
            cwd=self.work,
            env=outside_env(self.venv),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def outside_env(venv: Path) -> dict[str, str]:
    """The environment without anything that points back into the checkout; on the path only
    the virtual environment (so no Node.js either)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ASSETS_DIR", "VIRTUAL_ENV")
    }
    env["PATH"] = str(venv / "bin")
    env.pop("DATABASE_URL", None)
    return env


def run(*command: str, cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    run(sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(dist), cwd=ROOT)
    (wheel,) = dist.glob("metrics_service-*.whl")
    venv = base / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=base)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
    run(*pip, "--quiet", "-c", str(ROOT / "requirements.txt"), str(wheel), cwd=base)
    work = base / "work"
    work.mkdir()
    return Installed(venv, work, wheel)


def test_the_wheel_holds_the_package_and_its_assets_only(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for relative in VENDOR_FILES.values():
        assert f"app/vendor/{relative}" in names, relative
    assert "app/migrations/versions/0001_initial.py" in names
    assert "app/templates/dashboard.html" in names
    tops = {name.split("/")[0] for name in names}
    assert tops == {"app", installed.wheel.name.split("-")[0] + "-" + __version__ + ".dist-info"}
    assert not [
        n
        for n in names
        if "__pycache__" in n or (n.startswith("app/vendor/") and "node_modules" in n)
    ]


def test_the_installed_command_reports_its_version_and_help(installed: Installed) -> None:
    done = installed.command("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"metrics-service {__version__}"
    done = installed.command("--help")
    for name in ("serve", "migrate", "rollup", "retention", "import", "generate"):
        assert re.search(rf"^\s+{name}\s", done.stdout, re.M), done.stdout
    installed_app = installed.venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert (installed_app / "site-packages" / "app" / "vendor" / "redoc" / "LICENSE").is_file()


@pytest.fixture(scope="module")
def served(installed: Installed) -> Iterator[str]:
    """`metrics-service serve` from the virtual environment (two worker processes, each importing
    the installed app), on SQLite in a temporary directory."""
    port = free_port()
    url = f"sqlite:///{installed.work / 'data' / 'metrics.db'}"
    log_path = installed.work / "serve.log"
    command = [str(installed.venv / "bin" / "metrics-service"), "serve"]
    command += ["--port", str(port), "--workers", "2", "--database-url", url]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=installed.work,
            env=outside_env(installed.venv),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        code = process.wait(timeout=30)
    # uvicorn stops gracefully on SIGTERM, then ends by the same signal.
    assert code in (0, -signal.SIGTERM), log_path.read_text()
    assert "Application shutdown complete" in log_path.read_text()


def assets_of(base: str, path: str) -> list[str]:
    page = httpx.get(f"{base}{path}")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    return ASSET_URL.findall(page.text)


def test_the_dashboard_docs_and_redoc_load_with_all_their_files(
    installed: Installed, served: str
) -> None:
    dashboard = assets_of(served, "/dashboard")
    assert "/vendor/chart.js/chart.umd.min.js" in dashboard
    assert 'id="assets-notice" hidden' in httpx.get(f"{served}/dashboard").text
    docs = assets_of(served, "/docs")
    assert "/vendor/swagger-ui-dist/swagger-ui-bundle.js" in docs
    redoc = assets_of(served, "/redoc")
    assert "/vendor/redoc/redoc.standalone.js" in redoc
    for url in {*dashboard, *docs, *redoc}:
        answer = httpx.get(f"{served}{url}")
        assert answer.status_code == 200, url
        assert len(answer.content) > 0, url
    schema = httpx.get(f"{served}/openapi.json").json()
    assert schema["info"]["version"] == __version__
    jobs = httpx.get(f"{served}/jobs/status").json()
    assert jobs["scheduler_enabled"] is True  # as `make run` has it


def test_the_other_subcommands_work_from_the_wheel(installed: Installed, served: str) -> None:
    url = f"sqlite:///{installed.work / 'data' / 'metrics.db'}"
    done = installed.command(
        "generate",
        "--metric",
        "wheel_check",
        "--duration",
        "120",
        "--interval",
        "10",
        "--base-url",
        served,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported 12 points of wheel_check")
    data = installed.work / "samples.csv"
    data.write_text("metric_name,value,host\nwheel_csv,1.5,a\n")
    done = installed.command("import", str(data), "--base-url", served)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported 1 samples from 2 lines in 1 chunks")
    done = installed.command("rollup", "--database-url", url)  # the jobs share one runner
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rollup: "), done.stdout
    names = httpx.get(f"{served}/metrics/names").json()["names"]
    assert {"wheel_check", "wheel_csv"} <= set(names)
