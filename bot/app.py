"""Wiring shared by every adapter: settings → database (migrated) → command core."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.settings import Settings
from commands import load_registry
from commands.clock import Clock, FixedClock, ShiftedClock, SystemClock, parse_instant
from commands.core import CommandCore
from commands.coursefile import ImportReport, import_course, parse_course_file
from commands.errors import InvalidInput
from db.migrate import upgrade_async
from db.models import Course
from db.session import Database

log = logging.getLogger("coursebot")


@dataclass
class App:
    settings: Settings
    db: Database
    core: CommandCore
    clock: Clock
    #: The course desk (bot.web.WebServer) when served (settings.web_address).
    web: Any = None

    async def close(self) -> None:
        if self.web is not None:
            await self.web.stop()
        # Edits queued after replies (a poll's count) finish or stop before the
        # database goes: a task left behind would hold its connection's transaction.
        await self.core.close()
        await self.db.dispose()


def make_clock(settings: Settings, tz: str = "America/New_York", *, virtual: bool = False) -> Clock:
    """The real clock, or with ``--now`` a pretend one read in ``tz`` (the course's
    zone): ``virtual`` stands still until moved (scripted shells: ``:advance``), else it
    runs on from that instant."""
    if settings.now:
        try:
            start = parse_instant(settings.now, tz)
        except ValueError:
            raise InvalidInput(
                f"--now / COURSEBOT_NOW `{settings.now}` is not a date and time; "
                f"use e.g. 2023-08-25T10:00 ({tz} time) or 2023-08-25T14:00+00:00."
            ) from None
        return FixedClock(start) if virtual else ShiftedClock(start)
    return SystemClock()


async def course_zone(db: Database, course_key: str | None = None) -> str:
    """The IANA zone of the course (the first one, or ``course_key``'s)."""
    async with db.session() as session:
        q = select(Course.timezone).order_by(Course.id).limit(1)
        if course_key:
            q = q.where(Course.key == course_key)
        return await session.scalar(q) or "America/New_York"


_heap_settled = False


def settle_heap(*, again: bool = False) -> None:
    """Once per process, after start: what startup built (the command registry,
    SQLAlchemy's mappers, pydantic's schemas, the platform libraries) lives as long as
    the process, so it is moved out of the cyclic collector's sight (``gc.freeze``) and
    each full collection scans only what commands create. Measured with `python -m
    bench`: without it a full collection held every command for 120-200 ms, 35 times
    in a 90-second paced run. ``again``: also when it ran before (a benchmark that
    starts a second app in the same process; garbage is collected first)."""
    global _heap_settled
    if _heap_settled and not again:
        return
    _heap_settled = True
    gc.collect()
    gc.freeze()
    # Fewer, not longer, collections: a full one after 100 of the middle generation
    # (CPython's default is 10), a young one after 10,000 new objects (700).
    gc.set_threshold(10_000, 10, 100)


async def start_app(
    settings: Settings,
    *,
    load_sample: bool = True,
    clock: Clock | None = None,
    virtual: bool = False,
) -> App:
    """Migrate the database, load the course file into an empty one, build the core.
    Without ``clock``, ``--now`` is read in the course's own zone (see make_clock)."""
    await upgrade_async(settings.database_url)
    db = Database(settings.database_url)
    if load_sample and settings.course_file is not None:
        async with db.session() as session:
            n = await session.scalar(select(func.count()).select_from(Course))
        if not n:
            report = await import_course_file(db, settings.course_file, clock or SystemClock())
            log.info("loaded %s into an empty database", settings.course_file)
            log.debug(report.summary())
    if clock is None:
        zone = await course_zone(db, settings.default_course) if settings.now else "UTC"
        clock = make_clock(settings, zone, virtual=virtual)
    core = CommandCore(
        db,
        load_registry(),
        clock=clock,
        data_dir=settings.data_dir,
        config={
            "question_embeddings": settings.question_embeddings,
            "mail": settings.smtp.mail_config(),  # registration codes (None: no mail)
        },
    )
    app = App(settings=settings, db=db, core=core, clock=clock)
    settle_heap()
    if settings.web_address and settings.web_address != "off":
        from bot.web import start_web

        app.web = await start_web(app, settings.web_address, settings.web_url)
    return app


async def import_course_file(db: Database, path: Path, clock: Clock) -> ImportReport:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"Cannot read the course file {path}: {exc.strerror}.") from None
    cf = parse_course_file(text, source=str(path))
    async with db.transaction() as session:
        return await import_course(session, cf, now=clock.now())
