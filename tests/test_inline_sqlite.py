"""The inline SQLite driver (db/inline_sqlite.py), SQLite's default: statements run in the
event loop's thread and one write transaction at a time holds the file's writer lock.
These check the lock is never lost or leaked, whatever is cancelled when, and that a
read never waits for the writer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from db.inline_sqlite import InlineConnection, WriterLock
from db.session import Database


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")
    async with database.transaction() as s:
        await s.execute(text("CREATE TABLE t (n INTEGER)"))
    yield database
    await database.dispose()


async def count(db: Database) -> int:
    async with db.read() as s:
        return int((await s.execute(text("SELECT count(*) FROM t"))).scalar_one())


async def test_sqlite_runs_inline_by_default(db: Database) -> None:
    async with db.session() as s:
        conn = await s.connection()
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, InlineConnection)


async def test_writers_take_turns_and_all_commit(db: Database) -> None:
    async def write(i: int) -> None:
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO t VALUES (:n)"), {"n": i})
            await asyncio.sleep(0.01)  # the loop runs others while this one holds the lock
            await s.execute(text("INSERT INTO t VALUES (:n)"), {"n": -i})

    await asyncio.gather(*(write(i) for i in range(20)))
    assert await count(db) == 40


async def test_a_read_does_not_wait_for_the_writer(db: Database) -> None:
    holding, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await holding.wait()
    async with asyncio.timeout(2):
        assert await count(db) == 0  # its own snapshot, not the uncommitted row
    release.set()
    await task
    assert await count(db) == 1


@pytest.mark.parametrize("when", ["waiting", "holding"])
async def test_a_cancelled_transaction_never_keeps_the_lock(db: Database, when: str) -> None:
    """A task cancelled while it waits for the writer lock, or while it holds it in the
    middle of its transaction (a scheduler stopped mid-pass), leaves the lock free: the
    next writer commits at once. (asyncio.wait_for around the lock once lost a wakeup
    here and hung the shell's scheduler on close.)"""
    holding, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            await release.wait()

    async def second() -> None:
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO t VALUES (2)"))

    a = asyncio.create_task(first())
    await holding.wait()
    b = asyncio.create_task(second())
    await asyncio.sleep(0.05)  # b waits for the lock a holds
    if when == "waiting":
        b.cancel()
        await asyncio.gather(b, return_exceptions=True)
        release.set()
        await a
        expected = {1}
    else:
        a.cancel()
        await asyncio.gather(a, return_exceptions=True)
        async with asyncio.timeout(5):
            await b
        expected = {2}
    async with asyncio.timeout(5):
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO t VALUES (3)"))
    async with db.read() as s:
        rows = {n for (n,) in await s.execute(text("SELECT n FROM t"))}
    assert rows == expected | {3}


@pytest.mark.parametrize("steps", range(6))
async def test_a_cancel_as_the_lock_is_handed_over_is_never_swallowed(steps: int) -> None:
    """Cancel a waiting writer at each step of the hand-over: either it ends cancelled
    and the lock is free, or it had already finished and owns the lock. A cancel that is
    swallowed (the task goes on as if never cancelled) kept the shell's scheduler
    running after `aclose` and hung it."""
    lock = WriterLock()
    first, second = object(), object()
    await lock.acquire(first)  # type: ignore[arg-type]
    waiter = asyncio.create_task(lock.acquire(second))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    lock.release(first)  # type: ignore[arg-type]
    for _ in range(steps):
        await asyncio.sleep(0)
    asked = waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    if asked:
        assert waiter.cancelled(), "the cancel was swallowed"
        assert lock.owner is None
        await asyncio.wait_for(lock.acquire(first), 1)  # type: ignore[arg-type]
    else:
        assert lock.owner is second
