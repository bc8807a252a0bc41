"""`python -m app.cli import FILE`, run as a user would, against a real server process."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, LiveServer, free_port

T0_S = 1_764_763_200
WINDOW = {"start_time": "2025-12-03T11:00:00Z", "end_time": "2025-12-03T13:00:00Z"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stored(base_url: str, metric: str) -> list[float]:
    answer = httpx.get(f"{base_url}/query/raw", params={"metric_name": metric, **WINDOW})
    assert answer.status_code == 200, answer.text
    return [p["value"] for s in answer.json()["series"] for p in s["points"]]


def test_import_ndjson_and_csv_files_then_a_bad_line(
    live_server: LiveServer, tmp_path: Path
) -> None:
    base = ["--base-url", live_server.base_url]
    lines = [
        f'{{"metric_name": "cli_nd", "value": {i}, "timestamp": {T0_S + i}, "labels": {{}}}}'
        for i in range(25)
    ]
    nd = tmp_path / "samples.jsonl"
    nd.write_text("\n".join(lines) + "\n")
    done = cli("import", str(nd), *base, "--chunk-size", "10")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        r"imported 25 samples from 25 lines in 3 chunks in \d+\.\d s\n", done.stdout
    )
    assert stored(live_server.base_url, "cli_nd") == [float(i) for i in range(25)]

    data = tmp_path / "export.txt"
    data.write_text(f"metric_name,value,timestamp,host\ncli_csv,1.5,{T0_S},a\n")
    done = cli("import", str(data), *base, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported 1 samples from 2 lines in 1 chunks in ")
    assert stored(live_server.base_url, "cli_csv") == [1.5]

    bad = tmp_path / "bad.csv"
    bad.write_text(f"metric_name,value,timestamp\ncli_bad,1,{T0_S}\ncli_bad,x,{T0_S + 1}\n")
    done = cli("import", str(bad), *base, "--chunk-size", "1")
    assert done.returncode == 1
    assert "HTTP 422: line 3: value: required, a finite number" in done.stderr
    assert "committed before the error: 1 samples, lines 1-2, in 1 chunks;" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_service_missing_file_and_unknown_format(tmp_path: Path) -> None:
    data = tmp_path / "samples.ndjson"
    data.write_text('{"metric_name": "x", "value": 1}\n')
    done = cli("import", str(data), "--base-url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot reach http://127.0.0.1:")
    assert "Traceback" not in done.stderr

    done = cli("import", str(tmp_path / "missing.csv"))
    assert done.returncode == 1
    assert "missing.csv: no such file" in done.stderr
    assert "Traceback" not in done.stderr

    other = tmp_path / "samples.txt"
    other.write_text("")
    done = cli("import", str(other))
    assert done.returncode == 1
    assert "pass --format" in done.stderr


def test_every_job_is_a_subcommand_and_every_subcommand_has_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.cli import COMMANDS, build_parser, main
    from app.jobs.work import JOBS

    names = [command.name for command in COMMANDS]
    assert set(JOBS) <= set(names), "add a job(...) row to app.cli.COMMANDS"
    top = build_parser().format_help()
    for command in COMMANDS:
        assert re.search(rf"^\s+{command.name}\s", top, re.M), top
        with pytest.raises(SystemExit) as stopped:
            main([command.name, "--help"])
        assert stopped.value.code == 0
        shown = capsys.readouterr().out
        assert shown.startswith(f"usage: metrics-service {command.name} "), shown


def test_version_and_the_old_job_command(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main
    from app.version import __version__

    with pytest.raises(SystemExit) as stopped:
        main(["--version"], prog="python -m app.cli")
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"python -m app.cli {__version__}\n"
    done = subprocess.run(
        [sys.executable, "-m", "app.jobs.rollup_job", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m app.jobs.rollup_job "), done.stdout


def test_serve_refuses_bad_options_and_settings_clearly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import main
    from app.config import get_settings

    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--workers", "0"])
    assert stopped.value.code == 2
    assert "--workers: must be at least 1, got 0" in capsys.readouterr().err
    monkeypatch.setenv("MAX_BATCH", "lots")
    try:
        assert main(["serve", "--port", str(free_port())]) == 2
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    shown = capsys.readouterr().err
    assert shown.startswith("error: invalid settings: MAX_BATCH: "), shown


def test_migrate_and_a_job_pass_with_a_database_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import main
    from app.config import get_settings

    url = f"sqlite:///{tmp_path / 'data' / 'metrics.db'}"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///elsewhere.db")  # restored afterwards
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the job command configures logging
    try:
        assert main(["migrate", "--database-url", url]) == 0
        assert capsys.readouterr().out == "migrations applied\n"
        assert main(["retention", "--once", "--database-url", url]) == 0
        assert capsys.readouterr().out.startswith("retention: raw rows: 0")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        root.handlers[:], root.level = handlers, level
    assert (tmp_path / "data" / "metrics.db").is_file()
    assert not Path("elsewhere.db").exists()
