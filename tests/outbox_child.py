"""A dispatcher in its own process, for the kill -9 tests: it sends every pending
outbox row of the database through an outbox that appends one line per delivery to a
file (flushed to disk before it answers, as a platform's acknowledgement would be),
slowly enough that the parent can kill it in the middle.

Usage: python -m tests.outbox_child DATABASE_URL DELIVERIES_FILE [DIE_AT]

With ``DIE_AT``, the process kills itself (SIGKILL) the moment the platform has
acknowledged the message with that text: after the send, before its commit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from sqlalchemy import func, select

from bench.chaos_child import FileOutbox
from commands.clock import SystemClock
from commands.outbox import PENDING, Dispatcher
from commands.replies import Reply
from db.models import OutboxMessage
from db.session import Database


class DyingOutbox(FileOutbox):
    """A transcript that dies right after acknowledging one message."""

    def __init__(self, path: Path, die_at: str | None) -> None:
        super().__init__(path)
        self.die_at = die_at

    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        ref = await super().post(course_id, channel, reply)
        if reply.text == self.die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return ref


async def main(url: str, path: str, die_at: str | None = None) -> None:
    db = Database(url)
    dispatcher = Dispatcher(db, DyingOutbox(Path(path), die_at), SystemClock())
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
    asyncio.run(main(*sys.argv[1:4]))
