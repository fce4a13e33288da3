"""Critiques: a PDF with one discussion question and its answer, due at the course's
critique deadline (1 PM) on the paper's class day; reminders to students still missing
one; pass/fail grading by staff and a Canvas gradebook export.

Only the owner and staff ever see a critique, its file or its grade.
"""

from __future__ import annotations

import csv
import io
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

from commands.attachments import expect_kind, read_bytes
from commands.audit import Reason, record
from commands.context import Attachment, Context
from commands.due import Scope, due_registry, earliest
from commands.errors import Conflict, Forbidden, InvalidInput, NotFound
from commands.outbox import Outgoing
from commands.people import find_person
from commands.registry import Access, Complete, LongText, registry
from commands.replies import FileOut, Reply, Section, Table, Tone
from commands.timefmt import fmt_instant, fmt_time, relative
from db.models import Assignment, Course, Critique, CritiqueMark, Notification, Paper, Person, Role

#: The largest critique PDF accepted.
MAX_BYTES = 20 * 1024 * 1024
#: A critique submitted after the deadline is still accepted, and marked late. With
#: False it is refused. (A module constant: the course file has no setting for it yet.)
ACCEPT_LATE = True
#: Private reminders to students still missing a critique: (days relative to the class
#: day, local time). Default: 6 PM the evening before, and noon on the day.
REMINDERS: tuple[tuple[int, time], ...] = ((-1, time(18, 0)), (0, time(12, 0)))
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
    from critiquing it (never pinged, never missing)."""
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
PASS, FAIL, ZERO, EXCUSED, PRESENTING, SUBMITTED, NOT_YET = (
    "pass",
    "fail",
    "missing",
    "excused",
    "presenting",
    "submitted",
    "not yet",
)


def standing(c: Critique | None, mark: CritiqueMark | None, presenting: bool) -> str:
    """What one critique counts as: a grade (pass/fail) wins; then the staff's mark
    (missing = 0, excused); then presenting the paper (excused); else submitted and
    waiting for a grade, or not yet."""
    if c is not None and c.grade in (PASS, FAIL):
        return str(c.grade)
    if mark is not None:
        return ZERO if mark.mark == "missing" else EXCUSED
    if presenting:
        return PRESENTING
    return SUBMITTED if c is not None else NOT_YET


@dataclass
class Tally:
    """A student's critiques: the component is computed over the graded ones only."""

    papers: int = 0
    passed: int = 0
    failed: int = 0
    zero: int = 0  # recorded missing
    excused: int = 0  # presenting, or excused by staff

    @property
    def graded(self) -> int:
        return self.passed + self.failed + self.zero

    @property
    def not_yet(self) -> int:
        return self.papers - self.excused - self.graded

    @property
    def points(self) -> float | None:
        """Out of 100 over the graded critiques (None: nothing graded yet)."""
        return 100.0 * self.passed / self.graded if self.graded else None

    def summary(self) -> str:
        text = f"{self.graded} of {self.papers - self.excused} graded, {self.not_yet} not yet"
        if self.zero:
            text += f"; {self.zero} missing (0)"
        if self.excused:
            text += f"; {self.excused} excused"
        return text


async def critique_tallies(session: AsyncSession, course: Course) -> dict[int, Tally]:
    """Every student's critique tally (students with nothing graded included)."""
    papers = await critique_papers(session, course.id)
    students = await course_students(session, course.id)
    crits = {
        (c.paper_id, c.person_id): c
        for c in await session.scalars(select(Critique).where(Critique.course_id == course.id))
    }
    marks = await marks_of(session, course.id)
    presenting = await presenters_of(session, course.id)
    return {
        s.id: tally(
            standing(
                crits.get((p.id, s.id)),
                marks.get((p.id, s.id)),
                s.id in presenting.get(p.id, set()),
            )
            for p in papers
        )
        for s in students
    }


def tally(states: Iterable[str]) -> Tally:
    """A tally from one student's standings (see :func:`standing`), one per paper."""
    t = Tally()
    for state in states:
        t.papers += 1
        if state == PASS:
            t.passed += 1
        elif state == FAIL:
            t.failed += 1
        elif state == ZERO:
            t.zero += 1
        elif state in (EXCUSED, PRESENTING):
            t.excused += 1
    return t


def storage_path(data_dir: Path, course: Course, paper: Paper, person: Person) -> Path:
    return data_dir / "critiques" / course.key / f"{paper.number}-{person.id}.pdf"


async def read_attachment(attachments: tuple[Attachment, ...]) -> tuple[str, bytes]:
    """The one attached file's name and bytes, checked to be a PDF of at most MAX_BYTES."""
    if not attachments:
        raise InvalidInput(
            "Attach your critique as a PDF.",
            hint="In the terminal type `:attach FILE` first; on Discord use the file option; "
            "on Slack share the PDF with the command.",
        )
    if len(attachments) > 1:
        raise InvalidInput("Attach one PDF only: your critique.")
    att = attachments[0]
    data = await read_bytes(att, MAX_BYTES, hint="Make the PDF smaller.")
    expect_kind(
        att.name,
        data,
        {"pdf"},
        "not a PDF",
        hint="Export or print your critique to PDF and attach that.",
    )
    return att.name, data


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
    if late and not ACCEPT_LATE:
        raise Conflict(f"Critiques for {paper_label(paper)} closed {fmt_instant(due, ctx.tz)}.")  # type: ignore[arg-type]
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
    grade = f", {c.grade.capitalize()}" if c.grade else ""
    return f"submitted {when} ({timing}){grade}"


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
    """One table cell: on time/late with when, the grade; missing (overdue), recorded
    missing (0), or excused (presenting)."""
    state = standing(c, mark, presenting)
    if state == ZERO and c is None:
        return "missing, recorded as 0"
    if state == EXCUSED and c is None:
        return "excused"
    if state == PRESENTING:
        return "excused (presenting)"
    if c is None:
        due = deadline_of(course, paper)
        return "missing (overdue)" if due is not None and now > due else "missing"
    timing = "late" if is_late(course, paper, c) else "on time"
    grade = f" · {c.grade.capitalize()}" if c.grade else ""
    return f"{timing}, {_short(c.submitted_at, ZoneInfo(course.timezone))}{grade}"


# ------------------------------------------------------------------------ deadline pings


@dataclass(frozen=True)
class _Ping:
    key: str
    at: datetime


def _ping_key(paper: Paper, due: datetime, what: str) -> str:
    return f"critique:{paper.id}:{due.astimezone(UTC).isoformat()}:{what}"


def critique_pings(course: Course, paper: Paper) -> list[_Ping]:
    """The reminders and the closing post of a paper, keyed by its deadline instant (a
    changed class date gives new keys, so the pings move with it)."""
    due = deadline_of(course, paper)
    if due is None:
        return []
    tz = ZoneInfo(course.timezone)
    assert paper.class_date is not None
    pings = [
        _Ping(
            _ping_key(paper, due, f"remind{days:+d}d{t:%H%M}"),
            datetime.combine(paper.class_date + timedelta(days=days), t, tzinfo=tz),
        )
        for days, t in REMINDERS
    ]
    pings.append(_Ping(_ping_key(paper, due, "closed"), due))
    return pings


def _reminder(course: Course, paper: Paper, due: datetime, now: datetime) -> Reply:
    tz = ZoneInfo(course.timezone)
    return Reply(
        title="Critique reminder",
        text=f"⏰ Your critique of **{paper_label(paper)}** is due {fmt_instant(due, tz)} "
        f"({relative(due, now)}): a PDF plus one discussion question and its answer.\n"
        f"Submit it with `critique submit {paper.number}` and the PDF attached.",
        tone=Tone.WARNING,
    )


async def due_critique_posts(
    session: AsyncSession, now: datetime, *, course_ids: set[int] | None = None
) -> list[tuple[int, Outgoing]]:
    """Critique reminders (a DM to each student still missing one) and the "closed"
    post in announcements that are due now, for every course. Each is recorded in
    ``notifications`` so it goes out once; one missed while the bot was down goes out
    if at most GRACE late (a reminder only while the deadline is still ahead)."""
    out: list[tuple[int, Outgoing]] = []
    cq = select(Course)
    if course_ids is not None:
        cq = cq.where(Course.id.in_(course_ids))
    for course in list(await session.scalars(cq)):
        papers = [p for p in await critique_papers(session, course.id) if p.class_date]
        due_now: list[tuple[Paper, _Ping]] = []
        missed: list[_Ping] = []
        for paper in papers:
            due = deadline_of(course, paper)
            assert due is not None
            for ping in critique_pings(course, paper):
                end = ping.at + GRACE
                if not ping.key.endswith(":closed"):
                    end = min(end, due)
                if ping.at <= now < end:
                    due_now.append((paper, ping))
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
        if not due_now:
            continue
        students: list[Person] | None = None
        presenting: dict[int, set[int]] | None = None
        for paper, ping in due_now:
            if ping.key in sent:
                continue
            session.add(Notification(course_id=course.id, key=ping.key, sent_at=now))
            sent.add(ping.key)
            due = deadline_of(course, paper)
            assert due is not None
            students = (
                students if students is not None else await course_students(session, course.id)
            )
            presenting = (
                presenting if presenting is not None else await presenters_of(session, course.id)
            )
            marked = await marks_of(session, course.id, paper.id)
            # Presenters of the paper and students staff excused or marked owe nothing.
            owing = [
                s
                for s in students
                if s.id not in presenting.get(paper.id, set()) and (paper.id, s.id) not in marked
            ]
            done = await critiques_of_paper(session, paper.id)
            if ping.key.endswith(":closed"):
                on_time = sum(1 for c in done.values() if c.submitted_at <= due)
                late = " Late critiques are still accepted and marked late." if ACCEPT_LATE else ""
                text = (
                    f"🔒 Critiques for **{paper_label(paper)}** are closed: {on_time} of "
                    f"{len(owing)} students submitted on time.{late}"
                )
                channel = course.channels.get("announcements", "announcements")
                out.append((course.id, Outgoing(Reply(text=text), channel=channel)))
            else:
                reply = _reminder(course, paper, due, now)
                out += [
                    (course.id, Outgoing(reply, person_id=s.id)) for s in owing if s.id not in done
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
    name, data = await read_attachment(ctx.request.attachments)
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
    rows = []
    excused = 0
    for p in papers:
        due = deadline_of(ctx.course, p)
        mark = marks.get((p.id, me.id))
        on_stage = me.id in presenting.get(p.id, set())
        if standing(mine.get(p.id), mark, on_stage) in (EXCUSED, PRESENTING):
            excused += 1
        rows.append(
            [
                f"#{p.number} {p.title}",
                _short(due, ctx.tz) if due else "no date yet",
                _short_state(ctx.course, p, mine.get(p.id), ctx.now, mark, on_stage),
            ]
        )
    passed = sum(1 for c in mine.values() if c.grade == "pass")
    owed = len(papers) - excused
    note = f" (excused from {excused})" if excused else ""
    return Reply(
        title="Your critiques",
        text=f"{len(mine)} of {owed} submitted{note}; {passed} passed so far.",
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
        state = standing(None, marks.get((paper.id, s.id)), s.id in on_stage)
        if state == ZERO:
            zero.append(s.name)
        elif state == EXCUSED:
            excused.append(f"{s.name} (excused)")
        elif state == PRESENTING:
            excused.append(f"{s.name} (presenting)")
        else:
            missing.append(s.name)
    owing = len(students) - len(excused)
    due = deadline_of(ctx.course, paper)
    when = f" Due {fmt_instant(due, ctx.tz)}." if due else ""
    sections = [Section("Missing", ", ".join(missing) or "nobody")]
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
            raise InvalidInput(f"{p.name} is not a student; nothing was graded.")
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
            text=f"Recorded {len(absent)} missing critique(s) of {paper_label(paper)} as 0: "
            + ", ".join(s.name for s in absent)
            + ".",
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
    note = f" {left} late critique(s) still need a grade." if left else ""
    return Reply(
        text=f"Graded {len(todo)} on-time critique(s) of {paper_label(paper)} "
        f"{opts.grade.capitalize()}.{note}",
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
)
async def critique_export(ctx: Context, _: BaseModel) -> Reply:
    papers = await critique_papers(ctx.session, ctx.course.id)
    students = await course_students(ctx.session, ctx.course.id)
    crits = {
        (c.person_id, c.paper_id): c
        for c in await ctx.session.scalars(
            select(Critique).where(Critique.course_id == ctx.course.id)
        )
    }
    marks = await marks_of(ctx.session, ctx.course.id)
    presenting = await presenters_of(ctx.session, ctx.course.id)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
        + [canvas_column(p) for p in papers]
    )
    # Canvas's gradebook import: a number, or EX for excused (not counted); blank: none.
    value = {PASS: "1", FAIL: "0", ZERO: "0", EXCUSED: "EX", PRESENTING: "EX"}
    graded = excused = 0
    for s in sorted(students, key=name_key):
        cells = []
        for p in papers:
            state = standing(
                crits.get((s.id, p.id)),
                marks.get((p.id, s.id)),
                s.id in presenting.get(p.id, set()),
            )
            graded += state in (PASS, FAIL, ZERO)
            excused += state in (EXCUSED, PRESENTING)
            cells.append(value.get(state, ""))
        w.writerow(
            [
                canvas_name(s),
                s.canvas_id or "",
                s.sis_id or "",
                s.onyen or "",
                s.section or "",
                *cells,
            ]
        )
    return Reply(
        text=f"{len(students)} students × {len(papers)} critiques; {graded} graded, "
        f"{excused} excused (1 = pass, 0 = fail or missing, EX = excused, blank = not graded). "
        "Import it in Canvas: Grades → Import.",
        files=[FileOut(f"{ctx.course.key}-critiques.csv", buf.getvalue().encode(), "text/csv")],
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
