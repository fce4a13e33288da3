"""Paper rankings: students rank standard (30/45-min) and battle papers, best first,
by the ranking deadline; staff follow who is missing and can extend the deadline."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from commands.audit import Reason, local_iso, record
from commands.clock import parse_instant
from commands.context import Context
from commands.errors import Conflict, Forbidden, InvalidInput
from commands.outbox import new_batch
from commands.people import find_person
from commands.registry import Access, Complete, registry
from commands.replies import Delivery, Reply, Section, Table, Tone
from commands.solver import plural
from commands.timefmt import fmt_instant, relative
from db.models import Course, Extension, Paper, Person, Ranking, RankingChoice, RankKind, Role, Slot

StandardIds = Annotated[list[int], Complete("paper:standard")]
BattleIds = Annotated[list[int], Complete("paper:battle")]
EXTENSION_KEY = "rankings"

# ----------------------------------------------------------------------------- services


def required_count(course: Course, kind: RankKind) -> int:
    return course.standard_choices if kind is RankKind.STANDARD else course.battle_choices


async def deadline_for(session: AsyncSession, course: Course, person_id: int) -> datetime | None:
    """The ranking deadline that applies to one student (a personal extension wins if later)."""
    ext = await session.scalar(
        select(Extension.until).where(
            Extension.person_id == person_id, Extension.key == EXTENSION_KEY
        )
    )
    if course.ranking_deadline is None:
        return ext
    return max(course.ranking_deadline, ext) if ext else course.ranking_deadline


def check_choices(
    slots: dict[int, Slot], kind: RankKind, numbers: list[int], need: int
) -> list[str]:
    """Every problem with a ranked list, given the course's papers (number → slot)."""
    problems: list[str] = []
    dupes = [n for n, c in Counter(numbers).items() if c > 1]
    if dupes:
        problems.append(f"listed more than once: {_ids(dupes)}")
    distinct = list(dict.fromkeys(numbers))
    unknown = [n for n in distinct if n not in slots]
    if unknown:
        problems.append(f"no such paper: {_ids(unknown)}")
    instructor = [n for n in distinct if slots.get(n) is Slot.INSTRUCTOR]
    if instructor:
        problems.append(f"presented by the instructor: {_ids(instructor)}")
    if kind is RankKind.STANDARD:
        wrong = [n for n in distinct if slots.get(n) is Slot.BATTLE]
        if wrong:
            problems.append(f"battle papers (rank them with `rank battle`): {_ids(wrong)}")
    else:
        wrong = [n for n in distinct if slots.get(n) in (Slot.MIN30, Slot.MIN45)]
        if wrong:
            problems.append(f"not battle papers (rank them with `rank standard`): {_ids(wrong)}")
    if len(distinct) != need:
        problems.append(
            f"you gave {len(distinct)} distinct paper{'s' * (len(distinct) != 1)}, not {need}"
        )
    return problems


async def validate_choices(
    session: AsyncSession, course: Course, kind: RankKind, numbers: list[int]
) -> list[Paper]:
    """The papers for ``numbers``, or one error that names every offending id."""
    need = required_count(course, kind)
    papers = {
        p.number: p
        for p in await session.scalars(
            select(Paper).where(Paper.course_id == course.id, Paper.number.in_(numbers))
        )
    }
    problems = check_choices({n: p.slot for n, p in papers.items()}, kind, numbers, need)
    if problems:
        what = "standard (30/45-min)" if kind is RankKind.STANDARD else "battle"
        raise InvalidInput(
            "Your ranking was not saved: " + "; ".join(problems) + ".",
            hint=f"Rank exactly {need} distinct {what} papers, best first "
            f"(`papers {'standard' if kind is RankKind.STANDARD else 'battle'}` lists them). "
            "Your previous ranking, if any, is unchanged.",
        )
    return [papers[n] for n in numbers]


def _ids(numbers: list[int]) -> str:
    return ", ".join(f"#{n}" for n in numbers)


async def save_ranking(
    session: AsyncSession,
    course: Course,
    person: Person,
    kind: RankKind,
    papers: list[Paper],
    *,
    now: datetime,
    source: str = "chat",
) -> Ranking:
    """Replace ``person``'s ranking of ``kind`` with ``papers`` (best first)."""
    ranking = await session.scalar(
        select(Ranking).where(Ranking.person_id == person.id, Ranking.kind == kind)
    )
    if ranking is None:
        ranking = Ranking(course_id=course.id, person_id=person.id, kind=kind, submitted_at=now)
        session.add(ranking)
        await session.flush()
    else:
        await session.execute(delete(RankingChoice).where(RankingChoice.ranking_id == ranking.id))
        ranking.submitted_at = now
    ranking.source = source
    for i, paper in enumerate(papers, 1):
        session.add(RankingChoice(ranking_id=ranking.id, rank=i, paper_id=paper.id))
    await session.flush()
    return ranking


async def rankings_of(session: AsyncSession, course_id: int) -> dict[int, dict[RankKind, Ranking]]:
    """person id → kind → ranking (with its choices and papers loaded)."""
    out: dict[int, dict[RankKind, Ranking]] = {}
    rows = await session.scalars(
        select(Ranking)
        .where(Ranking.course_id == course_id)
        .options(selectinload(Ranking.choices).selectinload(RankingChoice.paper))
    )
    for r in rows:
        out.setdefault(r.person_id, {})[r.kind] = r
    return out


async def ranked_papers(
    session: AsyncSession, course_id: int
) -> dict[int, dict[RankKind, list[int]]]:
    """person id → kind → the paper numbers in rank order: what the solver reads, in one
    query without loading objects (hundreds of rankings are read at every `assign`)."""
    out: dict[int, dict[RankKind, list[int]]] = {}
    rows = await session.execute(
        select(Ranking.person_id, Ranking.kind, Paper.number)
        .outerjoin(RankingChoice, RankingChoice.ranking_id == Ranking.id)
        .outerjoin(Paper, Paper.id == RankingChoice.paper_id)
        .where(Ranking.course_id == course_id)
        .order_by(Ranking.id, RankingChoice.rank)
    )
    for person_id, kind, number in rows:
        numbers = out.setdefault(person_id, {}).setdefault(kind, [])
        if number is not None:
            numbers.append(number)
    return out


async def students(session: AsyncSession, course_id: int) -> list[Person]:
    return list(
        await session.scalars(
            select(Person)
            .where(Person.course_id == course_id, Person.role == Role.STUDENT)
            .order_by(Person.name)
        )
    )


@dataclass(frozen=True)
class Missing:
    person: Person
    kinds: tuple[RankKind, ...]


async def missing_rankings(session: AsyncSession, course: Course) -> list[Missing]:
    have = await rankings_of(session, course.id)
    out = []
    for p in await students(session, course.id):
        kinds = tuple(k for k in RankKind if k not in have.get(p.id, {}))
        if kinds:
            out.append(Missing(p, kinds))
    return out


@dataclass
class RankingRows:
    """Rankings read from a CSV (student, kind, rank, paper), grouped and checked."""

    lists: dict[str, dict[RankKind, list[int]]]
    lines: dict[tuple[str, RankKind], int]  # first CSV line of each list, for errors


def parse_rankings_csv(text: str, *, source: str = "rankings.csv") -> RankingRows:
    """Read ``student,kind,rank,paper`` rows; every problem is reported with its line."""
    import csv
    import io

    from commands.coursefile import CourseFileError, Problem

    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in ("student", "kind", "rank", "paper") if c not in header]
    if missing:
        raise CourseFileError(
            source,
            [
                Problem(
                    "header",
                    f"missing {'column' if len(missing) == 1 else 'columns'} {', '.join(missing)}; "
                    "need student,kind,rank,paper",
                )
            ],
        )
    problems: list[Problem] = []
    ranks: dict[tuple[str, RankKind], dict[int, int]] = {}
    lines: dict[tuple[str, RankKind], int] = {}
    for raw in reader:
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        line = reader.line_num
        student = row["student"]
        if not student:
            problems.append(Problem("student", "is empty", line))
            continue
        try:
            kind = RankKind(row["kind"].lower())
        except ValueError:
            problems.append(
                Problem("kind", f"must be standard or battle, not {row['kind']!r}", line)
            )
            continue
        try:
            rank, paper = int(row["rank"]), int(row["paper"].lstrip("#"))
        except ValueError:
            problems.append(Problem("rank/paper", "must be whole numbers", line))
            continue
        key = (student, kind)
        lines.setdefault(key, line)
        seen = ranks.setdefault(key, {})
        if rank in seen:
            problems.append(
                Problem("rank", f"{student} has two {kind.value} papers at rank {rank}", line)
            )
        seen[rank] = paper
    lists: dict[str, dict[RankKind, list[int]]] = {}
    for (student, kind), by_rank in ranks.items():
        order = sorted(by_rank)
        if order != list(range(1, len(order) + 1)):
            problems.append(
                Problem(
                    "rank",
                    f"{student}'s {kind.value} ranks must be 1..{len(order)} without gaps",
                    lines[(student, kind)],
                )
            )
        lists.setdefault(student, {})[kind] = [by_rank[r] for r in order]
    if problems:
        raise CourseFileError(source, problems)
    return RankingRows(lists, lines)


async def import_rankings(
    session: AsyncSession, course: Course, rows: RankingRows, *, now: datetime
) -> int:
    """Store every list (all or nothing); return how many lists were saved."""
    from commands.coursefile import CourseFileError, Problem
    from commands.errors import CourseBotError

    problems: list[Problem] = []
    saved = 0
    for student, kinds in rows.lists.items():
        try:
            person = await find_person(session, course.id, student)
        except CourseBotError as exc:
            problems.append(Problem("student", str(exc), rows.lines[(student, next(iter(kinds)))]))
            continue
        if person.role is not Role.STUDENT:
            problems.append(
                Problem(
                    "student",
                    f"{person.name} is not a student",
                    rows.lines[(student, next(iter(kinds)))],
                )
            )
            continue
        for kind, numbers in kinds.items():
            try:
                papers = await validate_choices(session, course, kind, numbers)
            except CourseBotError as exc:
                problems.append(
                    Problem(f"{student} ({kind.value})", exc.message, rows.lines[(student, kind)])
                )
                continue
            await save_ranking(session, course, person, kind, papers, now=now, source="import")
            saved += 1
    if problems:
        raise CourseFileError("the rankings file", problems)
    return saved


# ----------------------------------------------------------------------------- commands


class RankOptions(BaseModel):
    papers: StandardIds = Field(description="paper ids, best first")


class BattleRankOptions(BaseModel):
    papers: BattleIds = Field(description="battle paper ids, best first")


def ranks(person: Person | None) -> bool:
    """Who ranks papers: students (instructors and TAs do not present them)."""
    return person is not None and person.role is Role.STUDENT


@dataclass(frozen=True)
class RankingPicker:
    """What a rankings picker (Slack's modal) shows one student: how many papers to
    choose, the papers of that kind ``(number, title)``, and their current order."""

    kind: RankKind
    count: int
    papers: list[tuple[int, str]]
    current: list[int]


async def ranking_picker(
    session: AsyncSession, course: Course, person: Person | None, kind: RankKind
) -> RankingPicker | None:
    """The picker for ``person``; None when they do not rank (the command, run as
    typed, then says why)."""
    from commands.logistics import course_papers

    if person is None or not ranks(person):
        return None
    papers = await course_papers(session, course.id, kind=kind.value)
    mine = (await rankings_of(session, course.id)).get(person.id, {}).get(kind)
    return RankingPicker(
        kind,
        required_count(course, kind),
        [(p.number, p.title) for p in papers],
        [c.paper.number for c in mine.choices] if mine else [],
    )


async def _rank(ctx: Context, kind: RankKind, numbers: list[int]) -> Reply:
    me = ctx.me()
    if not ranks(me):
        raise Forbidden("Only students rank papers; instructors and TAs do not present them.")
    deadline = await deadline_for(ctx.session, ctx.course, me.id)
    if deadline is not None and ctx.now > deadline:
        raise Conflict(
            f"The ranking deadline passed {relative(deadline, ctx.now)} "
            f"({fmt_instant(deadline, ctx.tz)}); your ranking was not changed.",
            hint="If you need more time, ask the instructor for an extension.",
        )
    papers = await validate_choices(ctx.session, ctx.course, kind, numbers)
    await save_ranking(ctx.session, ctx.course, me, kind, papers, now=ctx.now)
    lines = [f"{i}. #{p.number} {p.title} ({p.slot.value})" for i, p in enumerate(papers, 1)]
    until = (
        f"You can resubmit until {fmt_instant(deadline, ctx.tz)} ({relative(deadline, ctx.now)}); "
        "the last one counts."
        if deadline
        else "You can resubmit at any time; the last one counts."
    )
    return Reply(
        title=f"Saved your {kind.value} ranking",
        text="\n".join([*lines, until]),
        tone=Tone.SUCCESS,
    )


@registry.command(
    "rank standard",
    "Rank the 30/45-min presentation papers, best first",
    ephemeral=True,
    examples=("rank standard 5 6 7 8 13 14 15",),
)
async def rank_standard(ctx: Context, opts: RankOptions) -> Reply:
    return await _rank(ctx, RankKind.STANDARD, opts.papers)


@registry.command(
    "rank battle",
    "Rank the paper-battle papers, best first",
    ephemeral=True,
    examples=("rank battle 11 12 9",),
)
async def rank_battle(ctx: Context, opts: BattleRankOptions) -> Reply:
    return await _rank(ctx, RankKind.BATTLE, opts.papers)


@registry.command("rank show", "Your submitted rankings", ephemeral=True, reads=True)
async def rank_show(ctx: Context, _: BaseModel) -> Reply:
    me = ctx.me()
    mine = (await rankings_of(ctx.session, ctx.course.id)).get(me.id, {})
    deadline = await deadline_for(ctx.session, ctx.course, me.id)
    sections = []
    for kind in RankKind:
        r = mine.get(kind)
        if r is None:
            body = f"Not submitted. Type `rank {kind.value} <{required_count(ctx.course, kind)} paper ids>`."
        else:
            body = (
                "\n".join(f"{c.rank}. #{c.paper.number} {c.paper.title}" for c in r.choices)
                + f"\nSubmitted {fmt_instant(r.submitted_at, ctx.tz)}."
            )
        sections.append(Section(f"{kind.value.title()} papers", body))
    text = ""
    if deadline:
        state = "closed" if ctx.now > deadline else "open"
        text = f"Rankings are {state}: due {fmt_instant(deadline, ctx.tz)} ({relative(deadline, ctx.now)})."
    return Reply(title="Your rankings", text=text, sections=sections)


@registry.command(
    "rankings status",
    "Who has and has not submitted rankings",
    access=Access.STAFF,
    ephemeral=True,
    topic="rank",
    reads=True,
)
async def rankings_status(ctx: Context, _: BaseModel) -> Reply:
    have = await rankings_of(ctx.session, ctx.course.id)
    people = await students(ctx.session, ctx.course.id)
    rows = []
    done = 0
    for p in people:
        mine = have.get(p.id, {})
        cells = []
        for kind in RankKind:
            r = mine.get(kind)
            cells.append(fmt_instant(r.submitted_at, ctx.tz) if r else "— missing")
        if len(mine) == len(RankKind):
            done += 1
        rows.append([p.name, *cells])
    rows.sort(key=lambda r: ("missing" not in r[1] + r[2], r[0]))
    deadline = ctx.course.ranking_deadline
    due = (
        f" Due {fmt_instant(deadline, ctx.tz)} ({relative(deadline, ctx.now)})." if deadline else ""
    )
    return Reply(
        title="Rankings",
        text=f"{done} of {len(people)} students have submitted both rankings.{due}",
        tables=[Table(["Student", "Standard", "Battle"], rows)],
    )


@registry.command(
    "rankings remind",
    "Privately remind every student who has not submitted",
    access=Access.STAFF,
    ephemeral=True,
    topic="rank",
)
async def rankings_remind(ctx: Context, _: BaseModel) -> Reply:
    missing = await missing_rankings(ctx.session, ctx.course)
    if not missing:
        return Reply(text="Everyone has submitted: nobody to remind.", tone=Tone.SUCCESS)
    batch = new_batch("rankings-remind")
    for m in missing:
        ctx.dm(m.person.id, ranking_reminder(ctx.course, m, ctx.now), batch=batch)
    names = ", ".join(m.person.name for m in missing)
    return Reply(
        text=f"{plural(len(missing), 'student')} {'has' if len(missing) == 1 else 'have'} "
        f"not submitted: {names}.",
        tone=Tone.SUCCESS,
        delivery=Delivery(
            batch, what="reminders", hint="`outbox unreached` lists whom to reach another way."
        ),
    )


def ranking_reminder(course: Course, missing: Missing, now: datetime) -> Reply:
    from zoneinfo import ZoneInfo

    kinds = " and ".join(f"`rank {k.value}`" for k in missing.kinds)
    due = ""
    if course.ranking_deadline:
        due = (
            f" They are due {fmt_instant(course.ranking_deadline, ZoneInfo(course.timezone))} "
            f"({relative(course.ranking_deadline, now)})."
        )
    return Reply(
        text=f"Hi {missing.person.name.split()[0]}, please submit your paper rankings for "
        f"{course.name}: {kinds}.{due} `papers` lists the papers.",
        ephemeral=True,
    )


class ExtendOptions(BaseModel):
    until: str = Field(description="new deadline, e.g. 2023-08-29T23:59 (course time)")
    student: str | None = Field(None, description="only this student (email, onyen or name)")
    reason: Reason = None


@registry.command(
    "rankings extend",
    "Move the ranking deadline, for everyone or one student",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="rank",
    examples=(
        "rankings extend 2023-08-29T23:59",
        "rankings extend 2023-08-28T12:00 bob",
        'rankings extend 2023-08-28T12:00 bob reason="was ill"',
    ),
)
async def rankings_extend(ctx: Context, opts: ExtendOptions) -> Reply:
    try:
        until = parse_instant(opts.until.replace(" ", "T", 1), ctx.course.timezone)
    except ValueError:
        raise InvalidInput(
            f"`{opts.until}` is not a date and time.",
            hint="Use e.g. 2023-08-29T23:59 (course time).",
        ) from None
    if until <= ctx.now:
        raise InvalidInput(f"{fmt_instant(until, ctx.tz)} is already in the past.")
    if opts.student is None:
        old = ctx.course.ranking_deadline
        ctx.course.ranking_deadline = until
        record(
            ctx,
            "rankings.extend",
            summary=f"ranking deadline for everyone: {fmt_instant(until, ctx.tz)}",
            before={"deadline": local_iso(old, ctx.tz) if old else None},
            after={"deadline": local_iso(until, ctx.tz)},
            reason=opts.reason,
        )
        ctx.post(
            "announcements",
            Reply(text=f"📣 Paper rankings are now due {fmt_instant(until, ctx.tz)}."),
        )
        return Reply(
            text=f"Rankings are now due {fmt_instant(until, ctx.tz)} for everyone.",
            tone=Tone.SUCCESS,
        )
    person = await find_person(ctx.session, ctx.course.id, opts.student)
    ext = await ctx.session.scalar(
        select(Extension).where(Extension.person_id == person.id, Extension.key == EXTENSION_KEY)
    )
    old = ext.until if ext is not None else None
    if ext is None:
        ctx.session.add(
            Extension(course_id=ctx.course.id, person_id=person.id, key=EXTENSION_KEY, until=until)
        )
    else:
        ext.until = until
    record(
        ctx,
        "rankings.extend",
        subject=person,
        summary=f"ranking deadline: {fmt_instant(until, ctx.tz)}",
        before={"extension": local_iso(old, ctx.tz) if old else None},
        after={"extension": local_iso(until, ctx.tz)},
        reason=opts.reason,
    )
    ctx.dm(
        person.id,
        Reply(
            text=f"You have an extension: your paper rankings are due {fmt_instant(until, ctx.tz)}."
        ),
    )
    return Reply(
        text=f"{person.name} may submit rankings until {fmt_instant(until, ctx.tz)}.",
        tone=Tone.SUCCESS,
    )
