"""Submitting GPU jobs, the queue's order and the estimates; no torch here (the bot
uses this module).

Jobs are rows in the bot's database, the single source of truth; every change of a
job's state goes through :class:`gpu_queue.jobs.Jobs` (the state machine). This module
checks what a student submits (the demo's own parameter model, attached files) before
the submission's transaction, computes the order the queue serves, and estimates when a
job starts.

Fairness: each student may have ``RUNNING_CAP`` running and ``QUEUED_CAP`` queued jobs
(the instructor may change the latter), and the queue is served round-robin across
students: a job's turn is its position among its owner's queued jobs, so when A has 10
jobs queued and B submits one, B's runs next.

**Files travel through the database**, so a worker on another host needs no shared
folder. An attachment (a parameter named in ``FILE_PARAMS``, e.g. ``image``) is checked
at submission from a temporary copy (the demo's own validator, plus :data:`CHECKS`),
then stored as a ``GpuJobFile`` row (role ``input``) in the same transaction as the job;
the job's params refer to it as ``image = "db:<file id>"`` (:func:`file_ref`). Before a
job runs, its worker writes those rows to a private temporary folder on its own host and
hands the demo that path; it stores the result images as ``output`` rows, which the bot
posts.
"""

from __future__ import annotations

import asyncio
import heapq
import re
import statistics
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import GpuJob
from gpu_queue import fleet
from gpu_queue.jobs import (
    INPUT,
    MAX_ATTEMPTS,
    OUTPUT,
    QUEUED_CAP,
    RUNNING_CAP,
    STALE,
    TERMINAL,
    YOUNG,
    Jobs,
    JobState,
    QueueError,
    StoredFile,
)

QUEUED, RUNNING = JobState.QUEUED, JobState.RUNNING
SUCCEEDED, FAILED = JobState.SUCCEEDED, JobState.FAILED
CANCELLED, EXPIRED = JobState.CANCELLED, JobState.EXPIRED
FINISHED = tuple(sorted(TERMINAL))
#: Parameters that name a file: only ever an attachment, stored as a ``GpuJobFile``.
FILE_PARAMS = ("image",)
#: How a stored job's params refer to its input file: ``db:<GpuJobFile id>``.
FILE_REF = "db:"
#: The largest attachment any demo takes (a demo may take less: :func:`input_limit`).
MAX_INPUT_BYTES = 50 * 1024 * 1024
#: Run times of a demo's last jobs that its estimate is measured from.
MEASURED_RUNS = 20

__all__ = [
    "CANCELLED",
    "EXPIRED",
    "FAILED",
    "FINISHED",
    "INPUT",
    "MAX_ATTEMPTS",
    "OUTPUT",
    "QUEUED",
    "QUEUED_CAP",
    "RUNNING",
    "RUNNING_CAP",
    "STALE",
    "SUCCEEDED",
    "YOUNG",
    "JobInput",
    "QueueError",
    "submit",
]


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
    """Check and queue a job (:meth:`Jobs.submit`, in the caller's transaction);
    ``inputs``: attached files for file parameters (``image``), checked here and stored
    with the job (the params then say ``image = "db:<file id>"``)."""
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
    files = {
        key: StoredFile(
            safe_name(item.name), item.data, item.content_type or "application/octet-stream"
        )
        for key, item in inputs.items()
    }
    return await Jobs(session).submit(
        course_id=course_id,
        person_id=person_id,
        demo=demo,
        params=clean,
        channel=channel,
        now=now,
        queued_cap=queued_cap,
        files=files,
    )


# ------------------------------------------------------------------ the queue's order


async def queue_order(
    session: AsyncSession, *, include_paused: bool = False, course_id: int | None = None
) -> list[GpuJob]:
    """Queued jobs in the order they will run: round-robin across owners (jobs of a
    course whose queue the instructor paused are left out unless ``include_paused``).

    A job's turn is its place among its owner's queued jobs (plus one while one of
    theirs runs); among equal turns, the owner served longest ago goes first, so when A
    has 10 queued and B submits one, B's runs as soon as the GPU is free, even if A's
    next job is older."""
    q = select(GpuJob).where(GpuJob.state == QUEUED).order_by(GpuJob.created_at, GpuJob.id)
    if course_id is not None:
        q = q.where(GpuJob.course_id == course_id)
    if not include_paused:
        paused = await Jobs(session).paused_courses()
        if paused:  # a paused course's jobs wait, in place, until it resumes
            q = q.where(GpuJob.course_id.not_in(paused))
    jobs = list(await session.scalars(q))
    if not jobs:
        return []
    running = set(await session.scalars(select(GpuJob.person_id).where(GpuJob.state == RUNNING)))
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
    """How many jobs run before ``job`` (its own course's pause aside); -1: not queued."""
    order = await queue_order(session, include_paused=True)
    return next((i for i, j in enumerate(order) if j.id == job.id), -1)


# ------------------------------------------------------------------ estimates


async def run_times(session: AsyncSession) -> dict[str, float]:
    """Each demo's measured run time: the median of its last :data:`MEASURED_RUNS`
    successful runs; demos never run yet fall back to their declared typical time."""
    from gpu_queue.demos import catalogue

    times: dict[str, float] = {name: d.typical_s for name, d in catalogue().items()}
    for name in times:
        rows = await session.execute(
            select(GpuJob.started_at, GpuJob.finished_at)
            .where(
                GpuJob.demo == name,
                GpuJob.state == SUCCEEDED,
                GpuJob.started_at.is_not(None),
                GpuJob.finished_at.is_not(None),
            )
            .order_by(GpuJob.id.desc())
            .limit(MEASURED_RUNS)
        )
        measured = [(f - s).total_seconds() for s, f in rows]
        if measured:
            times[name] = max(0.1, statistics.median(measured))
    return times


@dataclass(frozen=True)
class Estimate:
    ahead: int  # jobs that start before this one
    seconds: float | None  # until it starts (None: no worker is serving)
    workers: int  # workers serving now
    paused: bool = False

    @property
    def starting_now(self) -> bool:
        return self.seconds is not None and self.seconds < 1 and not self.paused

    def words(self) -> str:
        if self.paused:
            return "the instructor has paused the GPU queue; it starts when the queue resumes"
        if self.seconds is None:
            return "no GPU worker is running right now; it starts when one comes up"
        if self.starting_now:
            return "starting now (a GPU worker is free)"
        return f"it should start in about {_duration(self.seconds)}"


def _duration(seconds: float) -> str:
    s = max(1, round(seconds))
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    return f"{s / 3600:.1f} h"


async def estimate(session: AsyncSession, job: GpuJob, now: datetime) -> Estimate:
    """When ``job`` should start: the live workers (an idle one is free now, a busy one
    when its job's measured run time is over) take the jobs ahead of it in queue order,
    each for its demo's measured run time (an owner's next job waits for their running
    one: the running cap)."""
    paused = job.course_id in await Jobs(session).paused_courses([job.course_id])
    order = await queue_order(session, include_paused=True)
    ahead = next((i for i, j in enumerate(order) if j.id == job.id), len(order))
    workers = await fleet.live(session, now)
    if paused:
        return Estimate(ahead, None, len(workers), paused=True)
    if not workers:
        return Estimate(ahead, None, 0)
    took = await run_times(session)
    running = {
        j.id: j for j in await session.scalars(select(GpuJob).where(GpuJob.state == RUNNING))
    }
    owner_free: dict[int, float] = {}
    free: list[float] = []
    for w in workers:
        current = running.get(w.job_id or -1) if w.state == fleet.BUSY else None
        if current is None:
            free.append(0.0)
            continue
        elapsed = (now - (current.started_at or now)).total_seconds()
        left = max(1.0, took.get(current.demo, 1.0) - elapsed)
        free.append(left)
        owner_free[current.person_id] = left
    for j in running.values():  # running on a worker that is not (yet) in the table
        owner_free.setdefault(j.person_id, 1.0)
    heapq.heapify(free)
    paused_courses = await Jobs(session).paused_courses()
    for j in order:
        if j.course_id in paused_courses and j.id != job.id:
            continue
        start = max(heapq.heappop(free), owner_free.get(j.person_id, 0.0))
        if j.id == job.id:
            return Estimate(ahead, start, len(workers))
        end = start + took.get(j.demo, 1.0)
        owner_free[j.person_id] = end
        heapq.heappush(free, end)
    return Estimate(ahead, None, len(workers))
