"""The block layout becomes the default (docs/storage.md#converting-a-database): the closed 2 h
spans of the `samples` rows are folded into `blocks`, a chunk of series and a span at a time in
this migration's transaction (app.storage.samples.conversion); what is left in `samples` (the
open span, and rows of the last span that closes within ROLLUP_GRACE) is the head. With
STORAGE_LAYOUT=rows nothing is converted.

Downgrade decodes every block back into `samples` rows (where no row holds the key), whatever
the layout, so that the previous release, which reads rows by default, finds every sample.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import time

from alembic import context, op

from app.config import Settings, get_settings
from app.storage.samples import conversion
from app.timeutil import to_ms

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _settings() -> Settings:
    given = context.config.attributes.get("settings")
    return given if isinstance(given, Settings) else get_settings()


def upgrade() -> None:
    settings = _settings()
    if settings.storage_layout != "blocks":
        return
    now = int(time.time() * 1000)
    conversion.to_blocks(op.get_bind(), now - to_ms(settings.rollup_grace))


def downgrade() -> None:
    conversion.to_rows(op.get_bind())
