"""A dispatcher in its own process, for the kill -9 tests: it sends every pending
outbox row of the database through an outbox that appends one line per delivery to a
file (flushed to disk before it answers, as a platform's acknowledgement would be),
slowly enough that the parent can kill it in the middle.

Usage: python -m tests.outbox_child DATABASE_URL DELIVERIES_FILE
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from sqlalchemy import func, select

from bench.chaos_child import FileOutbox
from commands.clock import SystemClock
from commands.outbox import PENDING, Dispatcher
from db.models import OutboxMessage
from db.session import Database


async def main(url: str, path: str) -> None:
    db = Database(url)
    dispatcher = Dispatcher(db, FileOutbox(Path(path)), SystemClock())
    await dispatcher.release_stale()
    while True:
        await dispatcher.deliver()
        async with db.session() as session:
            left = await session.scalar(select(func.count()).where(OutboxMessage.status == PENDING))
        if not left:
            break
        await asyncio.sleep(0.05)
    await db.dispose()
    print("all sent", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
