"""`make readme-examples`: run README.md's API examples in order against a fresh server, and
write the answers they print under them, so every answer shown is one a reader gets.

    python scripts/readme_examples.py [--check] [--readme PATH]

What runs: every `sh` block of the README's `## API` section, top to bottom, in one bash session
(variables one block sets are seen by the next), with this Python's environment first on `PATH`
(as if activated) and the project root as the working directory. `mktemp` works in a temporary
directory that is removed afterwards. A block preceded by the line `<!-- readme-examples: skip -->`
is not run.

The server: `python -m app.cli serve`, as `make run` starts it (jobs scheduled, default settings:
settings from the caller's environment are left out), on SQLite in a new temporary directory and
a free port. The README's `http://127.0.0.1:8000` stands for that address: it is replaced in the
commands, and the address is put back in the answers.

What is written: a `json` or `text` block right after a command block (blank lines and the
comment `<!-- readme-examples: varies -->` may stand between) gets that block's standard output.
`curl` output without a final newline gets one, so several answers of one block show on separate
lines. A command that fails, or a shown answer whose command printed nothing, stops the run with
the block's line number and error, and the README is left as it was.

`--check` writes nothing: it compares the new answers with the shown ones after masking what the
README says differs between runs (`MASKS`: times, durations, latencies; blocks marked `varies`
are not compared), prints a unified diff and exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PLACEHOLDER_BASE = "http://127.0.0.1:8000"
SKIP = "<!-- readme-examples: skip -->"
VARIES = "<!-- readme-examples: varies -->"
COMMAND_LANGUAGES = {"sh", "bash", "shell"}
OUTPUT_LANGUAGES = {"json", "text"}
RUN_TIMEOUT = 600
FENCE = re.compile(r"^```(\S*)\s*$")

# What the README says differs from run to run, and so is masked by --check.
MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"), "<time>"),
    (re.compile(r'"(latency_ms|duration_ms)":\s*[0-9.]+'), r'"\1":<ms>'),
    (re.compile(r"\bin \d+(?:\.\d+)? s\b"), "in <seconds> s"),
)

PRELUDE = r"""
set -eo pipefail
# A newline after each answer that lacks one, as the README shows them.
curl() {
  local out rc
  out=$(command curl "$@"; rc=$?; printf x; exit $rc) && rc=0 || rc=$?
  out=${out%x}
  printf '%s' "$out"
  if [[ -n $out && $out != *$'\n' ]]; then printf '\n'; fi
  return $rc
}
"""


@dataclass
class Block:
    """A fenced block: its language, its first and last content lines (0-based, exclusive end)."""

    language: str
    start: int
    end: int
    skip: bool = False
    varies: bool = False
    output: Block | None = None
    section: str = ""
    answer: str = field(default="", repr=False)

    def text(self, lines: list[str]) -> str:
        return "".join(lines[self.start : self.end])


def parse_blocks(lines: list[str]) -> list[Block]:
    """Every fenced block, with the output block that follows each command block."""
    blocks: list[Block] = []
    section, i = "", 0
    while i < len(lines):
        line = lines[i].rstrip("\n")
        if line.startswith("## "):
            section = line[3:].strip()
        found = FENCE.match(line)
        if found is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        previous = lines[i - 1].strip() if i else ""
        block = Block(found.group(1), i + 1, end, skip=previous == SKIP, varies=previous == VARIES)
        block.section = section
        blocks.append(block)
        i = end + 1
    for block, following in itertools.pairwise(blocks):
        between = lines[block.end + 1 : following.start - 1]
        adjacent = all(not line.strip() or line.strip() == VARIES for line in between)
        if (
            block.language in COMMAND_LANGUAGES
            and following.language in OUTPUT_LANGUAGES
            and adjacent
        ):
            block.output = following
    return blocks


def examples(blocks: list[Block]) -> list[Block]:
    return [
        b for b in blocks if b.language in COMMAND_LANGUAGES and b.section == "API" and not b.skip
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The caller's environment without the service's settings (a fresh server has defaults)."""
    sys.path.insert(0, str(ROOT))
    from app.config import Settings

    names = {name.upper() for name in Settings.model_fields} | {"ASSETS_DIR", "METRICS_API_KEY"}
    return {k: v for k, v in os.environ.items() if k not in names}


class Server:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = directory / "server.log"
        url = f"sqlite:///{directory / 'data' / 'metrics.db'}"
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)]
        env = {**clean_env(), "PYTHONPATH": str(ROOT)}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, "--database-url", url],
                cwd=directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the server did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/health", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_examples(lines: list[str], blocks: list[Block], work: Path) -> None:
    """Run the blocks in one bash session against a fresh server; fill in `answer` of each."""
    server = Server(work)
    try:
        script = [PRELUDE]
        for n, block in enumerate(blocks):
            source = block.text(lines).replace(PLACEHOLDER_BASE, server.base)
            source = source.replace("http://localhost:8000", server.base)
            (work / f"block{n}.sh").write_text(source)
            script.append(f"echo {n} > {work}/current")
            script.append(f"source {work}/block{n}.sh > {work}/out{n} 2> {work}/err{n}")
        script.append(f"echo done > {work}/current")
        env = {
            **clean_env(),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "TMPDIR": str(work / "tmp"),
        }
        (work / "tmp").mkdir()
        done = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        current = (work / "current").read_text().strip() if (work / "current").exists() else "0"
        if done.returncode != 0 or current != "done":
            n = int(current) if current.isdigit() else 0
            error = (work / f"err{n}").read_text() if (work / f"err{n}").exists() else done.stderr
            raise SystemExit(
                f"README.md line {blocks[n].start}: the example failed (exit {done.returncode}):\n"
                f"{blocks[n].text(lines)}\n{error}"
            )
        for n, block in enumerate(blocks):
            answer = (work / f"out{n}").read_text()
            block.answer = answer.replace(server.base, PLACEHOLDER_BASE).rstrip("\n")
    finally:
        server.stop()


def mask(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text


def rewritten(lines: list[str], blocks: list[Block]) -> list[str]:
    out = list(lines)
    for block in sorted(
        (b for b in blocks if b.output), key=lambda b: b.output.start, reverse=True
    ):
        assert block.output is not None
        if not block.answer:
            raise SystemExit(
                f"README.md line {block.start}: the example printed nothing, but an answer is "
                f"shown under it (line {block.output.start})"
            )
        out[block.output.start : block.output.end] = [block.answer + "\n"]
    return out


def differences(lines: list[str], blocks: list[Block]) -> list[str]:
    report: list[str] = []
    for block in blocks:
        if block.output is None or block.output.varies:
            continue
        shown = mask(block.output.text(lines).rstrip("\n")).splitlines()
        fresh = mask(block.answer).splitlines()
        if shown != fresh:
            label = f"README.md line {block.output.start}"
            report += difflib.unified_diff(
                shown, fresh, f"{label} (shown)", f"{label} (now)", lineterm=""
            )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/readme_examples.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    parser.add_argument("--readme", type=Path, default=README, help="the file (README.md)")
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed to run the README's examples")
    lines = args.readme.read_text(encoding="utf-8").splitlines(keepends=True)
    blocks = examples(parse_blocks(lines))
    with tempfile.TemporaryDirectory(prefix="readme-examples-") as tmp:
        run_examples(lines, blocks, Path(tmp))
    if args.check:
        report = differences(lines, blocks)
        print("\n".join(report) if report else f"{len(blocks)} examples: answers as shown")
        return 1 if report else 0
    new = rewritten(lines, blocks)
    args.readme.write_text("".join(new), encoding="utf-8")
    shown = sum(1 for b in blocks if b.output)
    print(f"ran {len(blocks)} examples; {shown} answers written to {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
