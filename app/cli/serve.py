"""`metrics-service serve` and `metrics-service migrate`.

Options given on the command line go into the environment before the settings are read, so they
win over `.env` and reach every worker process; everything else comes from the settings
(README's configuration table).
"""

from __future__ import annotations

import argparse
import os
import sys

from pydantic import ValidationError

from app.config import Settings, get_settings


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB (default: $DATABASE_URL, "
        "else sqlite:///data/metrics.db in the working directory)",
    )


def configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Serve the HTTP API, the dashboard and /docs. The rollup and retention jobs run inside "
        "the server on their intervals unless --no-scheduler (or SCHEDULER_ENABLED=false); "
        "pending migrations are applied at start-up."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="TCP port (8000)")
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="server processes sharing the port (1); see docs/operations.md for several",
    )
    add_database_url(parser)
    parser.add_argument(
        "--scheduler",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the jobs in the server (default: $SCHEDULER_ENABLED, else yes)",
    )


def configure_migrate(parser: argparse.ArgumentParser) -> None:
    parser.description = "Apply pending database migrations, then exit (the server does it too)."
    add_database_url(parser)


def export_overrides(args: argparse.Namespace) -> None:
    """Put the settings given as options into the environment (for this process and its
    workers), where they win over `.env`."""
    if getattr(args, "database_url", None):
        os.environ["DATABASE_URL"] = args.database_url
    if getattr(args, "scheduler", None) is not None:
        os.environ["SCHEDULER_ENABLED"] = "true" if args.scheduler else "false"
    get_settings.cache_clear()


def _settings(args: argparse.Namespace) -> Settings | None:
    export_overrides(args)
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        print(f"error: invalid settings: {problems}", file=sys.stderr)
        return None


def serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 2
    from app import server

    server.run(settings, args.host, args.port, workers=args.workers)
    return 0


def migrate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 2
    from app.migrate import upgrade

    upgrade(settings)
    print("migrations applied")
    return 0
