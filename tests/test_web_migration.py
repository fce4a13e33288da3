"""Migration 0016 (the desk's links and sessions): up, down and up again on a fresh SQLite
file and a fresh Postgres database, and the migrated tables match the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from db.migrate import alembic_config, upgrade
from db.models import Base
from tests.conftest import PG_ADMIN_URL, throwaway_pg_database

TABLES = {"web_links", "web_sessions"}


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
        return
    with throwaway_pg_database("coursebot_mig") as name:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)


def sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def tables(url: str) -> set[str]:
    engine = create_engine(sync_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0016_upgrades_downgrades_and_matches_the_models(fresh_url: str) -> None:
    upgrade(fresh_url)
    assert tables(fresh_url) >= TABLES
    engine = create_engine(sync_url(fresh_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    ours = [d for d in diff if any(t in repr(d) for t in TABLES)]
    assert ours == []
    command.downgrade(alembic_config(fresh_url), "0015")
    assert not TABLES & tables(fresh_url)
    upgrade(fresh_url)
    assert tables(fresh_url) >= TABLES
