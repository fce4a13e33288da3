"""Run Alembic migrations from code (at start and from ``coursebot db upgrade``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

import migrations
from db.session import normalise_url

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` (blocking; runs its own event loop)."""
    ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Upgrade from inside a running event loop (Alembic's env runs its own loop)."""
    await asyncio.to_thread(upgrade, url, revision)


def current(url: str) -> None:
    command.current(alembic_config(url), verbose=False)
