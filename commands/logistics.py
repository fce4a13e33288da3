"""Course logistics: papers, schedule, deadlines, grading, office hours, course info."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.context import Context
from commands.errors import InvalidInput
from commands.registry import Access, registry
from commands.replies import Button, Reply, Section, Table
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
    """Paper id → presenter names."""
    q = (
        select(Assignment.paper_id, Person.name)
        .join(Person, Person.id == Assignment.person_id)
        .where(Assignment.course_id == course_id)
        .order_by(Person.name)
    )
    if published_only:
        q = q.where(Assignment.published.is_(True))
    out: dict[int, list[str]] = defaultdict(list)
    for paper_id, name in await session.execute(q):
        out[paper_id].append(name)
    return out


@dataclass(frozen=True)
class DeadlineItem:
    due: datetime
    title: str
    kind: str


async def course_deadlines(session: AsyncSession, course: Course) -> list[DeadlineItem]:
    """Every dated obligation of the course, sorted: rankings, critiques, project, others."""
    items: list[DeadlineItem] = []
    if course.ranking_deadline:
        items.append(DeadlineItem(course.ranking_deadline, "Paper rankings", "rankings"))
    keys = set()
    for d in await session.scalars(select(Deadline).where(Deadline.course_id == course.id)):
        keys.add(d.key)
        if d.key == "rankings" and course.ranking_deadline:
            continue  # the course setting is the source of truth for rankings
        items.append(DeadlineItem(d.due, d.title, d.key))
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(course.timezone)
    for p in await session.scalars(
        select(Paper).where(Paper.course_id == course.id, Paper.critique.is_(True))
    ):
        if p.class_date:
            due = datetime.combine(p.class_date, course.critique_deadline, tzinfo=tz)
            items.append(
                DeadlineItem(due, f"Critique + question: #{p.number} {p.title}", "critique")
            )
    for m in await session.scalars(select(Milestone).where(Milestone.course_id == course.id)):
        if m.due:
            items.append(DeadlineItem(m.due, f"{m.title} write-up", "project"))
    items.sort(key=lambda i: i.due)
    return items


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
        raise InvalidInput(f"There are only {pages} page(s) of {what}.")
    start = (opts.page - 1) * PAGE_SIZE
    rows = [
        [
            str(p.number),
            fmt_day(p.class_date) if p.class_date else "—",
            p.slot.value,
            p.title,
            _flags(p),
        ]
        for p in found[start : start + PAGE_SIZE]
    ]
    buttons = []
    base = (opts.kind, opts.date.isoformat() if opts.date else "", "1" if opts.unassigned else "")
    if opts.page > 1:
        buttons.append(Button("◀ Previous", "papers.page", (*base, str(opts.page - 1))))
    if opts.page < pages:
        buttons.append(Button("Next ▶", "papers.page", (*base, str(opts.page + 1))))
    page_note = f" (page {opts.page} of {pages})" if pages > 1 else ""
    return Reply(
        title=f"{ctx.course.name}: {what}",
        text=f"{len(found)} {what}{page_note}. Slots: 30/45-min talks, battle, instructor.",
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
    by_id = {p.id: p for p in all_papers}
    days: dict[date, list[str]] = defaultdict(list)
    for p in all_papers:
        if p.class_date is None:
            continue
        if p.slot is Slot.BATTLE:
            b = battles.get(p.id)
            if b is None:
                continue  # listed with its battle, under side A
            other = by_id[b.paper_b_id]
            days[p.class_date].append(
                f"Battle {b.number}: #{p.number} {p.title} [{_who(names, p.id)}] vs "
                f"#{other.number} {other.title} [{_who(names, other.id)}]"
            )
            continue
        who = "instructor" if p.slot is Slot.INSTRUCTOR else _who(names, p.id)
        crit = " · critique due " + fmt_time(course.critique_deadline) if p.critique else ""
        days[p.class_date].append(f"#{p.number} ({p.slot.value}) {p.title} — {who}{crit}")
    for m in await ctx.session.scalars(select(Milestone).where(Milestone.course_id == course.id)):
        for d in m.presentations:
            days[date.fromisoformat(d)].append(f"{m.title}: presentations")
    for d in course.no_class:
        days[date.fromisoformat(d)].append("No class")
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
    "grading", "How the course grade is made up", access=Access.ANYONE, topic="course"
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
    "officehours", "When and how to meet the instructor", access=Access.ANYONE, topic="course"
)
async def officehours(ctx: Context, _: BaseModel) -> Reply:
    c = ctx.course
    if not c.office_hours_url and not c.office_hours_note:
        return Reply(text="No office hours are set for this course yet.")
    lines = [
        line
        for line in (c.office_hours_note, c.office_hours_url and f"Sign up: {c.office_hours_url}")
        if line
    ]
    return Reply(title="Office hours", text="\n".join(lines))


@registry.command("course", "The course at a glance", access=Access.ANYONE, topic="course")
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
