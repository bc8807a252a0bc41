"""Apply migrations: `python -m app.migrate` (also `make migrate`, and at server start-up)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config

from app.config import Settings, get_settings
from app.storage.engine import sqlite_path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str, settings: Settings | None = None) -> Config:
    """Alembic's configuration for this database; `settings` reach the migrations that need
    them (0007 converts samples to the block layout if STORAGE_LAYOUT says so)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    if settings is not None:
        config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to `revision` (the newest by default); safe to call from several
    processes at once."""
    with _one_migrator(settings):
        command.upgrade(alembic_config(settings.database_url, settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Take the schema back to `revision` (0006: samples as rows again, for the previous
    release; docs/storage.md#converting-a-database)."""
    with _one_migrator(settings):
        command.downgrade(alembic_config(settings.database_url, settings), revision)


@contextlib.contextmanager
def _one_migrator(settings: Settings) -> Iterator[None]:
    """SQLite: a file lock beside the database (PostgreSQL: env.py holds an advisory lock)."""
    path = sqlite_path(settings.database_url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m app.migrate", description="Apply (or undo) database migrations."
    )
    parser.add_argument(
        "--downgrade",
        metavar="REVISION",
        help="take the schema back to REVISION instead (0006: raw samples as rows again)",
    )
    args = parser.parse_args(argv)
    if args.downgrade:
        downgrade(get_settings(), args.downgrade)
        print(f"migrations undone down to {args.downgrade}")
        return
    upgrade(get_settings())
    print("migrations applied")


if __name__ == "__main__":
    main()
