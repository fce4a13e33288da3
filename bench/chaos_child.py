"""One bot process of the chaos benchmark: the command core, the scheduler and the
outbox on virtual time, playing a course week; killed and restarted by
:mod:`bench.chaos`. Every delivery is one line appended (and fsynced) to a file, as a
platform's acknowledgement would be.

Usage: python -m bench.chaos_child DATABASE_URL DELIVERIES_FILE STATE_FILE
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from bot.app import start_app
from bot.scheduler import ReminderSweeper
from bot.settings import SAMPLE_COURSE, Settings
from commands.clock import FixedClock
from commands.context import Caller, Request, Where
from commands.due import earliest
from commands.replies import Reply
from db.models import Platform

#: The week played: the sample course's rankings week, in virtual time.
START = datetime.fromisoformat("2023-08-25T14:00:00+00:00")  # Fri 10 AM EDT
END = START + timedelta(days=7)
#: What people type, and when (seconds after START): an announcement scheduled for the
#: next morning, a battle's strict timer with its warnings and overruns, a private
#: reminder to every student missing rankings, another timer later in the week.
SCRIPT: list[tuple[int, str, str]] = [
    (0, "gedas", 'announce "Laptops on Monday, please." at 2023-08-26T09:00'),
    (3600, "maya", "battle timer 1 a"),
    (3 * 3600, "maya", "rankings remind"),
    (2 * 86400, "gedas", 'announce "Rankings close tonight." at 2023-08-27T18:00'),
    (4 * 86400, "maya", "battle timer 2 b"),
]


class FileOutbox:
    """A platform whose every accepted message is one line in a file."""

    platform = Platform.TERMINAL

    def __init__(self, path: Path) -> None:
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (lives with the process)

    async def _deliver(self, where: str, reply: Reply) -> str:
        text = (reply.text or reply.title or "").replace("\n", " ")
        self.file.write(f"{where} | {text}\n")
        self.file.flush()
        os.fsync(self.file.fileno())
        await asyncio.sleep(0.002)  # the platform's answer travels back
        return where

    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        return await self._deliver(f"#{channel}", reply)

    async def edit(self, course_id: int, message_ref: str, reply: Reply) -> None:
        await self._deliver(f"edit {message_ref}", reply)

    async def dm(self, course_id: int, person_id: int, reply: Reply) -> str:
        return await self._deliver(f"dm {person_id}", reply)

    async def dm_account(self, course_id: int, user_id: str, reply: Reply) -> str:
        return await self._deliver(f"dm @{user_id}", reply)

    async def thread(
        self, course_id: int, channel: str, name: str, reply: Reply, person_ids: Sequence[int] = ()
    ) -> str:
        return await self._deliver(f"#{channel} > {name}", reply)


def _load(state: Path) -> datetime:
    try:
        return datetime.fromisoformat(state.read_text().strip())
    except (OSError, ValueError):
        return START


def _save(state: Path, at: datetime) -> None:
    tmp = state.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(at.isoformat())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, state)


async def main(url: str, deliveries: str, state_file: str) -> None:
    state = Path(state_file)
    clock = FixedClock(_load(state))
    settings = Settings(
        database_url=url,
        COURSEBOT_DATA_DIR=Path(deliveries).parent / "data",
        COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
        COURSEBOT_GPU_WORKER=False,
        _env_file=None,
    )
    app = await start_app(settings, clock=clock)
    outbox = FileOutbox(Path(deliveries))
    app.core.outbox = outbox
    sweeper = ReminderSweeper(app.db, outbox, clock, hours_before=[24])
    await sweeper.dispatcher.release_stale()
    print("ready", flush=True)
    ran_through: datetime | None = None
    while True:
        now = clock.now()
        # Commands due by now; after a restart, every one up to now again (the event id
        # makes a command that did commit a no-op, so nothing happens twice).
        for i, (offset, who, line) in enumerate(SCRIPT):
            at = START + timedelta(seconds=offset)
            if at <= now and (ran_through is None or at > ran_through):
                request = Request(
                    Platform.TERMINAL,
                    "default",
                    Caller(Platform.TERMINAL, who, who),
                    Where("general"),
                    event_id=f"chaos-{i}",
                )
                await app.core.handle_text(request, line)
        ran_through = now
        await sweeper.run_due()
        await sweeper.dispatcher.deliver()
        if now >= END:
            break
        script_next = [
            START + timedelta(seconds=o) for o, _, _ in SCRIPT if START + timedelta(seconds=o) > now
        ]
        nxt = earliest(
            await sweeper.next_at(), await sweeper.dispatcher.next_due(), *script_next, END
        )
        assert nxt is not None
        clock.at = max(nxt, now + timedelta(microseconds=1))
        _save(state, clock.at)
        await asyncio.sleep(0.003)  # room for the kill to land anywhere
    await app.close()
    print("done", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(*sys.argv[1:4]))
