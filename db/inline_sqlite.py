"""SQLite driven from the event loop's own thread, with one writer at a time.

aiosqlite gives each connection a thread and sends every call there and back: for a
local SQLite file that hop costs far more than the query (a command's 20 statements
spent most of their time crossing threads, and the one writer waited for the event
loop between each). :class:`InlineConnection` keeps aiosqlite's API, which SQLAlchemy's
``sqlite+aiosqlite`` dialect drives, but runs each call at once in the calling thread.
A WAL read never waits for anything, so the loop only ever "blocks" for the query
itself.

What would block is a write lock held by another connection of this process, waiting
in the middle of its transaction for the loop: so every write transaction first
takes the database's asyncio :class:`WriterLock` (asynchronously, in turn, with the
same timeout as SQLite's busy timeout) when it begins ``IMMEDIATE``, and gives it back
when it commits, rolls back or closes. Only another *process* holding SQLite's lock
(a GPU worker, the CLI) can make a statement wait, for the few milliseconds of its
write.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite

#: A connection that has kept the event loop this long since it last let others run
#: (a long write: an assignment's hundreds of rows) lets them run between two
#: statements: reads beside it are not held for its whole length.
YIELD_AFTER_S = 0.005

#: SQLite's busy timeout (``PRAGMA busy_timeout``), also how long a write transaction
#: waits for this process's other writer before failing like SQLite would.
BUSY_TIMEOUT_S = 10.0


class WriterLock:
    """The one write transaction of a database file in this process."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.owner: InlineConnection | None = None

    async def acquire(self, conn: InlineConnection) -> None:
        if self.owner is conn:
            return
        try:
            async with asyncio.timeout(BUSY_TIMEOUT_S):
                await self._lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None
        self.owner = conn

    def release(self, conn: InlineConnection) -> None:
        if self.owner is conn:
            self.owner = None
            self._lock.release()


class _RunNow:
    """Stands in for aiosqlite's queue to its thread: runs each call at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to whoever awaits, as aiosqlite does
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection without its thread (see the module's docstring)."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], writer: WriterLock) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunNow()  # type: ignore[assignment]
        self._writer = writer
        self._since = time.perf_counter()

    def __await__(self) -> Any:
        return self._connect().__await__()  # no thread to start

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        if args and isinstance(args[0], str) and args[0].lstrip()[:15].upper() == "BEGIN IMMEDIATE":
            await self._writer.acquire(self)
            try:
                return fn(*args, **kwargs)
            except BaseException:
                self._writer.release(self)
                raise
        if time.perf_counter() - self._since >= YIELD_AFTER_S:
            # The others' turn (see YIELD_AFTER_S), before the statement: a cancel here
            # leaves nothing half done.
            await asyncio.sleep(0)
            self._since = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if self._writer.owner is self and not _in_transaction(self._connection):
                self._writer.release(self)  # committed, rolled back or closed

    def stop(self) -> asyncio.Future[Any] | None:
        self._writer.release(self)
        return super().stop()


def _in_transaction(conn: sqlite3.Connection | None) -> bool:
    try:
        return conn is not None and conn.in_transaction
    except sqlite3.ProgrammingError:  # closed
        return False


#: The writer lock of each database file, per event loop: every engine of this process
#: on one file (the bot's, a test's, the CLI's) shares it, so no statement ever waits
#: inline on a lock another coroutine holds.
_WRITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, WriterLock]] = (
    weakref.WeakKeyDictionary()
)


def writer_for(path: str) -> WriterLock:
    """The writer lock of the database file ``path`` in the running event loop."""
    locks = _WRITERS.setdefault(asyncio.get_running_loop(), {})
    key = os.path.realpath(path)
    if key not in locks:
        locks[key] = WriterLock()
    return locks[key]


def connector(path: str) -> Callable[[], Any]:
    """The ``async_creator`` for SQLAlchemy: a new inline connection to ``path``."""

    async def create() -> InlineConnection:
        connect = partial(sqlite3.connect, path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        return await InlineConnection(connect, writer_for(path))

    return create
