"""Grades by component (weights from ``course.grading``), announcements posted now or
at a scheduled time (kept across restarts), and the course calendar as iCalendar."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.audit import Reason, local_iso, record
from commands.clock import localize
from commands.context import Context
from commands.coursefile import Syllabus, agenda_times
from commands.critiques import Tally, canvas_name, critique_tallies, name_key
from commands.due import Scope, due_registry
from commands.errors import Conflict, Forbidden, InvalidInput, NotFound
from commands.logistics import (
    agenda_title,
    course_calendar,
    course_deadlines,
    paper_details,
)
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
    Milestone,
    Paper,
    Person,
    Role,
)

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


async def critique_points(session: AsyncSession, course: Course) -> dict[int, float]:
    """Critiques out of 100 per student, over the graded ones only (pass/fail, and
    missing recorded as 0); excused ones (presenting) and ones not graded yet do not
    count. Students with nothing graded have no points yet."""
    return {
        pid: t.points
        for pid, t in (await critique_tallies(session, course)).items()
        if t.points is not None
    }


async def standings(
    session: AsyncSession, course: Course, tallies: dict[int, Tally] | None = None
) -> dict[int, dict[str, float]]:
    """Recorded points (0-100) per student and component. A grade set for a component
    wins; critiques otherwise come from the graded critiques."""
    out: dict[int, dict[str, float]] = {}
    if "critiques" in components(course):
        if tallies is None:
            tallies = await critique_tallies(session, course)
        for pid, t in tallies.items():
            if t.points is not None:
                out.setdefault(pid, {})["critiques"] = t.points
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
    tallies = await critique_tallies(ctx.session, ctx.course)
    points = (await standings(ctx.session, ctx.course, tallies)).get(who.id, {})
    overridden = await ctx.session.scalar(
        select(GradeEntry.id).where(
            GradeEntry.person_id == who.id, GradeEntry.component == "critiques"
        )
    )
    rows = []
    for c, w in comps.items():
        p = points.get(c)
        note = ""
        if c == "critiques" and who.id in tallies and overridden is None:
            note = tallies[who.id].summary()
        rows.append(
            [
                c,
                f"{_fmt(w)}%",
                "not recorded" if p is None else f"{_fmt(p)}/100",
                "" if p is None else f"{_fmt(p * w / 100)}%",
                note,
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
        tables=[Table(["Component", "Weight", "Points", "Counts", "Note"], rows)],
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
    for p in sorted(people, key=name_key):
        pts = table.get(p.id, {})
        total, covered = weighted(course, pts)
        w.writerow(
            [
                canvas_name(p),
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


def person_key(person: Person) -> str:
    """A person's stable id for calendar UIDs: from their roster email (the key a
    re-import matches them by), never a row id."""
    return hashlib.sha256(person.email.lower().encode()).hexdigest()[:12]


def _at(day: date, t: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, t, tzinfo=tz)


async def calendar_ics(session: AsyncSession, course: Course, person: Person | None) -> bytes:
    """The course calendar (RFC 5545): every class meeting through the last class day
    (sessions without papers too: project days, guest lectures), breaks, every deadline,
    weekly office hours, and the person's own presentations and battles (published
    assignments). Papers come with authors, venue and link. Times carry the course's
    TZID with a VTIMEZONE, so they keep their local time across DST. Event UIDs come
    from the course key and what the event is (a date, a paper number, a deadline's key,
    a person's email), so a re-imported course keeps them and subscribers see no
    duplicates."""
    from icalendar import Calendar, Event, vRecur

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
        uid: str,
        summary: str,
        start: datetime | date,
        end: datetime | date | None,
        desc: str = "",
        *,
        location: str | None = None,
        url: str | None = None,
    ) -> Event:
        ev = Event()
        ev.add("uid", f"{uid}@{domain}")
        ev.add("dtstamp", stamp)
        ev.add("summary", summary)
        if isinstance(start, datetime):
            ev.add("dtstart", start.astimezone(tz))
            ev.add("dtend", (end or start).astimezone(tz))  # type: ignore[union-attr]
        else:  # a whole day (or days): DTEND is the day after
            ev.add("dtstart", start)
            ev.add("dtend", (end or start) + timedelta(days=1))
        if desc:
            ev.add("description", desc)
        if location:
            ev.add("location", location)
        if url:
            ev.add("url", url)
        cal.add_component(ev)
        return ev

    for item in await course_deadlines(session, course):
        uid = item.uid or f"deadline-{item.kind}-{item.due.astimezone(tz):%Y%m%dT%H%M}"
        event(uid, f"Due: {item.title}", item.due, None)

    papers = list(await session.scalars(select(Paper).where(Paper.course_id == course.id)))
    by_number = {p.number: p for p in papers}
    by_day: dict[date, list[Paper]] = {}
    for p in papers:
        if p.class_date:
            by_day.setdefault(p.class_date, []).append(p)
    battles = list(await session.scalars(select(Battle).where(Battle.course_id == course.id)))
    battles_by_day: dict[date, list[Battle]] = {}
    for b in battles:
        if b.class_date:
            battles_by_day.setdefault(b.class_date, []).append(b)
    presented_on: dict[date, list[str]] = {}
    for m in await session.scalars(select(Milestone).where(Milestone.course_id == course.id)):
        for d in m.presentations or []:
            presented_on.setdefault(date.fromisoformat(str(d)), []).append(
                f"{m.title}: presentations"
            )

    meetings = await course_calendar(session, course)
    for m in meetings.meetings:
        lines: list[str] = []
        if m.session is not None and m.session.note:
            lines.append(m.session.note)
        shown_papers = set()
        for b in sorted(battles_by_day.get(m.day, []), key=lambda b: b.number):
            a, z = (
                next(p for p in papers if p.id == b.paper_a_id),
                next(p for p in papers if p.id == b.paper_b_id),
            )
            shown_papers |= {a.id, z.id}
            theme = f" ({b.theme})" if b.theme else ""
            at = f" at {b.start_time:%H:%M}" if b.start_time else ""
            lines.append(f"Paper battle {b.label or b.number}{theme}{at}:")
            lines.append(f"  A: #{a.number} {a.title}\n     {paper_details(a)}")
            lines.append(f"  B: #{z.number} {z.title}\n     {paper_details(z)}")
        for p in sorted(by_day.get(m.day, []), key=lambda p: p.number):
            if p.id in shown_papers:
                continue
            lines.append(f"#{p.number} {p.title} ({p.slot.label})\n  {paper_details(p)}")
        lines += presented_on.get(m.day, [])
        if m.agenda:
            lines.append("Agenda:")
            for item, span in zip(m.agenda, agenda_times(m.start, m.agenda), strict=True):
                when = ""
                if span is not None:
                    when = f"{span[0] // 60 % 24:02d}:{span[0] % 60:02d} "
                lines.append(f"  {when}{agenda_title(item, by_number)} ({item.minutes} min)")
        summary = course.name + (f": {m.title}" if m.title else "")
        where = m.session.place if m.session else None
        link = m.session.link if m.session else None
        if m.start and m.end:
            start: datetime | date = _at(m.day, m.start, tz)
            end: datetime | date | None = _at(m.day, m.end, tz)
        else:
            start, end = m.day, None
        event(
            f"class-{m.day:%Y%m%d}",
            summary,
            start,
            end,
            "\n".join(lines),
            location=where,
            url=link,
        )

    for off in meetings.days_off:
        if off.reason == "No class":
            continue  # a single holiday: the missing class says it
        event(f"break-{off.day:%Y%m%d}", f"No class: {off.reason}", off.day, off.last)

    syl = Syllabus.of(course)
    if syl.office_hours_slots and meetings.meetings:
        first, last = meetings.meetings[0].day, meetings.meetings[-1].day
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        for slot in syl.office_hours_slots:
            day = first + timedelta(days=(days.index(slot.day) - first.weekday()) % 7)
            if day > last:
                continue
            end_t = slot.end or (datetime.combine(day, slot.start) + timedelta(hours=1)).time()
            ev = event(
                f"officehours-{slot.day}-{slot.start:%H%M}",
                f"{course.name}: office hours" + (f" ({slot.host})" if slot.host else ""),
                _at(day, slot.start, tz),
                _at(day, end_t, tz),
                location=slot.place or slot.link,
                url=slot.link,
            )
            until = datetime.combine(last, time(23, 59), tzinfo=tz).astimezone(ZoneInfo("UTC"))
            ev.add("rrule", vRecur(freq="weekly", until=until))

    if person is not None:
        rows = await session.execute(
            select(Paper)
            .join(Assignment, Assignment.paper_id == Paper.id)
            .where(Assignment.person_id == person.id, Assignment.published.is_(True))
        )
        of_paper = {pid: b for b in battles for pid in (b.paper_a_id, b.paper_b_id)}
        who = person_key(person)
        for (paper,) in rows:
            battle = of_paper.get(paper.id)
            day = (battle.class_date if battle else None) or paper.class_date
            if day is None:
                continue
            m = meetings.on(day)
            start_t = m.start if m else course.class_start
            end_t = m.end if m else course.class_end
            if battle is not None and battle.start_time:
                start_t = battle.start_time
            if battle is not None:
                side = "A" if battle.paper_a_id == paper.id else "B"
                n = battle.label or battle.number
                summary = f"You present in paper battle {n} (side {side}): #{paper.number}"
                uid = f"battle-{battle.number}-{who}"
            else:
                summary = f"You present #{paper.number} {paper.title}"
                uid = f"present-{paper.number}-{who}"
                if m is not None and m.agenda:  # the talk's own slot in the agenda
                    for item, span in zip(m.agenda, agenda_times(m.start, m.agenda), strict=True):
                        if item.paper == paper.number and item.kind == "talk" and span:
                            start_t = time(span[0] // 60 % 24, span[0] % 60)
                            end_t = time(span[1] // 60 % 24, span[1] % 60)
                            break
            desc = f"#{paper.number} {paper.title}\n{paper_details(paper)}"
            if start_t and end_t and end_t > start_t:
                event(uid, summary, _at(day, start_t, tz), _at(day, end_t, tz), desc)
            else:
                event(uid, summary, day, None, desc)

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
