"""The job queue: jobs are rows in the bot's database, the single source of truth.

Fairness: each student may have ``RUNNING_CAP`` running and ``QUEUED_CAP`` queued jobs,
and the queue is served round-robin across students: a job's turn is its position
among its owner's queued jobs, so when A has 10 jobs queued and B submits one, B's
runs next. A worker claims a job in the same transaction that marks it running
(``FOR UPDATE SKIP LOCKED`` on Postgres; SQLite has one writer), so a job never runs
twice at once. No torch here: this module is used by the bot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Course, GpuJob

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, CANCELLED, EXPIRED = "succeeded", "failed", "cancelled", "expired"
FINISHED = (SUCCEEDED, FAILED, CANCELLED, EXPIRED)
RUNNING_CAP = 1
QUEUED_CAP = 2
#: A running job whose worker has not beaten its heart for this long is presumed dead.
STALE = timedelta(seconds=30)
#: A presumed-dead job younger than this is queued again (once); older ones expire.
YOUNG = timedelta(minutes=10)


class QueueError(Exception):
    """A refusal the student reads (cap reached, unknown demo, bad parameters)."""


@dataclass(frozen=True)
class Position:
    job: GpuJob
    ahead: int  # jobs that run before it


def validate_params(demo_name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The demo's parameters, validated by its own model (no torch import)."""
    from gpu_queue.demos import catalogue

    demos = catalogue()
    demo = demos.get(demo_name)
    if demo is None:
        raise QueueError(f"There is no demo `{demo_name}`. Demos: {', '.join(sorted(demos))}.")
    try:
        return demo.params.model_validate(raw).model_dump(mode="json")
    except ValidationError as exc:
        problems = "; ".join(f"`{'.'.join(map(str, e['loc']))}`: {e['msg']}" for e in exc.errors())
        raise QueueError(f"Bad parameters for `{demo_name}`: {problems}.") from None


def queued_cap_for(rules: dict[str, Any], person_id: int) -> int:
    """A student's queued-job limit: their own, else the course's, else QUEUED_CAP."""
    limits = rules.get("limits") or {}
    return int(limits.get(str(person_id), rules.get("queued_cap", QUEUED_CAP)))


async def submit(
    session: AsyncSession,
    *,
    course_id: int,
    person_id: int,
    demo: str,
    params: dict[str, Any],
    channel: str,
    now: datetime,
    queued_cap: int = QUEUED_CAP,
) -> GpuJob:
    clean = validate_params(demo, params)
    if queued_cap <= 0:
        raise QueueError("The instructor has not allowed you GPU jobs; ask them if you need one.")
    queued = await session.scalar(
        select(func.count()).where(GpuJob.person_id == person_id, GpuJob.state == QUEUED)
    )
    if (queued or 0) >= queued_cap:
        raise QueueError(
            f"You already have {queued} jobs waiting (the limit is {queued_cap}); "
            "wait for one to finish or cancel one with `gpu cancel <job>`."
        )
    job = GpuJob(
        course_id=course_id,
        person_id=person_id,
        demo=demo,
        params=clean,
        state=QUEUED,
        channel=channel,
        created_at=now,
    )
    session.add(job)
    await session.flush()
    return job


async def queue_order(session: AsyncSession) -> list[GpuJob]:
    """Queued jobs in the order they will run: round-robin across owners (jobs of a
    course whose queue the instructor paused are left out until it resumes)."""
    paused = [
        cid
        for cid, rules in await session.execute(select(Course.id, Course.gpu_rules))
        if (rules or {}).get("paused")
    ]
    q = select(GpuJob).where(GpuJob.state == QUEUED).order_by(GpuJob.created_at, GpuJob.id)
    if paused:  # a paused course's jobs wait, in place, until it resumes
        q = q.where(GpuJob.course_id.not_in(paused))
    jobs = list(await session.scalars(q))
    running = {
        pid
        for pid in await session.scalars(select(GpuJob.person_id).where(GpuJob.state == RUNNING))
    }
    turn: dict[int, int] = {}
    keyed = []
    for job in jobs:
        n = turn.get(job.person_id, 0)
        turn[job.person_id] = n + 1
        # An owner with a job running waits a turn (the per-user running cap).
        keyed.append(((n + (1 if job.person_id in running else 0)), job.created_at, job.id, job))
    return [k[-1] for k in sorted(keyed, key=lambda k: k[:3])]


async def position(session: AsyncSession, job: GpuJob) -> int:
    order = await queue_order(session)
    return next((i for i, j in enumerate(order) if j.id == job.id), -1)


async def claim(session: AsyncSession, worker: str, now: datetime) -> GpuJob | None:
    """Mark the next job running for ``worker`` (in the caller's transaction)."""
    running = set(await session.scalars(select(GpuJob.person_id).where(GpuJob.state == RUNNING)))
    for candidate in await queue_order(session):
        if candidate.person_id in running and RUNNING_CAP <= 1:
            continue
        q = select(GpuJob).where(GpuJob.id == candidate.id, GpuJob.state == QUEUED)
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        job = await session.scalar(q)
        if job is None:
            continue
        job.state = RUNNING
        job.worker = worker
        job.started_at = now
        job.heartbeat_at = now
        job.attempts += 1
        job.progress = 0.0
        await session.flush()
        return job
    return None


async def recover(session: AsyncSession, now: datetime) -> list[GpuJob]:
    """Running jobs whose worker died (no heartbeat): queued again once if young,
    otherwise expired. Returns the expired ones (their owners are told)."""
    expired = []
    stale = await session.scalars(
        select(GpuJob).where(GpuJob.state == RUNNING, GpuJob.heartbeat_at < now - STALE)
    )
    for job in stale:
        if job.attempts < 2 and now - job.created_at < YOUNG:
            job.state = QUEUED
            job.worker = None
            job.note = "the worker stopped; queued again"
        else:
            job.state = EXPIRED
            job.finished_at = now
            job.error = "The worker stopped while running this job; it was not run again."
            expired.append(job)
    await session.flush()
    return expired
