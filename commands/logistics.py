"""Course logistics: papers, schedule, deadlines, grading, office hours, course info."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.context import Context
from commands.coursefile import (
    WEEKDAYS,
    AgendaItem,
    SessionEntry,
    Syllabus,
    agenda_times,
    battle_number,
)
from commands.errors import InvalidInput, NotFound
from commands.registry import Access, Complete, registry
from commands.replies import Button, Reply, Section, Table
from commands.solver import plural
from commands.timefmt import fmt_day, fmt_instant, fmt_time, relative
from db.models import Assignment, Battle, Course, Deadline, Milestone, Paper, Person, Slot

PAGE_SIZE = 15
Day = date  # an alias, for options named `date`
PaperKind = Literal["all", "standard", "30", "45", "battle", "instructor", "critique", "discussion"]

# ----------------------------------------------------------------------------- services


async def course_papers(
    session: AsyncSession,
    course_id: int,
    *,
    kind: str = "all",
    on: date | None = None,
    unassigned: bool = False,
) -> list[Paper]:
    q = select(Paper).where(Paper.course_id == course_id)
    if kind == "standard":
        q = q.where(Paper.slot.in_([Slot.MIN30, Slot.MIN45]))
    elif kind in ("30", "45", "battle", "instructor"):
        q = q.where(Paper.slot == Slot(kind))
    elif kind == "critique":
        q = q.where(Paper.critique.is_(True))
    elif kind == "discussion":
        q = q.where(Paper.discussion.is_(True))
    if on is not None:
        q = q.where(Paper.class_date == on)
    if unassigned:
        assigned = select(Assignment.paper_id).where(Assignment.course_id == course_id)
        q = q.where(Paper.slot != Slot.INSTRUCTOR, Paper.id.not_in(assigned))
    return list(await session.scalars(q.order_by(Paper.number)))


async def presenters(
    session: AsyncSession, course_id: int, *, published_only: bool = True
) -> dict[int, list[str]]:
    """Paper id → presenter names, from the published assignment; with
    ``published_only=False`` (staff), from the proposal while nothing is published."""
    q = (
        select(Assignment.paper_id, Person.name, Assignment.published)
        .join(Person, Person.id == Assignment.person_id)
        .where(Assignment.course_id == course_id)
        .order_by(Person.name)
    )
    rows = list(await session.execute(q))
    any_published = any(pub for _, _, pub in rows)
    out: dict[int, list[str]] = defaultdict(list)
    for paper_id, name, pub in rows:
        if pub or (not published_only and not any_published):
            out[paper_id].append(name)
    return out


@dataclass(frozen=True)
class DeadlineItem:
    due: datetime
    title: str
    kind: str
    #: A stable id from the course file (``critique-5``, ``deadline-survey``): the
    #: calendar's event UIDs, the same after a re-import.
    uid: str = ""
    #: The paper a critique is of (its link goes with the deadline in the calendar).
    paper_number: int | None = None


async def course_deadlines(session: AsyncSession, course: Course) -> list[DeadlineItem]:
    """Every dated obligation of the course, sorted: rankings, critiques, project, others."""
    items: list[DeadlineItem] = []
    if course.ranking_deadline:
        items.append(
            DeadlineItem(course.ranking_deadline, "Paper rankings", "rankings", "rankings")
        )
    for d in await session.scalars(select(Deadline).where(Deadline.course_id == course.id)):
        if d.key == "rankings" and course.ranking_deadline:
            continue  # the course setting is the source of truth for rankings
        items.append(DeadlineItem(d.due, d.title, d.key, f"deadline-{d.key}"))
    tz = ZoneInfo(course.timezone)
    for p in await session.scalars(
        select(Paper).where(Paper.course_id == course.id, Paper.critique.is_(True))
    ):
        if p.class_date:
            due = datetime.combine(p.class_date, course.critique_deadline, tzinfo=tz)
            items.append(
                DeadlineItem(
                    due,
                    f"Critique + question: #{p.number} {p.title}",
                    "critique",
                    f"critique-{p.number}",
                    p.number,
                )
            )
    for m in await session.scalars(select(Milestone).where(Milestone.course_id == course.id)):
        if m.due:
            items.append(
                DeadlineItem(m.due, f"{m.title} write-up", "project", f"milestone-{m.key}")
            )
    items.sort(key=lambda i: i.due)
    return items


# ------------------------------------------------------------------------ meetings


@dataclass(frozen=True)
class Meeting:
    """One class meeting: a day of the weekly pattern between the first and last class
    days (no-class days and breaks left out), a day something is presented, or a
    session of the course file (its title, kind, place and agenda)."""

    day: date
    start: time | None
    end: time | None
    session: SessionEntry | None = None

    @property
    def title(self) -> str | None:
        return self.session.title if self.session else None

    @property
    def agenda(self) -> list[AgendaItem]:
        return list(self.session.agenda) if self.session else []


@dataclass(frozen=True)
class DayOff:
    day: date
    last: date
    reason: str


@dataclass
class CourseCalendar:
    """The course's meetings and days off, first to last."""

    meetings: list[Meeting] = field(default_factory=list)
    days_off: list[DayOff] = field(default_factory=list)

    def on(self, day: date) -> Meeting | None:
        return next((m for m in self.meetings if m.day == day), None)


async def course_calendar(
    session: AsyncSession,
    course: Course,
    *,
    papers: Sequence[Paper] | None = None,
    battles: Sequence[Battle] | None = None,
    milestones: Sequence[Milestone] | None = None,
) -> CourseCalendar:
    """Every meeting of the course, papers or not: the weekly pattern from the first to
    the last class day (without ``first_day``/``last_day``: from the first to the last
    dated thing), with every day that has papers, a battle, project presentations or a
    session; no-class days and breaks come as days off. A caller that has loaded the
    course's papers, battles or milestones passes them (no second query)."""
    syl = Syllabus.of(course)
    dated: set[date] = {s.date for s in syl.sessions}
    paper_days: Iterable[date | None]
    battle_days: Iterable[date | None]
    if papers is None:
        paper_days = await session.scalars(
            select(Paper.class_date).where(
                Paper.course_id == course.id, Paper.class_date.is_not(None)
            )
        )
    else:
        paper_days = (p.class_date for p in papers)
    dated |= {d for d in paper_days if d is not None}
    if battles is None:
        battle_days = await session.scalars(
            select(Battle.class_date).where(
                Battle.course_id == course.id, Battle.class_date.is_not(None)
            )
        )
    else:
        battle_days = (b.class_date for b in battles)
    dated |= {d for d in battle_days if d is not None}
    if milestones is None:
        milestones = list(
            await session.scalars(select(Milestone).where(Milestone.course_id == course.id))
        )
    for m in milestones:
        dated |= {date.fromisoformat(str(d)) for d in m.presentations or []}
    off = {date.fromisoformat(str(d)) for d in course.no_class or []}
    first = syl.first_day or (min(dated) if dated else None)
    last = syl.last_day or (max(dated) if dated else None)
    cal = CourseCalendar()
    for d in sorted(off):
        cal.days_off.append(DayOff(d, d, "No class"))
    for b in syl.breaks:
        cal.days_off.append(DayOff(b.start, b.last, b.reason))
    cal.days_off.sort(key=lambda x: x.day)
    if first is None or last is None:
        return cal
    pattern = {WEEKDAYS.index(str(d).lower()[:3]) for d in course.class_days or []}
    days = set(dated)
    d = first
    while d <= last:
        if d.weekday() in pattern and d not in off and syl.break_on(d) is None:
            days.add(d)
        d += timedelta(days=1)
    for d in sorted(days):
        entry = syl.session_on(d)
        start = (entry.start if entry else None) or course.class_start
        end = (entry.end if entry else None) or course.class_end
        cal.meetings.append(Meeting(d, start, end, entry))
    return cal


def short_authors(authors: str) -> str:
    """``Feichtenhofer et al.`` for three or more authors, else the authors as given."""
    names = [a.strip() for a in authors.replace(" and ", ", ").split(",") if a.strip()]
    names = [n for n in names if n.lower() not in ("et al.", "et al")]
    if len(names) >= 3 or "et al" in authors:
        return f"{names[0].split()[-1]} et al." if names else authors
    return authors.strip()


def paper_source(paper: Paper, *, short: bool = False) -> str:
    """Authors and venue: ``Ji Lin, Chuang Gan, Song Han (ICCV 2019)``."""
    who = short_authors(paper.authors) if short else paper.authors.strip()
    venue = f"({paper.venue})" if paper.venue else ""
    return " ".join(x for x in (who, venue) if x)


def paper_details(paper: Paper, *, short: bool = False) -> str:
    """Authors, venue and link on one line (the calendar, the schedule, `papers`)."""
    return " · ".join(x for x in (paper_source(paper, short=short), paper.url or "") if x)


def agenda_lines(
    meeting: Meeting,
    papers: dict[int, Paper] | None = None,
    battles: dict[int, Battle] | None = None,
) -> list[str]:
    """The agenda with its times: ``2:30 PM–3:15 PM  #5 SlowFast… (talk, 45 min)``."""
    out = []
    spans = agenda_times(meeting.start, meeting.agenda)
    for n, (item, span) in enumerate(zip(meeting.agenda, spans, strict=True), 1):
        when = ""
        if span is not None:
            a, b = (time(x // 60 % 24, x % 60) for x in span)
            when = f"{fmt_time(a)}–{fmt_time(b)} "
        title = agenda_title(item, papers, battles)
        out.append(f"{n}. {when}{title} ({item.kind}, {item.minutes} min)")
    return out


def agenda_title(
    item: AgendaItem,
    papers: dict[int, Paper] | None = None,
    battles: dict[int, Battle] | None = None,
) -> str:
    """An agenda item as replies name it: its title, else its paper (``#5 SlowFast…``),
    else its battle by the course file's id (``Battle B4``, when the agenda says ``4``);
    ``papers`` and ``battles`` are the course's, by number."""
    if item.title:
        return item.title
    if item.paper is not None:
        paper = (papers or {}).get(item.paper)
        return f"#{item.paper} {paper.title}" if paper else f"#{item.paper}"
    battle = (battles or {}).get(battle_number(item.battle)) if item.battle is not None else None
    return f"Battle {battle.label or battle.number}" if battle else f"Battle {item.battle}"


async def battles_by_number(session: AsyncSession, course_id: int) -> dict[int, Battle]:
    """The course's battles by number (what an agenda item's ``battle`` names)."""
    return {
        b.number: b
        for b in await session.scalars(select(Battle).where(Battle.course_id == course_id))
    }


def week_start(d: date) -> date:
    return d - timedelta(days=d.weekday())


# ----------------------------------------------------------------------------- commands


class PapersOptions(BaseModel):
    kind: PaperKind = Field("all", description="which papers")
    date: Day | None = Field(None, description="only papers presented on this date")
    unassigned: bool = Field(False, description="only papers nobody presents yet")
    page: int = Field(1, ge=1, description="page of the list")


def _flags(p: Paper) -> str:
    return " ".join(f for f, on in (("critique", p.critique), ("discussion", p.discussion)) if on)


@registry.command(
    "papers",
    "The reading list, filtered by kind, date or unassigned",
    access=Access.ANYONE,
    share=True,
    topic="course",
    examples=(
        "papers",
        "papers battle",
        "papers critique",
        "papers date=2023-08-30",
        "papers --unassigned",
    ),
)
async def papers(ctx: Context, opts: PapersOptions) -> Reply:
    found = await course_papers(
        ctx.session, ctx.course.id, kind=opts.kind, on=opts.date, unassigned=opts.unassigned
    )
    what = {"all": "papers", "standard": "30/45-min papers"}.get(opts.kind, f"{opts.kind} papers")
    if opts.unassigned:
        what = f"unassigned {what}"
    if opts.date:
        what += f" on {fmt_day(opts.date)}"
    if not found:
        return Reply(text=f"No {what}. Try `papers` for the whole list.")
    pages = (len(found) + PAGE_SIZE - 1) // PAGE_SIZE
    if opts.page > pages:
        raise InvalidInput(
            f"There {'is' if pages == 1 else 'are'} only {plural(pages, 'page')} of {what}."
        )
    start = (opts.page - 1) * PAGE_SIZE
    shown = found[start : start + PAGE_SIZE]
    rows = [
        [
            str(p.number),
            fmt_day(p.class_date) if p.class_date else "—",
            p.slot.value,
            p.title,
            _flags(p),
        ]
        for p in shown
    ]
    # Who wrote each, where it appeared and the link, with the table (which stays
    # narrow enough for a phone and Discord's code blocks).
    sources = [f"#{p.number} {paper_details(p, short=True)}" for p in shown if paper_details(p)]
    buttons = []
    base = (opts.kind, opts.date.isoformat() if opts.date else "", "1" if opts.unassigned else "")
    if opts.page > 1:
        buttons.append(Button("◀ Previous", "papers.page", (*base, str(opts.page - 1))))
    if opts.page < pages:
        buttons.append(Button("Next ▶", "papers.page", (*base, str(opts.page + 1))))
    page_note = f" (page {opts.page} of {pages})" if pages > 1 else ""
    return Reply(
        title=f"{ctx.course.name}: {what}",
        text=f"{len(found)} {what}{page_note}. Slots: 30/45-min talks, battle, instructor. "
        "`paper <id>` shows one in full."
        + ("\nAuthors, venues and links:\n" + "\n".join(sources) if sources else ""),
        tables=[Table(["#", "Date", "Slot", "Title", "Also"], rows)],
        buttons=buttons,
    )


@registry.action("papers.page", access=Access.ANYONE)
async def papers_page(ctx: Context, args: tuple[str, ...], _value: str | None) -> Reply:
    kind, on, unassigned, page = args
    opts = PapersOptions.model_validate(
        {"kind": kind, "date": on or None, "unassigned": bool(unassigned), "page": page}
    )
    return await papers(ctx, opts)


class ScheduleOptions(BaseModel):
    week: int | None = Field(None, ge=1, description="one week of the semester (1 = first week)")
    all: bool = Field(False, description="the whole semester")


@registry.command(
    "schedule",
    "The class schedule by week, with presenters once assigned",
    access=Access.ANYONE,
    share=True,
    topic="course",
    examples=("schedule", "schedule week=3", "schedule --all"),
)
async def schedule(ctx: Context, opts: ScheduleOptions) -> Reply:
    course = ctx.course
    all_papers = await course_papers(ctx.session, course.id)
    staff = ctx.person is not None and ctx.person.is_staff
    names = await presenters(ctx.session, course.id, published_only=not staff)
    battles = {
        b.paper_a_id: b
        for b in await ctx.session.scalars(select(Battle).where(Battle.course_id == course.id))
    }
    by_number = {b.number: b for b in battles.values()}
    by_id = {p.id: p for p in all_papers}
    # Staff see an empty presentation day as such once there is an assignment.
    flag = staff and bool(names)

    def who(paper_id: int) -> str:
        if flag and not names.get(paper_id):
            return "⚠ EMPTY: nobody presents"
        return _who(names, paper_id)

    milestones = list(
        await ctx.session.scalars(select(Milestone).where(Milestone.course_id == course.id))
    )
    cal = await course_calendar(
        ctx.session,
        course,
        papers=all_papers,
        battles=list(battles.values()),
        milestones=milestones,
    )
    numbered = {p.number: p for p in all_papers}
    days: dict[date, list[str]] = defaultdict(list)
    for m in cal.meetings:  # the session's own line first
        head = []
        if m.title:
            head.append(m.title)
        if m.session is not None:
            if m.start and m.end and (m.start, m.end) != (course.class_start, course.class_end):
                head.append(f"{fmt_time(m.start)}–{fmt_time(m.end)}")
            head += [x for x in (m.session.place, m.session.note, m.session.link) if x]
        if head:
            days[m.day].append(" · ".join(head))
        if m.agenda:
            days[m.day].append("Agenda: " + "; ".join(agenda_lines(m, numbered, by_number)))
    for p in all_papers:
        if p.class_date is None:
            continue
        if p.slot is Slot.BATTLE:
            b = battles.get(p.id)
            if b is None:
                continue  # listed with its battle, under side A
            other = by_id[b.paper_b_id]
            idle = flag and not (names.get(p.id) and names.get(other.id))
            theme = f" ({b.theme})" if b.theme else ""
            theme += f" at {fmt_time(b.start_time)}" if b.start_time else ""
            days[p.class_date].append(
                f"Battle {b.label or b.number}{theme}: #{p.number} {p.title} [{who(p.id)}] vs "
                f"#{other.number} {other.title} [{who(other.id)}]"
                + (" — ⚠ not running" if idle else "")
                + f"\n    A: {paper_details(p)}\n    B: {paper_details(other)}"
            )
            continue
        by = "instructor" if p.slot is Slot.INSTRUCTOR else who(p.id)
        crit = " · critique due " + fmt_time(course.critique_deadline) if p.critique else ""
        days[p.class_date].append(
            f"#{p.number} ({p.slot.value}) {p.title} — {by}{crit}\n    {paper_details(p)}"
        )
    for m in milestones:
        for d in m.presentations:
            days[date.fromisoformat(d)].append(f"{m.title}: presentations")
    for off in cal.days_off:
        span = f" ({fmt_day(off.day)} – {fmt_day(off.last)})" if off.last != off.day else ""
        days[off.day].append(
            "No class" if off.reason == "No class" else f"No class: {off.reason}{span}"
        )
    for m in cal.meetings:  # a class day with nothing on it yet is still a class
        if m.day not in days:
            days[m.day].append("Class (nothing scheduled yet)")
    if not days:
        return Reply(text="The schedule is empty: no papers have dates yet.")
    first_week = week_start(min(days))
    weeks: dict[int, list[date]] = defaultdict(list)
    for d in sorted(days):
        weeks[(week_start(d) - first_week).days // 7 + 1].append(d)
    if opts.week is not None:
        if opts.week not in weeks:
            raise InvalidInput(
                f"Week {opts.week} has nothing scheduled; weeks run {min(weeks)}–{max(weeks)}."
            )
        chosen = [opts.week]
        note = ""
    elif opts.all:
        chosen = sorted(weeks)
        note = ""
    else:
        this_week = (week_start(ctx.today()) - first_week).days // 7 + 1
        upcoming = [w for w in sorted(weeks) if w >= this_week]
        chosen = upcoming[:2]
        note = "This week and the next. `schedule --all` shows the whole semester."
        if not chosen:
            chosen = sorted(weeks)
            note = "The semester is over; here is the whole schedule."
    sections = []
    for w in chosen:
        monday = first_week + timedelta(weeks=w - 1)
        lines = []
        for d in weeks[w]:
            lines.extend(f"{fmt_day(d)}: {item}" for item in days[d])
        sections.append(
            Section(
                f"Week {w} ({fmt_day(monday)} – {fmt_day(monday + timedelta(days=4))})",
                "\n".join(lines),
            )
        )
    times = ""
    if course.class_start and course.class_end:
        times = f"Class {', '.join(d.title() for d in course.class_days)} {fmt_time(course.class_start)}–{fmt_time(course.class_end)} ({course.timezone}). "
    return Reply(title=f"{course.name}: schedule", text=(times + note).strip(), sections=sections)


def _who(names: dict[int, list[str]], paper_id: int) -> str:
    return ", ".join(names.get(paper_id, [])) or "unassigned"


class DeadlinesOptions(BaseModel):
    all: bool = Field(False, description="past deadlines too")


@registry.command(
    "deadlines",
    "Upcoming deadlines in the course's timezone",
    access=Access.ANYONE,
    share=True,
    topic="course",
    examples=("deadlines", "deadlines --all"),
)
async def deadlines(ctx: Context, opts: DeadlinesOptions) -> Reply:
    items = await course_deadlines(ctx.session, ctx.course)
    shown = items if opts.all else [i for i in items if i.due >= ctx.now]
    note = ""
    if not shown and items:
        shown = items
        note = "Every deadline has passed; showing them all."
    rows = [[fmt_instant(i.due, ctx.tz), relative(i.due, ctx.now), i.title] for i in shown]
    return Reply(
        title=f"{ctx.course.name}: deadlines",
        text=note or f"Times are {ctx.course.timezone}.",
        tables=[Table(["Due", "When", "What"], rows)],
    )


@registry.command(
    "grading", "How the course grade is made up", access=Access.ANYONE, share=True, topic="course"
)
async def grading(ctx: Context, _: BaseModel) -> Reply:
    weights = ctx.course.grading
    if not weights:
        return Reply(text="The instructor has not published grading weights yet.")
    rows = [[k.replace("_", " ").title(), f"{v}%"] for k, v in weights.items()]
    notes = []
    n_crit = len(await course_papers(ctx.session, ctx.course.id, kind="critique"))
    if n_crit and "critiques" in weights:
        each = weights["critiques"] / n_crit
        notes.append(
            f"Critiques: {n_crit} papers, Pass/Fail, {each:g}% each, due "
            f"{fmt_time(ctx.course.critique_deadline)} on the day of class."
        )
    milestones = await ctx.session.scalars(
        select(Milestone).where(Milestone.course_id == ctx.course.id, Milestone.weight.is_not(None))
    )
    parts = [f"{m.title} {m.weight}%" for m in milestones]
    if parts:
        notes.append("Project: " + ", ".join(parts) + ".")
    return Reply(
        title=f"{ctx.course.name}: grading",
        tables=[Table(["Component", "Weight"], rows)],
        text="\n".join(notes),
    )


@registry.command(
    "officehours",
    "When and how to meet the instructor",
    access=Access.ANYONE,
    share=True,
    topic="course",
)
async def officehours(ctx: Context, _: BaseModel) -> Reply:
    c = ctx.course
    slots = Syllabus.of(c).office_hours_slots
    if not c.office_hours_url and not c.office_hours_note and not slots:
        return Reply(text="No office hours are set for this course yet.")
    lines = [
        line
        for line in (c.office_hours_note, c.office_hours_url and f"Sign up: {c.office_hours_url}")
        if line
    ]
    rows = [
        [
            {d: n for d, n in zip(WEEKDAYS, DAY_NAMES, strict=True)}[s.day],
            fmt_time(s.start) + (f"–{fmt_time(s.end)}" if s.end else ""),
            " · ".join(x for x in (s.place, s.link) if x),
            s.host or "",
        ]
        for s in slots
    ]
    if rows:
        lines.append(f"Every week ({c.timezone}):")
    return Reply(
        title="Office hours",
        text="\n".join(lines),
        tables=[Table(["Day", "Time", "Where", "With"], rows)] if rows else [],
    )


DAY_NAMES = ("Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays")


@registry.command(
    "course", "The course at a glance", access=Access.ANYONE, share=True, topic="course"
)
async def course_info(ctx: Context, _: BaseModel) -> Reply:
    c = ctx.course
    fields = [("Term", c.term or "—"), ("Timezone", c.timezone)]
    if c.class_start and c.class_end:
        days = ", ".join(d.title() for d in c.class_days)
        fields.append(("Class", f"{days} {fmt_time(c.class_start)}–{fmt_time(c.class_end)}"))
    if c.website:
        fields.append(("Website", c.website))
    fields.append(("Critiques due", f"{fmt_time(c.critique_deadline)} on the day of class"))
    if c.ranking_deadline:
        fields.append(("Rankings due", fmt_instant(c.ranking_deadline, ctx.tz)))
    n = len(await course_papers(ctx.session, c.id))
    fields.append(("Papers", str(n)))
    return Reply(title=c.name, sections=[Section("", "", fields)])


# ----------------------------------------------------------------------------- one paper


class PaperOptions(BaseModel):
    paper: Annotated[int, Complete("paper")] = Field(ge=1, description="the paper id")


@registry.command(
    "paper",
    "One paper in full: authors, venue, link, date, slot and presenters",
    access=Access.ANYONE,
    share=True,
    topic="course",
    examples=("paper 5", "paper 9"),
)
async def paper(ctx: Context, opts: PaperOptions) -> Reply:
    course = ctx.course
    p = await ctx.session.scalar(
        select(Paper).where(Paper.course_id == course.id, Paper.number == opts.paper)
    )
    if p is None:
        raise NotFound(f"There is no paper #{opts.paper}.", hint="`papers` lists them all.")
    staff = ctx.person is not None and ctx.person.is_staff
    names = await presenters(ctx.session, course.id, published_only=not staff)
    fields = [
        ("Authors", p.authors or "—"),
        ("Venue", p.venue or "—"),
        ("Link", p.url or "—"),
        ("Slot", p.slot.label),
    ]
    if p.class_date:
        cal = await course_calendar(ctx.session, course)
        m = cal.on(p.class_date)
        when = fmt_day(p.class_date)
        if m is not None and m.start:
            when += f", class at {fmt_time(m.start)}"
            spans = agenda_times(m.start, m.agenda)
            for item, span in zip(m.agenda, spans, strict=True):
                if item.paper == p.number and span is not None and item.kind == "talk":
                    a = time(span[0] // 60 % 24, span[0] % 60)
                    when += f" (talk at {fmt_time(a)}, {item.minutes} min)"
        fields.append(("Date", when))
    else:
        fields.append(("Date", "not scheduled yet"))
    battle = await ctx.session.scalar(
        select(Battle).where(
            Battle.course_id == course.id,
            (Battle.paper_a_id == p.id) | (Battle.paper_b_id == p.id),
        )
    )
    if battle is not None:
        side = "A" if battle.paper_a_id == p.id else "B"
        other = await ctx.session.get(
            Paper, battle.paper_b_id if side == "A" else battle.paper_a_id
        )
        vs = f" vs #{other.number} {other.title}" if other else ""
        theme = f" ({battle.theme})" if battle.theme else ""
        fields.append(("Battle", f"Battle {battle.label or battle.number}{theme}, side {side}{vs}"))
    if p.slot is Slot.INSTRUCTOR:
        fields.append(("Presented by", "the instructor"))
    else:
        fields.append(("Presented by", _who(names, p.id)))
    also = []
    if p.critique:
        also.append(
            f"critique due {fmt_time(course.critique_deadline)} on its day (`critique submit {p.number}`)"
        )
    if p.discussion:
        also.append("breakout discussion in class")
    if also:
        fields.append(("Also", "; ".join(also)))
    return Reply(title=f"#{p.number} {p.title}", sections=[Section("", "", fields)])
