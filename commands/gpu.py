"""GPU demo jobs from chat: the catalogue, submitting, following and cancelling jobs,
the instructor's controls and the term's usage. Every change of a job's state goes
through :class:`gpu_queue.jobs.Jobs`; the workers (gpu_queue/worker.py) run the jobs;
the bot's GPU pass turns their progress into edits of one progress message and each
terminal state (succeeded, failed, cancelled, expired) into exactly one announcement,
written to the outbox in the transaction that marks the job ``posted``."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.attachments import (
    CLIP_KINDS,
    IMAGE_KINDS,
    FileRule,
    describe,
    read_attachment,
)
from commands.audit import Reason, record
from commands.context import Context
from commands.due import Scope, due_registry
from commands.errors import Forbidden, InvalidInput, NotFound
from commands.outbox import Outgoing
from commands.registry import Access, registry
from commands.replies import FileOut, Reply, Table, Tone
from commands.solver import plural
from db.models import GpuJob, GpuJobFile, Person
from gpu_queue import fleet, queue
from gpu_queue.demos import catalogue
from gpu_queue.demos.images import TooManyPixels, open_image
from gpu_queue.jobs import TERMINAL, IllegalTransition, Jobs, JobState

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


def _progress_text(job: GpuJob, ahead: int | None = None, *, paused: bool = False) -> str:
    """The progress message: one line, edited as the job moves. For a finished job it
    names the final state only; the announcement below it carries the details."""
    state = JobState(job.state)
    head = f"{ICON.get(state, '')} GPU job #{job.id} ({job.demo}): {state}"
    if state == JobState.QUEUED:
        if paused:
            head += " (the GPU queue is paused)"
        elif ahead is not None:
            head += f", position {ahead + 1} in the queue"
    if state == JobState.RUNNING:
        head += f" {job.progress * 100:.0f}%" + (f" ({job.note})" if job.note else "")
    return head


def _announcement(job: GpuJob) -> str:
    """What a failed, cancelled or expired job's owner reads (once)."""
    state = JobState(job.state)
    text = f"{ICON.get(state, '')} GPU job #{job.id} ({job.demo}) {state}"
    if state == JobState.CANCELLED:
        return text + (f" ({job.note})." if job.note else ".")
    return text + (f": {job.error}" if job.error else ".")


async def _paused(ctx: Context) -> bool:
    return bool((ctx.course.gpu_rules or {}).get("paused"))


async def _check_memory(ctx: Context, demo: str, params: dict[str, object]) -> None:
    """Refuse at submission parameters that no serving GPU could hold."""
    spec = catalogue().get(demo)
    if spec is None or spec.memory_mib is None:
        return
    try:
        need = spec.memory_mib(spec.params.model_validate(params))
    except Exception:  # bad parameters: the submission says why
        return
    gpus = [w.memory_mib for w in await fleet.live(ctx.session, ctx.now) if w.memory_mib]
    if gpus and need > max(gpus):
        raise InvalidInput(
            f"`{demo}` with these parameters needs about {need:,.0f} MiB of GPU memory; the "
            f"largest GPU serving the queue has {max(gpus):,} MiB.",
            hint="Try smaller parameters (see `gpu demos`).",
        )


class DemosOptions(BaseModel):
    pass


@registry.command(
    "gpu demos",
    "The GPU demos you can run and their parameters",
    access=Access.ANYONE,
    topic="gpu",
    reads=True,
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


def input_rule(demo: str) -> FileRule:
    """What ``gpu run <demo>`` takes as its file (commands/attachments.py reads it)."""
    kinds = INPUT_KINDS.get(demo, IMAGE_KINDS)
    if kinds == IMAGE_KINDS:
        noun, one, what, takes = "an image", "one image", "not an image", IMAGE_FORMATS
    else:
        noun, one = "an image or a video clip", "one image or clip"
        what, takes = "neither an image nor a video clip", f"{IMAGE_FORMATS} or {CLIP_FORMATS}"
    return FileRule(
        noun=noun,
        form=takes,
        one=one,
        kinds=frozenset(kinds),
        max_bytes=queue.input_limit(demo),
        wrong_kind=what,
        kind_hint=f"`gpu run {demo}` takes {takes}.",
        size_hint="Send a smaller image or a shorter clip.",
    )


def check_image(name: str, data: bytes, kind: str) -> None:
    """Refuse at once an image of more pixels than a demo decodes (from its header only,
    before anything is decoded: a small PNG can declare 20000×20000), or a corrupt one."""
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


def takes_file(spec: object) -> bool:
    """Whether a demo takes an attached file (its ``image`` parameter)."""
    return "image" in getattr(spec, "params", BaseModel).model_fields


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
    spec = catalogue().get(opts.demo)
    if spec is not None and takes_file(spec):
        # A local path (terminal, Slack) or a URL (Discord): read here, stored with the
        # job in the database, so a worker on any host can run it. No file: the
        # demo's own sample.
        got = await read_attachment(ctx.request, input_rule(opts.demo), required=False)
        if got is not None:
            check_image(got.name, got.data, got.kind)
            inputs["image"] = queue.JobInput(got.name, got.data, got.content_type)
    elif spec is not None and ctx.request.attachments:
        names = ", ".join(f"`{a.name}`" for a in ctx.request.attachments)
        others = ", ".join(f"`gpu run {n}`" for n, d in catalogue().items() if takes_file(d))
        raise InvalidInput(
            f"`gpu run {opts.demo}` takes no file, so {names} would not be used.",
            hint=f"Send the command without the file; {others or 'no demo'} takes one.",
        )
    channel = ctx.request.where.channel or ""
    await _check_memory(ctx, opts.demo, raw)
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
    est = await queue.estimate(ctx.session, job, ctx.now)
    if channel:
        ctx.post_remembered(
            channel, _key(job), Reply(text=_progress_text(job, est.ahead, paused=est.paused))
        )
    where = "here" if channel else "to you"
    on = f", on `{inputs['image'].name}`" if "image" in inputs else ""
    return Reply(
        text=f"Job #{job.id} ({job.demo}{on}) is queued at position {est.ahead + 1}; "
        f"{est.words()}. The result will be posted {where}; "
        f"`gpu status {job.id}` follows it, `gpu cancel {job.id}` stops it.",
        tone=Tone.WARNING if est.paused or est.seconds is None else Tone.SUCCESS,
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
    "gpu status",
    "A GPU job's state, or your recent jobs",
    ephemeral=True,
    topic="gpu",
    reads=True,
)
async def gpu_status(ctx: Context, opts: JobRef) -> Reply:
    if opts.job is not None:
        job = await _job(ctx, opts.job)
        if job.state == JobState.QUEUED:
            est = await queue.estimate(ctx.session, job, ctx.now)
            text = _progress_text(job, est.ahead, paused=est.paused) + f"; {est.words()}"
        elif job.state in TERMINAL and job.state != JobState.SUCCEEDED:
            text = _announcement(job)
        else:
            text = _progress_text(job)
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
    mine = job.person_id == ctx.me().id
    by = "cancelled by its owner" if mine else f"cancelled by {ctx.me().name}"
    try:
        was = await Jobs(ctx.session).cancel(job.id, ctx.now, by=by)
    except IllegalTransition as exc:
        raise InvalidInput(str(exc)) from None
    if not mine:  # staff cancelling someone else's job
        record(
            ctx,
            "gpu.cancel",
            subject=await ctx.session.get(Person, job.person_id),
            summary=f"GPU job #{job.id} ({job.demo})",
            before={"job": job.id, "state": str(was)},
            after={"job": job.id, "state": str(JobState.CANCELLED)},
            reason=opts.reason,
        )
    return Reply(
        text=f"Job #{job.id} is cancelled"
        + (" (its run is being stopped)." if was == JobState.RUNNING else "."),
        tone=Tone.SUCCESS,
    )


class QueueOptions(BaseModel):
    pass


@registry.command(
    "gpu queue",
    "Your GPU jobs and their places (staff: everyone's)",
    ephemeral=True,
    topic="gpu",
    reads=True,
)
async def gpu_queue_cmd(ctx: Context, _: QueueOptions) -> Reply:
    me = ctx.me()
    paused = await _paused(ctx)
    order = await queue.queue_order(ctx.session, include_paused=True)
    place = {j.id: i + 1 for i, j in enumerate(order)}
    waiting = sum(1 for j in order if j.course_id == ctx.course.id)
    q = (
        select(GpuJob, Person.name)
        .join(Person, Person.id == GpuJob.person_id)
        .where(
            GpuJob.course_id == ctx.course.id,
            (GpuJob.created_at >= ctx.now - timedelta(days=7))
            | GpuJob.state.in_((JobState.QUEUED, JobState.RUNNING)),
        )
    )
    if not me.is_staff:
        q = q.where(GpuJob.person_id == me.id)
    rows = []
    for job, name in await ctx.session.execute(q.order_by(GpuJob.id.desc()).limit(50)):
        if job.id in place:
            where = f"#{place[job.id]}" + (" (paused)" if paused else "")
        else:
            where = "now" if job.state == JobState.RUNNING else "—"
        rows.append([str(job.id), name, job.demo, str(job.state), where])
    workers = await fleet.live(ctx.session, ctx.now)
    idle = sum(1 for w in workers if w.state == fleet.IDLE)
    serving = f"{plural(len(workers), 'GPU worker')} serving, {idle} idle."
    if paused:
        head = (
            f"⏸ The GPU queue is paused: {plural(waiting, 'job')} waiting; they run when the "
            f"instructor resumes it. {serving}"
        )
    else:
        head = (
            f"{plural(waiting, 'job')} waiting; the queue takes turns between students. {serving}"
        )
    return Reply(
        title="GPU queue" if me.is_staff else "Your GPU jobs",
        text=head,
        tables=[Table(["Job", "Owner", "Demo", "State", "Place"], rows)],
    )


# ------------------------------------------------------------------------- the tick


def _unposted(course_ids: set[int] | None) -> Select[tuple[GpuJob]]:
    q = select(GpuJob).where(GpuJob.posted.is_(False), GpuJob.state != JobState.QUEUED)
    if course_ids is not None:
        q = q.where(GpuJob.course_id.in_(course_ids))
    return q


async def gpu_posts_pending(session: AsyncSession, *, course_ids: set[int] | None = None) -> bool:
    """Whether the GPU pass has something to do: a result or a progress step to post,
    or a job running (whose result a worker in another process may write at any
    moment: the scheduler then polls every 50 ms, so a result is posted within tens of
    milliseconds). A cheap indexed read."""
    q = _unposted(course_ids).where(
        GpuJob.state.in_(tuple(TERMINAL))
        | (GpuJob.state == JobState.RUNNING)
        | (func.abs(GpuJob.progress - GpuJob.shown_progress) >= 0.1)
    )
    return await session.scalar(q.with_only_columns(GpuJob.id).limit(1)) is not None


#: How long a finished job's files (its input and result images) stay in the database:
#: the result is posted in chat, and `gpu status` still describes the job afterwards.
FILES_KEPT = timedelta(days=7)
#: The GPU pass prunes old files at most this often (it runs every 50 ms while a job runs).
PRUNE_EVERY_S = 600.0
_last_prune = {"at": float("-inf")}


async def prune_job_files(session: AsyncSession, now: datetime) -> int:
    """Delete the files of jobs finished and posted more than FILES_KEPT ago; how many."""
    old = select(GpuJob.id).where(
        GpuJob.posted.is_(True),
        GpuJob.state.in_(tuple(TERMINAL)),
        GpuJob.finished_at < now - FILES_KEPT,
    )
    result = await session.execute(delete(GpuJobFile).where(GpuJobFile.job_id.in_(old)))
    return int(getattr(result, "rowcount", 0) or 0)


async def recover_gpu_jobs(session: AsyncSession, now: datetime) -> None:
    """Jobs of workers that died (no heartbeat): queued again once if young, otherwise
    expired; either way the next GPU pass tells their owners."""
    await Jobs(session).recover(now)


async def due_gpu_posts(
    session: AsyncSession,
    now: datetime,
    *,
    course_ids: set[int] | None = None,
    recover: bool = True,
) -> list[tuple[int, Outgoing]]:
    """Progress edits and announcements that are due, as outbox items for the caller's
    transaction. Each terminal state is announced exactly once: the job is marked
    ``posted`` in this transaction, and rows another pass is handling are skipped
    (``FOR UPDATE SKIP LOCKED``). With ``recover``, jobs of dead workers are first
    queued again or expired."""
    if recover:
        await Jobs(session).recover(now)
    q = (
        _unposted(course_ids)
        .order_by(GpuJob.id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    out: list[tuple[int, Outgoing]] = []
    for job in await session.scalars(q):
        finished = job.state in TERMINAL
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
    """The announcement: the text and the images the worker stored in the database, or
    what became of the job (failed, cancelled, expired) and why."""
    if job.state == JobState.SUCCEEDED:
        files = [
            FileOut(f.name, f.data, f.content_type, _alt(job.demo, f.name))
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
    return Reply(text=_announcement(job), tone=Tone.WARNING)


def _alt(demo: str, name: str) -> str:
    """Alt text for a result image (from its file name: ``cnn-conv1.png``)."""
    what = name.rsplit(".", 1)[0].removeprefix(f"{demo}-").replace("-", " ")
    return f"{demo} demo: {what}"


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
    await Jobs(ctx.session).resume()  # idle workers look again when this commits
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
            text=f"Every student may now have {plural(opts.queued, 'job')} waiting.",
            tone=Tone.SUCCESS,
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
        text=f"{person.name} may now have {plural(opts.queued, 'job')} waiting.", tone=Tone.SUCCESS
    )


# ------------------------------------------------------------------ usage


class UsageOptions(BaseModel):
    pass


def _hours(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


async def usage_rows(
    session: AsyncSession, course_id: int, now: datetime, person_id: int | None = None
) -> list[tuple[str, str, str, int, int, int, int, float]]:
    """GPU time of the term (the course's jobs): per (student, demo), the jobs submitted,
    succeeded, failed (failed or expired), cancelled, and the seconds they ran (from
    start to finish; a running job counts until now; a run lost to a worker's death is
    not counted)."""
    q = (
        select(GpuJob, Person.name, Person.email)
        .join(Person, Person.id == GpuJob.person_id)
        .where(GpuJob.course_id == course_id)
    )
    if person_id is not None:
        q = q.where(GpuJob.person_id == person_id)
    table: dict[tuple[str, str, str], list[float]] = {}
    for job, name, email in await session.execute(q):
        row = table.setdefault((name, email, job.demo), [0, 0, 0, 0, 0.0])
        row[0] += 1
        state = JobState(job.state)
        row[1] += state == JobState.SUCCEEDED
        row[2] += state in (JobState.FAILED, JobState.EXPIRED)
        row[3] += state == JobState.CANCELLED
        if job.started_at is not None:
            end = job.finished_at or (now if state == JobState.RUNNING else job.started_at)
            row[4] += max(0.0, (end - job.started_at).total_seconds())
    return [
        (name, email, demo, int(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4]))
        for (name, email, demo), r in sorted(table.items())
    ]


@registry.command(
    "gpu usage",
    "GPU time this term: per student and per demo (staff, with a CSV); yours (students)",
    ephemeral=True,
    topic="gpu",
    reads=True,
)
async def gpu_usage(ctx: Context, _: UsageOptions) -> Reply:
    me = ctx.me()
    rows = await usage_rows(ctx.session, ctx.course.id, ctx.now, None if me.is_staff else me.id)
    per_demo: dict[str, list[float]] = {}
    per_student: dict[str, list[float]] = {}
    for name, _email, demo, n, ok, bad, cancelled, secs in rows:
        for key, bucket in ((demo, per_demo), (name, per_student)):
            acc = bucket.setdefault(key, [0, 0, 0, 0, 0.0])
            for k, v in enumerate((n, ok, bad, cancelled, secs)):
                acc[k] += v
    total = sum(r[-1] for r in rows)

    def table(title: str, first: str, data: dict[str, list[float]]) -> Table:
        ordered = sorted(data.items(), key=lambda kv: -kv[1][4])
        return Table(
            [first, "Jobs", "Succeeded", "Failed", "Cancelled", "GPU time"],
            [[k, *(str(int(v)) for v in acc[:4]), _hours(acc[4])] for k, acc in ordered],
            title=title,
        )

    if not rows:
        return Reply(
            title="GPU usage",
            text="No GPU jobs this term yet."
            if me.is_staff
            else "You have not run a GPU job this term.",
        )
    tables = [table("Per demo", "Demo", per_demo)]
    files = []
    jobs = plural(sum(r[3] for r in rows), "job")
    if me.is_staff:
        tables.insert(0, table("Per student", "Student", per_student))
        buf = io.StringIO()
        out = csv.writer(buf)
        out.writerow(["student", "email", "demo", "jobs", "succeeded", "failed", "cancelled",
                      "gpu_seconds"])  # fmt: skip
        for name, email, demo, n, ok, bad, cancelled, secs in rows:
            out.writerow([name, email, demo, n, ok, bad, cancelled, f"{secs:.1f}"])
        files.append(
            FileOut(
                f"{ctx.course.key}-gpu-usage.csv",
                buf.getvalue().encode(),
                "text/csv",
                "GPU usage per student and demo",
            )
        )
        head = (
            f"GPU time this term: {_hours(total)} over {jobs} "
            f"by {plural(len(per_student), 'student')}."
        )
    else:
        head = f"Your GPU time this term: {_hours(total)} over {jobs}."
    return Reply(title="GPU usage", text=head, tables=tables, files=files)


# ------------------------------------------------------------------ due work


async def _collect_gpu(
    session: AsyncSession, now: datetime, scope: Scope
) -> list[tuple[int, Outgoing]]:
    """Dead workers' jobs queued again or expired, old job files pruned, and any result
    or progress step waiting to be posted."""
    if time.monotonic() - _last_prune["at"] >= PRUNE_EVERY_S:
        _last_prune["at"] = time.monotonic()
        await prune_job_files(session, now)
        await fleet.prune(session, now)
    return await due_gpu_posts(session, now, course_ids=scope.course_ids, recover=True)


async def _no_plan(session: AsyncSession, now: datetime, scope: Scope) -> datetime | None:
    return None  # results come from the workers: polled, see ``poll`` below


async def _gpu_pending(session: AsyncSession, scope: Scope) -> bool:
    return await gpu_posts_pending(session, course_ids=scope.course_ids)


due_registry.register("gpu", _collect_gpu, _no_plan, poll=_gpu_pending)
