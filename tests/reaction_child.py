"""A bot process that dies at the worst instant of a reaction, for the kill -9 test of
reactions' answers: the vote has committed (with the outbox row that backs the
voter's answer), and the process is killed before the adapter sends that answer.

Usage: python -m tests.reaction_child DATABASE_URL DATA_DIR DELIVERIES_FILE NOW USER REF
EMOJI. Prints the backing row's id, then kills itself with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from bench.chaos_child import FileOutbox
from bot.app import start_app
from bot.settings import SAMPLE_COURSE, Settings
from commands.clock import FixedClock
from commands.context import Caller, Request, Where
from db.models import Platform


async def main(url: str, data: str, path: str, now: str, user: str, ref: str, emoji: str) -> None:
    settings = Settings(
        database_url=url,
        COURSEBOT_DATA_DIR=Path(data),
        COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
        _env_file=None,
    )
    app = await start_app(settings, clock=FixedClock(datetime.fromisoformat(now)))
    app.core.outbox = FileOutbox(Path(path))
    request = Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("battles")
    )
    reply = await app.core.handle_reaction(request, ref, emoji, added=True)
    assert reply is not None and reply.backup is not None, reply
    print(reply.backup, flush=True)
    # Committed; the answer was never sent (the adapter's turn): die here.
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:8]))
