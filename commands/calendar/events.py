"""What the course calendar holds, as plain events: every class meeting through the
last class day (sessions without papers too: project days, guest lectures), breaks,
every deadline, weekly office hours, and one person's own presentations and battles.

Each event's UID comes from what the event *is* (a class day, a paper number, a
deadline's key, a person's email), never from a row id or the order of an import, so
a re-imported course keeps them. An event's content is the same for every reader; what
differs by reader (a talk, a personal extension) has its own UID with the person's key,
so one UID never has two versions at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.coursefile import Syllabus, agenda_times
from commands.logistics import (
    CourseCalendar,
    DeadlineItem,
    agenda_title,
    course_calendar,
    course_deadlines,
    paper_details,
    presenters,
)
from db.models import Assignment, Battle, Course, Extension, Milestone, Paper, Person

#: Alarms before each deadline (and before one's own talk): a day, and an hour.
ALARMS = (timedelta(hours=24), timedelta(hours=1))
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class CalEvent:
    """One event, independent of iCalendar: local times in the course's zone (a
    ``date`` for a whole day), what it says, where, its link and alarms."""

    uid: str
    summary: str
    start: datetime | date
    #: The end (a whole-day event: the last day, inclusive); None: as ``start``.
    end: datetime | date | None = None
    description: str = ""
    location: str | None = None
    url: str | None = None
    #: Repeats weekly until this instant (office hours).
    weekly_until: datetime | None = None
    #: Alarms this long before the start.
    alarms: tuple[timedelta, ...] = ()
    #: Shown as free time (a deadline, a break), not as a meeting.
    free: bool = False
    category: str = ""


def person_key(person: Person) -> str:
    """A person's stable id for calendar UIDs: from their roster email (the key a
    re-import matches them by), never a row id."""
    return hashlib.sha256(person.email.lower().encode()).hexdigest()[:12]


def _at(day: date, t: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, t, tzinfo=tz)


def _deadline_note(item: DeadlineItem, paper: Paper | None) -> str:
    if paper is not None:
        return (
            f"#{paper.number} {paper.title}\n{paper_details(paper)}\n"
            f'Submit in the course chat: "critique submit {paper.number}".'
        )
    if item.kind == "rankings":
        return 'Rank the papers in the course chat: "rank standard" and "rank battle".'
    if item.kind == "project" and item.uid.startswith("milestone-"):
        key = item.uid.removeprefix("milestone-")
        return f'Submit in the course chat: "project submit {key}".'
    return ""


async def calendar_events(
    session: AsyncSession, course: Course, person: Person | None
) -> list[CalEvent]:
    """The course's events, and ``person``'s own (None: the course-wide calendar)."""
    tz = ZoneInfo(course.timezone)
    events: list[CalEvent] = []
    papers = list(await session.scalars(select(Paper).where(Paper.course_id == course.id)))
    by_number = {p.number: p for p in papers}
    by_id = {p.id: p for p in papers}
    who = person_key(person) if person is not None else ""
    extended: dict[str, datetime] = {}
    if person is not None:
        extended = {
            e.key: e.until
            for e in await session.scalars(
                select(Extension).where(Extension.person_id == person.id)
            )
        }

    # -- deadlines (a personal extension is the person's own event)
    for item in await course_deadlines(session, course):
        uid = item.uid or f"deadline-{item.kind}-{item.due.astimezone(tz):%Y%m%dT%H%M}"
        paper = by_number.get(item.paper_number) if item.paper_number is not None else None
        due, title = item.due, item.title
        until = extended.get(item.kind) or extended.get(item.uid)
        if until is not None and until != item.due:
            uid, due, title = f"{uid}-{who}", until, f"{title} (your extension)"
        events.append(
            CalEvent(
                uid,
                f"Due: {title}",
                due.astimezone(tz),
                description=_deadline_note(item, paper),
                url=paper.url if paper is not None else None,
                alarms=ALARMS,
                free=True,
                category="Deadline",
            )
        )

    # -- class meetings, with their papers, battles, presenters and agenda
    names = await presenters(session, course.id)
    battles = list(await session.scalars(select(Battle).where(Battle.course_id == course.id)))
    battles_by_day: dict[date, list[Battle]] = {}
    battle_numbers = {b.number: b for b in battles}
    for b in battles:
        if b.class_date:
            battles_by_day.setdefault(b.class_date, []).append(b)
    papers_by_day: dict[date, list[Paper]] = {}
    for p in papers:
        if p.class_date:
            papers_by_day.setdefault(p.class_date, []).append(p)
    presented_on: dict[date, list[str]] = {}
    for m in await session.scalars(select(Milestone).where(Milestone.course_id == course.id)):
        for d in m.presentations or []:
            presented_on.setdefault(date.fromisoformat(str(d)), []).append(
                f"{m.title}: presentations"
            )

    def by(paper: Paper, indent: str) -> list[str]:
        return [f"{indent}Presented by {', '.join(names[paper.id])}"] if names.get(paper.id) else []

    meetings = await course_calendar(session, course)
    for m in meetings.meetings:
        lines: list[str] = []
        if m.session is not None and m.session.note:
            lines.append(m.session.note)
        shown: set[int] = set()
        links: list[str] = []
        for b in sorted(battles_by_day.get(m.day, []), key=lambda b: b.number):
            a, z = by_id[b.paper_a_id], by_id[b.paper_b_id]
            shown |= {a.id, z.id}
            links += [x.url for x in (a, z) if x.url]
            theme = f" ({b.theme})" if b.theme else ""
            at = f" at {b.start_time:%H:%M}" if b.start_time else ""
            lines.append(f"Paper battle {b.label or b.number}{theme}{at}:")
            lines.append(f"  A: #{a.number} {a.title}\n     {paper_details(a)}")
            lines += by(a, "     ")
            lines.append(f"  B: #{z.number} {z.title}\n     {paper_details(z)}")
            lines += by(z, "     ")
        for p in sorted(papers_by_day.get(m.day, []), key=lambda p: p.number):
            if p.id in shown:
                continue
            links += [p.url] if p.url else []
            lines.append(f"#{p.number} {p.title} ({p.slot.label})\n  {paper_details(p)}")
            lines += by(p, "  ")
        lines += presented_on.get(m.day, [])
        if m.agenda:
            lines.append("Agenda:")
            for item, span in zip(m.agenda, agenda_times(m.start, m.agenda), strict=True):
                when = f"{span[0] // 60 % 24:02d}:{span[0] % 60:02d} " if span else ""
                title = agenda_title(item, by_number, battle_numbers)
                lines.append(f"  {when}{title} ({item.minutes} min)")
        link = m.session.link if m.session else None
        if link is None and len(links) == 1:
            link = links[0]  # the day's one paper
        timed = m.start is not None and m.end is not None
        events.append(
            CalEvent(
                f"class-{m.day:%Y%m%d}",
                course.name + (f": {m.title}" if m.title else ""),
                _at(m.day, m.start, tz) if timed else m.day,  # type: ignore[arg-type]
                _at(m.day, m.end, tz) if timed else None,  # type: ignore[arg-type]
                "\n".join(lines),
                location=m.session.place if m.session else None,
                url=link,
                category="Class",
            )
        )

    for off in meetings.days_off:
        if off.reason == "No class":
            continue  # a single holiday: the missing class says it
        events.append(
            CalEvent(
                f"break-{off.day:%Y%m%d}",
                f"No class: {off.reason}",
                off.day,
                off.last,
                free=True,
                category="Break",
            )
        )

    # -- office hours, weekly through the last class day
    syl = Syllabus.of(course)
    if syl.office_hours_slots and meetings.meetings:
        first, last = meetings.meetings[0].day, meetings.meetings[-1].day
        for slot in syl.office_hours_slots:
            day = first + timedelta(days=(WEEKDAYS.index(slot.day) - first.weekday()) % 7)
            if day > last:
                continue
            end_t = slot.end or (datetime.combine(day, slot.start) + timedelta(hours=1)).time()
            events.append(
                CalEvent(
                    f"officehours-{slot.day}-{slot.start:%H%M}",
                    f"{course.name}: office hours" + (f" ({slot.host})" if slot.host else ""),
                    _at(day, slot.start, tz),
                    _at(day, end_t, tz),
                    location=slot.place or slot.link,
                    url=slot.link,
                    weekly_until=_at(last, time(23, 59), tz),
                    category="Office hours",
                )
            )

    if person is not None:
        events += await _own_talks(session, course, person, meetings, battles, tz)
    return events


async def _own_talks(
    session: AsyncSession,
    course: Course,
    person: Person,
    meetings: CourseCalendar,
    battles: list[Battle],
    tz: ZoneInfo,
) -> list[CalEvent]:
    """The person's presentations and battle sides, from the published assignment."""
    rows = await session.scalars(
        select(Paper)
        .join(Assignment, Assignment.paper_id == Paper.id)
        .where(
            Assignment.person_id == person.id,
            Assignment.course_id == course.id,
            Assignment.published.is_(True),
        )
        .order_by(Paper.number)
    )
    of_paper = {pid: b for b in battles for pid in (b.paper_a_id, b.paper_b_id)}
    who = person_key(person)
    out = []
    for paper in rows:
        battle = of_paper.get(paper.id)
        day = (battle.class_date if battle else None) or paper.class_date
        if day is None:
            continue
        m = meetings.on(day)
        start_t = m.start if m else course.class_start
        end_t = m.end if m else course.class_end
        if battle is not None:
            if battle.start_time:
                start_t = battle.start_time
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
        timed = start_t is not None and end_t is not None and end_t > start_t
        out.append(
            CalEvent(
                uid,
                summary,
                _at(day, start_t, tz) if timed else day,  # type: ignore[arg-type]
                _at(day, end_t, tz) if timed else None,  # type: ignore[arg-type]
                f"#{paper.number} {paper.title}\n{paper_details(paper)}",
                url=paper.url,
                alarms=(timedelta(hours=24),),
                category="Presentation",
            )
        )
    return out
