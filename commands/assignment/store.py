"""The assignment in the database: the published one and at most one proposal live side
by side in ``assignments`` (``published`` tells them apart) until the proposal is
published; each computed proposal is an ``assignment_runs`` row with its report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands import offload, solver
from commands.assignment.explain import Change, diff
from commands.assignment.instance import CourseInstance, build_instance, changes_between
from commands.assignment.summary import capacities, kind_summary
from commands.errors import InvalidInput
from db.models import Assignment, AssignmentRun, Course, Paper, RankKind, Slot

Rows = dict[RankKind, dict[str, int]]  # kind -> solver key (person id) -> paper number


async def rows_of(session: AsyncSession, course_id: int, *, published: bool) -> Rows:
    """The published assignment, or the proposal, by kind."""
    q = (
        select(Assignment.person_id, Paper.number, Paper.slot)
        .join(Paper, Paper.id == Assignment.paper_id)
        .where(Assignment.course_id == course_id, Assignment.published.is_(published))
    )
    out: Rows = {RankKind.STANDARD: {}, RankKind.BATTLE: {}}
    for person_id, number, slot in await session.execute(q):
        kind = RankKind.BATTLE if slot is Slot.BATTLE else RankKind.STANDARD
        out[kind][str(person_id)] = number
    return out


def is_empty(rows: Rows) -> bool:
    return not any(rows.values())


@dataclass
class Current:
    """What staff work on: the proposal when there is one, else the published one."""

    rows: Rows
    published: Rows
    is_proposal: bool

    @property
    def changes(self) -> list[Change]:
        if not self.is_proposal or is_empty(self.published):
            return []
        return diff(self.published, self.rows)


async def current(session: AsyncSession, course_id: int) -> Current:
    proposal = await rows_of(session, course_id, published=False)
    published = await rows_of(session, course_id, published=True)
    if not is_empty(proposal):
        return Current(proposal, published, True)
    return Current(published, published, False)


async def latest_run(session: AsyncSession, course_id: int) -> AssignmentRun | None:
    return await session.scalar(
        select(AssignmentRun)
        .where(AssignmentRun.course_id == course_id)
        .order_by(AssignmentRun.id.desc())
        .limit(1)
    )


def make_summary(
    ci: CourseInstance,
    rows: Rows,
    previous: Rows,
    today: date | None,
    sol: solver.Solution | None,
    running: list[tuple[int, int]],
) -> dict[str, object]:
    std_cap, bat_cap = capacities(ci)
    out: dict[str, object] = {"seed": ci.inst.seed}
    for kind, cap in ((RankKind.STANDARD, std_cap), (RankKind.BATTLE, bat_cap)):
        if not ci.kind_papers(kind):
            out[kind.value] = {}  # a course without battles: nothing to report
            continue
        result = None
        if sol is not None:
            result = sol.standard if kind is RankKind.STANDARD else sol.battle
        out[kind.value] = kind_summary(
            ci, kind, rows[kind], result, cap, previous=previous[kind], today=today
        )
    out["running_battles"] = [list(p) for p in running]
    if ci.ignored:
        out["ignored_rules"] = list(ci.ignored)
    return out


async def solve_course(
    session: AsyncSession, course: Course, *, seed: int, today: date, minimal_changes: bool
) -> tuple[CourseInstance, solver.Solution]:
    """The course's instance, solved. CPU-bound (seconds for a large class): the solver
    runs in another process (commands.offload), and the core calls this on a read
    snapshot, outside the queue of commands that write (see ``prepare`` in
    commands.registry)."""
    ci = await build_instance(session, course, seed, today=today, minimal_changes=minimal_changes)
    if not ci.inst.students:
        raise InvalidInput("There are no students on the roster to assign.")
    try:
        sol = await offload.run(solver.solve, ci.inst)
    except solver.Infeasible as exc:
        raise InvalidInput(
            str(exc), hint="The published assignment, if any, is unchanged."
        ) from None
    return ci, sol


@dataclass(frozen=True)
class Proposal:
    """A proposal computed on a read snapshot, outside the write queue: the solution,
    the published assignment it was compared with, and its report."""

    ci: CourseInstance
    sol: solver.Solution
    published: Rows
    summary: dict[str, object]
    #: The solution as rows by kind (what is stored).
    rows: Rows


async def prepare_proposal(
    session: AsyncSession, course: Course, *, seed: int, today: date, minimal_changes: bool
) -> Proposal:
    """Solve the course and write the report, on ``session``'s snapshot (slow: run it
    outside the queue of writers; the solver itself runs in the worker process)."""
    ci, sol = await solve_course(
        session, course, seed=seed, today=today, minimal_changes=minimal_changes
    )
    published = await rows_of(session, course.id, published=True)
    rows: Rows = {
        RankKind.STANDARD: dict(sol.standard.assignment),
        RankKind.BATTLE: dict(sol.battle.assignment),
    }
    summary = make_summary(ci, rows, published, today, sol, sol.running_battles)
    summary["minimal_changes"] = minimal_changes
    return Proposal(ci, sol, published, summary, rows)


async def changes_since(
    session: AsyncSession, course: Course, proposal: Proposal, *, today: date
) -> list[str]:
    """What changed in the course (rankings, roster, rules, the published assignment)
    since the snapshot ``proposal`` was computed on, read on ``session``'s."""
    live = await build_instance(
        session,
        course,
        proposal.ci.inst.seed,
        today=today,
        minimal_changes=proposal.ci.inst.minimal_changes,
    )
    return changes_between(proposal.ci.inst, live.inst)


async def store_proposal(
    session: AsyncSession,
    course: Course,
    proposal: Proposal,
    *,
    now: datetime,
    changed: list[str],
) -> AssignmentRun:
    """Store a prepared proposal, replacing an earlier proposal (the published
    assignment stays until the proposal is published). ``changed``: what changed in the
    course after its snapshot (see :func:`changes_since`), kept in its report."""
    ci = proposal.ci
    await session.execute(
        delete(Assignment).where(Assignment.course_id == course.id, Assignment.published.is_(False))
    )
    # One bulk INSERT (hundreds of rows; the ORM would send one statement per row). A
    # student or paper deleted since the snapshot fails it, and the core runs it again.
    rows = [
        {
            "course_id": course.id,
            "paper_id": ci.papers[number].id,
            "person_id": ci.people[key].id,
            "published": False,
        }
        for kind_rows in proposal.rows.values()
        for key, number in kind_rows.items()
    ]
    if rows:
        await session.execute(insert(Assignment), rows)
    summary = dict(proposal.summary)
    if changed:
        summary["changed_while_solving"] = changed
    run = AssignmentRun(course_id=course.id, created_at=now, seed=ci.inst.seed, summary=summary)
    session.add(run)
    await session.flush()
    return run
