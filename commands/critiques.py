"""Critiques: a PDF with one discussion question and its answer, due at the course's
critique deadline (1 PM) on the paper's class day; private reminders to students who
still owe one and one closing post per deadline; pass/fail grading by staff under the
course's critique rules (a missing one, late ones, presenters: ``course.critique_rules``)
and a Canvas gradebook export.

Only the owner and staff ever see a critique, its file or its grade.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.attachments import FileRule, read_attachment
from commands.audit import Reason, record
from commands.context import Context
from commands.coursefile import CritiqueRules, Syllabus, reminder_instant
from commands.due import Scope, due_registry, earliest
from commands.errors import Conflict, Forbidden, InvalidInput, NotFound
from commands.exports import canvas_csv, canvas_matching
from commands.outbox import Outgoing
from commands.people import find_person
from commands.registry import Access, Complete, LongText, registry
from commands.replies import FileOut, Reply, Section, Table, Tone
from commands.solver import plural
from commands.timefmt import fmt_instant, fmt_time, relative
from db.models import Assignment, Course, Critique, CritiqueMark, Notification, Paper, Person, Role

#: The largest critique PDF accepted.
MAX_BYTES = 20 * 1024 * 1024
log = logging.getLogger("coursebot.critiques")

#: A ping missed while the bot was down still goes out if at most this late.
GRACE = timedelta(hours=2)
#: A ping missed for good within this long is logged (and recorded) as skipped; older
#: ones are history (a course imported mid-term), not an outage.
MISSED_LOOKBACK = timedelta(days=2)
#: Longest question / answer kept (a Discord/Slack modal holds 4000 characters).
MAX_TEXT = 4000

Grade = Literal["pass", "fail", "missing", "excused", "clear"]
#: What staff record for a critique never submitted: 0 points, or not counted.
MARKS = ("missing", "excused")

# ----------------------------------------------------------------------------- services


def deadline_of(course: Course, paper: Paper) -> datetime | None:
    """The critique deadline: the class day at ``course.critique_deadline`` in the
    course's zone, as an aware instant (EDT or EST as that day has it)."""
    if paper.class_date is None:
        return None
    return datetime.combine(
        paper.class_date, course.critique_deadline or time(13, 0), tzinfo=ZoneInfo(course.timezone)
    )


def is_late(course: Course, paper: Paper, critique: Critique) -> bool:
    due = deadline_of(course, paper)
    return due is not None and critique.submitted_at > due


def critique_rules(course: Course) -> CritiqueRules:
    """The course's critique rules (``course.critique_rules`` of the course file)."""
    return Syllabus.of(course).critique_rules


def is_overdue(course: Course, paper: Paper, now: datetime) -> bool:
    """The paper's critique deadline has passed."""
    due = deadline_of(course, paper)
    return due is not None and now > due


def credit(course: Course, paper: Paper, c: Critique, rules: CritiqueRules | None = None) -> float:
    """What a graded critique earns (pass 1, fail 0), less the late penalty."""
    if c.grade != PASS:
        return 0.0
    due = deadline_of(course, paper)
    if due is None:
        return 1.0
    return 1.0 - (rules or critique_rules(course)).penalty(c.submitted_at - due)


def rules_text(rules: CritiqueRules) -> str:
    """The course's critique rules in a sentence or two, for students."""
    if not rules.accept_late:
        late = "Late critiques are not accepted."
    else:
        late = "Late critiques are accepted"
        if rules.late_cutoff:
            late += f" up to {rules.late_cutoff} after the deadline"
        cuts = []
        if rules.late_penalty:
            cuts.append(f"{rules.late_penalty:.0%}")
        if rules.late_penalty_per_day:
            cuts.append(f"{rules.late_penalty_per_day:.0%} a day")
        late += ", losing " + " + ".join(cuts) + " of their points." if cuts else "."
    missing = (
        "A critique never submitted counts as 0 once its deadline has passed."
        if rules.missing == "zero"
        else "A critique never submitted is left out of the grade."
    )
    return f"{missing} {late}"


def paper_label(paper: Paper) -> str:
    return f"#{paper.number} {paper.title}"


async def critique_papers(session: AsyncSession, course_id: int) -> list[Paper]:
    return list(
        await session.scalars(
            select(Paper)
            .where(Paper.course_id == course_id, Paper.critique.is_(True))
            .order_by(Paper.class_date, Paper.number)
        )
    )


async def critique_paper(session: AsyncSession, course_id: int, number: int) -> Paper:
    """A paper that takes critiques, or an error that says which ones do."""
    paper = await session.scalar(
        select(Paper).where(Paper.course_id == course_id, Paper.number == number)
    )
    if paper is None:
        raise NotFound(
            f"There is no paper #{number}.",
            hint="`papers critique` lists the papers that take critiques.",
        )
    if not paper.critique:
        raise InvalidInput(
            f"Paper {paper_label(paper)} takes no critique.",
            hint="`papers critique` lists the papers that do.",
        )
    return paper


async def course_students(session: AsyncSession, course_id: int) -> list[Person]:
    return list(
        await session.scalars(
            select(Person)
            .where(Person.course_id == course_id, Person.role == Role.STUDENT)
            .order_by(Person.name)
        )
    )


async def critiques_of_paper(session: AsyncSession, paper_id: int) -> dict[int, Critique]:
    """The paper's critiques by person id."""
    rows = await session.scalars(select(Critique).where(Critique.paper_id == paper_id))
    return {c.person_id: c for c in rows}


async def presenters_of(session: AsyncSession, course_id: int) -> dict[int, set[int]]:
    """Paper id -> the people presenting it in the published assignment: they are excused
    from critiquing it (never pinged, never missing), unless the course's critique rules
    say otherwise (``presenters_excused: false``: then nobody is listed)."""
    course = await session.get(Course, course_id)
    if course is not None and not critique_rules(course).presenters_excused:
        return {}
    rows = await session.execute(
        select(Assignment.paper_id, Assignment.person_id).where(
            Assignment.course_id == course_id, Assignment.published.is_(True)
        )
    )
    out: dict[int, set[int]] = {}
    for paper_id, person_id in rows:
        out.setdefault(paper_id, set()).add(person_id)
    return out


async def marks_of(
    session: AsyncSession, course_id: int, paper_id: int | None = None
) -> dict[tuple[int, int], CritiqueMark]:
    """(paper id, person id) -> the staff's mark (missing / excused)."""
    q = select(CritiqueMark).where(CritiqueMark.course_id == course_id)
    if paper_id is not None:
        q = q.where(CritiqueMark.paper_id == paper_id)
    return {(m.paper_id, m.person_id): m for m in await session.scalars(q)}


#: A student's standing on one critique paper, as `standing` says it.
PASS, FAIL, ZERO, EXCUSED, PRESENTING, SUBMITTED, NOT_YET, OVERDUE = (
    "pass",
    "fail",
    "missing",
    "excused",
    "presenting",
    "submitted",
    "not yet",
    "overdue",
)


def standing(
    c: Critique | None, mark: CritiqueMark | None, presenting: bool, overdue: bool = False
) -> str:
    """What one critique counts as: a grade (pass/fail) wins; then the staff's mark
    (missing = 0, excused); then presenting the paper (excused); else submitted and
    waiting for a grade, never submitted with the deadline passed (``overdue``), or not
    due yet."""
    if c is not None and c.grade in (PASS, FAIL):
        return str(c.grade)
    if mark is not None:
        return ZERO if mark.mark == "missing" else EXCUSED
    if presenting:
        return PRESENTING
    if c is not None:
        return SUBMITTED
    return OVERDUE if overdue else NOT_YET


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass
class Tally:
    """A student's critiques. Only what is graded (pass, fail, recorded missing) or past
    its deadline (never submitted, under ``missing: zero``) counts; a critique waiting
    for a grade, or not due yet, is left out (never counted as 0)."""

    papers: int = 0
    passed: int = 0
    failed: int = 0
    zero: int = 0  # recorded missing by staff
    overdue: int = 0  # never submitted, deadline passed, not recorded
    excused: int = 0  # presenting, or excused by staff
    waiting: int = 0  # submitted, not graded yet
    #: What the graded critiques earned (a pass 1, less any late penalty).
    earned: float = 0.0
    #: Graded passes that lost points for being late.
    penalised: int = 0
    #: Whether a critique never submitted counts as 0 once overdue (``missing: zero``).
    missing_counts: bool = True

    @property
    def graded(self) -> int:
        return self.passed + self.failed + self.zero

    @property
    def missing(self) -> int:
        """Missing critiques that count as 0: recorded ones, and overdue ones under
        ``missing: zero``."""
        return self.zero + (self.overdue if self.missing_counts else 0)

    @property
    def counted(self) -> int:
        return self.passed + self.failed + self.missing

    @property
    def not_yet(self) -> int:
        """Neither graded nor excused: waiting for a grade, not due yet, or overdue."""
        return self.papers - self.excused - self.graded

    @property
    def not_due(self) -> int:
        return self.not_yet - self.waiting - self.overdue

    @property
    def points(self) -> float | None:
        """Out of 100 over what counts (None: nothing counts yet)."""
        return 100.0 * self.earned / self.counted if self.counted else None

    def summary(self) -> str:
        """What counts and what does not: "counted: 6 graded critiques and 1 missing past
        its deadline; 2 not yet graded"."""
        counted = []
        if self.passed + self.failed:
            counted.append(_plural(self.passed + self.failed, "graded critique"))
            if self.penalised:
                counted[-1] += f" ({self.penalised} late, with the late penalty)"
        if self.missing:
            counted.append(
                f"{self.missing} missing past {'its' if self.missing == 1 else 'their'} deadline"
            )
        text = "counted: " + (" and ".join(counted) if counted else "nothing yet")
        rest = []
        if self.waiting:
            rest.append(f"{self.waiting} not yet graded")
        if self.not_due:
            rest.append(f"{self.not_due} not due yet")
        if self.overdue and not self.missing_counts:
            rest.append(f"{self.overdue} missing, not counted")
        if self.excused:
            rest.append(f"{self.excused} excused")
        return text + ("; " + ", ".join(rest) if rest else "")


async def critique_tallies(
    session: AsyncSession, course: Course, now: datetime
) -> dict[int, Tally]:
    """Every student's critique tally at ``now`` (students with nothing counted
    included), under the course's critique rules."""
    rules = critique_rules(course)
    papers = await critique_papers(session, course.id)
    students = await course_students(session, course.id)
    crits = {
        (c.paper_id, c.person_id): c
        for c in await session.scalars(select(Critique).where(Critique.course_id == course.id))
    }
    marks = await marks_of(session, course.id)
    presenting = await presenters_of(session, course.id)
    overdue = {p.id: is_overdue(course, p, now) for p in papers}
    out = {}
    for s in students:
        states: list[str | tuple[str, float]] = []
        for p in papers:
            c = crits.get((p.id, s.id))
            state = standing(
                c, marks.get((p.id, s.id)), s.id in presenting.get(p.id, set()), overdue[p.id]
            )
            states.append((state, credit(course, p, c, rules)) if state == PASS and c else state)
        out[s.id] = tally(states, missing_counts=rules.missing == "zero")
    return out


def tally(states: Iterable[str | tuple[str, float]], *, missing_counts: bool = True) -> Tally:
    """A tally from one student's standings (see :func:`standing`), one per paper; a
    pass may come with what it earned (``(PASS, 0.5)``: a late pass at half)."""
    t = Tally(missing_counts=missing_counts)
    for item in states:
        state, earned = item if isinstance(item, tuple) else (item, 1.0)
        t.papers += 1
        if state == PASS:
            t.passed += 1
            t.earned += earned
            t.penalised += earned < 1.0
        elif state == FAIL:
            t.failed += 1
        elif state == ZERO:
            t.zero += 1
        elif state == OVERDUE:
            t.overdue += 1
        elif state == SUBMITTED:
            t.waiting += 1
        elif state in (EXCUSED, PRESENTING):
            t.excused += 1
    return t


def storage_path(data_dir: Path, course: Course, paper: Paper, person: Person) -> Path:
    return data_dir / "critiques" / course.key / f"{paper.number}-{person.id}.pdf"


#: The critique: one PDF of at most MAX_BYTES (commands/attachments.py reads it).
CRITIQUE_FILE = FileRule(
    noun="your critique",
    form="a PDF",
    one="one PDF",
    kinds=frozenset({"pdf"}),
    max_bytes=MAX_BYTES,
    wrong_kind="not a PDF",
    kind_hint="Export or print your critique to PDF and attach that.",
    size_hint="Make the PDF smaller.",
)


def _write(path: Path, data: bytes) -> None:
    """Write atomically: a reader never sees half a PDF, a resubmission replaces it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pdf.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def submit_critique(
    ctx: Context, paper: Paper, name: str, data: bytes, question: str, answer: str
) -> tuple[Critique, bool, bool]:
    """Store (or replace) the caller's critique; return it, whether it replaced one and
    whether it is late."""
    me = ctx.me()
    if me.role is not Role.STUDENT:
        raise Forbidden("Only students submit critiques.")
    due = deadline_of(ctx.course, paper)
    late = due is not None and ctx.now > due
    if late:
        assert due is not None
        rules = critique_rules(ctx.course)
        if not rules.accept_late:
            raise Conflict(
                f"Critiques for {paper_label(paper)} closed {fmt_instant(due, ctx.tz)}; late "
                "ones are not accepted in this course.",
                hint="Ask the instructor if something kept you from it.",
            )
        cutoff = rules.cutoff
        if cutoff is not None and ctx.now > due + cutoff:
            raise Conflict(
                f"Critiques for {paper_label(paper)} closed {fmt_instant(due, ctx.tz)}, and late "
                f"ones were accepted until {fmt_instant(due + cutoff, ctx.tz)}.",
                hint="Ask the instructor if something kept you from it.",
            )
    row = await ctx.session.scalar(
        select(Critique).where(Critique.paper_id == paper.id, Critique.person_id == me.id)
    )
    if row is not None and row.grade is not None:
        raise Conflict(
            f"Your critique of {paper_label(paper)} is already graded, so it can no longer be "
            "replaced.",
            hint="Ask the instructor or TA if something is wrong with it.",
        )
    path = storage_path(ctx.data_dir, ctx.course, paper, me)
    rel = path.relative_to(ctx.data_dir).as_posix()
    replaced = row is not None
    if row is None:
        row = Critique(course_id=ctx.course.id, paper_id=paper.id, person_id=me.id)
        ctx.session.add(row)
    row.submitted_at = ctx.now
    row.file = rel
    row.original_name = name[:255]
    row.size = len(data)
    row.question = question
    row.answer = answer
    await ctx.session.flush()
    _write(path, data)  # last: every check passed and the row is in place
    return row, replaced, late


def _clean(text: str, what: str) -> str:
    text = text.strip()
    if not text:
        raise InvalidInput(f"Your {what} is empty; write one.")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"Your {what} has {len(text)} characters; keep it under {MAX_TEXT}.")
    return text


def _state(course: Course, paper: Paper, c: Critique | None, now: datetime) -> str:
    tz = ZoneInfo(course.timezone)
    due = deadline_of(course, paper)
    if c is None:
        if due is None:
            return "missing (no class date yet)"
        if now <= due:
            return f"missing, due {fmt_instant(due, tz)} ({relative(due, now)})"
        return f"missing (was due {fmt_instant(due, tz)})"
    when = fmt_instant(c.submitted_at, tz)
    timing = "late" if is_late(course, paper, c) else "on time"
    return f"submitted {when} ({timing}){_grade_text(course, paper, c, ', ')}"


def _grade_text(course: Course, paper: Paper, c: Critique, sep: str) -> str:
    """`` · Pass`` (or ``, Pass (counts 0.5)`` for a late pass with a penalty)."""
    if not c.grade:
        return ""
    earned = credit(course, paper, c)
    counts = f" (counts {earned:g} with the late penalty)" if c.grade == PASS and earned < 1 else ""
    return f"{sep}{c.grade.capitalize()}{counts}"


def _short(instant: datetime, tz: ZoneInfo) -> str:
    local = instant.astimezone(tz)
    return f"{local:%b} {local.day} {fmt_time(local.time())} {local.tzname()}"


def _short_state(
    course: Course,
    paper: Paper,
    c: Critique | None,
    now: datetime,
    mark: CritiqueMark | None = None,
    presenting: bool = False,
) -> str:
    """One table cell: on time/late with when, the grade; missing (overdue: counted 0 or
    not, as the course's rules say), recorded missing (0), or excused (presenting, or
    with the staff's reason)."""
    state = standing(c, mark, presenting, is_overdue(course, paper, now))
    if state == ZERO and c is None:
        return "missing, recorded as 0"
    if state == EXCUSED and c is None:
        return f"excused ({mark.reason})" if mark is not None and mark.reason else "excused"
    if state == PRESENTING:
        return "excused (presenting)"
    if state == OVERDUE:
        if critique_rules(course).missing == "zero":
            return "missing (overdue), counts 0"
        return "missing (overdue), not counted"
    if c is None:
        return "missing"
    timing = "late" if is_late(course, paper, c) else "on time"
    grade = _grade_text(course, paper, c, " · ")
    return f"{timing}, {_short(c.submitted_at, ZoneInfo(course.timezone))}{grade}"


# ------------------------------------------------------------------------ deadline pings


@dataclass(frozen=True)
class _Ping:
    key: str
    at: datetime

    @property
    def closing(self) -> bool:
        return self.key.endswith(":closed")


def _ping_key(due: datetime, what: str) -> str:
    return f"critique:{due.astimezone(UTC).isoformat()}:{what}"


def _remind_label(spec: str, at: datetime, due: datetime) -> str:
    """A reminder's part of its key: ``remind-1d1800`` (a clock time, as days relative
    to the deadline's day) or ``remind-24h`` (a time before the deadline)."""
    if ":" in spec:
        days = (at.date() - due.date()).days
        return f"remind{days:+d}d{at:%H%M}"
    return f"remind-{spec}"


def deadline_pings(course: Course, due: datetime) -> list[_Ping]:
    """The private reminders (``course.reminders.critique``) and the one closing post of
    a critique deadline, keyed by its instant: every paper due then shares them, and a
    changed class date gives new keys, so the pings move with it."""
    due = due.astimezone(ZoneInfo(course.timezone))
    pings = []
    for spec in Syllabus.of(course).reminders.critique:
        at = reminder_instant(spec, due)
        pings.append(_Ping(_ping_key(due, _remind_label(spec, at, due)), at))
    pings.append(_Ping(_ping_key(due, "closed"), due))
    return pings


def critique_pings(course: Course, paper: Paper) -> list[_Ping]:
    """The pings of a paper's critique deadline (see :func:`deadline_pings`)."""
    due = deadline_of(course, paper)
    return [] if due is None else deadline_pings(course, due)


def _papers_text(papers: list[Paper]) -> str:
    names = [f"**{paper_label(p)}**" for p in papers]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _reminder(course: Course, papers: list[Paper], due: datetime, now: datetime) -> Reply:
    """The private reminder of what one student still owes at a deadline."""
    tz = ZoneInfo(course.timezone)
    which = "critique" if len(papers) == 1 else "critiques"
    how = (
        f"Submit it with `critique submit {papers[0].number}` and the PDF attached."
        if len(papers) == 1
        else "Submit each with `critique submit <paper>` and its PDF attached."
    )
    return Reply(
        title="Critique reminder",
        text=f"⏰ Your {which} of {_papers_text(papers)} "
        f"{'is' if len(papers) == 1 else 'are'} due {fmt_instant(due, tz)} "
        f"({relative(due, now)}): a PDF plus one discussion question and its answer.\n{how}",
        tone=Tone.WARNING,
    )


def _late_note(rules: CritiqueRules, due: datetime, tz: ZoneInfo) -> str:
    """What the closing post says about late critiques."""
    if not rules.accept_late:
        return " Late critiques are not accepted."
    text = " Late critiques are still accepted"
    if rules.cutoff is not None:
        text += f" until {fmt_instant(due + rules.cutoff, tz)}"
    text += " and marked late"
    cuts = []
    if rules.late_penalty:
        cuts.append(f"{rules.late_penalty:.0%}")
    if rules.late_penalty_per_day:
        cuts.append(f"{rules.late_penalty_per_day:.0%} a day")
    if cuts:
        text += ", losing " + " + ".join(cuts) + " of their points"
    return text + "."


async def _owing(
    session: AsyncSession, course: Course, paper: Paper, students: list[Person]
) -> tuple[list[Person], dict[int, Critique]]:
    """The students who owe a critique of ``paper`` (presenters, when the rules excuse
    them, and students staff excused or marked owe nothing), and the paper's critiques."""
    presenting = (await presenters_of(session, course.id)).get(paper.id, set())
    marked = await marks_of(session, course.id, paper.id)
    owing = [s for s in students if s.id not in presenting and (paper.id, s.id) not in marked]
    return owing, await critiques_of_paper(session, paper.id)


async def due_critique_posts(
    session: AsyncSession, now: datetime, *, course_ids: set[int] | None = None
) -> list[tuple[int, Outgoing]]:
    """What critique deadlines post now, for every course: a private reminder to each
    student who still owes a critique due then (one message, whatever the number of
    papers), and at the deadline one closing post in announcements. Each is recorded in
    ``notifications`` (in the transaction that queues it in the outbox) so it goes out
    once; one missed while the bot was down goes out if at most GRACE late (a reminder
    only while the deadline is still ahead)."""
    out: list[tuple[int, Outgoing]] = []
    cq = select(Course)
    if course_ids is not None:
        cq = cq.where(Course.id.in_(course_ids))
    for course in list(await session.scalars(cq)):
        by_due: dict[datetime, list[Paper]] = {}
        for paper in await critique_papers(session, course.id):
            due = deadline_of(course, paper)
            if due is not None:
                by_due.setdefault(due, []).append(paper)
        due_now: list[tuple[datetime, _Ping]] = []
        missed: list[_Ping] = []
        for due in by_due:
            for ping in deadline_pings(course, due):
                end = ping.at + GRACE if ping.closing else min(ping.at + GRACE, due)
                if ping.at <= now < end:
                    due_now.append((due, ping))
                elif end <= now < end + MISSED_LOOKBACK:
                    missed.append(ping)
        if not due_now and not missed:
            continue
        sent = set(
            await session.scalars(
                select(Notification.key).where(
                    Notification.course_id == course.id,
                    Notification.key.in_([p.key for _, p in due_now] + [p.key for p in missed]),
                )
            )
        )
        for ping in missed:  # never sent and now too late: say so once, then forget it
            if ping.key not in sent:
                log.warning(
                    "critique ping %s (at %s) was missed while the bot was down; skipped",
                    ping.key,
                    ping.at.isoformat(),
                )
                session.add(Notification(course_id=course.id, key=ping.key, sent_at=now))
                sent.add(ping.key)
        students: list[Person] | None = None
        tz = ZoneInfo(course.timezone)
        for due, ping in due_now:
            if ping.key in sent:
                continue
            session.add(Notification(course_id=course.id, key=ping.key, sent_at=now))
            sent.add(ping.key)
            if students is None:
                students = await course_students(session, course.id)
            papers = by_due[due]
            owed: dict[int, list[Paper]] = {}  # student -> the papers they still owe
            counts = []
            for paper in papers:
                owing, done = await _owing(session, course, paper, students)
                for s in owing:
                    if s.id not in done:
                        owed.setdefault(s.id, []).append(paper)
                on_time = sum(1 for c in done.values() if c.submitted_at <= due)
                counts.append((paper, on_time, len(owing)))
            if ping.closing:
                if len(counts) == 1:
                    _, on_time, n = counts[0]
                    tally_text = f"{on_time} of {n} students submitted on time"
                else:
                    tally_text = "; ".join(
                        f"#{p.number}: {on_time} of {n} on time" for p, on_time, n in counts
                    )
                text = (
                    f"🔒 Critiques for {_papers_text(papers)} are closed: {tally_text}."
                    + _late_note(critique_rules(course), due, tz)
                )
                channel = course.channels.get("announcements", "announcements")
                out.append((course.id, Outgoing(Reply(text=text), channel=channel)))
            else:
                out += [
                    (course.id, Outgoing(_reminder(course, mine, due, now), person_id=sid))
                    for sid, mine in owed.items()
                ]
    await session.flush()
    return out


# ----------------------------------------------------------------------------- commands

PaperId = Annotated[int, Complete("paper:critique")]


class SubmitOptions(BaseModel):
    paper: PaperId = Field(description="the paper id")
    question: Annotated[str, LongText()] = Field(description="your discussion question")
    answer: Annotated[str, LongText()] = Field(description="your answer to the question")


@registry.command(
    "critique submit",
    "Submit your critique (PDF) with a discussion question and its answer",
    ephemeral=True,
    topic="critique",
    form=("question", "answer"),
    attachment="your critique (PDF)",
    examples=(
        'critique submit 5 "Why two pathways?" "Motion needs a fast rate, semantics do not."',
    ),
)
async def critique_submit(ctx: Context, opts: SubmitOptions) -> Reply:
    me = ctx.me()
    if me.role is not Role.STUDENT:
        raise Forbidden("Only students submit critiques.", hint="Staff use `critique list`.")
    paper = await critique_paper(ctx.session, ctx.course.id, opts.paper)
    question = _clean(opts.question, "question")
    answer = _clean(opts.answer, "answer")
    got = await read_attachment(ctx.request, CRITIQUE_FILE)
    assert got is not None  # required
    name, data = got.name, got.data
    _, replaced, late = await submit_critique(ctx, paper, name, data, question, answer)
    due = deadline_of(ctx.course, paper)
    verb = "replaced" if replaced else "received"
    text = f"Your critique of {paper_label(paper)} was {verb} ({len(data) // 1024 + 1} KB)."
    if late and due is not None:
        text += f" It is late: the deadline was {fmt_instant(due, ctx.tz)}."
        tone = Tone.WARNING
    else:
        if due is not None:
            text += f" You can replace it until {fmt_instant(due, ctx.tz)}."
        tone = Tone.SUCCESS
    return Reply(text=text, tone=tone)


@registry.command(
    "critique status",
    "Your critiques: submitted, missing, and their grades",
    ephemeral=True,
    topic="critique",
    reads=True,
)
async def critique_status(ctx: Context, _: BaseModel) -> Reply:
    me = ctx.me()
    if me.role is not Role.STUDENT:
        raise Forbidden(
            "Only students have critiques.", hint="`critique list <paper>` shows a paper's."
        )
    papers = await critique_papers(ctx.session, ctx.course.id)
    mine = {
        c.paper_id: c
        for c in await ctx.session.scalars(select(Critique).where(Critique.person_id == me.id))
    }
    marks = await marks_of(ctx.session, ctx.course.id)
    presenting = await presenters_of(ctx.session, ctx.course.id)
    rules = critique_rules(ctx.course)
    rows = []
    states: list[str | tuple[str, float]] = []
    for p in papers:
        due = deadline_of(ctx.course, p)
        mark = marks.get((p.id, me.id))
        on_stage = me.id in presenting.get(p.id, set())
        c = mine.get(p.id)
        state = standing(c, mark, on_stage, is_overdue(ctx.course, p, ctx.now))
        states.append((state, credit(ctx.course, p, c, rules)) if state == PASS and c else state)
        rows.append(
            [
                f"#{p.number} {p.title}",
                _short(due, ctx.tz) if due else "no date yet",
                _short_state(ctx.course, p, c, ctx.now, mark, on_stage),
            ]
        )
    t = tally(states, missing_counts=rules.missing == "zero")
    passed = sum(1 for c in mine.values() if c.grade == "pass")
    owed = len(papers) - t.excused
    note = f" (excused from {t.excused})" if t.excused else ""
    return Reply(
        title="Your critiques",
        text=f"{len(mine)} of {owed} submitted{note}; {passed} passed so far.\n"
        f"Your grade so far: {t.summary()}.\n{rules_text(rules)}",
        tables=[Table(["Paper", "Due", "Status"], rows)],
    )


class PaperOptions(BaseModel):
    paper: PaperId = Field(description="the paper id")


@registry.command(
    "critique list",
    "Who submitted a paper's critique (when, late, grade) and who is missing",
    access=Access.STAFF,
    ephemeral=True,
    topic="critique",
    examples=("critique list 5",),
    reads=True,
)
async def critique_list(ctx: Context, opts: PaperOptions) -> Reply:
    paper = await critique_paper(ctx.session, ctx.course.id, opts.paper)
    students = await course_students(ctx.session, ctx.course.id)
    done = await critiques_of_paper(ctx.session, paper.id)
    rows = []
    for s in students:
        c = done.get(s.id)
        if c is None:
            continue
        rows.append(
            [
                s.name,
                fmt_instant(c.submitted_at, ctx.tz),
                "late" if is_late(ctx.course, paper, c) else "on time",
                c.grade.capitalize() if c.grade else "—",
            ]
        )
    marks = await marks_of(ctx.session, ctx.course.id, paper.id)
    on_stage = (await presenters_of(ctx.session, ctx.course.id)).get(paper.id, set())
    missing, zero, excused = [], [], []
    for s in students:
        if s.id in done:
            continue
        mark = marks.get((paper.id, s.id))
        state = standing(None, mark, s.id in on_stage)
        if state == ZERO:
            zero.append(s.name)
        elif state == EXCUSED:
            why = f": {mark.reason}" if mark is not None and mark.reason else ""
            excused.append(f"{s.name} (excused{why})")
        elif state == PRESENTING:
            excused.append(f"{s.name} (presenting)")
        else:
            missing.append(s.name)
    owing = len(students) - len(excused)
    due = deadline_of(ctx.course, paper)
    when = f" Due {fmt_instant(due, ctx.tz)}." if due else ""
    title = "Missing"
    if is_overdue(ctx.course, paper, ctx.now):
        counted = critique_rules(ctx.course).missing == "zero"
        title += " (overdue: counted 0)" if counted else " (overdue: not counted)"
    sections = [Section(title, ", ".join(missing) or "nobody")]
    if zero:
        sections.append(Section("Recorded missing (0)", ", ".join(zero)))
    if excused:
        sections.append(Section("Excused", ", ".join(excused)))
    return Reply(
        title=f"Critiques: {paper_label(paper)}",
        text=f"{len(rows)} of {owing} students submitted.{when}",
        tables=[Table(["Student", "Submitted", "Timing", "Grade"], rows)] if rows else [],
        sections=sections,
    )


class GradeOptions(BaseModel):
    paper: PaperId = Field(description="the paper id")
    grade: Grade = Field(
        description="pass or fail (a submitted critique); missing (counted 0) or excused "
        "(not counted) for one never submitted; clear undoes either"
    )
    students: list[str] = Field(
        min_length=1, description="the students (email, onyen or name), one or more"
    )
    reason: Reason = None


def _was(c: Critique | None, mark: CritiqueMark | None) -> str | None:
    """The grade or mark before a change (for the audit log)."""
    if c is not None and c.grade:
        return c.grade
    return mark.mark if mark is not None else None


async def _set_grades(
    ctx: Context, paper: Paper, people: list[Person], grade: str, reason: str | None = None
) -> None:
    """Grade the people's critiques of ``paper`` (pass/fail), record a critique never
    submitted as missing or excused, or clear either; each change is an audit entry.
    A pass or fail replaces a mark: the graded submission wins."""
    done = await critiques_of_paper(ctx.session, paper.id)
    marks = await marks_of(ctx.session, ctx.course.id, paper.id)
    me = ctx.me()
    for p in people:
        c = done.get(p.id)
        mark = marks.get((paper.id, p.id))
        before = _was(c, mark)
        after: str | None = grade
        if grade in ("pass", "fail"):
            assert c is not None
            c.grade, c.graded_at, c.graded_by_id = grade, ctx.now, me.id
            if mark is not None:
                await ctx.session.delete(mark)
        elif grade in MARKS:
            if mark is None:
                mark = CritiqueMark(course_id=ctx.course.id, paper_id=paper.id, person_id=p.id)
                ctx.session.add(mark)
            mark.mark, mark.set_by_id, mark.set_at = grade, me.id, ctx.now
            mark.reason = (reason or "").strip() or None
        else:  # clear
            after = None
            if mark is not None:
                await ctx.session.delete(mark)
            if c is not None:
                c.grade, c.graded_at, c.graded_by_id = None, None, None
        record(
            ctx,
            "critique.grade",
            subject=p,
            summary=f"critique of #{paper.number}: {after or 'not graded'}",
            before={"paper": paper.number, "grade": before},
            after={"paper": paper.number, "grade": after},
            reason=reason,
        )
    await ctx.session.flush()


@registry.command(
    "critique grade",
    "Grade critiques of a paper (pass, fail), or record one never submitted (missing, excused)",
    access=Access.STAFF,
    ephemeral=True,
    topic="critique",
    examples=(
        "critique grade 5 pass achen bob.okafor@unc.edu",
        "critique grade 5 fail carol",
        'critique grade 5 pass carol reason="the file was unreadable; she resent it"',
        "critique grade 6 missing deepak",
        'critique grade 6 excused emily reason="at a conference"',
        "critique grade 6 clear deepak",
    ),
)
async def critique_grade(ctx: Context, opts: GradeOptions) -> Reply:
    paper = await critique_paper(ctx.session, ctx.course.id, opts.paper)
    people: list[Person] = []
    for who in opts.students:
        p = await find_person(ctx.session, ctx.course.id, who)
        if p.role is not Role.STUDENT:
            withdrew = p.role is Role.WITHDRAWN
            what = (
                "withdrew from the course, so is not enrolled" if withdrew else "is not a student"
            )
            done = "graded" if opts.grade in ("pass", "fail") else "recorded"
            raise InvalidInput(f"{p.name} {what}; nothing was {done}.")
        if p not in people:
            people.append(p)
    done = await critiques_of_paper(ctx.session, paper.id)
    if opts.grade in ("pass", "fail"):
        missing = [p.name for p in people if p.id not in done]
        if missing:
            raise Conflict(
                f"No critique of {paper_label(paper)} from {', '.join(missing)}; nothing was "
                "graded.",
                hint=f"`critique list {paper.number}` shows who submitted; `critique grade "
                f"{paper.number} missing <student>` records one never submitted as 0.",
            )
    elif opts.grade in MARKS:
        submitted = [p.name for p in people if p.id in done]
        if submitted:
            raise Conflict(
                f"{', '.join(submitted)} submitted a critique of {paper_label(paper)}; nothing "
                "was recorded.",
                hint=f"Grade it: `critique grade {paper.number} pass|fail <student>`.",
            )
        on_stage = (await presenters_of(ctx.session, ctx.course.id)).get(paper.id, set())
        presenting = [p.name for p in people if p.id in on_stage]
        if presenting:
            raise Conflict(
                f"{', '.join(presenting)} present{'s' * (len(presenting) == 1)} "
                f"{paper_label(paper)}, so they are excused from critiquing it; nothing was "
                "recorded.",
            )
        due = deadline_of(ctx.course, paper)
        if opts.grade == "missing" and (due is None or ctx.now <= due):
            when = f"until {fmt_instant(due, ctx.tz)}" if due else "(it has no class date yet)"
            raise Conflict(
                f"Critiques of {paper_label(paper)} are not due {when}; nothing was recorded."
            )
    await _set_grades(ctx, paper, people, opts.grade, opts.reason)
    names = ", ".join(p.name for p in people)
    said = {
        "pass": "Graded Pass",
        "fail": "Graded Fail",
        "missing": "Recorded as missing (0)",
        "excused": "Excused",
        "clear": "Cleared the grade or mark",
    }[opts.grade]
    return Reply(text=f"{said} for {paper_label(paper)}: {names}.", tone=Tone.SUCCESS)


class GradeAllOptions(BaseModel):
    paper: PaperId = Field(description="the paper id")
    grade: Literal["pass", "fail", "missing"] = Field(
        description="pass or fail (every on-time critique not graded yet), or missing (every "
        "student who owes one and sent none)"
    )
    reason: Reason = None


@registry.command(
    "critique grade-all",
    "Grade every on-time, ungraded critique of a paper, or record every absent one as missing",
    access=Access.STAFF,
    ephemeral=True,
    topic="critique",
    examples=("critique grade-all 5 pass", "critique grade-all 5 missing"),
)
async def critique_grade_all(ctx: Context, opts: GradeAllOptions) -> Reply:
    paper = await critique_paper(ctx.session, ctx.course.id, opts.paper)
    done = await critiques_of_paper(ctx.session, paper.id)
    if opts.grade == "missing":
        due = deadline_of(ctx.course, paper)
        if due is None or ctx.now <= due:
            raise Conflict(
                f"Critiques of {paper_label(paper)} are not due yet; nothing was recorded."
            )
        marks = await marks_of(ctx.session, ctx.course.id, paper.id)
        on_stage = (await presenters_of(ctx.session, ctx.course.id)).get(paper.id, set())
        absent = [
            s
            for s in await course_students(ctx.session, ctx.course.id)
            if s.id not in done and s.id not in on_stage and (paper.id, s.id) not in marks
        ]
        if not absent:
            raise Conflict(
                f"Everyone who owes a critique of {paper_label(paper)} sent one or is marked."
            )
        await _set_grades(ctx, paper, absent, "missing", opts.reason)
        return Reply(
            text=f"Recorded {plural(len(absent), 'missing critique')} of {paper_label(paper)} "
            "as 0: " + ", ".join(s.name for s in absent) + ".",
            tone=Tone.SUCCESS,
        )
    todo = [c for c in done.values() if c.grade is None and not is_late(ctx.course, paper, c)]
    if not todo:
        raise Conflict(
            f"No on-time critique of {paper_label(paper)} is waiting for a grade.",
            hint=f"Grade late ones one by one: `critique grade {paper.number} pass <student>`.",
        )
    people = [await ctx.session.get(Person, c.person_id) for c in todo]
    await _set_grades(ctx, paper, [p for p in people if p is not None], opts.grade, opts.reason)
    left = sum(1 for c in done.values() if c.grade is None)
    note = (
        f" {plural(left, 'late critique')} still {'needs' if left == 1 else 'need'} a grade."
        if left
        else ""
    )
    return Reply(
        text=f"Graded {plural(len(todo), 'on-time critique')} of {paper_label(paper)} "
        f"{opts.grade.capitalize()}.{note}",
        tone=Tone.SUCCESS,
    )


class ExcuseOptions(BaseModel):
    student: str = Field(description="email, onyen or name")
    paper: PaperId = Field(description="the paper id")
    reason: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description="why (kept in the audit log and shown to the student)"
    )


@registry.command(
    "critique excuse",
    "Excuse a student from one paper's critique, with the reason (not reminded, not counted)",
    access=Access.STAFF,
    ephemeral=True,
    topic="critique",
    examples=(
        "critique excuse emily 6 at a conference that week",
        'critique excuse bob.okafor@unc.edu 13 "medical leave"',
    ),
)
async def critique_excuse(ctx: Context, opts: ExcuseOptions) -> Reply:
    reason = " ".join(opts.reason.split())
    if not reason:
        raise InvalidInput("Give the reason (it is kept in the audit log).")
    student = await find_person(ctx.session, ctx.course.id, opts.student)
    if student.role is not Role.STUDENT:
        what = "withdrew from the course" if student.role is Role.WITHDRAWN else "is not a student"
        raise InvalidInput(
            f"{student.name} {what}, so is not enrolled; nothing was excused.",
        )
    paper = await critique_paper(ctx.session, ctx.course.id, opts.paper)
    c = (await critiques_of_paper(ctx.session, paper.id)).get(student.id)
    if c is not None:
        graded = f" (graded {c.grade.capitalize()})" if c.grade else ""
        raise Conflict(
            f"{student.name} submitted a critique of {paper_label(paper)}{graded}; nothing was "
            "excused.",
            hint=f"Grade it: `critique grade {paper.number} pass|fail {student.onyen or student.email}`.",
        )
    if student.id in (await presenters_of(ctx.session, ctx.course.id)).get(paper.id, set()):
        raise Conflict(
            f"{student.name} presents {paper_label(paper)}, so is excused from critiquing it "
            "already; nothing changed."
        )
    mark = (await marks_of(ctx.session, ctx.course.id, paper.id)).get((paper.id, student.id))
    if mark is not None and mark.mark == "excused" and mark.reason == reason:
        return Reply(
            f"{student.name} is already excused from {paper_label(paper)} ({reason}).",
            tone=Tone.SUCCESS,
        )
    await _set_grades(ctx, paper, [student], "excused", reason)
    return Reply(
        f"Excused {student.name} from the critique of {paper_label(paper)} ({reason}): no "
        "reminder, and it does not count in the grade. "
        f"`critique grade {paper.number} clear {student.onyen or student.email}` undoes it.",
        tone=Tone.SUCCESS,
    )


def last_first(name: str) -> str:
    first, _, last = name.strip().rpartition(" ")
    return f"{last}, {first}" if first else last


def canvas_name(person: Person) -> str:
    """``Family, Given`` as Canvas shows a student: the given and family names when the
    roster has them, else the display name's last word first."""
    if person.family_name and person.given_name:
        return f"{person.family_name}, {person.given_name}"
    if person.family_name:
        given = person.name.removesuffix(person.family_name).strip()
        return f"{person.family_name}, {given}" if given else person.family_name
    return last_first(person.name)


def name_key(person: Person) -> tuple[str, str]:
    """Sort by family name, then given name (casefolded)."""
    family, _, given = canvas_name(person).partition(", ")
    return (family.casefold(), given.casefold())


def canvas_column(paper: Paper) -> str:
    return f"Critique #{paper.number}: {paper.title}"


@registry.command(
    "critique export",
    "Critique grades as a CSV for Canvas's gradebook import",
    access=Access.STAFF,
    ephemeral=True,
    topic="critique",
    reads=True,
)
async def critique_export(ctx: Context, _: BaseModel) -> Reply:
    papers = await critique_papers(ctx.session, ctx.course.id)
    students = sorted(await course_students(ctx.session, ctx.course.id), key=name_key)
    crits = {
        (c.person_id, c.paper_id): c
        for c in await ctx.session.scalars(
            select(Critique).where(Critique.course_id == ctx.course.id)
        )
    }
    marks = await marks_of(ctx.session, ctx.course.id)
    presenting = await presenters_of(ctx.session, ctx.course.id)
    rules = critique_rules(ctx.course)
    overdue = {p.id: is_overdue(ctx.course, p, ctx.now) for p in papers}
    # Canvas's gradebook import: a number, or EX for excused (not counted); blank: none.
    value = {FAIL: "0", ZERO: "0", EXCUSED: "EX", PRESENTING: "EX"}
    if rules.missing == "zero":
        value[OVERDUE] = "0"
    graded = overdue_zero = excused = 0
    rows = []
    for s in students:
        cells = []
        for p in papers:
            c = crits.get((s.id, p.id))
            state = standing(
                c, marks.get((p.id, s.id)), s.id in presenting.get(p.id, set()), overdue[p.id]
            )
            graded += state in (PASS, FAIL, ZERO)
            overdue_zero += state == OVERDUE and OVERDUE in value
            excused += state in (EXCUSED, PRESENTING)
            if state == PASS and c is not None:
                cells.append(f"{credit(ctx.course, p, c, rules):g}")
            else:
                cells.append(value.get(state, ""))
        rows.append((canvas_name(s), s, cells))
    data = canvas_csv([(canvas_column(p), "1") for p in papers], rows)
    missing = "0 = fail or missing" if rules.missing == "zero" else "0 = fail or recorded missing"
    late = ", less the late penalty" if rules.late_penalty or rules.late_penalty_per_day else ""
    return Reply(
        text=f"{len(students)} students × {len(papers)} critiques; {graded} graded, "
        f"{overdue_zero} missing past the deadline, {excused} excused (1 = pass{late}, "
        f"{missing}, EX = excused, blank = not graded or not due). "
        f"Import it in Canvas: Grades → Import. {canvas_matching(students)}",
        files=[FileOut(f"{ctx.course.key}-critiques.csv", data, "text/csv")],
    )


class FileOptions(BaseModel):
    paper: PaperId = Field(description="the paper id")
    student: str | None = Field(None, description="whose critique (staff only; default: yours)")


@registry.command(
    "critique file",
    "A critique's PDF, question and answer (yours, or any student's for staff)",
    ephemeral=True,
    topic="critique",
    examples=("critique file 5", "critique file 5 achen"),
    reads=True,
)
async def critique_file(ctx: Context, opts: FileOptions) -> Reply:
    me = ctx.me()
    paper = await critique_paper(ctx.session, ctx.course.id, opts.paper)
    if opts.student is None:
        whose = me
    elif me.is_staff:
        whose = await find_person(ctx.session, ctx.course.id, opts.student)
    else:
        # A student may name only themselves; the roster is not searched for them
        # (an ambiguous name would list other people).
        mine = {me.email, me.name, me.onyen or "", me.sis_id or "", ctx.caller.user_id}
        if opts.student.strip().lstrip("@").lower() not in {m.lower() for m in mine if m}:
            raise Forbidden(
                "You can fetch only your own critiques.",
                hint=f"`critique file {opts.paper}` fetches yours.",
            )
        whose = me
    c = await ctx.session.scalar(
        select(Critique).where(Critique.paper_id == paper.id, Critique.person_id == whose.id)
    )
    if c is None:
        who = "You have" if whose.id == me.id else f"{whose.name} has"
        raise NotFound(f"{who} no critique of {paper_label(paper)}.")
    path = ctx.data_dir / c.file
    try:
        data = path.read_bytes()
    except OSError:
        raise NotFound(
            f"The file of this critique is missing from the server ({c.file})."
        ) from None
    return Reply(
        title=f"{whose.name}: critique of {paper_label(paper)}",
        text=_state(ctx.course, paper, c, ctx.now),
        sections=[Section("Question", c.question), Section("Answer", c.answer)],
        files=[FileOut(c.original_name or path.name, data, "application/pdf", "critique")],
    )


# ------------------------------------------------------------------ due work


async def next_critique_ping(session: AsyncSession, now: datetime, scope: Scope) -> datetime | None:
    """The next reminder or "closed" post of any critique deadline."""
    cq = select(Course)
    if scope.course_ids is not None:
        cq = cq.where(Course.id.in_(scope.course_ids))
    best = None
    for course in list(await session.scalars(cq)):
        for paper in await critique_papers(session, course.id):
            if paper.class_date is None:
                continue
            best = earliest(best, *(p.at for p in critique_pings(course, paper) if p.at > now))
    return best


due_registry.register_by_course("critiques", due_critique_posts, next_critique_ping)
