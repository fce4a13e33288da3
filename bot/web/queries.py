"""Read-only queries for the desk's own tables (what no single command shows at once:
the week, each student's ranked lists, a paper's critiques with their Q&A). They read
the same tables the commands write, through the features' own helpers where there are
some; every change still goes through a command."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.critiques import course_students, critiques_of_paper, deadline_of, is_late
from commands.timefmt import fmt_day
from db.models import (
    Assignment,
    Battle,
    BattlePoll,
    Course,
    Critique,
    Discussion,
    GpuJob,
    Paper,
    Person,
    Ranking,
    RankingChoice,
    RankKind,
    Role,
    Slot,
)


def when(instant: datetime | None, tz: ZoneInfo) -> str:
    """An instant in the course's zone, sortable as text: ``2023-08-30 13:00 EDT``."""
    if instant is None:
        return "—"
    local = instant.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def day(d: date | None) -> str:
    return d.isoformat() if d else "—"


async def students(session: AsyncSession, course_id: int) -> list[Person]:
    return await course_students(session, course_id)


async def people_options(session: AsyncSession, course_id: int) -> tuple[tuple[str, str], ...]:
    """Students for a select: (email, "Name (email)")."""
    return tuple((p.email, f"{p.name} ({p.email})") for p in await students(session, course_id))


async def paper_options(
    session: AsyncSession, course_id: int, *, where: object = None
) -> tuple[tuple[str, str], ...]:
    q = select(Paper).where(Paper.course_id == course_id).order_by(Paper.number)
    if where is not None:
        q = q.where(where)  # type: ignore[arg-type]
    return tuple(
        (str(p.number), f"#{p.number} {p.title[:60]} ({day(p.class_date)})")
        for p in await session.scalars(q)
    )


async def presenters(session: AsyncSession, course_id: int) -> dict[int, list[str]]:
    """Paper id → names presenting it in the published assignment."""
    out: dict[int, list[str]] = {}
    rows = await session.execute(
        select(Assignment.paper_id, Person.name)
        .join(Person, Person.id == Assignment.person_id)
        .where(Assignment.course_id == course_id, Assignment.published.is_(True))
        .order_by(Person.name)
    )
    for paper_id, name in rows:
        out.setdefault(paper_id, []).append(name)
    return out


async def week(session: AsyncSession, course: Course, today: date) -> dict[str, list[list[str]]]:
    """The next seven days: classes, critiques due, open polls and discussions, GPU."""
    tz = ZoneInfo(course.timezone)
    last = today + timedelta(days=6)
    papers = list(
        await session.scalars(
            select(Paper)
            .where(
                Paper.course_id == course.id, Paper.class_date >= today, Paper.class_date <= last
            )
            .order_by(Paper.class_date, Paper.number)
        )
    )
    who = await presenters(session, course.id)
    classes = [
        [
            f"{fmt_day(p.class_date)} ({day(p.class_date)})" if p.class_date else "—",
            f"#{p.number} {p.title}",
            p.slot.label,
            "the instructor"
            if p.slot is Slot.INSTRUCTOR
            else ", ".join(who.get(p.id, [])) or "nobody yet",
            "yes" if p.critique else "no",
        ]
        for p in papers
    ]
    roster = await students(session, course.id)
    critiques = []
    for p in papers:
        if not p.critique:
            continue
        done = await critiques_of_paper(session, p.id)
        missing = [s.name for s in roster if s.id not in done]
        late = sum(1 for c in done.values() if is_late(course, p, c))
        critiques.append(
            [
                f"#{p.number} {p.title}",
                when(deadline_of(course, p), tz),
                f"{len(done)} of {len(roster)}",
                str(late),
                ", ".join(missing) or "nobody",
            ]
        )
    polls = [
        [f"Battle {b.number}", when(poll.opened_at, tz), when(poll.closes_at, tz)]
        for poll, b in await session.execute(
            select(BattlePoll, Battle)
            .join(Battle, Battle.id == BattlePoll.battle_id)
            .where(BattlePoll.course_id == course.id, BattlePoll.closed_at.is_(None))
            .order_by(Battle.number)
        )
    ]
    discussions = [
        [f"#{p.number} {p.title}", d.state, when(d.started_at, tz)]
        for d, p in await session.execute(
            select(Discussion, Paper)
            .join(Paper, Paper.id == Discussion.paper_id)
            .where(Discussion.course_id == course.id, Discussion.state.in_(("accepted", "running")))
            .order_by(Paper.number)
        )
    ]
    gpu = [
        [state, str(n)]
        for state, n in await session.execute(
            select(GpuJob.state, func.count())
            .where(GpuJob.course_id == course.id, GpuJob.state.in_(("queued", "running")))
            .group_by(GpuJob.state)
            .order_by(GpuJob.state)
        )
    ]
    return {
        "classes": classes,
        "critiques": critiques,
        "polls": polls,
        "discussions": discussions,
        "gpu": gpu,
    }


async def ranking_rows(session: AsyncSession, course: Course) -> list[list[str]]:
    """Each student: when they submitted each kind, and their list (one query)."""
    tz = ZoneInfo(course.timezone)
    lists: dict[tuple[int, RankKind], tuple[datetime, list[str]]] = {}
    rows = await session.execute(
        select(Ranking.person_id, Ranking.kind, Ranking.submitted_at, Paper.number)
        .join(RankingChoice, RankingChoice.ranking_id == Ranking.id)
        .join(Paper, Paper.id == RankingChoice.paper_id)
        .where(Ranking.course_id == course.id)
        .order_by(Ranking.id, RankingChoice.rank)
    )
    for person_id, kind, at, number in rows:
        lists.setdefault((person_id, kind), (at, []))[1].append(f"#{number}")
    out = []
    for s in await students(session, course.id):
        row = [s.name, s.email]
        for kind in (RankKind.STANDARD, RankKind.BATTLE):
            found = lists.get((s.id, kind))
            row += [when(found[0], tz), " ".join(found[1])] if found else ["missing", ""]
        out.append(row)
    return out


async def critique_index(session: AsyncSession, course: Course) -> list[list[str]]:
    tz = ZoneInfo(course.timezone)
    roster = {s.id for s in await students(session, course.id)}
    out = []
    papers = await session.scalars(
        select(Paper)
        .where(Paper.course_id == course.id, Paper.critique.is_(True))
        .order_by(Paper.class_date, Paper.number)
    )
    for p in list(papers):
        done = [
            c for c in (await critiques_of_paper(session, p.id)).values() if c.person_id in roster
        ]
        late = sum(1 for c in done if is_late(course, p, c))
        graded = sum(1 for c in done if c.grade)
        out.append(
            [
                str(p.number),
                p.title,
                when(deadline_of(course, p), tz),
                f"{len(done)} of {len(roster)}",
                str(late),
                f"{graded} of {len(done)}",
            ]
        )
    return out


async def critiques_of(
    session: AsyncSession, course: Course, paper: Paper
) -> tuple[list[tuple[Person, Critique]], list[Person]]:
    """A paper's critiques with their students (by name), and who is missing."""
    done = await critiques_of_paper(session, paper.id)
    roster = await students(session, course.id)
    return [(s, done[s.id]) for s in roster if s.id in done], [
        s for s in roster if s.id not in done
    ]


async def staff_person(session: AsyncSession, course_id: int, person_id: int) -> Person | None:
    """A person of this course (never another course's id)."""
    p = await session.get(Person, person_id)
    return p if p is not None and p.course_id == course_id else None


def is_student(p: Person) -> bool:
    return p.role is Role.STUDENT
