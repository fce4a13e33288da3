"""A bot replica for the leader tests: a scheduler (with its outbox dispatcher) on the
given database, sending through an outbox that appends one line per delivery to a file.
It prints "leads" when it becomes the leader.

Usage: python -m tests.leader_child DATABASE_URL DELIVERIES_FILE [MAX_SLEEP]
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from bench.chaos_child import FileOutbox
from bot.leader import leadership
from bot.scheduler import ReminderSweeper
from commands import load_registry
from commands.clock import SystemClock
from db.session import Database


async def main(url: str, path: str, max_sleep: float = 0.5) -> None:
    load_registry()  # the features register their due work
    db = Database(url)
    lead = leadership(url)
    await lead.wait()
    print("leads", flush=True)
    sweeper = ReminderSweeper(db, FileOutbox(Path(path)), SystemClock(), hours_before=[24])
    sweeper.start(max_sleep)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if sys.argv[3:] else 0.5))
