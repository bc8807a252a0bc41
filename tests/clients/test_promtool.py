"""promtool 2.42 (Debian's) querying us as it queries a Prometheus: `promtool query instant`,
`range`, `series` and `labels` exit 0 and print what they print for Prometheus."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest
from conftest import LiveServer
from prometheus_seed import AT, T0, seed

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    with httpx.Client(base_url=live_server.base_url) as client:
        seed(client)
    return live_server


def promtool(*args: str) -> str:
    done = subprocess.run(
        ["promtool", "query", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_promtool_queries(server: LiveServer) -> None:
    url = server.base_url
    out = promtool("instant", "--time", str(AT), url, 'temperature{room="y"}')
    assert out.strip() == f'temperature{{room="y"}} => 30 @[{AT}]'

    out = promtool("instant", "--time", str(AT), url, "count by (job) (http_requests_total)")
    assert sorted(out.strip().splitlines()) == [
        f'{{job="api"}} => 2 @[{AT}]',
        f'{{job="web"}} => 1 @[{AT}]',
    ]

    out = promtool(
        "range",
        "--start",
        str(AT - 60),
        "--end",
        str(AT),
        "--step",
        "30s",
        url,
        'temperature{room="x"}',
    )
    assert out.strip().splitlines() == [
        'temperature{room="x"} =>',
        f"34 @[{AT - 60}]",
        f"34.5 @[{AT - 30}]",
        f"35 @[{AT}]",
    ]

    out = promtool("series", "--match", "build_info", url)
    assert out.strip().splitlines() == [
        '{__name__="build_info", job="api", version="1.0"}',
        '{__name__="build_info", job="web", version="2.0"}',
    ]

    out = promtool("labels", "--start", str(T0), "--end", str(AT), url, "room")
    assert out.strip().splitlines() == ["x", "y"]

    out = promtool("-o", "json", "instant", "--time", str(AT), url, "vector(1)")
    assert json.loads(out) == [{"metric": {}, "value": [AT, "1"]}]

    done = subprocess.run(
        ["promtool", "query", "instant", url, "sum("],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "bad_data" in done.stderr and "unclosed left parenthesis" in done.stderr
