"""The scheduler: sends what falls due, when it falls due.

Features register their due work in :data:`commands.due.due_registry` (battle timers,
critique pings, discussion call-backs, scheduled announcements, deadline reminders,
GPU results); this module imports none of them. The loop runs every provider once,
writes what is due as outbox rows in the same transaction that records it as sent,
hands them to the dispatcher, then sleeps until the earliest instant any provider
plans next (at most ``max_sleep`` seconds), woken early when a command changes
something. Work that other processes cause (a GPU worker finishing a job) is polled
with a cheap read, quickly while something waits and not at all otherwise.

An idle bot logs nothing per pass. The schedule lives in the database (deadlines,
timers and the ``notifications`` already sent), so a restart resumes exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.leader import RETRY_SECONDS, leadership
from commands.clock import Clock
from commands.due import DueWork, Scope, due_registry, earliest
from commands.outbox import Dispatcher, Outbox, Outgoing, enqueue, register_waker
from db.models import Course, CourseBinding, Platform
from db.session import Database

log = logging.getLogger("coursebot.scheduler")

#: Due work that ``sweep`` runs (deadline reminders); ``tick`` runs the rest.
SWEEP = frozenset({"reminders", "event-memory"})
#: How often the GPU results are read while a job waits to be posted.
GPU_POLL_SECONDS = 0.05
#: The shortest time between two passes that commands woke (a burst coalesces).
WAKE_GAP = 0.2


class ReminderSweeper:
    """The scheduler of one adapter (the courses bound to ``platform``; all if None)."""

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
        #: Sends the outbox rows the passes write (and retries what failed).
        self.dispatcher = Dispatcher(db, outbox, clock)
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._gpu_wake = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._gpu_lock = asyncio.Lock()
        self._last_now: datetime | None = None
        register_waker(self)

    # ------------------------------------------------------------------ one pass
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

    async def _scope(self, session: AsyncSession) -> Scope:
        ids = None
        if self.platform is not None:
            ids = set(await session.scalars(self._courses().with_only_columns(Course.id)))
        return Scope(course_ids=ids, reminder_hours=tuple(self.hours_before))

    async def run(self, work: Iterable[DueWork]) -> list[tuple[int, Outgoing]]:
        """Run ``work`` at the clock's now: queue what is due (with its record, in one
        transaction) and send it; return what was queued."""
        async with self._pass_lock:
            async with self.db.transaction() as session:
                now = self.clock.now()
                self._check_clock(now)
                scope = await self._scope(session)
                due: list[tuple[int, Outgoing]] = []
                for provider in work:
                    due += _as_batch(
                        provider.name, now, await provider.collect(session, now, scope)
                    )
                rows = [r for cid, item in due for r in enqueue(session, cid, [item], now)]
                await session.flush()
                ids = [r.id for r in rows]
            await self.dispatcher.deliver(ids)
            return due

    def _check_clock(self, now: datetime) -> None:
        if self._last_now is not None and now < self._last_now - timedelta(seconds=1):
            log.warning(
                "the clock went back from %s to %s: what was sent stays sent; nothing is "
                "sent twice",
                self._last_now.isoformat(),
                now.isoformat(),
            )
        self._last_now = now

    async def sweep(self) -> list[tuple[int, Outgoing]]:
        """Deadline reminders (and housekeeping) due now; what was queued."""
        return await self.run(p for p in due_registry if p.name in SWEEP)

    async def tick(self) -> int:
        """Every other feature's posts due now (timers, polls, critique pings,
        discussions, announcements, GPU results); how many."""
        return len(await self.run(p for p in due_registry if p.name not in SWEEP))

    async def run_due(self) -> int:
        """Everything due now; how many posts."""
        return len(await self.run(due_registry))

    async def next_at(self) -> datetime | None:
        """The earliest instant after now at which any provider has something to post."""
        async with self.db.session() as session:
            now = self.clock.now()
            scope = await self._scope(session)
            best = None
            for provider in due_registry:
                best = earliest(best, await provider.next_at(session, now, scope))
            return best

    async def gpu_tick(self) -> int:
        """GPU progress and results waiting to be posted (a cheap read first)."""
        async with self._gpu_lock:
            polled = [p for p in due_registry if p.poll is not None]
            async with self.db.session() as session:
                scope = await self._scope(session)
                waiting = [p for p in polled if p.poll and await p.poll(session, scope)]
            if not waiting:
                return 0
            return len(await self.run(waiting))

    async def gpu_waiting(self) -> bool:
        async with self.db.session() as session:
            scope = await self._scope(session)
            for p in due_registry:
                if p.poll is not None and await p.poll(session, scope):
                    return True
        return False

    # ------------------------------------------------------------------ the loops
    def kick(self) -> None:
        """Something changed (a command committed): look again now."""
        self._wake.set()
        self._gpu_wake.set()

    def start(self, max_sleep: float = 30.0) -> None:
        """Run the scheduler, the GPU poll and the outbox dispatcher until :meth:`aclose`.
        ``max_sleep`` bounds a sleep, so a change made by another process (a CLI
        import, another replica) is seen within that long."""
        self._tasks = [asyncio.create_task(self._lead(max_sleep), name="leader")]

    async def _lead(self, max_sleep: float) -> None:
        """Run the loops while this process leads (on Postgres, one replica of several;
        on SQLite, always); if the lead is lost, stop them and wait to lead again."""
        lead = leadership(self.db.url)
        while True:
            await lead.wait()
            loops = [
                asyncio.create_task(self._schedule(max_sleep), name="scheduler"),
                asyncio.create_task(self._poll_gpu(max_sleep), name="gpu-poll"),
                asyncio.create_task(self._dispatch(), name="outbox"),
            ]
            try:
                held = True
                while held:
                    await asyncio.sleep(RETRY_SECONDS)
                    held = await lead.still_held()
            finally:
                for task in loops:
                    task.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
                # Stopping (or the lock's connection lost): let another process lead.
                await lead.release()

    async def _schedule(self, max_sleep: float) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_due()
                nxt = await self.next_at()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the scheduler's pass failed; trying again shortly")
                nxt = None
            wait = max_sleep
            if nxt is not None:
                wait = min(max_sleep, max(0.0, (nxt - self.clock.now()).total_seconds()))
            started = asyncio.get_running_loop().time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            # Woken by commands: at most a few passes a second, however busy the class.
            rest = WAKE_GAP - (asyncio.get_running_loop().time() - started)
            if self._wake.is_set() and rest > 0:
                await asyncio.sleep(min(rest, wait))

    async def _poll_gpu(self, max_sleep: float) -> None:
        while True:
            self._gpu_wake.clear()
            try:
                await self.gpu_tick()
                busy = await self.gpu_waiting()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the GPU results poll failed; trying again shortly")
                busy = False
            if busy:
                await asyncio.sleep(GPU_POLL_SECONDS)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gpu_wake.wait(), timeout=max_sleep)

    async def _dispatch(self) -> None:
        """The outbox loop: first what a stopped process was sending, then as rows fall due."""
        await self.dispatcher.release_stale()
        await self.dispatcher.run()

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def aclose(self) -> None:
        """Stop the loops and wait for them, before the engine goes."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _as_batch(
    name: str, now: datetime, items: list[tuple[int, Outgoing]]
) -> list[tuple[int, Outgoing]]:
    """Private messages a provider sends at one instant (a reminder to everyone missing
    a critique) form one mass send, so `outbox` counts who was reached."""
    dms = [item for _, item in items if item.person_id is not None and item.batch is None]
    if len(dms) < 2:
        return items
    batch = f"{name}-{now:%Y%m%dT%H%M%S}"
    return [
        (cid, replace(item, batch=batch) if item.person_id is not None and not item.batch else item)
        for cid, item in items
    ]


#: The name the rest of the code base will use.
Scheduler = ReminderSweeper
