"""The course as a solver instance: students, papers, rankings and the course's rules
(``course.assignment`` in the course file, stored as ``Course.assign_rules``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands import solver
from commands.coursefile import AssignmentRules, CourseFile, stored_rules
from commands.errors import InvalidInput
from commands.rankings import RankingRows, check_choices, ranked_papers, students
from db.models import (
    Assignment,
    Battle,
    Course,
    Paper,
    PartnerRequest,
    Person,
    RankKind,
    Slot,
)

STANDARD_SLOTS = (Slot.MIN30, Slot.MIN45)


class StudentKey(str):
    """A student's solver key: the person id as a string (what equality, hashing and
    JSON see), shown as the student's name wherever the solver writes it into a
    sentence (its notes and Infeasible messages are read by the instructor)."""

    label: str

    def __new__(cls, key: str, label: str) -> StudentKey:
        obj = super().__new__(cls, key)
        obj.label = label
        return obj

    def __str__(self) -> str:
        return self.label

    def __reduce__(self) -> tuple[type[StudentKey], tuple[str, str]]:
        # Sent to the solver's process (commands.offload) with its label.
        return StudentKey, (str.__str__(self), self.label)

    def __format__(self, spec: str) -> str:
        return format(self.label, spec)


def _keys(people: list[Person]) -> dict[str, Person]:
    """Solver key -> person; a name two students share is told apart by the email."""
    seen: dict[str, int] = {}
    for p in people:
        seen[p.name] = seen.get(p.name, 0) + 1
    return {
        StudentKey(str(p.id), p.name if seen[p.name] == 1 else f"{p.name} <{p.email}>"): p
        for p in people
    }


@dataclass
class CourseInstance:
    """A solver instance built from the course, with the names to explain it."""

    inst: solver.Instance
    people: dict[str, Person]  # solver key -> person
    papers: dict[int, Paper]  # paper number -> paper
    submitted: dict[str, set[RankKind]] = field(default_factory=dict)
    #: Rules that name people who are not (or no longer) students: said, not solved.
    ignored: list[str] = field(default_factory=list)

    def prefs(self, kind: RankKind) -> Mapping[str, Sequence[int]]:
        return self.inst.standard_prefs if kind is RankKind.STANDARD else self.inst.battle_prefs

    def ranked_prefs(self, kind: RankKind) -> dict[str, Sequence[int]]:
        """Preferences of the students who submitted this kind (for statistics)."""
        return {k: v for k, v in self.prefs(kind).items() if kind in self.submitted.get(k, set())}

    def key_of(self, person_id: int) -> str | None:
        key = str(person_id)
        return key if key in self.people else None

    def kind_papers(self, kind: RankKind) -> list[int]:
        if kind is RankKind.STANDARD:
            return list(self.inst.standard_papers)
        return [p for pair in self.inst.battle_pairs for p in pair]

    def limits(self, number: int) -> tuple[int, int]:
        """(min, max) presenters of a standard paper, or of one side of a battle."""
        if number in self.inst.paper_limits:
            return self.inst.paper_limits[number]
        if number in self.inst.standard_papers:
            return (1, self.inst.max_presenters)
        return self.inst.battle_group


def rules_of(course: Course) -> AssignmentRules:
    return AssignmentRules.model_validate(course.assign_rules or {})


@dataclass
class _Rules:
    """The rules with people as solver keys."""

    paper_limits: dict[int, tuple[int, int]]
    paper_minutes: dict[int, int]
    unavailable: dict[str, frozenset[date]]
    partners: list[tuple[str, str, int | None]]
    conflicts: list[tuple[str, str]]
    ignored: list[str]


def _rules(
    rules: AssignmentRules,
    max_presenters: int,
    papers: Mapping[int, Paper],
    key_by_email: Mapping[str, str],
) -> _Rules:
    limits: dict[int, tuple[int, int]] = {}
    minutes: dict[int, int] = {}
    for number, paper in papers.items():
        if paper.slot in STANDARD_SLOTS:
            lim = rules.presenters.get(paper.slot.value)  # type: ignore[call-overload]
            limits[number] = (lim.min, lim.max) if lim else (1, max_presenters)
            minutes[number] = int(paper.slot.value)
    ignored: list[str] = []

    def key(ref: str, what: str) -> str | None:
        k = key_by_email.get(ref.lower())
        if k is None:
            ignored.append(f"{what}: {ref} is not a student of the course")
        return k

    unavailable: dict[str, frozenset[date]] = {}
    for ref, days in rules.unavailable.items():
        k = key(ref, "unavailable")
        if k is not None:
            unavailable[k] = frozenset(days)
    partners: list[tuple[str, str, int | None]] = []
    for entry in rules.partners:
        a, b = (key(r, "partners") for r in entry.students)
        if a is not None and b is not None:
            partners.append((a, b, entry.paper))
    conflicts = []
    for x, y in rules.conflicts:
        a, b = key(x, "conflicts"), key(y, "conflicts")
        if a is not None and b is not None:
            conflicts.append((a, b))
    return _Rules(limits, minutes, unavailable, partners, conflicts, ignored)


async def confirmed_partners(session: AsyncSession, course_id: int) -> list[tuple[int, int]]:
    """Pairs of students who asked for each other with ``rank partner`` (person ids)."""
    asked = {
        r.person_id: r.partner_id
        for r in await session.scalars(
            select(PartnerRequest).where(PartnerRequest.course_id == course_id)
        )
    }
    return sorted({tuple(sorted((a, b))) for a, b in asked.items() if asked.get(b) == a})  # type: ignore[misc]


async def published_rows(
    session: AsyncSession, course_id: int
) -> list[tuple[int, int, Slot, bool]]:
    """(person id, paper number, slot, kept) of the published assignment."""
    rows = await session.execute(
        select(Assignment.person_id, Paper.number, Paper.slot, Assignment.kept)
        .join(Paper, Paper.id == Assignment.paper_id)
        .where(Assignment.course_id == course_id, Assignment.published.is_(True))
    )
    return [(pid, number, slot, kept) for pid, number, slot, kept in rows]


async def build_instance(
    session: AsyncSession,
    course: Course,
    seed: int,
    *,
    today: date | None = None,
    minimal_changes: bool = False,
) -> CourseInstance:
    """The course's assignment problem. ``today`` (the publish day) turns on the notice
    rule; the published assignment, if any, is the previous one (kept rows are fixed)."""
    people = _keys(await students(session, course.id))
    papers = {
        p.number: p
        for p in await session.scalars(select(Paper).where(Paper.course_id == course.id))
    }
    by_id = {p.id: p for p in papers.values()}
    battles = list(
        await session.scalars(
            select(Battle).where(Battle.course_id == course.id).order_by(Battle.number)
        )
    )
    have = await ranked_papers(session, course.id)
    std: dict[str, list[int]] = {}
    bat: dict[str, list[int]] = {}
    submitted: dict[str, set[RankKind]] = {}
    for key, person in people.items():
        mine = have.get(person.id, {})
        submitted[key] = set(mine)
        for kind, target in ((RankKind.STANDARD, std), (RankKind.BATTLE, bat)):
            target[key] = list(mine.get(kind, ()))
    days: dict[int, date] = {n: p.class_date for n, p in papers.items() if p.class_date}
    for b in battles:
        if b.class_date:
            days[by_id[b.paper_a_id].number] = b.class_date
            days[by_id[b.paper_b_id].number] = b.class_date
    rules = rules_of(course)
    key_by_email = {p.email.lower(): k for k, p in people.items()}
    r = _rules(rules, course.max_presenters, papers, key_by_email)
    key_of = {p.id: k for k, p in people.items()}
    for a, b in await confirmed_partners(session, course.id):
        ka, kb = key_of.get(a), key_of.get(b)
        if ka is None or kb is None or any({ka, kb} & {x, y} for x, y, _ in r.partners):
            continue
        # Asked by the students themselves: honoured on a paper both ranked; a pair
        # with none in common is said in the report instead of stopping the solver.
        if not set(std.get(ka, [])) & set(std.get(kb, [])):
            r.ignored.append(
                f"partners: {people[ka].name} and {people[kb].name} asked for each other "
                "but rank no standard paper in common, so they are placed separately"
            )
            continue
        r.partners.append((ka, kb, None))
    prev_std: dict[str, int] = {}
    prev_bat: dict[str, int] = {}
    keep_std: dict[str, int] = {}
    keep_bat: dict[str, int] = {}
    for pid, number, slot, kept in await published_rows(session, course.id):
        key = key_of.get(pid)
        if key is None:
            continue
        (prev_bat if slot is Slot.BATTLE else prev_std)[key] = number
        if kept:
            (keep_bat if slot is Slot.BATTLE else keep_std)[key] = number
    inst = solver.Instance(
        students=tuple(people),
        standard_papers=tuple(sorted(n for n, p in papers.items() if p.slot in STANDARD_SLOTS)),
        battle_pairs=tuple(
            (by_id[b.paper_a_id].number, by_id[b.paper_b_id].number) for b in battles
        ),
        standard_prefs=std,
        battle_prefs=bat,
        max_presenters=course.max_presenters,
        battle_group=(course.battle_group_min, course.battle_group_max),
        seed=seed,
        paper_limits=r.paper_limits,
        paper_minutes=r.paper_minutes,
        paper_days=days,
        notice_from=today if rules.min_notice_days else None,
        min_notice_days=rules.min_notice_days,
        unavailable=r.unavailable,
        partners=tuple(r.partners),
        conflicts=tuple(r.conflicts),
        keep_standard=keep_std,
        keep_battle=keep_bat,
        previous_standard=prev_std,
        previous_battle=prev_bat,
        minimal_changes=minimal_changes,
        coverage=rules.coverage,
        balance=rules.balance,
        spread_nonrankers=rules.spread_nonrankers,
    )
    return CourseInstance(inst, people, papers, submitted, r.ignored)


def changes_between(before: solver.Instance, now: solver.Instance) -> list[str]:
    """What changed in the course between two instances of it, in words for the
    instructor (empty: the same problem)."""
    if before == now:
        return []
    out = []
    joined = set(now.students) - set(before.students)
    left = set(before.students) - set(now.students)
    both = set(now.students) & set(before.students)
    reranked = sum(
        1
        for k in both
        if list(before.standard_prefs.get(k, ())) != list(now.standard_prefs.get(k, ()))
        or list(before.battle_prefs.get(k, ())) != list(now.battle_prefs.get(k, ()))
    )
    if reranked:
        out.append(f"{solver.plural(reranked, 'student')} changed their rankings")
    if joined:
        out.append(f"{solver.plural(len(joined), 'student')} joined the roster")
    if left:
        out.append(f"{solver.plural(len(left), 'student')} left the roster")
    if (before.previous_standard, before.previous_battle) != (
        now.previous_standard,
        now.previous_battle,
    ):
        out.append("the published assignment changed")
    ignore = ("students", "standard_prefs", "battle_prefs", "previous_standard", "previous_battle")
    if replace(before, **{f: getattr(now, f) for f in ignore}) != now:
        out.append("the papers, partners or assignment rules changed")
    return out


# ------------------------------------------------------------- without a bot (the CLI)


def offline_instance(cf: CourseFile, rows: RankingRows, seed: int) -> CourseInstance:
    """A solver instance from a course file and a rankings CSV, with no database.

    Students are the course file's students (matched by email, onyen, handle or name,
    case-insensitively); if the file lists none, the students named in the CSV. The
    notice rule is off (there is no publish day offline).
    """
    slots = {p.id: Slot(p.slot) for p in cf.papers}
    papers = {
        p.id: Paper(number=p.id, title=p.title, slot=Slot(p.slot), class_date=p.date)
        for p in cf.papers
    }
    roster = [p for p in cf.people if p.role == "student"]
    people: dict[str, Person] = {}
    alias: dict[str, str] = {}
    if roster:
        for i, entry in enumerate(roster):
            key = entry.email
            people[key] = Person(id=i + 1, name=entry.name, email=entry.email)
            names = [entry.email, entry.name, entry.onyen, *entry.handles.values()]
            for n in names:
                if n:
                    alias[n.lower()] = key
    else:
        for i, student in enumerate(rows.lists):
            people[student] = Person(id=i + 1, name=student, email=student)
            alias[student.lower()] = student
    problems = []
    std: dict[str, list[int]] = {k: [] for k in people}
    bat: dict[str, list[int]] = {k: [] for k in people}
    submitted: dict[str, set[RankKind]] = {k: set() for k in people}
    need = {
        RankKind.STANDARD: cf.course.ranking.standard_choices,
        RankKind.BATTLE: cf.course.ranking.battle_choices,
    }
    for student, kinds in rows.lists.items():
        key = alias.get(student.lower())
        if key is None:
            problems.append(
                f"line {rows.lines[(student, next(iter(kinds)))]}: {student!r} is not a student of the course"
            )
            continue
        for kind, numbers in kinds.items():
            bad = check_choices(slots, kind, numbers, need[kind])
            if bad:
                problems.append(
                    f"line {rows.lines[(student, kind)]}: {student} ({kind.value}): "
                    + "; ".join(bad)
                )
                continue
            (std if kind is RankKind.STANDARD else bat)[key] = numbers
            submitted[key].add(kind)
    if problems:
        raise InvalidInput("The rankings have problems:\n  - " + "\n  - ".join(problems))
    days: dict[int, date] = {p.id: p.date for p in cf.papers if p.date}
    for b in cf.battles:
        if b.date:
            days[b.a] = days[b.b] = b.date
    rules = AssignmentRules.model_validate(stored_rules(cf))
    key_by_email: dict[str, Any] = {k.lower(): k for k in people}
    key_by_email.update({p.email.lower(): k for k, p in people.items()})
    r = _rules(rules, cf.course.ranking.max_presenters, papers, key_by_email)
    inst = solver.Instance(
        students=tuple(people),
        standard_papers=tuple(sorted(n for n, s in slots.items() if s in STANDARD_SLOTS)),
        battle_pairs=tuple((b.a, b.b) for b in cf.battles),
        standard_prefs=std,
        battle_prefs=bat,
        max_presenters=cf.course.ranking.max_presenters,
        battle_group=cf.course.ranking.battle_group,
        seed=seed,
        paper_limits=r.paper_limits,
        paper_minutes=r.paper_minutes,
        paper_days=days,
        unavailable=r.unavailable,
        partners=tuple(r.partners),
        conflicts=tuple(r.conflicts),
        coverage=rules.coverage,
        balance=rules.balance,
        spread_nonrankers=rules.spread_nonrankers,
    )
    return CourseInstance(inst, people, papers, submitted, r.ignored)
