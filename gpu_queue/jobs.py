"""The GPU job state machine and the one repository through which every change goes.

States and the events that move a job between them::

    submit ─► QUEUED ──claim──► RUNNING ──finish──► SUCCEEDED
                │  ▲              │  │ ──fail────► FAILED
                │  └──requeue─────┘  │ ──expire──► EXPIRED
                └──cancel──────────► CANCELLED ◄──cancel── (running)

``heartbeat`` and ``progress`` keep a running job running. The terminal states
(succeeded, failed, cancelled, expired) never change again. :data:`TRANSITIONS` is the
whole table; :meth:`Jobs._move` refuses anything else (:class:`IllegalTransition`).

**One transaction per transition.** Every method works in the caller's session, which
is one transaction: a command's (submit, cancel), the worker's (claim, beat, finish,
fail, requeue, each in its own), or the bot's GPU pass (expire, requeue of dead
workers' jobs). Nothing else in the code base writes ``gpu_jobs.state``.

**Limits in the database, the same SQL on both backends.** A submission locks its
owner's roster row (``SELECT … FOR UPDATE`` on ``people``) before it counts their
waiting jobs, so concurrent submissions by one student queue exactly their cap; a claim
locks the owner's row too (``SKIP LOCKED``: a worker never waits for another) before it
checks the running cap, and the course row ``FOR SHARE`` so that ``gpu pause`` (an
update of that row) and a claim never interleave. On SQLite these clauses compile to
nothing and SQLite's single writer (``BEGIN IMMEDIATE``) gives the same guarantees.

Announcements (a result, a failure, a cancellation, an expiry) are not written here:
the bot's GPU pass turns each terminal state into exactly one outbox post, marking the
job ``posted`` in that same transaction (:func:`commands.gpu.due_gpu_posts`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Course, GpuJob, GpuJobFile, Person
from gpu_queue import engines


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


class Event(enum.StrEnum):
    SUBMIT = "submit"
    CLAIM = "claim"
    HEARTBEAT = "heartbeat"
    PROGRESS = "progress"
    FINISH = "finish"
    FAIL = "fail"
    CANCEL = "cancel"
    EXPIRE = "expire"
    REQUEUE = "requeue"


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED})
ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING})

#: event -> (the states it may start from, the state it leads to); None: no row yet.
TRANSITIONS: dict[Event, tuple[frozenset[JobState | None], JobState]] = {
    Event.SUBMIT: (frozenset({None}), JobState.QUEUED),
    Event.CLAIM: (frozenset({JobState.QUEUED}), JobState.RUNNING),
    Event.HEARTBEAT: (frozenset({JobState.RUNNING}), JobState.RUNNING),
    Event.PROGRESS: (frozenset({JobState.RUNNING}), JobState.RUNNING),
    Event.FINISH: (frozenset({JobState.RUNNING}), JobState.SUCCEEDED),
    Event.FAIL: (frozenset({JobState.RUNNING}), JobState.FAILED),
    Event.CANCEL: (frozenset({JobState.QUEUED, JobState.RUNNING}), JobState.CANCELLED),
    Event.EXPIRE: (frozenset({JobState.RUNNING}), JobState.EXPIRED),
    Event.REQUEUE: (frozenset({JobState.RUNNING}), JobState.QUEUED),
}


def allowed() -> dict[JobState, set[JobState]]:
    """Each state's possible next states (for documentation and tests)."""
    table: dict[JobState, set[JobState]] = {s: set() for s in JobState}
    for sources, target in TRANSITIONS.values():
        for s in sources:
            if s is not None and s != target:
                table[s].add(target)
    return table


#: Running jobs per student at once, and waiting jobs per student (course default).
RUNNING_CAP = 1
QUEUED_CAP = 2
#: A running job whose worker has not beaten its heart for this long is presumed dead.
STALE = timedelta(seconds=30)
#: A presumed-dead job younger than this is queued again (once); older ones expire.
YOUNG = timedelta(minutes=10)
#: Runs a job may start (a worker's death counts; a worker handing it back does not).
MAX_ATTEMPTS = 2
INPUT, OUTPUT = "input", "output"


class QueueError(Exception):
    """A refusal the student reads (cap reached, unknown demo, bad parameters)."""


class IllegalTransition(QueueError):
    """A change the state machine does not allow (cancelling a finished job)."""


@dataclass(frozen=True)
class StoredFile:
    """A file to store with a job: its (safe) name, bytes and type."""

    name: str
    data: bytes
    content_type: str = "application/octet-stream"


def _now_utc(now: datetime) -> datetime:
    return now if now.tzinfo else now.replace(tzinfo=UTC)


class Jobs:
    """The repository of GPU jobs, over one session (one transaction)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ------------------------------------------------------------------ the machine

    @staticmethod
    def _move(job: GpuJob, event: Event) -> JobState:
        sources, target = TRANSITIONS[event]
        state = JobState(job.state)
        if state not in sources:
            raise IllegalTransition(f"Job #{job.id} is already {state}.")
        job.state = target
        return target

    async def get(self, job_id: int, *, lock: bool = True) -> GpuJob | None:
        q = select(GpuJob).where(GpuJob.id == job_id)
        if lock:
            q = q.with_for_update()
        return await self.session.scalar(q.execution_options(populate_existing=True))

    async def _lock_owner(self, person_id: int, *, wait: bool = True) -> bool:
        """Serialise this student's submissions and claims until commit (their row in
        ``people``); ``wait=False``: False at once if another transaction holds it."""
        q = select(Person.id).where(Person.id == person_id)
        q = q.with_for_update() if wait else q.with_for_update(skip_locked=True)
        return await self.session.scalar(q) is not None

    async def count(self, person_id: int, state: JobState) -> int:
        n = await self.session.scalar(
            select(func.count()).where(GpuJob.person_id == person_id, GpuJob.state == state)
        )
        return int(n or 0)

    # ------------------------------------------------------------------ submit

    async def submit(
        self,
        *,
        course_id: int,
        person_id: int,
        demo: str,
        params: dict[str, Any],
        channel: str,
        now: datetime,
        queued_cap: int,
        files: Mapping[str, StoredFile] | None = None,
    ) -> GpuJob:
        """Queue a job (params already validated): the owner's row is locked, their
        waiting jobs counted against ``queued_cap``, the row and its input files
        inserted, and the workers woken at commit."""
        if queued_cap <= 0:
            raise QueueError(
                "The instructor has not allowed you GPU jobs; ask them if you need one."
            )
        if not await self._lock_owner(person_id):
            raise QueueError("You are not on this course's roster.")
        queued = await self.count(person_id, JobState.QUEUED)
        if queued >= queued_cap:
            raise QueueError(
                f"You already have {queued} jobs waiting (the limit is {queued_cap}); "
                "wait for one to finish or cancel one with `gpu cancel <job>`."
            )
        job = GpuJob(
            course_id=course_id,
            person_id=person_id,
            demo=demo,
            params=dict(params),
            state=TRANSITIONS[Event.SUBMIT][1],
            channel=channel,
            created_at=now,
            attempts=0,
            progress=0.0,
            note="",
            shown_progress=-1.0,
            result_files=[],
            posted=False,
        )
        self.session.add(job)
        await self.session.flush()
        if files:
            from gpu_queue.queue import file_ref

            refs: dict[str, str] = {}
            for key, item in files.items():
                row = GpuJobFile(
                    job_id=job.id,
                    role=INPUT,
                    name=item.name,
                    content_type=item.content_type,
                    data=item.data,
                    created_at=now,
                )
                self.session.add(row)
                await self.session.flush()
                refs[key] = file_ref(row.id)
            job.params = {**job.params, **refs}  # a new dict, so the JSON column is saved
            await self.session.flush()
        await engines.wake_workers(self.session)
        return job

    # ------------------------------------------------------------------ claim

    async def paused_courses(self, course_ids: Iterable[int] | None = None) -> set[int]:
        q = select(Course.id, Course.gpu_rules)
        if course_ids is not None:
            q = q.where(Course.id.in_(list(course_ids)))
        return {cid for cid, rules in await self.session.execute(q) if (rules or {}).get("paused")}

    async def claim_next(self, worker: str, now: datetime) -> GpuJob | None:
        """Mark the next job in round-robin order running for ``worker``; None when no
        job may start (none waiting, every owner at their running cap, paused)."""
        from gpu_queue.queue import queue_order

        passed: set[int] = set()  # owners whose next job may not start in this pass
        for candidate in await queue_order(self.session):
            if candidate.person_id in passed:
                continue  # never one of their later jobs before their earlier one
            job = await self.claim(candidate.id, worker, now)
            if job is not None:
                return job
            passed.add(candidate.person_id)
        return None

    async def claim(self, job_id: int, worker: str, now: datetime) -> GpuJob | None:
        """Claim one given job if it may start now, else None (without waiting)."""
        job = await self.session.scalar(
            select(GpuJob)
            .where(GpuJob.id == job_id, GpuJob.state == JobState.QUEUED)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        if job is None:
            return None
        # The course row FOR SHARE: `gpu pause` (an UPDATE of it) waits for this claim,
        # and a claim after the pause committed sees it.
        rules = await self.session.scalar(
            select(Course.gpu_rules).where(Course.id == job.course_id).with_for_update(read=True)
        )
        if (rules or {}).get("paused"):
            return None
        if not await self._lock_owner(job.person_id, wait=False):
            return None  # another worker is claiming one of theirs right now
        if await self.count(job.person_id, JobState.RUNNING) >= RUNNING_CAP:
            return None
        self._move(job, Event.CLAIM)
        job.worker = worker
        job.started_at = now
        job.heartbeat_at = now
        job.finished_at = None
        job.attempts += 1
        job.progress = 0.0
        job.note = ""
        await self.session.flush()
        return job

    # ------------------------------------------------------------------ running

    async def _running_for(self, job_id: int, worker: str) -> GpuJob | None:
        job = await self.get(job_id)
        if job is None or job.state != JobState.RUNNING or job.worker != worker:
            return None
        return job

    async def beat(
        self,
        job_id: int,
        worker: str,
        now: datetime,
        *,
        progress: float | None = None,
        note: str | None = None,
    ) -> JobState | None:
        """Heartbeat (and progress) of a running job; the job's state, or None when the
        job is gone or runs for another worker (ours was presumed dead and re-run)."""
        job = await self.get(job_id)
        if job is None:
            return None
        if job.state == JobState.RUNNING:
            if job.worker != worker:
                return None
            self._move(job, Event.PROGRESS if progress is not None else Event.HEARTBEAT)
            job.heartbeat_at = now
            if progress is not None:
                job.progress = max(0.0, min(1.0, float(progress)))
            if note is not None:
                job.note = note[:200]
        return JobState(job.state)

    async def finish(
        self,
        job_id: int,
        worker: str,
        now: datetime,
        *,
        text: str,
        images: Iterable[StoredFile] = (),
    ) -> bool:
        """The job succeeded: its text and result images; False when it was no longer
        running for ``worker`` (cancelled meanwhile: that stands)."""
        job = await self._running_for(job_id, worker)
        if job is None:
            return False
        await self.session.execute(
            delete(GpuJobFile).where(GpuJobFile.job_id == job_id, GpuJobFile.role == OUTPUT)
        )
        names = []
        for image in images:
            names.append(image.name)
            self.session.add(
                GpuJobFile(
                    job_id=job_id,
                    role=OUTPUT,
                    name=image.name,
                    content_type=image.content_type,
                    data=image.data,
                    created_at=now,
                )
            )
        self._move(job, Event.FINISH)
        job.finished_at = now
        job.result_text = text
        job.result_files = names
        job.progress = 1.0
        await self.session.flush()
        return True

    async def fail(self, job_id: int, worker: str, now: datetime, *, error: str) -> bool:
        job = await self._running_for(job_id, worker)
        if job is None:
            return False
        self._move(job, Event.FAIL)
        job.finished_at = now
        job.error = error
        await self.session.flush()
        return True

    async def cancel(self, job_id: int, now: datetime, *, by: str = "") -> JobState:
        """Cancel a waiting or running job (its worker sees it at its next beat and kills
        the run); the state it was in. Raises :class:`IllegalTransition` when finished."""
        job = await self.get(job_id)
        if job is None:
            raise QueueError(f"There is no GPU job #{job_id}.")
        was = JobState(job.state)
        self._move(job, Event.CANCEL)
        job.finished_at = now
        if by:
            job.note = by[:200]
        await self.session.flush()
        return was

    async def requeue(
        self, job_id: int, worker: str, now: datetime, *, note: str, counts: bool = False
    ) -> bool:
        """Hand a running job back to the queue (its worker is stopping: a SIGTERM, the
        end of a Slurm allocation). ``counts``: whether the run counts as an attempt."""
        job = await self._running_for(job_id, worker)
        if job is None:
            return False
        self._requeue(job, note, counts=counts)
        await self.session.flush()
        await engines.wake_workers(self.session)
        return True

    def _requeue(self, job: GpuJob, note: str, *, counts: bool) -> None:
        self._move(job, Event.REQUEUE)
        job.worker = None
        job.heartbeat_at = None
        job.progress = 0.0
        job.note = note[:200]
        if not counts:
            job.attempts = max(0, job.attempts - 1)

    async def recover(self, now: datetime) -> tuple[list[GpuJob], list[GpuJob]]:
        """Running jobs whose worker died (no heartbeat for :data:`STALE`): queued again
        when young and not yet tried :data:`MAX_ATTEMPTS` times, otherwise expired.
        Rows another transaction holds are skipped (their worker is alive, or someone
        else recovers them). Returns (requeued, expired)."""
        now = _now_utc(now)
        q = (
            select(GpuJob)
            .where(GpuJob.state == JobState.RUNNING, GpuJob.heartbeat_at < now - STALE)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        requeued, expired = [], []
        for job in await self.session.scalars(q):
            if job.attempts < MAX_ATTEMPTS and now - job.created_at < YOUNG:
                self._requeue(job, "its worker stopped; queued again", counts=True)
                requeued.append(job)
            else:
                self._move(job, Event.EXPIRE)
                job.finished_at = now
                job.error = "The worker stopped while running this job; it was not run again."
                expired.append(job)
        await self.session.flush()
        if requeued:
            await engines.wake_workers(self.session)
        return requeued, expired

    async def resume(self) -> None:
        """The instructor resumed the queue: wake the workers (at commit)."""
        await engines.wake_workers(self.session)
