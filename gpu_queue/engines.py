"""How a GPU worker is woken: the only code that differs between the backends.

The queue itself (:mod:`gpu_queue.jobs`) is the same SQL on SQLite and Postgres: jobs
are rows, and a worker claims the next one in round-robin order under row locks. What
differs is how an idle worker learns that something changed:

- **SQLite** (one host): a worker reads ``PRAGMA data_version`` through its own plain
  connection every 25 ms (a WAL reader never blocks the bot) and looks for queued rows
  only when another connection committed.
- **Postgres** (workers on other hosts, on Slurm nodes): every transaction that leaves a
  job ready to run (a submission, a job handed back, a resumed queue) sends
  ``NOTIFY coursebot_gpu``, delivered at commit; a worker LISTENs on its own connection
  and claims at once. A lost notification costs at most ``FALLBACK_S``: the worker
  also looks every few seconds.

``COURSEBOT_GPU_QUEUE``: ``auto`` (the above), ``db`` (no LISTEN: a cheap indexed look
every 50 ms, also on Postgres). ``procrastinate``, the name of the former Postgres
engine, is still accepted and means ``auto`` on Postgres: procrastinate's public API
cannot defer a job in the bot's own (asyncpg) transaction, which the queue needs so that
the row and its wake-up commit together, and with the rows as the only queue a
procrastinate job would carry nothing but that wake-up, which ``NOTIFY`` does itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from typing import Any, Literal

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

ENGINES = ("auto", "db", "procrastinate")
ENV = "COURSEBOT_GPU_QUEUE"
CHANNEL = "coursebot_gpu"
#: A listening worker also looks this often (a notification lost with its connection).
FALLBACK_S = 2.0
Engine = Literal["db", "notify"]

_configured: str | None = None


def configure(setting: str | None) -> None:
    """Set this process's engine setting (from ``Settings.gpu_queue``); None: the env."""
    global _configured
    if setting is not None and setting not in ENGINES:
        raise ValueError(f"{ENV} must be one of {', '.join(ENGINES)}, not {setting!r}.")
    _configured = setting


def engine_setting() -> str:
    return _configured or os.environ.get(ENV) or "auto"


def engine_for(dialect: str, setting: str | None = None, *, strict: bool = False) -> Engine:
    """How workers on a database of this dialect ("sqlite", "postgresql") are woken:
    ``notify`` (Postgres LISTEN/NOTIFY) or ``db`` (SQLite's data_version, or polling)."""
    chosen = setting or engine_setting()
    if chosen not in ENGINES:
        raise ValueError(f"{ENV} must be one of {', '.join(ENGINES)}, not {chosen!r}.")
    if dialect != "postgresql":
        if strict and chosen == "procrastinate":
            raise ValueError(
                f"{ENV}=procrastinate needs Postgres (DATABASE_URL=postgresql+asyncpg://...); "
                "on SQLite the worker claims jobs from the database itself (auto or db)."
            )
        return "db"
    return "db" if chosen == "db" else "notify"


async def wake_workers(session: AsyncSession) -> None:
    """Wake idle workers when this transaction commits (Postgres ``NOTIFY``; SQLite's
    workers see the commit through ``data_version``)."""
    bind = session.bind
    if bind is not None and bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


# ------------------------------------------------------------------ the worker's side


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))


class Wake:
    """Waits until there may be work (or ``limit`` seconds, or ``stop``)."""

    async def wait(self, stop: asyncio.Event, limit: float) -> None:
        await _sleep(stop, limit)

    async def close(self) -> None:
        pass


class SqliteWake(Wake):
    """Wakes within ~25 ms of a commit by another connection that leaves a job queued."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.seen = self._version()

    def _version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def _changed_with_work(self) -> bool:
        try:
            version = self._version()
            if version == self.seen:
                return False
            self.seen = version
            row = self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM gpu_jobs WHERE state = 'queued')"
            ).fetchone()
            return bool(row[0])
        except sqlite3.Error:  # busy or locked: let the regular poll decide
            return False

    async def wait(self, stop: asyncio.Event, limit: float) -> None:
        end = time.monotonic() + limit
        while not stop.is_set() and time.monotonic() < end:
            if self._changed_with_work():
                return
            await _sleep(stop, 0.025)

    async def close(self) -> None:
        self.conn.close()


class PollWake(Wake):
    """``COURSEBOT_GPU_QUEUE=db`` on Postgres: a cheap look at the queue every 50 ms."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.seen: tuple[Any, ...] | None = None

    async def _signature(self) -> tuple[Any, ...]:
        from db.models import GpuJob

        async with self.db.session() as session:
            rows = await session.execute(
                select(GpuJob.state, func.count(), func.max(GpuJob.id))
                .where(GpuJob.state.in_(("queued", "running")))
                .group_by(GpuJob.state)
                .order_by(GpuJob.state)
            )
            return tuple(tuple(r) for r in rows)

    async def wait(self, stop: asyncio.Event, limit: float) -> None:
        end = time.monotonic() + limit
        while not stop.is_set() and time.monotonic() < end:
            await _sleep(stop, 0.05)
            try:
                signature = await self._signature()
            except Exception:  # the database is away: let the regular poll decide
                continue
            if self.seen is not None and signature != self.seen:
                self.seen = signature
                return
            self.seen = signature


class NotifyWake(Wake):
    """Postgres: LISTEN on :data:`CHANNEL` on a connection of its own."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.event = asyncio.Event()

    @classmethod
    async def open(cls, url: str) -> NotifyWake:
        import asyncpg

        parsed = make_url(url)
        conn = await asyncpg.connect(
            host=parsed.host,
            port=parsed.port or 5432,
            user=parsed.username,
            password=parsed.password,
            database=parsed.database,
        )
        self = cls(conn)
        await conn.add_listener(CHANNEL, lambda *_: self.event.set())
        return self

    async def wait(self, stop: asyncio.Event, limit: float) -> None:
        waiter = asyncio.create_task(self.event.wait())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait(
                {waiter, stopper},
                timeout=min(limit, FALLBACK_S),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for task in (waiter, stopper):
                task.cancel()
            self.event.clear()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.close()


async def open_wake(db: Any) -> Wake:
    """The wake-up for a worker on ``db`` (a :class:`db.session.Database`)."""
    parsed = make_url(db.url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return Wake()
        return SqliteWake(str(parsed.database))
    if engine_for("postgresql") == "notify":
        with contextlib.suppress(Exception):
            return await NotifyWake.open(db.url)
    return PollWake(db)
