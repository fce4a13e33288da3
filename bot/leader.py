"""One leader among replicas.

Several bot processes may run against one Postgres database (high availability; Slack's
HTTP mode behind a load balancer, every replica answering commands). Exactly one of them
runs the scheduler and the outbox dispatcher and, on Discord, holds the gateway: the one
that holds a Postgres **advisory lock** on a connection of its own. On that connection it
also LISTENs: every command committed on any replica NOTIFYs, so the leader's scheduler
looks again at once instead of at its next planned instant. When that process
dies its connection closes and Postgres frees the lock; a follower, trying every
``RETRY_SECONDS``, takes over (well within 15 s) and sends what came due, once (the
outbox rows and ``notifications`` say what was already sent).

SQLite deployments run one process: :func:`claim_sqlite` takes an exclusive lock on a
file next to the database at start, and a second process is told so and stops.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url

from commands.core import WAKE_CHANNEL
from commands.errors import CourseBotError
from commands.outbox import wake_all
from db.session import normalise_url

log = logging.getLogger("coursebot.leader")

#: The advisory lock's key ("coursebot" in ASCII, as a bigint).
LOCK_KEY = 0x636F75727365626F
#: How often a follower tries to take the lead, and the leader checks it still has it.
RETRY_SECONDS = 2.0


class Leadership:
    """Whether this process leads, on Postgres. On SQLite there is one process, so it
    always leads (see :func:`claim_sqlite` for the check at start)."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.backend = make_url(self.url).get_backend_name()
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return self.backend != "postgresql" or self._conn is not None

    async def try_acquire(self) -> bool:
        if self.backend != "postgresql":
            return True
        if self._conn is not None:
            return True
        import asyncpg

        dsn = make_url(self.url).set(drivername="postgresql").render_as_string(False)
        conn = await asyncpg.connect(dsn)
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        # A command committed on any replica wakes this one's scheduler and dispatcher.
        await conn.add_listener(WAKE_CHANNEL, lambda *_: wake_all())
        self._conn = conn
        return True

    async def still_held(self) -> bool:
        """False when the lock's connection is gone (the database restarted)."""
        if self.backend != "postgresql":
            return True
        if self._conn is None:
            return False
        try:
            await self._conn.fetchval("SELECT 1")
            return True
        except Exception:
            log.warning("lost the connection that holds the leader lock")
            self._conn = None
            return False

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()  # closing the session frees the advisory lock
            except Exception:  # pragma: no cover - the connection is gone anyway
                log.debug("closing the leader connection failed", exc_info=True)

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Wait until this process leads (True), or ``stop`` is set (False)."""
        said = False
        while not await self.try_acquire():
            if not said:
                log.warning(
                    "another coursebot process leads (scheduler, outbox, Discord gateway); "
                    "this one answers commands and takes over if that one stops"
                )
                said = True
            if stop is not None and stop.is_set():
                return False
            await asyncio.sleep(RETRY_SECONDS)
        if said:
            log.warning("this process now leads: it runs the scheduler and the outbox")
        return True


_LEADERSHIPS: dict[str, Leadership] = {}


def leadership(url: str) -> Leadership:
    """This process's one :class:`Leadership` for the database at ``url`` (an advisory
    lock belongs to a connection, so the scheduler and the Discord gateway share it)."""
    key = normalise_url(url)
    if key not in _LEADERSHIPS:
        _LEADERSHIPS[key] = Leadership(key)
    return _LEADERSHIPS[key]


class AlreadyRunning(CourseBotError):
    """A second bot process on one SQLite file."""


_SQLITE_LOCKS: dict[str, IO[bytes]] = {}


def claim_sqlite(url: str) -> Path | None:
    """At start, on SQLite: take the one-process lock next to the database file, or
    raise :class:`AlreadyRunning` with what to do. Returns the lock file (None when the
    database is not a SQLite file). Held until the process exits."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(f"{parsed.database}.lock")
    if str(path) in _SQLITE_LOCKS:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+b")  # noqa: SIM115 (kept open for the process's life)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().decode(errors="replace").strip() or "another process"
        handle.close()
        raise AlreadyRunning(
            f"Another coursebot process ({holder}) is already running on {parsed.database}.",
            hint="A SQLite deployment runs one bot process: stop the other one first, or "
            "use Postgres (DATABASE_URL=postgresql://…) to run several replicas.",
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}".encode())
    handle.flush()
    _SQLITE_LOCKS[str(path)] = handle
    return path
