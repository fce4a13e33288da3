"""Deadline reminders: sent once, at the right instant across DST, caught up after a
restart within the grace window, and shown in the shell as they fire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bot.app import start_app
from bot.settings import Settings
from bot.shell import Shell
from commands.clock import FixedClock
from commands.reminders import GRACE, due_reminders
from db.models import Course, Notification


class Collect:
    """An outbox that keeps what was posted."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str]] = []
        self.dms: list[tuple[int, str]] = []

    async def dm(self, course_id: int, person_id: int, reply) -> str:  # type: ignore[no-untyped-def]
        self.dms.append((person_id, reply.text))
        return str(len(self.dms))

    async def post(self, course_id: int, channel: str, reply) -> str:  # type: ignore[no-untyped-def]
        self.posts.append((channel, reply.text))
        return str(len(self.posts))


async def _due(app, at: datetime) -> list[str]:  # type: ignore[no-untyped-def]
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        posts = await due_reminders(s, course, at, [24])
        return [p.reply.text for p in posts if p.person_id is None]


async def test_reminder_fires_once_24h_before_in_the_course_zone(app) -> None:  # type: ignore[no-untyped-def]
    # Rankings are due Sun Aug 27 2023, 11:59 PM EDT = Mon 03:59 UTC.
    due = datetime(2023, 8, 28, 3, 59, tzinfo=UTC)
    assert await _due(app, due - timedelta(hours=24, seconds=1)) == []
    texts = await _due(app, due - timedelta(hours=24))
    assert len(texts) == 1
    assert "Paper rankings" in texts[0] and "Sun Aug 27, 2023, 11:59 PM EDT" in texts[0]
    assert await _due(app, due - timedelta(hours=23)) == []  # never twice


async def test_dst_end_keeps_the_local_wall_clock(app) -> None:  # type: ignore[no-untyped-def]
    # The milestone write-up is due Sun Nov 5 2023, 11:59 PM EST (DST ended that morning):
    # 04:59 UTC on Nov 6, one hour later in UTC than the same wall time in October.
    due = datetime(2023, 11, 6, 4, 59, tzinfo=UTC)
    texts = await _due(app, due - timedelta(hours=24))
    assert any("Project milestone write-up" in t and "11:59 PM EST" in t for t in texts)


async def test_missed_while_down_goes_out_late_within_grace_then_is_skipped(app) -> None:  # type: ignore[no-untyped-def]
    due = datetime(2023, 8, 28, 3, 59, tzinfo=UTC)
    fire = due - timedelta(hours=24)
    assert len(await _due(app, fire + GRACE - timedelta(minutes=1))) == 1
    # A reminder whose grace window passed is not sent at all.
    crit_due = datetime(2023, 8, 30, 17, 0, tzinfo=UTC)  # SlowFast critique, 1 PM EDT
    late = crit_due - timedelta(hours=24) + GRACE + timedelta(minutes=1)
    assert not any("SlowFast" in t for t in await _due(app, late))


async def test_restart_does_not_repeat_a_sent_reminder(settings: Settings) -> None:
    due = datetime(2023, 8, 28, 3, 59, tzinfo=UTC)
    clock = FixedClock(due - timedelta(hours=24, minutes=-5))
    outbox = Collect()
    from bot.scheduler import ReminderSweeper

    app = await start_app(settings, clock=clock)
    try:
        await ReminderSweeper(app.db, outbox, clock, hours_before=[24]).sweep()
    finally:
        await app.close()
    assert len(outbox.posts) == 1 and outbox.posts[0][0] == "announcements"
    assert len(outbox.dms) == 25  # every student is still missing their rankings

    app = await start_app(settings, clock=clock)  # the bot restarts
    try:
        sent = await ReminderSweeper(app.db, outbox, clock, hours_before=[24]).sweep()
        async with app.db.session() as s:
            n = await s.scalar(select(func.count()).select_from(Notification))
    finally:
        await app.close()
    assert sent == [] and len(outbox.posts) == 1 and len(outbox.dms) == 25 and n == 26


async def test_the_shell_shows_scheduled_posts_as_they_fire(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    shell = Shell(app, workspace="default", speaker="alice", files_dir=tmp_path, out=lines.append)
    app.clock.at = datetime(2023, 8, 27, 3, 0, tzinfo=UTC)  # Sat 11 PM EDT
    shell.sweeper.start(0.05)
    try:
        import asyncio

        await asyncio.sleep(0.3)
        assert lines == []  # nothing due yet
        app.clock.at = datetime(2023, 8, 27, 4, 0, tzinfo=UTC)  # 24 h before the rankings
        for _ in range(40):
            await asyncio.sleep(0.05)
            if lines:
                break
    finally:
        await shell.sweeper.aclose()
    text = "\n".join(lines)
    assert "#announcements · coursebot (posted)" in text
    assert "Reminder: **Paper rankings** is due Sun Aug 27, 2023, 11:59 PM EDT" in text


async def test_students_missing_rankings_get_a_private_nudge(app) -> None:  # type: ignore[no-untyped-def]
    from commands.context import Caller, Request, Where
    from db.models import Platform

    alice = Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, "alice"), Where("general")
    )
    await app.core.handle_text(alice, "rank standard 5 6 7 8 13 14 15")
    await app.core.handle_text(alice, "rank battle 9 11 16")
    due = datetime(2023, 8, 28, 3, 59, tzinfo=UTC)
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        posts = await due_reminders(s, course, due - timedelta(hours=23), [24])
    dms = [p for p in posts if p.person_id is not None]
    assert len(dms) == 24  # everyone but Alice
    bob = next(p for p in dms if p.reply.text.startswith("Hi Bob,"))
    assert "`rank standard` and `rank battle`" in bob.reply.text and "in 23 hours" in bob.reply.text
