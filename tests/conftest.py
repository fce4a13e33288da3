"""Test fixtures: every database test runs on a real SQLite file and on the real
local Postgres (``backend`` is parametrised). Postgres gets one migrated database
per test session; tables are emptied after each test."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from bot.app import App, start_app
from bot.settings import SAMPLE_COURSE, Settings
from bot.shell import Shell
from commands.clock import FixedClock
from db.migrate import upgrade
from db.models import Base

PG_ADMIN_URL = os.environ.get(
    "COURSEBOT_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgres"]
#: The sample course's ranking week, a Friday morning in New York.
SAMPLE_NOW = datetime(2023, 8, 25, 14, 0, tzinfo=UTC)


def pg_exec(url: str, sql: str) -> list[Any]:
    """Run SQL on Postgres outside any event loop (admin DDL, truncation); the rows of a
    query."""
    import asyncio

    import asyncpg

    parsed = make_url(url)

    async def run() -> list[Any]:
        conn = await asyncpg.connect(
            host=parsed.host,
            port=parsed.port or 5432,
            user=parsed.username,
            database=parsed.database,
        )
        try:
            if sql.lstrip().upper().startswith("SELECT"):
                return list(await conn.fetch(sql))
            await conn.execute(sql)
            return []
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@contextlib.contextmanager
def throwaway_pg_database(prefix: str) -> Iterator[str]:
    """A new, empty Postgres database next to PG_ADMIN_URL (its name), dropped
    afterwards; the test is skipped, with the reason, if no server answers (not in CI)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        pg_exec(PG_ADMIN_URL, f'CREATE DATABASE "{name}"')
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Postgres at {PG_ADMIN_URL} is not reachable ({exc}); .ci/run starts it")
    try:
        yield name
    finally:
        pg_exec(PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with throwaway_pg_database("coursebot_test") as name:
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
        upgrade(url)
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path / "coursebot.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url = request.getfixturevalue("pg_url")
    yield url
    _truncate(url)


def _truncate(url: str) -> None:
    """Empty the test database for the next test. A transaction a test left open (a
    task still running when its event loop ended) would hold TRUNCATE forever: it fails
    the test instead, naming the statement, and the next tests go on."""
    import asyncpg

    tables = ", ".join(f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables))
    truncate = f"TRUNCATE {tables} RESTART IDENTITY CASCADE"
    try:
        pg_exec(url, f"SET lock_timeout = '20s'; {truncate}")
    except asyncpg.exceptions.LockNotAvailableError:
        others = (
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        stuck = [
            f"{row['state']}: {row['query'][:200]}"
            for row in pg_exec(url, f"SELECT state, query {others}")
        ]
        pg_exec(url, f"SELECT pg_terminate_backend(pid) {others}")
        pg_exec(url, truncate)
        raise AssertionError(
            f"the test left a Postgres transaction open, which blocked the cleanup: {stuck}"
        ) from None


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        COURSEBOT_DATA_DIR=tmp_path / "data",
        COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
        _env_file=None,
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(SAMPLE_NOW)


@pytest.fixture
async def app(settings: Settings, clock: FixedClock) -> AsyncIterator[App]:
    app = await start_app(settings, clock=clock)
    yield app
    await app.close()


class Transcript:
    """A shell session whose output is collected, for end-to-end scenarios."""

    def __init__(self, shell: Shell, lines: list[str]) -> None:
        self.shell = shell
        self.lines = lines

    async def say(self, line: str) -> str:
        start = len(self.lines)
        await self.shell.handle_line(line)
        await self.shell.app.core.settle()  # edits follow the reply (a poll's count)
        return "\n".join(self.lines[start:])

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def transcript(app: App, tmp_path: Path) -> Transcript:
    lines: list[str] = []
    shell = Shell(
        app,
        workspace="default",
        speaker="gedas",
        files_dir=tmp_path / "files",
        out=lines.append,
    )
    return Transcript(shell, lines)
