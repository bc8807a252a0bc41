"""Command blocks in README.md and docs/ can be pasted into a shell as they are, and the README's
examples print what is shown under them (scripts/readme_examples.py, `make readme-examples`)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def load_script() -> ModuleType:
    path = ROOT / "scripts" / "readme_examples.py"
    spec = importlib.util.spec_from_file_location("readme_examples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("readme_examples", module)
    spec.loader.exec_module(module)
    return module


SCRIPT = load_script()

# Notation for a reader, not for a shell.
NOT_RUNNABLE = {
    "a usage line's optional part": re.compile(r"(?:^|\s)\[-{1,2}[A-Za-z]"),
    "a <placeholder>": re.compile(r"(?:^|\s)<[A-Za-z][\w .-]*>(?:\s|$)"),
    "an ellipsis": re.compile(r"(?:^|\s)(?:\.\.\.|…)(?:\s|$)"),
    "a shell prompt": re.compile(r"^\s*[$#>] ", re.M),
}
PYTHON_MODULE = re.compile(r"(?:^|[\s;|&(])python3? -m ([\w.]+)")
MAKE_TARGET = re.compile(r"(?:^|[\s;|&(])make((?:[ \t]+[a-z][\w-]*(?=[ \t]|$))+)", re.M)


def command_blocks() -> list[tuple[str, str]]:
    """(where, text) of every sh/bash/shell block in the documents."""
    found = []
    for path in DOCUMENTS:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        for block in SCRIPT.parse_blocks(lines):
            if block.language in SCRIPT.COMMAND_LANGUAGES:
                found.append((f"{path.relative_to(ROOT)}:{block.start}", block.text(lines)))
    return found


BLOCKS = command_blocks()
IDS = [where for where, _ in BLOCKS]


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))


@pytest.mark.parametrize(("where", "text"), BLOCKS, ids=IDS)
def test_command_blocks_are_runnable_as_pasted(where: str, text: str) -> None:
    syntax = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert syntax.returncode == 0, f"{where}: not valid shell: {syntax.stderr}"
    without_comments = "\n".join(re.sub(r"(?:^|\s)#\s.*$", "", line) for line in text.splitlines())
    for what, pattern in NOT_RUNNABLE.items():
        found = pattern.search(without_comments if what != "a shell prompt" else text)
        assert found is None, (
            f"{where}: {what} ({found.group(0).strip()!r}): move it out of the block"
        )
    for module in PYTHON_MODULE.findall(without_comments):
        if module.split(".")[0] in ("app", "bench"):
            assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
    targets = make_targets()
    for words in MAKE_TARGET.findall(without_comments):
        for word in words.split():
            assert word in targets, f"{where}: `make {word}`: no such target in the Makefile"


def test_the_usage_check_catches_what_it_should() -> None:
    bad = {
        "python -m app.cli import x.csv [--format ndjson|csv]": "a usage line's optional part",
        "curl -s <URL>": "a <placeholder>",
        "metrics-service serve ...": "an ellipsis",
        "$ make run": "a shell prompt",
    }
    for text, what in bad.items():
        assert NOT_RUNNABLE[what].search(text), text
    fine = 'test -f x && [ -n "$X" ] && curl -s "$BASE/q?match={a=~\\"b[12]\\"}"'
    assert not any(pattern.search(fine) for pattern in NOT_RUNNABLE.values())


def test_every_answer_of_the_api_section_is_written_by_the_script() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines(keepends=True)
    blocks = SCRIPT.parse_blocks(lines)
    examples = SCRIPT.examples(blocks)
    assert examples, "no examples found under '## API'"
    assert examples[0].text(lines).startswith(f"BASE={SCRIPT.PLACEHOLDER_BASE}\n")
    answers = {id(b.output) for b in examples if b.output is not None}
    assert len(answers) >= 10
    api_outputs = [b for b in blocks if b.section == "API" and b.language == "json"]
    orphans = [b.start for b in api_outputs if id(b) not in answers]
    assert orphans == [], f"README.md lines {orphans}: JSON shown under no command block"


def test_masks_cover_what_the_readme_says_varies() -> None:
    shown = '{"t":"2026-11-28T15:24:03.960Z","latency_ms":1.025} imported 2 samples in 0.1 s'
    fresh = '{"t":"2026-12-01T20:00:00Z","latency_ms":12.5} imported 2 samples in 10.0 s'
    assert SCRIPT.mask(shown) == SCRIPT.mask(fresh)
    assert SCRIPT.mask('{"count":360}') != SCRIPT.mask('{"count":359}')


@pytest.mark.slow
def test_readme_examples_print_what_is_shown() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_examples.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_script_leaves_no_file_behind(tmp_path: Path) -> None:
    """The examples write into `mktemp -d`, which the script points at its own directory."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "> samples.csv" not in lines
    assert "$(mktemp -d)" in lines
