"""Engines and async sessions. Nothing is created at import time."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from db.inline_sqlite import BUSY_TIMEOUT_S, connector

log = logging.getLogger("coursebot.db")


def normalise_url(url: str) -> str:
    """Accept the usual spellings and pick the async driver for each backend."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.drivername != "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres") and parsed.drivername != "postgresql+asyncpg":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


class TrackedSession(Session):
    """A session that knows whether it wrote anything: ``info["wrote"]`` is set by a
    flush or an INSERT/UPDATE/DELETE statement (the core wakes the scheduler only then)."""


@event.listens_for(TrackedSession, "after_flush")
def _after_flush(session: Session, _context: Any) -> None:
    session.info["wrote"] = True


@event.listens_for(TrackedSession, "do_orm_execute")
def _on_execute(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info["wrote"] = True


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, decide when transactions begin (see _sqlite_begin):
    # the driver's own handling skips BEGIN before SELECTs and breaks SAVEPOINTs.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock at the start (waiting up to busy_timeout), so two
    # transactions never deadlock upgrading a read lock, and reads see one snapshot.
    # A read transaction (Database.read) begins deferred: with WAL it runs beside the
    # writer on its own snapshot.
    if conn.get_execution_options().get(READ_OPTION):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


#: The connection option that marks a read transaction (see :meth:`Database.read`).
READ_OPTION = "coursebot_read"


#: Commands in flight at once on Postgres, by default (see :func:`pg_commands`).
PG_COMMANDS = 3


def pg_commands(pool_size: int) -> int:
    """How many commands run at once on Postgres (``COURSEBOT_PG_COMMANDS``, default
    :data:`PG_COMMANDS`; at most ``pool_size``); the others wait their turn in order.
    The bot's event loop is one core: more commands at once only take turns on it, each
    finishing later (measured, 200 users at 64 commands/s on 2 cores: p99 75-112 ms with
    10 at once, 42-58 ms with 2 or 3). A few hide the round trips to the database;
    raise it when the database is on another machine and each round trip is longer."""
    raw = os.environ.get("COURSEBOT_PG_COMMANDS", "")
    try:
        wanted = int(raw) if raw.strip() else PG_COMMANDS
    except ValueError:
        log.warning("COURSEBOT_PG_COMMANDS=%r is not a number; using %d", raw, PG_COMMANDS)
        wanted = PG_COMMANDS
    return max(1, min(wanted, pool_size))


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                # Statements run in the event loop's thread, one write transaction at
                # a time (db/inline_sqlite.py): no thread hop per statement.
                # COURSEBOT_SQLITE_THREADS=1: aiosqlite's thread per connection instead.
                if os.environ.get("COURSEBOT_SQLITE_THREADS") != "1":
                    kwargs["async_creator"] = connector(parsed.database)
            kwargs.update(connect_args={"timeout": 30}, pool_size=2, max_overflow=4)
            # SQLite has one writer at a time: commands run one after another (a fair
            # FIFO queue in the core), which also gives every command full isolation.
            self.max_concurrency = 1
        else:
            # A few spare connections beyond the commands' share, for the scheduler.
            kwargs.update(pool_size=pool_size + 4, max_overflow=4, pool_recycle=1800)
            # Each connection keeps its statements prepared, least recently used dropped
            # first. The bot sends a few hundred distinct statements (228 in the
            # benchmark's mix alone): with asyncpg's default of 100 they were prepared
            # again and again, a round trip each (paced p99 45-54 ms; with 500, 34-37).
            kwargs["connect_args"] = {"prepared_statement_cache_size": 500}
            self.max_concurrency = pg_commands(pool_size)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.backend == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=TrackedSession
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def read(self, *, snapshot: bool = False) -> AsyncIterator[AsyncSession]:
        """A session for a command that only reads. On SQLite it is a transaction begun
        deferred, so it does not take the write lock and runs beside the writer (WAL)
        on one snapshot; should it write after all, SQLite takes the lock then (waiting
        up to busy_timeout).

        On Postgres each statement reads the latest committed data, as it would in a
        READ COMMITTED transaction, but without one (autocommit): no BEGIN and COMMIT
        round trips, which are half of a small lookup's. ``snapshot``: every statement
        sees the same moment instead (a REPEATABLE READ transaction), for work that
        must read the course consistently (the assignment solver's instance)."""
        options: dict[str, Any] = {READ_OPTION: True}
        if self.backend == "postgresql":
            options["isolation_level"] = "REPEATABLE READ" if snapshot else "AUTOCOMMIT"
        async with self.sessionmaker() as session:
            await session.connection(execution_options=options)
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
