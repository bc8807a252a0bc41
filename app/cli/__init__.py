"""The `metrics-service` command (also `python -m app.cli`): one subcommand per row of `COMMANDS`.

    metrics-service serve [--host H] [--port P] [--workers N] [--database-url URL]
    metrics-service migrate | rollup | retention | alert | compact
    metrics-service import FILE | generate ... | --version

A subcommand is a name, a one-line help, a function that adds its options to its parser, and a
function that runs it and returns the exit code. A job of `app.jobs` is one `job(...)` row.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.cli import importer
from app.cli import serve as serving
from app.jobs import runner
from app.services import data_generator
from app.version import __version__

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.ArgumentParser, argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Configure
    run: Run


def job(name: str, help: str) -> Command:
    """A job of `app.jobs.work.JOBS` as a subcommand: `--once` (default), `--loop`, `--interval`,
    the same command line as `python -m app.jobs.<name>_job`."""

    def configure(parser: argparse.ArgumentParser) -> None:
        parser.description = f"{help[0].upper()}{help[1:]}. One locked pass by default."
        runner.add_arguments(parser)
        serving.add_database_url(parser)

    def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
        serving.export_overrides(args)
        return runner.run_command(name, args)

    return Command(name, help, configure, run)


COMMANDS: tuple[Command, ...] = (
    Command("serve", "run the server", serving.configure_serve, serving.serve),
    Command("migrate", "apply database migrations", serving.configure_migrate, serving.migrate),
    job("rollup", "materialize closed rollup buckets (1m, 5m, 1h)"),
    job("retention", "roll up what is pending, then drop data past its retention"),
    job("alert", "evaluate the alert rules over the new data and deliver notifications"),
    job(
        "compact", "fold closed spans of raw samples into compressed blocks (STORAGE_LAYOUT=blocks)"
    ),
    Command(
        "import", "stream an NDJSON or CSV file to the server", importer.configure, importer.run
    ),
    Command("generate", "send synthetic data", data_generator.add_arguments, data_generator.run),
)


def build_parser(prog: str = "metrics-service") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A time-series metrics service: HTTP ingestion and queries, exact rollups, "
        "retention, anomaly detection and a dashboard. Settings come from the environment and "
        ".env (README's configuration table); `COMMAND --help` tells more.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help)
        command.configure(sub)
        sub.set_defaults(handler=command.run, subparser=sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "metrics-service") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    run: Run = args.handler
    return run(args.subparser, args)
