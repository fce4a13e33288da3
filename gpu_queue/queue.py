"""The job queue: jobs are rows in the bot's database, the single source of truth.

Fairness: each student may have ``RUNNING_CAP`` running and ``QUEUED_CAP`` queued jobs,
and the queue is served round-robin across students: a job's turn is its position
among its owner's queued jobs, so when A has 10 jobs queued and B submits one, B's
runs next. A worker claims a job in the same transaction that marks it running
(a row lock, ``FOR UPDATE SKIP LOCKED`` when scanning, and a per-owner advisory lock
for the running cap on Postgres; SQLite has one writer), so a job never runs twice at
once, however often it is delivered.

Two engines hand jobs to workers (``gpu_queue/procrastinate_app.py``): on SQLite (or
``COURSEBOT_GPU_QUEUE=db``) workers scan the rows (:func:`claim`); on Postgres
procrastinate carries "run job <id>" (deferred in the transaction that inserts the
row, with the round-robin turn as its priority) and the worker claims that row
(:func:`claim_job`). No torch here: this module is used by the bot.

**Files travel through the database**, so a worker on another host needs no shared
folder. An attachment (a parameter named in ``FILE_PARAMS``, e.g. ``image``) is checked
at submission from a temporary copy (the demo's own validator, plus :data:`CHECKS`),
then stored as a ``GpuJobFile`` row (role ``input``) in the same transaction as the job;
the job's params refer to it as ``image = "db:<file id>"`` (:func:`file_ref`). Before a
job runs, its worker writes those rows to a private temporary folder on its own host and
hands the demo that path (the file keeps the student's file name); it stores the result
images as ``output`` rows, which the bot posts.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Course, GpuJob, GpuJobFile
from gpu_queue import procrastinate_app

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, CANCELLED, EXPIRED = "succeeded", "failed", "cancelled", "expired"
FINISHED = (SUCCEEDED, FAILED, CANCELLED, EXPIRED)
RUNNING_CAP = 1
QUEUED_CAP = 2
#: A running job whose worker has not beaten its heart for this long is presumed dead.
STALE = timedelta(seconds=30)
#: A presumed-dead job younger than this is queued again (once); older ones expire.
YOUNG = timedelta(minutes=10)
#: A job that may not start yet (its owner has one running, the queue is paused) is
#: offered to the workers again this much later (the procrastinate engine).
RETRY_WAIT = timedelta(seconds=2)
PAUSED_WAIT = timedelta(seconds=5)
#: Parameters that name a file: only ever an attachment, stored as a ``GpuJobFile``.
FILE_PARAMS = ("image",)
#: How a stored job's params refer to its input file: ``db:<GpuJobFile id>``.
FILE_REF = "db:"
#: The largest attachment any demo takes (a demo may take less: :func:`input_limit`).
MAX_INPUT_BYTES = 50 * 1024 * 1024
INPUT, OUTPUT = "input", "output"


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


@dataclass(frozen=True)
class JobInput:
    """An attached file for a job's parameter: its original name and bytes."""

    name: str
    data: bytes
    content_type: str | None = None


def file_ref(file_id: int) -> str:
    """The value of a file parameter in a stored job: ``db:<id>``."""
    return f"{FILE_REF}{file_id}"


def ref_id(value: Any) -> int | None:
    """The ``GpuJobFile`` id a parameter value refers to, or None."""
    if isinstance(value, str) and value.startswith(FILE_REF) and value[len(FILE_REF) :].isdigit():
        return int(value[len(FILE_REF) :])
    return None


def safe_name(name: str) -> str:
    """A file name safe to write anywhere (no folders, no odd characters)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.replace("\\", "/")).name).lstrip(".")
    if len(base) > 100:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: 100 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else base[:100]
    return base or "file"


def input_limit(demo_name: str) -> int:
    """The largest attachment ``demo_name`` takes (no torch import)."""
    from gpu_queue.demos import classify, cnn

    limits = {"cnn": cnn.MAX_IMAGE_BYTES, "classify": classify.MAX_BYTES}
    return min(limits.get(demo_name, MAX_INPUT_BYTES), MAX_INPUT_BYTES)


def _check_cnn_image(path: str) -> None:
    from gpu_queue.demos.cnn import load_image

    load_image(path)  # Pillow only: reads and resizes the image (no torch)


#: Checks of an attached file at submission, beyond the demo's own parameter validator
#: (``classify`` inspects its file there); they raise ``DemoError`` with the message.
CHECKS: dict[str, Callable[[str], None]] = {"cnn": _check_cnn_image}


def _validate_with_files(
    demo: str, params: dict[str, Any], inputs: Mapping[str, JobInput]
) -> dict[str, Any]:
    """Validate ``params`` with each input written to a temporary file, as the demo will
    see it on the worker; the clean params with those file params left out."""
    from gpu_queue.demos import DemoError

    with tempfile.TemporaryDirectory(prefix="coursebot-gpu-check-") as tmp:
        staged = dict(params)
        for key, item in inputs.items():
            path = Path(tmp) / key / safe_name(item.name)
            path.parent.mkdir()
            path.write_bytes(item.data)
            staged[key] = str(path)
        clean = validate_params(demo, staged)
        check = CHECKS.get(demo)
        for key in inputs:
            if check is not None and clean.get(key):
                try:
                    check(str(clean[key]))
                except DemoError as exc:
                    raise QueueError(str(exc)) from None
            clean.pop(key, None)
    return clean


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
    inputs: Mapping[str, JobInput] | None = None,
) -> GpuJob:
    """Queue a job; ``inputs``: attached files for file parameters (``image``), checked
    here and stored with the job (the params then say ``image = "db:<file id>"``)."""
    inputs = dict(inputs or {})
    for key in FILE_PARAMS:
        if key in params:
            raise QueueError(f"`{key}` is a file: attach it to the command instead of naming it.")
    for key, item in inputs.items():
        if key not in FILE_PARAMS:
            raise QueueError(f"`{key}` does not take a file.")
        limit = input_limit(demo)
        if len(item.data) > limit:
            raise QueueError(
                f"`{item.name}` is larger than {limit // (1024 * 1024)} MB; send a smaller file."
            )
        if not item.data:
            raise QueueError(f"`{item.name}` is empty.")
    if inputs:
        clean = await asyncio.to_thread(_validate_with_files, demo, params, inputs)
    else:
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
    if inputs:  # the files, in this transaction too
        refs: dict[str, str] = {}
        for key, item in inputs.items():
            row = GpuJobFile(
                job_id=job.id,
                role=INPUT,
                name=safe_name(item.name),
                content_type=item.content_type or "application/octet-stream",
                data=item.data,
                created_at=now,
            )
            session.add(row)
            await session.flush()
            refs[key] = file_ref(row.id)
        job.params = {**clean, **refs}  # a new dict, so the JSON column is saved
        await session.flush()
    if procrastinate_app.uses_procrastinate(session):
        # In this transaction: the row and its procrastinate job commit together.
        await procrastinate_app.defer(session, job.id, priority=-await turn(session, job))
    return job


def _is_postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


async def turn(session: AsyncSession, job: GpuJob) -> int:
    """The job's round-robin turn: its owner's queued jobs ahead of it, plus one while
    one of theirs runs (0 = among the next to run)."""
    ahead = await session.scalar(
        select(func.count()).where(
            GpuJob.person_id == job.person_id,
            GpuJob.state == QUEUED,
            GpuJob.id < job.id,
        )
    )
    running = await session.scalar(
        select(func.count()).where(GpuJob.person_id == job.person_id, GpuJob.state == RUNNING)
    )
    return int(ahead or 0) + (1 if running else 0)


async def queue_order(session: AsyncSession) -> list[GpuJob]:
    """Queued jobs in the order they will run: round-robin across owners (jobs of a
    course whose queue the instructor paused are left out until it resumes).

    A job's turn is its place among its owner's queued jobs (plus one while one of
    theirs runs); among equal turns, the owner served longest ago goes first, so when A
    has 10 queued and B submits one, B's runs as soon as the GPU is free, even if A's
    next job is older."""
    paused = [
        cid
        for cid, rules in await session.execute(select(Course.id, Course.gpu_rules))
        if (rules or {}).get("paused")
    ]
    q = select(GpuJob).where(GpuJob.state == QUEUED).order_by(GpuJob.created_at, GpuJob.id)
    if paused:  # a paused course's jobs wait, in place, until it resumes
        q = q.where(GpuJob.course_id.not_in(paused))
    jobs = list(await session.scalars(q))
    if not jobs:
        return []
    running = {
        pid
        for pid in await session.scalars(select(GpuJob.person_id).where(GpuJob.state == RUNNING))
    }
    owners = {job.person_id for job in jobs}
    served: dict[int, datetime] = {
        pid: at
        for pid, at in await session.execute(
            select(GpuJob.person_id, func.max(GpuJob.started_at))
            .where(GpuJob.person_id.in_(owners), GpuJob.started_at.is_not(None))
            .group_by(GpuJob.person_id)
        )
    }
    never = datetime.min.replace(tzinfo=UTC)
    turn: dict[int, int] = {}
    keyed = []
    for job in jobs:
        n = turn.get(job.person_id, 0)
        turn[job.person_id] = n + 1
        # An owner with a job running waits a turn (the per-user running cap).
        n += 1 if job.person_id in running else 0
        keyed.append((n, served.get(job.person_id) or never, job.created_at, job.id, job))
    return [k[-1] for k in sorted(keyed, key=lambda k: k[:4])]


async def position(session: AsyncSession, job: GpuJob) -> int:
    order = await queue_order(session)
    return next((i for i, j in enumerate(order) if j.id == job.id), -1)


async def _lock_owner(session: AsyncSession, person_id: int, *, wait: bool = True) -> bool:
    """Serialise claims of one owner's jobs until commit (the running cap), on Postgres;
    SQLite's write lock (``BEGIN IMMEDIATE``) already does. ``wait=False``: False at
    once if another worker is claiming one of theirs."""
    if not _is_postgres(session):
        return True
    fn = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    got = await session.scalar(text(f"SELECT {fn}(790, :pid)"), {"pid": person_id})
    return got is not False


async def _owner_running(session: AsyncSession, person_id: int) -> int:
    n = await session.scalar(
        select(func.count()).where(GpuJob.person_id == person_id, GpuJob.state == RUNNING)
    )
    return int(n or 0)


def _start(job: GpuJob, worker: str, now: datetime) -> None:
    job.state = RUNNING
    job.worker = worker
    job.started_at = now
    job.heartbeat_at = now
    job.attempts += 1
    job.progress = 0.0


async def claim(session: AsyncSession, worker: str, now: datetime) -> GpuJob | None:
    """Mark the next job running for ``worker`` (in the caller's transaction)."""
    running = set(await session.scalars(select(GpuJob.person_id).where(GpuJob.state == RUNNING)))
    for candidate in await queue_order(session):
        if candidate.person_id in running and RUNNING_CAP <= 1:
            continue
        q = select(GpuJob).where(GpuJob.id == candidate.id, GpuJob.state == QUEUED)
        if _is_postgres(session):
            q = q.with_for_update(skip_locked=True)
        job = await session.scalar(q)
        if job is None:
            continue
        # Not waiting for the owner's lock: scanning workers never wait on each other.
        if not await _lock_owner(session, job.person_id, wait=False):
            continue  # another worker is claiming one of theirs right now
        if await _owner_running(session, job.person_id) >= RUNNING_CAP:
            continue  # another worker just started one of theirs
        _start(job, worker, now)
        await session.flush()
        return job
    return None


Claim = Literal["claimed", "gone", "wait"]


async def claim_job(
    session: AsyncSession, job_id: int, worker: str, now: datetime
) -> tuple[Claim, GpuJob | None]:
    """Claim one given job (a procrastinate delivery), in the caller's transaction.

    ``claimed``: it is now running for ``worker``. ``gone``: it is no longer queued
    (cancelled, already claimed by an earlier delivery, finished): nothing to do.
    ``wait``: it may not start yet (its owner has a job running, or the instructor
    paused the queue); with procrastinate it has been offered again a little later."""
    q = select(GpuJob).where(GpuJob.id == job_id, GpuJob.state == QUEUED)
    if _is_postgres(session):
        q = q.with_for_update()  # a concurrent claim waits here, then finds it running
    job = await session.scalar(q)
    if job is None:
        return "gone", None
    rules = await session.scalar(select(Course.gpu_rules).where(Course.id == job.course_id))
    wait: timedelta | None = PAUSED_WAIT if (rules or {}).get("paused") else None
    if wait is None:
        await _lock_owner(session, job.person_id)
        if await _owner_running(session, job.person_id) >= RUNNING_CAP:
            wait = RETRY_WAIT
    if wait is not None:
        if procrastinate_app.uses_procrastinate(session):
            await procrastinate_app.defer(
                session, job.id, priority=-await turn(session, job), at=now + wait
            )
        return "wait", job
    _start(job, worker, now)
    await session.flush()
    return "claimed", job


async def release(session: AsyncSession, job_id: int, worker: str, now: datetime) -> bool:
    """Give a running job back to the queue (its worker is stopping): queued again at
    once, without counting the attempt. False if it was not running for ``worker``."""
    q = select(GpuJob).where(GpuJob.id == job_id)
    if _is_postgres(session):
        q = q.with_for_update()
    job = await session.scalar(q)
    if job is None or job.state != RUNNING or job.worker != worker:
        return False
    job.state = QUEUED
    job.worker = None
    job.attempts = max(0, job.attempts - 1)
    job.progress = 0.0
    job.note = "its worker stopped; queued again"
    await session.flush()
    if procrastinate_app.uses_procrastinate(session):
        await procrastinate_app.defer(session, job.id, priority=-await turn(session, job))
    return True


async def recover(session: AsyncSession, now: datetime) -> list[GpuJob]:
    """Running jobs whose worker died (no heartbeat): queued again once if young,
    otherwise expired. Returns the expired ones (their owners are told)."""
    expired = []
    q = select(GpuJob).where(GpuJob.state == RUNNING, GpuJob.heartbeat_at < now - STALE)
    if _is_postgres(session):
        # Rows another transaction holds (a heartbeat, a claim, another recovery) are
        # skipped: their worker is alive, or someone else is recovering them.
        q = q.with_for_update(skip_locked=True)
    requeued = []
    for job in await session.scalars(q):
        if job.attempts < 2 and now - job.created_at < YOUNG:
            job.state = QUEUED
            job.worker = None
            job.note = "the worker stopped; queued again"
            requeued.append(job)
        else:
            job.state = EXPIRED
            job.finished_at = now
            job.error = "The worker stopped while running this job; it was not run again."
            expired.append(job)
    await session.flush()
    if requeued and procrastinate_app.uses_procrastinate(session):
        for job in requeued:
            await procrastinate_app.defer(session, job.id, priority=-await turn(session, job))
    return expired
