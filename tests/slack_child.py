"""A Slack bot process for the inbox kill -9 test: the real SlackBot in HTTP mode on
127.0.0.1, its Web API pointed at the test's fake; prints its port, serves until killed.

Usage: python -m tests.slack_child DATABASE_URL API_URL DATA_DIR
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from bot.app import start_app
from bot.settings import SAMPLE_COURSE, Settings, SlackSettings
from bot.slack.bot import SlackBot

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


async def main(url: str, api_url: str, data_dir: str) -> None:
    settings = Settings(
        database_url=url,
        COURSEBOT_DATA_DIR=Path(data_dir),
        COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
        _env_file=None,
    )
    slack = SlackSettings(
        bot_token="xoxb-test", signing_secret=SECRET, api_url=api_url, _env_file=None
    )
    app = await start_app(settings)
    app = dataclasses.replace(app, settings=settings.model_copy(update={"slack": slack}))
    bot = SlackBot(app, post_interval=0.0)
    await bot.start(sweep=False)
    port = await bot.start_http("127.0.0.1", 0)
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import faulthandler
    import os

    if os.environ.get("CHILD_STACKS"):
        faulthandler.dump_traceback_later(float(os.environ["CHILD_STACKS"]), exit=False)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(*sys.argv[1:4]))
