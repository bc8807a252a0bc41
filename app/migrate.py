"""Apply migrations: `python -m app.migrate` (also `make migrate`, and at server start-up)."""

from __future__ import annotations

import fcntl
from pathlib import Path

from alembic import command
from alembic.config import Config

from app.config import Settings, get_settings
from app.storage.engine import sqlite_path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(settings: Settings) -> None:
    """Bring the schema to the newest revision; safe to call from several processes at once."""
    config = alembic_config(settings.database_url)
    path = sqlite_path(settings.database_url)
    if path is None:
        command.upgrade(config, "head")  # PostgreSQL: env.py holds an advisory lock
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        command.upgrade(config, "head")


if __name__ == "__main__":
    upgrade(get_settings())
    print("migrations applied")
