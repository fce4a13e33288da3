"""GPU demo jobs from chat: the catalogue, submitting, following and cancelling jobs.
The worker (gpu_queue/worker.py) runs them; the one-second tick turns their progress
and results into messages (an edited progress message, then the result with images)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.attachments import (
    CLIP_KINDS,
    IMAGE_KINDS,
    describe,
    expect_kind,
    read_bytes,
)
from commands.audit import Reason, record
from commands.context import Context
from commands.due import Scope, due_registry
from commands.errors import Forbidden, InvalidInput, NotFound
from commands.outbox import Outgoing
from commands.registry import Access, registry
from commands.replies import FileOut, Reply, Table, Tone
from db.models import GpuJob, GpuJobFile, Person
from gpu_queue import queue
from gpu_queue.demos import catalogue
from gpu_queue.demos.images import TooManyPixels, open_image

ICON = {
    "queued": "⏳",
    "running": "▶️",
    "succeeded": "✅",
    "failed": "❌",
    "cancelled": "⏹",
    "expired": "⌛",
}


def _key(job: GpuJob) -> str:
    return f"gpu:{job.id}"


def _progress_text(job: GpuJob, ahead: int | None = None) -> str:
    head = f"{ICON.get(job.state, '')} GPU job #{job.id} ({job.demo}): {job.state}"
    if job.state == "queued" and ahead is not None:
        head += f", position {ahead + 1} in the queue"
    if job.state == "running":
        head += f" {job.progress * 100:.0f}%" + (f" ({job.note})" if job.note else "")
    if job.state in ("failed", "expired") and job.error:
        head += f" — {job.error}"
    return head


async def _estimate(session: AsyncSession, demo: str, ahead: int) -> int:
    """Seconds until a new job starts: jobs ahead × the recent mean run time."""
    rows = await session.execute(
        select(GpuJob.started_at, GpuJob.finished_at)
        .where(GpuJob.demo == demo, GpuJob.state == "succeeded")
        .order_by(GpuJob.id.desc())
        .limit(20)
    )
    times = [(f - s).total_seconds() for s, f in rows if s and f]
    mean = sum(times) / len(times) if times else catalogue()[demo].timeout_s / 4
    return int(mean * (ahead + 1))


class DemosOptions(BaseModel):
    pass


@registry.command(
    "gpu demos", "The GPU demos you can run and their parameters", access=Access.ANYONE, topic="gpu"
)
async def gpu_demos(ctx: Context, _: DemosOptions) -> Reply:
    rows = []
    for demo in catalogue().values():
        params = ", ".join(
            f"{name}={f.get_default(call_default_factory=True)!r}"
            if not f.is_required()
            else f"{name} (required)"
            for name, f in demo.params.model_fields.items()
        )
        rows.append([demo.name, demo.description, params or "—", f"{demo.timeout_s:g} s"])
    return Reply(
        title="GPU demos",
        text="Run one with `gpu run <demo> [name=value ...]`, e.g. `gpu run conv2d` or "
        '`gpu run conv2d grid="1 2; 3 4" kernel="0 0; 0 1"`; attach an image to `gpu run cnn`.',
        tables=[Table(["Demo", "What", "Parameters (defaults)", "Time limit"], rows)],
    )


#: What each demo's attachment may be, judged from its bytes (any other demo: images).
INPUT_KINDS = {"cnn": IMAGE_KINDS, "classify": IMAGE_KINDS | CLIP_KINDS}
IMAGE_FORMATS = "an image (PNG, JPEG, GIF, WebP, BMP or TIFF)"
CLIP_FORMATS = "a video clip (MP4, MOV, WebM, MKV or AVI)"


def check_input(demo: str, name: str, data: bytes) -> None:
    """Refuse at once a GPU job's attachment that is not what ``demo`` takes (by its
    first bytes) or an image of more pixels than a demo decodes (from its header only,
    before anything is decoded: a small PNG can declare 20000×20000)."""
    kinds = INPUT_KINDS.get(demo, IMAGE_KINDS)
    if kinds == IMAGE_KINDS:
        what, takes = "not an image", IMAGE_FORMATS
    else:
        what, takes = "neither an image nor a video clip", f"{IMAGE_FORMATS} or {CLIP_FORMATS}"
    kind = expect_kind(name, data, kinds, what, hint=f"`gpu run {demo}` takes {takes}.")
    if kind not in IMAGE_KINDS:
        return
    from PIL import UnidentifiedImageError

    try:
        with open_image(data, f"`{name}`"):
            pass
    except TooManyPixels as exc:
        raise InvalidInput(str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise InvalidInput(
            f"`{name}` looks like {describe(kind)} but is corrupt or truncated.",
            hint="Send the image again, or another one.",
        ) from None


class RunOptions(BaseModel):
    demo: str = Field(description="which demo (see `gpu demos`)")
    params: list[str] = Field(default_factory=list, description="name=value parameters")


@registry.command(
    "gpu run",
    "Run a GPU demo job; the result is posted back here",
    topic="gpu",
    attachment="an image (cnn, classify) or a video clip (classify)",
    examples=(
        "gpu run conv2d",
        'gpu run conv2d grid="1 2; 3 4" kernel="0 0; 0 1"',
        "gpu run cnn classes=3",
    ),
)
async def gpu_run(ctx: Context, opts: RunOptions) -> Reply:
    me = ctx.me()
    raw: dict[str, object] = {}
    for item in opts.params:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"`{item}` is not a parameter: write name=value (see `gpu demos`).")
        raw[name.strip()] = value
    inputs: dict[str, queue.JobInput] = {}
    if (
        ctx.request.attachments
        and "image" in getattr(catalogue().get(opts.demo), "params", BaseModel).model_fields
    ):
        # A local path (terminal, Slack) or a URL (Discord): read here, stored with the
        # job in the database, so a worker on any host can run it.
        att = ctx.request.attachments[0]
        data = await read_bytes(
            att, queue.input_limit(opts.demo), hint="Send a smaller image or a shorter clip."
        )
        check_input(opts.demo, att.name, data)
        inputs["image"] = queue.JobInput(att.name, data, att.content_type)
    channel = ctx.request.where.channel or ""
    try:
        job = await queue.submit(
            ctx.session,
            course_id=ctx.course.id,
            person_id=me.id,
            demo=opts.demo,
            params=raw,
            channel=channel,
            now=ctx.now,
            queued_cap=queue.queued_cap_for(ctx.course.gpu_rules or {}, me.id),
            inputs=inputs,
        )
    except queue.QueueError as exc:
        raise InvalidInput(str(exc)) from None
    if (ctx.course.gpu_rules or {}).get("paused"):
        return Reply(
            text=f"Job #{job.id} ({job.demo}) is queued, but the instructor has paused the GPU "
            "queue; it runs when the queue resumes.",
            tone=Tone.WARNING,
            ephemeral=True,
        )
    ahead = await queue.position(ctx.session, job)
    wait = await _estimate(ctx.session, job.demo, ahead)
    progress = Reply(text=_progress_text(job, ahead))
    if channel:
        ctx.post_remembered(channel, _key(job), progress)
    return Reply(
        text=f"Job #{job.id} ({job.demo}) is queued at position {ahead + 1}; it should start in "
        f"about {wait} s. The result will be posted {'here' if channel else 'to you'}; "
        f"`gpu status {job.id}` follows it, `gpu cancel {job.id}` stops it.",
        tone=Tone.SUCCESS,
        ephemeral=True,
    )


class JobRef(BaseModel):
    job: int | None = Field(None, ge=1, description="a job number (default: your recent jobs)")


async def _job(ctx: Context, number: int) -> GpuJob:
    job = await ctx.session.get(GpuJob, number)
    if job is None or job.course_id != ctx.course.id:
        raise NotFound(f"There is no GPU job #{number}.", hint="`gpu queue` lists yours.")
    me = ctx.me()
    if job.person_id != me.id and not me.is_staff:
        raise Forbidden(f"Job #{number} is not yours.")
    return job


@registry.command(
    "gpu status", "A GPU job's state, or your recent jobs", ephemeral=True, topic="gpu"
)
async def gpu_status(ctx: Context, opts: JobRef) -> Reply:
    if opts.job is not None:
        job = await _job(ctx, opts.job)
        ahead = await queue.position(ctx.session, job) if job.state == "queued" else None
        text = _progress_text(job, ahead)
        if job.result_text:
            text += "\n" + job.result_text
        return Reply(text=text)
    return await gpu_queue_cmd(ctx, QueueOptions())


class CancelOptions(BaseModel):
    job: int = Field(ge=1, description="the job number")
    reason: Reason = None


@registry.command("gpu cancel", "Cancel a queued or running GPU job", ephemeral=True, topic="gpu")
async def gpu_cancel(ctx: Context, opts: CancelOptions) -> Reply:
    job = await _job(ctx, opts.job)
    if job.state not in ("queued", "running"):
        raise InvalidInput(f"Job #{job.id} is already {job.state}.")
    was = job.state
    job.state = "cancelled"
    job.finished_at = ctx.now
    if job.person_id != ctx.me().id:  # staff cancelling someone else's job
        record(
            ctx,
            "gpu.cancel",
            subject=await ctx.session.get(Person, job.person_id),
            summary=f"GPU job #{job.id} ({job.demo})",
            before={"job": job.id, "state": was},
            after={"job": job.id, "state": "cancelled"},
            reason=opts.reason,
        )
    return Reply(
        text=f"Job #{job.id} is cancelled"
        + (" (its run is being stopped)." if was == "running" else "."),
        tone=Tone.SUCCESS,
    )


class QueueOptions(BaseModel):
    pass


@registry.command(
    "gpu queue", "Your GPU jobs and their places (staff: everyone's)", ephemeral=True, topic="gpu"
)
async def gpu_queue_cmd(ctx: Context, _: QueueOptions) -> Reply:
    me = ctx.me()
    order = await queue.queue_order(ctx.session)
    place = {j.id: i + 1 for i, j in enumerate(order)}
    q = (
        select(GpuJob, Person.name)
        .join(Person, Person.id == GpuJob.person_id)
        .where(
            GpuJob.course_id == ctx.course.id,
            GpuJob.created_at >= ctx.now - timedelta(days=7),
        )
    )
    if not me.is_staff:
        q = q.where(GpuJob.person_id == me.id)
    rows = []
    for job, name in await ctx.session.execute(q.order_by(GpuJob.id.desc()).limit(50)):
        where = (
            f"#{place[job.id]}" if job.id in place else ("now" if job.state == "running" else "—")
        )
        rows.append([str(job.id), name, job.demo, job.state, where])
    return Reply(
        title="GPU queue" if me.is_staff else "Your GPU jobs",
        text=f"{len(order)} job(s) waiting; the queue takes turns between students.",
        tables=[Table(["Job", "Owner", "Demo", "State", "Place"], rows)],
    )


# ------------------------------------------------------------------------- the tick


def _unposted(course_ids: set[int] | None) -> Select[tuple[GpuJob]]:
    q = select(GpuJob).where(GpuJob.posted.is_(False), GpuJob.state != "queued")
    if course_ids is not None:
        q = q.where(GpuJob.course_id.in_(course_ids))
    return q


async def gpu_posts_pending(session: AsyncSession, *, course_ids: set[int] | None = None) -> bool:
    """Whether a result or a progress step waits to be posted: a cheap read, polled
    often (every 50 ms) so that a result is posted within tens of milliseconds."""
    q = _unposted(course_ids).where(
        GpuJob.state.in_(queue.FINISHED)
        | (func.abs(GpuJob.progress - GpuJob.shown_progress) >= 0.1)
    )
    return await session.scalar(q.with_only_columns(GpuJob.id).limit(1)) is not None


#: How long a finished job's files (its input and result images) stay in the database:
#: the result is posted in chat, and `gpu status` still describes the job afterwards.
FILES_KEPT = timedelta(days=7)


async def prune_job_files(session: AsyncSession, now: datetime) -> int:
    """Delete the files of jobs finished and posted more than FILES_KEPT ago; how many."""
    old = select(GpuJob.id).where(
        GpuJob.posted.is_(True),
        GpuJob.state.in_(queue.FINISHED),
        GpuJob.finished_at < now - FILES_KEPT,
    )
    result = await session.execute(delete(GpuJobFile).where(GpuJobFile.job_id.in_(old)))
    return int(getattr(result, "rowcount", 0) or 0)


async def recover_gpu_jobs(session: AsyncSession, now: datetime) -> None:
    """Jobs of workers that died (no heartbeat): queued again once if young, otherwise
    expired; either way the next GPU tick tells their owners."""
    await queue.recover(session, now)


async def due_gpu_posts(
    session: AsyncSession,
    now: datetime,
    *,
    course_ids: set[int] | None = None,
    recover: bool = True,
) -> list[tuple[int, Outgoing]]:
    """Progress edits and results that are due: each result is posted once. With
    ``recover``, jobs of dead workers are first queued again or expired."""
    if recover:
        await queue.recover(session, now)
    q = _unposted(course_ids)
    out: list[tuple[int, Outgoing]] = []
    for job in await session.scalars(q):
        finished = job.state in queue.FINISHED
        if not finished and abs(job.progress - job.shown_progress) < 0.1:
            continue
        job.shown_progress = job.progress
        if job.channel:
            out.append(
                (job.course_id, Outgoing(Reply(text=_progress_text(job)), edit_key=_key(job)))
            )
        if finished:
            job.posted = True
            result = await _result(session, job)
            target = (
                Outgoing(result, channel=job.channel)
                if job.channel
                else Outgoing(result, person_id=job.person_id)
            )
            out.append((job.course_id, target))
    await session.flush()
    return out


async def _result(session: AsyncSession, job: GpuJob) -> Reply:
    """The result message: the text and the images the worker stored in the database."""
    if job.state == "succeeded":
        files = [
            FileOut(f.name, f.data, f.content_type)
            for f in await session.scalars(
                select(GpuJobFile)
                .where(GpuJobFile.job_id == job.id, GpuJobFile.role == queue.OUTPUT)
                .order_by(GpuJobFile.id)
            )
        ]
        return Reply(
            title=f"GPU job #{job.id} ({job.demo}) finished",
            text=job.result_text or "",
            files=files,
            tone=Tone.SUCCESS,
        )
    return Reply(text=_progress_text(job), tone=Tone.WARNING)


# ------------------------------------------------------------------ instructor controls


def _set_rules(ctx: Context, **changes: object) -> dict[str, object]:
    rules = dict(ctx.course.gpu_rules or {})
    rules.update(changes)
    ctx.course.gpu_rules = rules  # a new dict, so the JSON column is saved
    return rules


class ControlOptions(BaseModel):
    reason: Reason = None


@registry.command(
    "gpu pause",
    "Pause the GPU queue (jobs wait; running ones finish)",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="gpu",
)
async def gpu_pause(ctx: Context, opts: ControlOptions) -> Reply:
    was = bool((ctx.course.gpu_rules or {}).get("paused"))
    _set_rules(ctx, paused=True)
    record(
        ctx,
        "gpu.pause",
        summary="paused the GPU queue",
        before={"paused": was},
        after={"paused": True},
        reason=opts.reason,
    )
    ctx.post(
        "announcements",
        Reply(text="⏸ The GPU queue is paused; queued jobs will run when it resumes."),
    )
    return Reply(text="The GPU queue is paused.", tone=Tone.SUCCESS)


@registry.command(
    "gpu resume", "Resume the GPU queue", access=Access.INSTRUCTOR, ephemeral=True, topic="gpu"
)
async def gpu_resume(ctx: Context, opts: ControlOptions) -> Reply:
    was = bool((ctx.course.gpu_rules or {}).get("paused"))
    _set_rules(ctx, paused=False)
    record(
        ctx,
        "gpu.resume",
        summary="resumed the GPU queue",
        before={"paused": was},
        after={"paused": False},
        reason=opts.reason,
    )
    ctx.post("announcements", Reply(text="▶️ The GPU queue is running again."))
    return Reply(text="The GPU queue is running again.", tone=Tone.SUCCESS)


class LimitOptions(BaseModel):
    queued: int = Field(
        ge=0, le=50, description="how many waiting jobs a student may have (0: none)"
    )
    student: str | None = Field(None, description="only this student (email, onyen or name)")
    reason: Reason = None


@registry.command(
    "gpu limit",
    "Set how many waiting jobs students (or one student) may have",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="gpu",
    examples=("gpu limit 3", "gpu limit 0 bob"),
)
async def gpu_limit(ctx: Context, opts: LimitOptions) -> Reply:
    from commands.people import find_person

    rules = ctx.course.gpu_rules or {}
    if opts.student is None:
        before = rules.get("queued_cap")
        _set_rules(ctx, queued_cap=opts.queued)
        record(
            ctx,
            "gpu.limits",
            summary=f"waiting jobs per student: {opts.queued}",
            before={"queued_cap": before},
            after={"queued_cap": opts.queued},
            reason=opts.reason,
        )
        return Reply(
            text=f"Every student may now have {opts.queued} job(s) waiting.", tone=Tone.SUCCESS
        )
    person = await find_person(ctx.session, ctx.course.id, opts.student)
    limits = dict((ctx.course.gpu_rules or {}).get("limits") or {})
    before = limits.get(str(person.id))
    limits[str(person.id)] = opts.queued
    _set_rules(ctx, limits=limits)
    record(
        ctx,
        "gpu.limits",
        subject=person,
        summary=f"waiting jobs: {opts.queued}",
        before={"queued_cap": before},
        after={"queued_cap": opts.queued},
        reason=opts.reason,
    )
    return Reply(
        text=f"{person.name} may now have {opts.queued} job(s) waiting.", tone=Tone.SUCCESS
    )


# ------------------------------------------------------------------ due work


async def _collect_gpu(
    session: AsyncSession, now: datetime, scope: Scope
) -> list[tuple[int, Outgoing]]:
    """Dead workers' jobs queued again or expired, old job files pruned, and any result
    or progress step waiting to be posted."""
    await prune_job_files(session, now)
    return await due_gpu_posts(session, now, course_ids=scope.course_ids, recover=True)


async def _no_plan(session: AsyncSession, now: datetime, scope: Scope) -> datetime | None:
    return None  # results come from the workers: polled, see ``poll`` below


async def _gpu_pending(session: AsyncSession, scope: Scope) -> bool:
    return await gpu_posts_pending(session, course_ids=scope.course_ids)


due_registry.register("gpu", _collect_gpu, _no_plan, poll=_gpu_pending)
