"""A Discord bot process for the inbox kill -9 tests: the real discord.py client and
CourseBot on simcord's simulated Discord (tests/discord_fakes.py), on the test's
database. The instructor runs ``/admin discussion add paper:5 text:<QUESTION>``; the
process prints one JSON line when the command is where the test wants the crash (its
interaction kept and deferred), then waits to be killed:

- ``before``: the core is about to run the command (nothing committed);
- ``after``: the command committed, its answer is about to be sent.

The line carries the ids of the simulated Discord, which a world built the same way in
the test process shares (simcord's ids are deterministic).

Usage: python -m tests.discord_child DATABASE_URL DATA_DIR MODE
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from bot.app import start_app
from bot.settings import SAMPLE_COURSE, Settings
from commands.clock import FixedClock
from commands.replies import Reply
from tests.conftest import SAMPLE_NOW
from tests.discord_fakes import discord_world, world_ids

QUESTION = "Would SlowFast work on audio spectrograms?"


async def main(url: str, data_dir: str, mode: str) -> None:
    settings = Settings(
        database_url=url,
        COURSEBOT_DATA_DIR=Path(data_dir),
        COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
        _env_file=None,
    )
    app = await start_app(settings, clock=FixedClock(SAMPLE_NOW))
    reached = asyncio.Event()
    async with discord_world(app) as world:
        core, router = app.core, world.bot.router
        handle, respond = core.handle, router.respond

        async def stop_before(request: Any, name: str, options: dict[str, Any]) -> Reply:
            if name != "discussion add":
                return await handle(request, name, options)
            reached.set()
            await asyncio.Event().wait()  # killed here, before the command's transaction
            raise AssertionError("unreachable")

        async def stop_after(interaction: Any, reply: Reply, **kwargs: Any) -> None:
            reached.set()
            await asyncio.Event().wait()  # killed here: committed, not answered
            await respond(interaction, reply, **kwargs)

        if mode == "before":
            core.handle = stop_before  # type: ignore[method-assign]
        else:
            router.respond = stop_after  # type: ignore[method-assign]
        command = asyncio.ensure_future(
            world.gedas.slash(world.general, "admin discussion add", paper=5, text=QUESTION)
        )
        await reached.wait()
        print(json.dumps(world_ids(world)), flush=True)
        await command  # never finishes: the test kills this process


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(*sys.argv[1:4]))
