"""Grades by component (weights from ``course.grading``; what counts is computed in
:mod:`commands.gradebook`), and announcements posted now or at a scheduled time (kept
across restarts). (The course calendar: :mod:`commands.calendar`.)"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.audit import Reason, local_iso, record
from commands.clock import localize
from commands.context import Context
from commands.critiques import canvas_name, course_students, name_key
from commands.due import Scope, due_registry
from commands.errors import Conflict, Forbidden, InvalidInput, NotFound
from commands.exports import READ_ONLY, canvas_csv, canvas_matching
from commands.gradebook import (
    CRITIQUES,
    PROJECT,
    Gradebook,
    check_points,
    component,
    components,
    enrolled,
    fmt,
    gradebook,
    project_note,
    weighted,
)
from commands.outbox import Outgoing
from commands.people import find_person
from commands.registry import Access, LongText, registry
from commands.replies import FileOut, Reply, Table, Tone
from commands.text import LONG_TEXT_MAX, check_text, shown
from commands.timefmt import fmt_instant
from db.models import (
    Announcement,
    Course,
    GradeEntry,
    Person,
)

# ----------------------------------------------------------------------------- grades

_fmt = fmt


async def standings(
    session: AsyncSession, course: Course, now: datetime
) -> dict[int, dict[str, float]]:
    """Points (0-100) per student and component, counting only what is graded or past
    due (see :mod:`commands.gradebook`); a grade set by hand wins."""
    book = await gradebook(session, course, now)
    students = await course_students(session, course.id)
    return {s.id: pts for s in students if (pts := book.points(s.id))}


class GradesOptions(BaseModel):
    student: str | None = Field(None, description="a student (staff only); you by default")


def _note(book: Gradebook, who: Person, comp: str) -> str:
    """What a component's points are made of."""
    if book.by_hand(who.id, comp):
        return "set by staff"
    if comp == CRITIQUES and who.id in book.tallies:
        return book.tallies[who.id].summary()
    if comp == PROJECT:
        return project_note(book.milestones.get(who.id, []))
    return ""


def _milestone_table(book: Gradebook, who: Person) -> list[Table]:
    """Their project grade per milestone: the group's, their adjustment and why."""
    grades = book.milestones.get(who.id, [])
    if not grades or book.by_hand(who.id, PROJECT):
        return []
    rows = []
    for g in grades:
        weight = f"{g.milestone.weight}%" if g.milestone.weight else ""
        if g.group is None:
            rows.append([g.milestone.title, weight, "not graded yet", "", ""])
            continue
        adj = f"{g.adjustment:+g}" + (f" ({g.reason})" if g.reason else "") if g.adjustment else ""
        rows.append(
            [
                g.milestone.title,
                weight,
                f"{fmt(g.group)} ({g.project})",
                adj,
                f"{fmt(g.points or 0)}/100",
            ]
        )
    return [Table(["Milestone", "Weight", "Group", "Adjustment", "Yours"], rows, "Project")]


@registry.command(
    "grades",
    "Your standing by component, from what is recorded",
    ephemeral=True,
    topic="course",
    examples=("grades", "grades alice.chen@unc.edu"),
    reads=True,
)
async def grades(ctx: Context, opts: GradesOptions) -> Reply:
    me = ctx.me()
    who = me
    if opts.student:
        if not me.is_staff:
            raise Forbidden("You can only see your own grades.")
        who = await find_person(ctx.session, ctx.course.id, opts.student)
    elif me.is_staff:
        raise InvalidInput(
            "Name a student, e.g. `grades alice.chen@unc.edu`; `grade export` has everyone."
        )
    comps = components(ctx.course)
    if not comps:
        raise NotFound("The course file defines no grading components.")
    book = await gradebook(ctx.session, ctx.course, ctx.now)
    points = book.points(who.id)
    rows = []
    for c, w in comps.items():
        p = points.get(c)
        rows.append(
            [
                c,
                f"{_fmt(w)}%",
                "not recorded" if p is None else f"{_fmt(p)}/100",
                "" if p is None else f"{_fmt(p * w / 100)}%",
                _note(book, who, c),
            ]
        )
    total, covered = weighted(ctx.course, points)
    text = (
        f"So far: {_fmt(total)}% of the {_fmt(covered)}% graded"
        + (f" ({_fmt(100 * total / covered)}% of what is graded)." if covered else ".")
        if covered
        else "Nothing is recorded yet."
    )
    text += " Only what is graded, or past its deadline, counts."
    if CRITIQUES in comps and who.id in book.tallies and not book.by_hand(who.id, CRITIQUES):
        text += f"\nCritiques: {book.tallies[who.id].summary()}."
    return Reply(
        title=f"Grades: {who.name}",
        text=text,
        tables=[
            Table(["Component", "Weight", "Points", "Counts", "Note"], rows),
            *_milestone_table(book, who),
        ],
    )


class GradeSetOptions(BaseModel):
    student: str = Field(description="email, onyen or name")
    component: str = Field(description="a component of the course's grading")
    points: float = Field(description="points out of 100")
    reason: Reason = None


@registry.command(
    "grade set",
    "Record a student's points (0-100) for a grading component",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    examples=(
        "grade set alice.chen@unc.edu presentations 92",
        'grade set bob presentations 88 reason="regraded after the appeal"',
    ),
)
async def grade_set(ctx: Context, opts: GradeSetOptions) -> Reply:
    comp = component(ctx.course, opts.component)
    check_points(opts.points)
    student = await find_person(ctx.session, ctx.course.id, opts.student)
    enrolled(student)
    row = await ctx.session.scalar(
        select(GradeEntry).where(GradeEntry.person_id == student.id, GradeEntry.component == comp)
    )
    before = None if row is None else row.points
    if row is None:
        row = GradeEntry(
            course_id=ctx.course.id,
            person_id=student.id,
            component=comp,
            points=opts.points,
            updated_at=ctx.now,
        )
        ctx.session.add(row)
    row.points, row.set_by, row.updated_at = opts.points, ctx.me().id, ctx.now
    record(
        ctx,
        "grade.set",
        subject=student,
        summary=f"{comp}: {_fmt(opts.points)}/100",
        before={"component": comp, "points": before},
        after={"component": comp, "points": opts.points},
        reason=opts.reason,
    )
    was = "" if before is None else f" (was {_fmt(before)})"
    return Reply(f"{student.name}: {comp} = {_fmt(opts.points)}/100{was}.", tone=Tone.SUCCESS)


def grades_csv(course: Course, people: list[Person], table: dict[int, dict[str, float]]) -> bytes:
    """Canvas's gradebook import: one column per grading component (out of 100; blank:
    nothing counted yet), then Canvas's own read-only ``Current Score`` (percent of what
    is graded) and ``Final Score`` (the weighted total so far), which the import skips."""
    comps = components(course)
    rows = []
    for p in sorted(people, key=name_key):
        pts = table.get(p.id, {})
        total, covered = weighted(course, pts)
        cells = [_fmt(pts[c]) if c in pts else "" for c in comps]
        cells += [_fmt(100 * total / covered) if covered else "", _fmt(total)]
        rows.append((canvas_name(p), p, cells))
    columns = [(c, "100") for c in comps]
    columns += [("Current Score", READ_ONLY), ("Final Score", READ_ONLY)]
    return canvas_csv(columns, rows)


@registry.command(
    "grade export",
    "Every student's grades as a CSV for Canvas's gradebook import",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    reads=True,
)
async def grade_export(ctx: Context, _: BaseModel) -> Reply:
    people = await course_students(ctx.session, ctx.course.id)
    table = await standings(ctx.session, ctx.course, ctx.now)
    data = grades_csv(ctx.course, people, table)
    comps = ", ".join(components(ctx.course)) or "none"
    return Reply(
        f"Grades of {len(people)} students, one column per component ({comps}; out of 100, "
        "blank: nothing counted yet). Only what is graded or past its deadline counts. "
        f"Import it in Canvas: Grades → Import. {canvas_matching(people)}",
        files=[FileOut(f"{ctx.course.key}-grades.csv", data, "text/csv")],
    )


# ----------------------------------------------------------------------------- announcements


def _excerpt(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def announcement_reply(text: str, author: str | None) -> Reply:
    return Reply(title="📣 Announcement", text=text + (f"\n— {author}" if author else ""))


def parse_local(value: str, tz: ZoneInfo) -> datetime:
    """``2023-09-01T09:00`` (or with a space) in the course zone, to an aware instant."""
    try:
        dt = datetime.fromisoformat(value.strip().replace(" ", "T"))
    except ValueError:
        raise InvalidInput(
            f"`{shown(value)}` is not a time (or not a real date).",
            hint="Use the course's local time: 2023-09-01T09:00.",
        ) from None
    return localize(dt, tz)  # refuses a time in a DST gap or in the repeated hour


class AnnounceOptions(BaseModel):
    text: Annotated[str, LongText()] = Field(description="the announcement (quote it)")
    at: str | None = Field(None, description="post at this local time, e.g. 2023-09-01T09:00")
    time: str | None = Field(None, description="(the time, after the word `at`)")


@registry.command(
    "announce",
    "Post an announcement now, or at a local time",
    access=Access.STAFF,
    topic="course",
    form=("text",),
    examples=('announce "No class Monday."', 'announce "Rankings are due." at 2023-08-27T09:00'),
)
async def announce(ctx: Context, opts: AnnounceOptions) -> Reply:
    me = ctx.me()
    text = opts.text.strip()
    if not text:
        raise InvalidInput("The announcement is empty.")
    when = opts.at
    if when is not None and when.lower() == "at":
        when = opts.time
        if not when:
            raise InvalidInput("Give the time after `at`, e.g. `at 2023-09-01T09:00`.")
    elif opts.time is not None:
        raise InvalidInput(f"Unexpected `{opts.time}`: write `at <time>` after the text.")
    post_at = ctx.now if when is None else parse_local(when, ctx.tz)
    if when is not None and post_at <= ctx.now:
        raise InvalidInput(
            f"{fmt_instant(post_at, ctx.tz)} is in the past.",
            hint="Give a future time, or leave it out to post now.",
        )
    text = check_text(text, what="The announcement", limit=LONG_TEXT_MAX, multiline=True)
    if when is not None:
        same = await ctx.session.scalar(
            select(Announcement.id).where(
                Announcement.course_id == ctx.course.id,
                Announcement.text == text,
                Announcement.post_at == post_at,
                Announcement.sent_at.is_(None),
                Announcement.cancelled_at.is_(None),
            )
        )
        if same is not None:  # the same command again: it is scheduled once
            return Reply(
                f"Announcement {same} with this text is already scheduled for "
                f"{fmt_instant(post_at, ctx.tz)}; nothing new was scheduled.",
                ephemeral=True,
            )
    row = Announcement(
        course_id=ctx.course.id,
        text=text,
        author_id=me.id,
        created_at=ctx.now,
        post_at=post_at,
        sent_at=ctx.now if when is None else None,
    )
    ctx.session.add(row)
    await ctx.session.flush()
    record(
        ctx,
        "announce.post" if when is None else "announce.schedule",
        summary=f"announcement {row.id}: {_excerpt(row.text)}",
        after={"id": row.id, "post_at": local_iso(post_at, ctx.tz), "text": row.text},
    )
    if when is None:
        ctx.post("announcements", announcement_reply(row.text, me.name))
        return Reply("The announcement goes to #announcements.", tone=Tone.SUCCESS, ephemeral=True)
    return Reply(
        f"Announcement {row.id} will be posted {fmt_instant(post_at, ctx.tz)}. "
        f"`announce cancel {row.id}` cancels it.",
        tone=Tone.SUCCESS,
        ephemeral=True,
    )


@registry.command(
    "announce list",
    "Scheduled announcements (and the last posted ones)",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    reads=True,
)
async def announce_list(ctx: Context, _: BaseModel) -> Reply:
    rows = list(
        await ctx.session.scalars(
            select(Announcement)
            .where(Announcement.course_id == ctx.course.id)
            .order_by(Announcement.post_at.desc(), Announcement.id.desc())
            .limit(25)
        )
    )
    table = []
    for a in rows:
        state = (
            "cancelled"
            if a.cancelled_at
            else "posted"
            if a.sent_at
            else f"scheduled, {fmt_instant(a.post_at, ctx.tz)}"
        )
        table.append([str(a.id), state, a.text if len(a.text) <= 60 else a.text[:59] + "…"])
    return Reply(title="Announcements", tables=[Table(["Id", "State", "Text"], table)])


class CancelOptions(BaseModel):
    id: int = Field(description="the announcement's id (see `announce list`)")
    reason: Reason = None


@registry.command(
    "announce cancel",
    "Cancel a scheduled announcement",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    examples=("announce cancel 3",),
)
async def announce_cancel(ctx: Context, opts: CancelOptions) -> Reply:
    row = await ctx.session.get(Announcement, opts.id)
    if row is None or row.course_id != ctx.course.id:
        raise NotFound(f"There is no announcement {opts.id}.", hint="See `announce list`.")
    if row.cancelled_at is not None:
        raise Conflict(f"Announcement {opts.id} is already cancelled.")
    if row.sent_at is not None:
        raise Conflict(f"Announcement {opts.id} was already posted; it cannot be unsent.")
    row.cancelled_at = ctx.now
    record(
        ctx,
        "announce.cancel",
        summary=f"announcement {row.id}: {_excerpt(row.text)}",
        before={"id": row.id, "post_at": local_iso(row.post_at, ctx.tz), "state": "scheduled"},
        after={"id": row.id, "state": "cancelled"},
        reason=opts.reason,
    )
    return Reply(f"Cancelled announcement {opts.id}.", tone=Tone.SUCCESS)


async def due_announcements(
    session: AsyncSession, now: datetime, *, course_ids: set[int] | None = None
) -> list[tuple[int, Outgoing]]:
    """Scheduled announcements due by ``now``; each is marked sent, so it goes out once
    (one missed while the bot was down goes out late, at the next tick)."""
    q = (
        select(Announcement)
        .where(
            Announcement.sent_at.is_(None),
            Announcement.cancelled_at.is_(None),
            Announcement.post_at <= now,
        )
        .order_by(Announcement.post_at, Announcement.id)
    )
    if course_ids is not None:
        q = q.where(Announcement.course_id.in_(course_ids))
    out: list[tuple[int, Outgoing]] = []
    for a in list(await session.scalars(q)):
        course = await session.get(Course, a.course_id)
        assert course is not None
        author = await session.get(Person, a.author_id) if a.author_id else None
        a.sent_at = now
        channel = (course.channels or {}).get("announcements", "announcements")
        reply = announcement_reply(a.text, author.name if author else None)
        out.append((course.id, Outgoing(reply, channel=channel)))
    return out


# ------------------------------------------------------------------ due work


async def next_announcement(session: AsyncSession, now: datetime, scope: Scope) -> datetime | None:
    """When the next scheduled announcement goes out."""
    q = select(func.min(Announcement.post_at)).where(
        Announcement.sent_at.is_(None),
        Announcement.cancelled_at.is_(None),
        Announcement.post_at > now,
    )
    if scope.course_ids is not None:
        q = q.where(Announcement.course_id.in_(scope.course_ids))
    return await session.scalar(q)


due_registry.register_by_course("announcements", due_announcements, next_announcement)
