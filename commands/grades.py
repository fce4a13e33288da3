"""Grades by component (weights from ``course.grading``), announcements posted now or
at a scheduled time (kept across restarts), and the course calendar as iCalendar."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import func, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.audit import Reason, local_iso, record
from commands.clock import localize
from commands.context import Context
from commands.due import Scope, due_registry
from commands.errors import Conflict, Forbidden, InvalidInput, NotFound
from commands.logistics import course_deadlines
from commands.outbox import Outgoing
from commands.people import find_person
from commands.registry import Access, LongText, registry
from commands.replies import FileOut, Reply, Table, Tone
from commands.text import LONG_TEXT_MAX, check_text, shown
from commands.timefmt import fmt_instant
from db.models import (
    Announcement,
    Assignment,
    Battle,
    Course,
    GradeEntry,
    Paper,
    Person,
    Role,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# ----------------------------------------------------------------------------- grades


def components(course: Course) -> dict[str, float]:
    """Component -> weight in percent, in the course file's order."""
    return {str(k).lower(): float(v) for k, v in (course.grading or {}).items()}


def _component(course: Course, name: str) -> str:
    comps = components(course)
    key = name.strip().lower()
    if key not in comps:
        raise InvalidInput(
            f"`{name}` is not a grading component.",
            hint="Components: " + ", ".join(f"`{c}`" for c in comps) + ".",
        )
    return key


async def _has_table(session: AsyncSession, name: str) -> bool:
    conn = await session.connection()
    return await conn.run_sync(lambda c: inspect(c).has_table(name))


async def critique_points(session: AsyncSession, course: Course) -> dict[int, float]:
    """Critiques out of 100 per student from pass/fail grades (each critique paper is an
    equal share), when the critiques table exists and something is graded."""
    if not await _has_table(session, "critiques"):
        return {}
    from db.models import Critique  # another module's table; read only

    papers = await session.scalar(
        select(func.count())
        .select_from(Paper)
        .where(Paper.course_id == course.id, Paper.critique.is_(True))
    )
    if not papers:
        return {}
    out: dict[int, float] = {}
    rows = await session.execute(
        select(Critique.person_id, Critique.grade, func.count())
        .where(Critique.course_id == course.id, Critique.grade.is_not(None))
        .group_by(Critique.person_id, Critique.grade)
    )
    for person_id, grade, n in rows:
        out.setdefault(person_id, 0.0)
        if grade == "pass":
            out[person_id] += 100.0 * n / papers
    return out


async def standings(session: AsyncSession, course: Course) -> dict[int, dict[str, float]]:
    """Recorded points (0-100) per student and component. A grade set for a component
    wins; critiques otherwise come from the graded critiques."""
    out: dict[int, dict[str, float]] = {}
    for pid, pts in (await critique_points(session, course)).items():
        if "critiques" in components(course):
            out.setdefault(pid, {})["critiques"] = pts
    for g in await session.scalars(select(GradeEntry).where(GradeEntry.course_id == course.id)):
        out.setdefault(g.person_id, {})[g.component] = g.points
    return out


def weighted(course: Course, points: dict[str, float]) -> tuple[float, float]:
    """The weighted total so far and the weight it covers, both in percent."""
    comps = components(course)
    total = sum(points[c] * w / 100 for c, w in comps.items() if c in points)
    covered = sum(w for c, w in comps.items() if c in points)
    return total, covered


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


class GradesOptions(BaseModel):
    student: str | None = Field(None, description="a student (staff only); you by default")


@registry.command(
    "grades",
    "Your standing by component, from what is recorded",
    ephemeral=True,
    topic="course",
    examples=("grades", "grades alice.chen@unc.edu"),
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
    points = (await standings(ctx.session, ctx.course)).get(who.id, {})
    rows = []
    for c, w in comps.items():
        p = points.get(c)
        rows.append(
            [
                c,
                f"{_fmt(w)}%",
                "not recorded" if p is None else f"{_fmt(p)}/100",
                "" if p is None else f"{_fmt(p * w / 100)}%",
            ]
        )
    total, covered = weighted(ctx.course, points)
    text = (
        f"So far: {_fmt(total)}% of the {_fmt(covered)}% graded"
        + (f" ({_fmt(100 * total / covered)}% of what is graded)." if covered else ".")
        if covered
        else "Nothing is recorded yet."
    )
    return Reply(
        title=f"Grades: {who.name}",
        text=text,
        tables=[Table(["Component", "Weight", "Points", "Counts"], rows)],
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
    comp = _component(ctx.course, opts.component)
    if not 0 <= opts.points <= 100:
        raise InvalidInput(f"Points are out of 100: {_fmt(opts.points)} is outside 0-100.")
    student = await find_person(ctx.session, ctx.course.id, opts.student)
    if student.role is not Role.STUDENT:
        raise InvalidInput(f"{student.name} is not a student.")
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
    comps = components(course)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["Student", "Email", "Onyen", "SIS id", *comps, "Weighted total", "Weight graded"])
    for p in people:
        pts = table.get(p.id, {})
        total, covered = weighted(course, pts)
        w.writerow(
            [
                p.name,
                p.email,
                p.onyen or "",
                p.sis_id or "",
                *(_fmt(pts[c]) if c in pts else "" for c in comps),
                _fmt(total),
                _fmt(covered),
            ]
        )
    return buf.getvalue().encode()


@registry.command(
    "grade export",
    "Every student's recorded grades as CSV",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
)
async def grade_export(ctx: Context, _: BaseModel) -> Reply:
    people = list(
        await ctx.session.scalars(
            select(Person)
            .where(Person.course_id == ctx.course.id, Person.role == Role.STUDENT)
            .order_by(Person.name)
        )
    )
    table = await standings(ctx.session, ctx.course)
    data = grades_csv(ctx.course, people, table)
    return Reply(
        f"Grades of {len(people)} students.",
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


# ----------------------------------------------------------------------------- calendar


def class_days(course: Course, first: date, last: date) -> list[date]:
    """Class meetings from ``first`` to ``last``, skipping the course's no-class days."""
    wanted = {WEEKDAYS.index(str(d).lower()[:3]) for d in course.class_days or []}
    skip = {date.fromisoformat(str(d)) for d in course.no_class or []}
    out, d = [], first
    while d <= last:
        if d.weekday() in wanted and d not in skip:
            out.append(d)
        d += timedelta(days=1)
    return out


async def calendar_ics(session: AsyncSession, course: Course, person: Person | None) -> bytes:
    """The course calendar (RFC 5545): every deadline, every class session, and the
    person's own presentations and battles (published assignments). Times carry the
    course's TZID with a VTIMEZONE, so they keep their local time across DST."""
    from icalendar import Calendar, Event

    tz = ZoneInfo(course.timezone)
    cal = Calendar()
    cal.add("prodid", "-//coursebot//course calendar//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", course.name)
    cal.add("x-wr-timezone", course.timezone)
    stamp = datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC"))
    domain = f"{course.key}.coursebot"

    def event(
        uid: str, summary: str, start: datetime, end: datetime | None, desc: str = ""
    ) -> None:
        ev = Event()
        ev.add("uid", f"{uid}@{domain}")
        ev.add("dtstamp", stamp)
        ev.add("summary", summary)
        ev.add("dtstart", start.astimezone(tz))
        ev.add("dtend", (end or start).astimezone(tz))
        if desc:
            ev.add("description", desc)
        cal.add_component(ev)

    for i, item in enumerate(await course_deadlines(session, course)):
        event(
            f"deadline-{item.kind}-{item.due.astimezone(tz):%Y%m%dT%H%M}-{i}",
            f"Due: {item.title}",
            item.due,
            None,
        )

    papers = list(
        await session.scalars(
            select(Paper).where(Paper.course_id == course.id, Paper.class_date.is_not(None))
        )
    )
    dates = [p.class_date for p in papers if p.class_date]
    by_day: dict[date, list[Paper]] = {}
    for p in papers:
        if p.class_date:
            by_day.setdefault(p.class_date, []).append(p)
    if dates and course.class_start and course.class_end:
        for d in class_days(course, min(dates), max(dates)):
            listed = sorted(by_day.get(d, []), key=lambda p: p.number)
            desc = "\n".join(f"#{p.number} {p.title}" for p in listed)
            event(
                f"class-{d:%Y%m%d}",
                f"{course.name}",
                datetime.combine(d, course.class_start, tzinfo=tz),
                datetime.combine(d, course.class_end, tzinfo=tz),
                desc,
            )

    if person is not None and course.class_start and course.class_end:
        rows = await session.execute(
            select(Paper)
            .join(Assignment, Assignment.paper_id == Paper.id)
            .where(Assignment.person_id == person.id, Assignment.published.is_(True))
        )
        battles = {
            pid: b
            for b in await session.scalars(select(Battle).where(Battle.course_id == course.id))
            for pid in (b.paper_a_id, b.paper_b_id)
        }
        for (paper,) in rows:
            battle = battles.get(paper.id)
            day = (battle.class_date if battle else None) or paper.class_date
            if day is None:
                continue
            start = datetime.combine(day, course.class_start, tzinfo=tz)
            end = datetime.combine(day, course.class_end, tzinfo=tz)
            if battle is not None:
                side = "A" if battle.paper_a_id == paper.id else "B"
                summary = (
                    f"You present in paper battle {battle.number} (side {side}): #{paper.number}"
                )
                uid = f"battle-{battle.number}-{person.id}"
            else:
                summary = f"You present #{paper.number} {paper.title}"
                uid = f"present-{paper.number}-{person.id}"
            event(uid, summary, start, end, paper.title)

    cal.add_missing_timezones()
    return cal.to_ical()


@registry.command(
    "deadlines ics",
    "The course calendar (deadlines, classes, your presentations) as an .ics file",
    access=Access.ANYONE,
    ephemeral=True,
    topic="course",
)
async def deadlines_ics(ctx: Context, _: BaseModel) -> Reply:
    data = await calendar_ics(ctx.session, ctx.course, ctx.person)
    mine = " and your presentations" if ctx.person is not None else ""
    return Reply(
        f"The course calendar: deadlines, class sessions{mine}. Import it into your calendar "
        f"app; times are {ctx.course.timezone}.",
        files=[FileOut(f"{ctx.course.key}.ics", data, "text/calendar")],
    )


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
