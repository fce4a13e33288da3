"""Commands declared read-only (``reads=True``, every ``share`` lookup too) run beside
the one SQLite writer on their own snapshot: each must really only read. Every such
command runs here with each of its examples, as the instructor and as a student, at two
moments of the sample course, and nothing may be written."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from bot.app import App
from commands.context import Caller, Request, Where
from db.models import Base, Platform
from tests.helpers import QUIET_GROUPS, publish_groups

BATTLE_DAY = datetime(2023, 9, 13, 18, 30, tzinfo=UTC)


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


async def counts(app: App) -> dict[str, int]:
    async with app.db.session() as s:
        return {
            name: int(await s.scalar(select(func.count()).select_from(table)) or 0)
            for name, table in Base.metadata.tables.items()
        }


async def run_every_read(app: App, caplog: pytest.LogCaptureFixture) -> int:
    ran = 0
    wrote: list[tuple[str, str]] = []
    for cmd in app.core.registry:
        if not cmd.reads:
            continue
        for line in cmd.examples or (cmd.name,):
            for user in ("gedas", "alice"):
                before = await counts(app)
                caplog.clear()
                await app.core.handle_text(req(user), line)
                if "read-only command wrote" in caplog.text or await counts(app) != before:
                    wrote.append((line, user))
                ran += 1
    assert wrote == []
    return ran


async def test_read_only_commands_write_nothing(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="coursebot.core")
    assert await run_every_read(app, caplog) > 60
    # Later in the term: published battle sides, a class day.
    await publish_groups(app, QUIET_GROUPS)
    app.clock.at = BATTLE_DAY  # type: ignore[attr-defined]
    assert await run_every_read(app, caplog) > 60
