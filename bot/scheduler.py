"""Runs the periodic jobs that deliver due posts through the outbox: the reminder
sweep (deadlines, missing rankings) and the one-second battle tick (timers, polls that
close by themselves).

The schedule itself lives in the database (deadlines, and the ``notifications``
that went out), so nothing is lost on restart: the first sweep after a start
catches up on anything due within the grace window. APScheduler drives the
interval, with coalescing so a slow sweep never piles up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.battles import due_battle_posts
from commands.clock import Clock
from commands.core import prune_events
from commands.critiques import due_critique_posts
from commands.discussions import due_discussion_posts
from commands.gpu import (
    due_gpu_posts,
    gpu_posts_pending,
    prune_job_files,
    recover_gpu_jobs,
)
from commands.grades import due_announcements
from commands.outbox import Outbox, send
from commands.reminders import Post, due_reminders
from db.models import Course, CourseBinding, Platform
from db.session import Database

log = logging.getLogger("coursebot.scheduler")


class ReminderSweeper:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Clock,
        *,
        hours_before: list[int],
        platform: Platform | None = None,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.clock = clock
        self.hours_before = hours_before
        self.platform = platform
        self._scheduler: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[object]] = set()
        self._gpu_lock = asyncio.Lock()
        self._mine_ids: set[int] | None = None

    def _courses(self) -> Select[tuple[Course]]:
        """The courses this adapter serves: those bound to its platform (all if none),
        so that with several adapters on one database each posts only its own."""
        q = select(Course)
        if self.platform is not None:
            q = q.where(
                Course.id.in_(
                    select(CourseBinding.course_id).where(CourseBinding.platform == self.platform)
                )
            )
        return q

    async def sweep(self) -> list[Post]:
        """Deliver every reminder that is due now; return what was posted."""
        posts: list[Post] = []
        async with self.db.transaction() as session:
            for course in await session.scalars(self._courses()):
                posts += await due_reminders(session, course, self.clock.now(), self.hours_before)
            await prune_events(session, self.clock.now())  # retries of old events are over
            await prune_job_files(session, self.clock.now())  # results long since posted
        for post in posts:
            try:
                if post.person_id is not None:
                    await self.outbox.dm(post.course_id, post.person_id, post.reply)
                else:
                    await self.outbox.post(post.course_id, post.channel, post.reply)
            except Exception:
                log.exception("could not deliver reminder %s", post.key)
        return posts

    async def tick(self) -> int:
        """Battle timers, polls that close by themselves, critique pings, discussion
        timers, scheduled announcements, GPU job progress and results that are due
        now; how many posts."""
        async with self.db.transaction() as session:
            mine = await self._mine(session)
            now = self.clock.now()
            due = await due_battle_posts(session, now, course_ids=mine)
            due += await due_critique_posts(session, now, course_ids=mine)
            due += await due_discussion_posts(session, now, course_ids=mine)
            due += await due_announcements(session, now, course_ids=mine)
            await recover_gpu_jobs(session, now)  # dead workers' jobs: retried or expired
        for course_id, item in due:
            await send(self.db, self.outbox, course_id, [item])
        return len(due) + await self.gpu_tick()

    async def gpu_tick(self) -> int:
        """GPU job progress and results due now (polled every 50 ms with a cheap read,
        so a result is posted within tens of milliseconds of the worker's finishing);
        one at a time in this process, so nothing is posted twice."""
        async with self._gpu_lock:
            async with self.db.session() as session:
                mine = await self._mine(session, cached=True)
                if not await gpu_posts_pending(session, course_ids=mine):
                    return 0
            async with self.db.transaction() as session:
                due = await due_gpu_posts(session, self.clock.now(), course_ids=mine, recover=False)
            for course_id, item in due:
                await send(self.db, self.outbox, course_id, [item])
            return len(due)

    async def _mine(self, session: AsyncSession, *, cached: bool = False) -> set[int] | None:
        """The ids of this adapter's courses (None: all); refreshed by every tick."""
        if self.platform is None:
            return None
        if not cached or self._mine_ids is None:
            self._mine_ids = set(
                await session.scalars(self._courses().with_only_columns(Course.id))
            )
        return self._mine_ids

    async def _run_job(self, job: Callable[[], Awaitable[object]]) -> None:
        """Run one scheduled job, tracked so that ``aclose`` can wait for it: a job left
        running past shutdown would touch a disposed engine and never finish."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await job()
        finally:
            if task is not None:
                self._running.discard(task)

    async def _sweep_job(self) -> None:
        await self._run_job(self.sweep)

    async def _tick_job(self) -> None:
        await self._run_job(self.tick)

    async def _gpu_job(self) -> None:
        await self._run_job(self.gpu_tick)

    def start(
        self, interval_seconds: float, tick_seconds: float = 1.0, gpu_seconds: float = 0.05
    ) -> None:
        self._scheduler = AsyncIOScheduler()
        jobs = [
            (self._gpu_job, gpu_seconds, 60, "gpu-posts"),
            (self._tick_job, tick_seconds, 60, "battle-tick"),
            (
                self._sweep_job,
                interval_seconds,
                int(max(interval_seconds * 4, 60)),
                "reminder-sweep",
            ),
        ]
        for job, seconds, grace, name in jobs:
            self._scheduler.add_job(
                job,
                "interval",
                seconds=seconds,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=grace,
                id=name,
            )
        self._scheduler.start()

    def stop(self) -> None:
        """Stop scheduling; jobs already running finish (``aclose`` waits for them)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    async def aclose(self) -> None:
        """Stop, and wait for the jobs in flight (cancelled) before the engine goes."""
        self.stop()
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
