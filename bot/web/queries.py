"""Read-only queries for the desk's own tables (what no single command shows at once:
the week, each student's ranked lists, a paper's critiques with their Q&A). They read
the same tables the commands write, through the features' own helpers where there are
some; every change still goes through a command."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.battles import battle_name
from commands.critiques import (
    EXCUSED,
    FAIL,
    OVERDUE,
    PASS,
    PRESENTING,
    SUBMITTED,
    ZERO,
    course_students,
    credit,
    critique_papers,
    critique_rules,
    critiques_of_paper,
    deadline_of,
    is_late,
    is_overdue,
    marks_of,
    presenters_of,
    standing,
)
from commands.timefmt import fmt_day
from db.models import (
    Assignment,
    AuditEntry,
    Battle,
    BattlePoll,
    Course,
    Critique,
    CritiqueMark,
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


async def week(
    session: AsyncSession, course: Course, today: date, now: datetime
) -> dict[str, list[list[str]]]:
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
    due_papers = [p for p in papers if p.critique]
    marks = await critique_marks(session, course, now, due_papers, roster)
    critiques = []
    for p in due_papers:
        t = PaperTally.of(marks[(p.id, s.id)] for s in roster)
        # Who still owes one: not sent, not excused (presenters and staff's excuses owe
        # nothing, as in `critique list`).
        owe = [
            s.name
            for s in roster
            if not marks[(p.id, s.id)].sent
            and marks[(p.id, s.id)].state not in (EXCUSED, PRESENTING)
        ]
        critiques.append(
            [
                f"#{p.number} {p.title}",
                when(deadline_of(course, p), tz),
                f"{t.submitted} of {t.owing}",
                str(t.late),
                ", ".join(owe) or "nobody",
            ]
        )
    polls = [
        [f"Battle {battle_name(b)}", when(poll.opened_at, tz), when(poll.closes_at, tz)]
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


# ------------------------------------------------------------------ critique marks
#
# What one student's critique of one paper counts as is :func:`commands.critiques.standing`
# under the course's critique rules (`missing: zero|blank`, late penalties, presenters
# excused): the rule `critique status`, `critique list`, `grades` and the Canvas export
# apply. The desk only words it, as `critique status` does.


@dataclass(frozen=True)
class Mark:
    """One critique cell: ``label`` says it in words (never colour alone), ``kind`` is
    its style, ``note`` the detail (the cell's tooltip, and read out after the label)."""

    label: str
    kind: str
    note: str = ""
    #: What it counts as (:func:`commands.critiques.standing`).
    state: str = ""
    #: A critique was received, and after the deadline.
    sent: bool = False
    late: bool = False


def critique_mark(
    course: Course,
    paper: Paper,
    critique: Critique | None,
    mark: CritiqueMark | None,
    presenting: bool,
    now: datetime,
    reason: str | None = None,
) -> Mark:
    """How the desk shows one critique: Pass / Fail (graded; a late pass with what it
    counts under the late penalty), submitted or late and not graded yet, excused
    (presenting, or by staff with their reason), missing recorded as 0, missing past the
    deadline (counted 0 or not, as the course's `missing` rule says), or not due yet."""
    tz = ZoneInfo(course.timezone)
    rules = critique_rules(course)
    state = standing(critique, mark, presenting, is_overdue(course, paper, now))
    reason = (getattr(mark, "reason", None) if mark is not None else None) or reason
    why = f" Reason: {reason}." if reason else ""
    sent = critique is not None
    late = critique is not None and is_late(course, paper, critique)
    got = ""
    if critique is not None:
        got = f"Submitted {when(critique.submitted_at, tz)}{' (late)' if late else ''}."
    due = deadline_of(course, paper)

    def out(label: str, kind: str, note: str) -> Mark:
        return Mark(label, kind, note.strip(), state, sent, late)

    if state in (PASS, FAIL):
        graded = state.capitalize()
        label = f"{graded} (late)" if late else graded
        note = f"{got} Graded {graded}."
        if critique is not None and state == PASS:
            earned = credit(course, paper, critique, rules)
            if earned < 1:
                label = f"{graded} (late, counts {earned:g})"
                note += f" Counts {earned:g} with the late penalty."
        return out(label, state, note)
    if state == ZERO:
        after = f" {got} A grade replaces the mark." if got else ""
        return out(
            "Missing, recorded as 0",
            "zero",
            f"Recorded as missing by staff: counts as 0.{why}{after}",
        )
    if state == EXCUSED:
        return out(
            "Excused", "excused", f"Excused by staff: not counted.{why or ' No reason given.'}"
        )
    if state == PRESENTING:
        return out(
            "Excused (presenting)",
            "excused",
            f"Presents #{paper.number} in the published assignment: excused from its "
            "critique, not counted.",
        )
    if state == SUBMITTED:
        label = "Late, not graded" if late else "Submitted, not graded"
        return out(label, "late" if late else "submitted", got)
    if state == OVERDUE:
        was = f"Nothing came by the deadline, {when(due, tz)}." if due else ""
        if rules.missing == "zero":
            return out(
                "Missing (overdue), counts 0",
                "zero",
                f"{was} Counts as 0 (the course's rule for missing critiques); staff can "
                "excuse it.",
            )
        return out(
            "Missing (overdue), not counted",
            "missing",
            f"{was} Left out of the grade (the course's rule for missing critiques) until "
            "staff record it as missing (0) or excuse it.",
        )
    if due is None:
        return out("Not due yet", "not-due", "The paper has no class date yet.")
    return out("Not due yet", "not-due", f"Due {when(due, tz)}.")


async def mark_reasons(session: AsyncSession, course_id: int) -> dict[tuple[int, int], str]:
    """(paper number, person id) → the reason staff gave with the critique grade or mark
    that stands (the audit log keeps it), where they gave one."""
    latest: dict[tuple[int, int], AuditEntry] = {}
    rows = await session.scalars(
        select(AuditEntry)
        .where(AuditEntry.course_id == course_id, AuditEntry.kind == "critique.grade")
        .order_by(AuditEntry.at, AuditEntry.id)
    )
    for entry in rows:
        number = (entry.after or {}).get("paper")
        if entry.subject_id is not None and isinstance(number, int):
            latest[(number, entry.subject_id)] = entry
    return {key: e.reason for key, e in latest.items() if e.reason}


async def critique_marks(
    session: AsyncSession,
    course: Course,
    now: datetime,
    papers: Iterable[Paper] | None = None,
    people: Iterable[Person] | None = None,
) -> dict[tuple[int, int], Mark]:
    """(paper id, person id) → :class:`Mark`, for the course's critique papers (or
    ``papers``) and its students (or ``people``)."""
    papers = list(papers) if papers is not None else await critique_papers(session, course.id)
    people = list(people) if people is not None else await students(session, course.id)
    crits = {
        (c.paper_id, c.person_id): c
        for c in await session.scalars(
            select(Critique).where(
                Critique.course_id == course.id, Critique.paper_id.in_([p.id for p in papers])
            )
        )
    }
    marks = await marks_of(session, course.id)
    presenting = await presenters_of(session, course.id)
    reasons = await mark_reasons(session, course.id)
    return {
        (p.id, s.id): critique_mark(
            course,
            p,
            crits.get((p.id, s.id)),
            marks.get((p.id, s.id)),
            s.id in presenting.get(p.id, set()),
            now,
            reasons.get((p.number, s.id)),
        )
        for p in papers
        for s in people
    }


@dataclass(frozen=True)
class PaperTally:
    """A paper's critiques as `critique list` counts them."""

    submitted: int  # critiques received (presenters' too)
    owing: int  # students less those excused who sent none
    late: int
    graded: int  # submitted and graded Pass or Fail
    excused: int  # excused (presenting or by staff) and sent none
    zero: int  # recorded missing (0) by staff
    overdue: int  # sent none, past the deadline, not recorded (counted as the rules say)

    @classmethod
    def of(cls, marks: Iterable[Mark]) -> PaperTally:
        ms = list(marks)
        excused = sum(1 for m in ms if m.state in (EXCUSED, PRESENTING) and not m.sent)
        return cls(
            submitted=sum(m.sent for m in ms),
            owing=len(ms) - excused,
            late=sum(m.late for m in ms),
            graded=sum(m.state in (PASS, FAIL) for m in ms),
            excused=excused,
            zero=sum(m.state == ZERO for m in ms),
            overdue=sum(m.state == OVERDUE for m in ms),
        )

    def missing(self, counted: bool) -> str:
        """The missing ones, in words: "2 overdue (counted 0), 1 recorded 0"."""
        parts = []
        if self.overdue:
            parts.append(f"{self.overdue} overdue ({'counted 0' if counted else 'not counted'})")
        if self.zero:
            parts.append(f"{self.zero} recorded 0")
        return ", ".join(parts) or "0"


async def critique_index(session: AsyncSession, course: Course, now: datetime) -> list[list[str]]:
    """Each critique paper: due, submitted of those who owe one, late, graded, excused,
    missing (recorded as 0, and overdue not recorded yet)."""
    tz = ZoneInfo(course.timezone)
    papers = await critique_papers(session, course.id)
    roster = await students(session, course.id)
    marks = await critique_marks(session, course, now, papers, roster)
    out = []
    for p in papers:
        t = PaperTally.of(marks[(p.id, s.id)] for s in roster)
        out.append(
            [
                str(p.number),
                p.title,
                when(deadline_of(course, p), tz),
                f"{t.submitted} of {t.owing}",
                str(t.late),
                f"{t.graded} of {t.submitted}",
                str(t.excused),
                t.missing(critique_rules(course).missing == "zero"),
            ]
        )
    return out


async def critique_grid(
    session: AsyncSession, course: Course, now: datetime
) -> tuple[list[Paper], list[tuple[Person, list[Mark]]]]:
    """Every student's critique of every critique paper, as marks (:class:`Mark`)."""
    papers = await critique_papers(session, course.id)
    roster = await students(session, course.id)
    marks = await critique_marks(session, course, now, papers, roster)
    return papers, [(s, [marks[(p.id, s.id)] for p in papers]) for s in roster]


async def critiques_of(
    session: AsyncSession, course: Course, paper: Paper, now: datetime
) -> tuple[list[tuple[Person, Critique, Mark]], list[tuple[Person, Mark]]]:
    """A paper's critiques with their students (by name) and marks, and the students
    who sent none with theirs (excused, missing, not due yet)."""
    done = await critiques_of_paper(session, paper.id)
    roster = await students(session, course.id)
    marks = await critique_marks(session, course, now, [paper], roster)
    return (
        [(s, done[s.id], marks[(paper.id, s.id)]) for s in roster if s.id in done],
        [(s, marks[(paper.id, s.id)]) for s in roster if s.id not in done],
    )


async def staff_person(session: AsyncSession, course_id: int, person_id: int) -> Person | None:
    """A person of this course (never another course's id)."""
    p = await session.get(Person, person_id)
    return p if p is not None and p.course_id == course_id else None


def is_student(p: Person) -> bool:
    return p.role is Role.STUDENT
