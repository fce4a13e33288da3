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
from commands.assignment.instance import CourseInstance, build_instance
from commands.assignment.summary import capacities, kind_summary
from commands.errors import InvalidInput, PreparedStale
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


async def compute_proposal(
    session: AsyncSession,
    course: Course,
    *,
    seed: int,
    now: datetime,
    today: date,
    minimal_changes: bool = False,
    solved: tuple[CourseInstance, solver.Solution] | None = None,
    solve_again: bool = True,
) -> tuple[AssignmentRun, CourseInstance, Current]:
    """Store the solution as the proposal (replacing an earlier proposal; the published
    assignment stays until the proposal is published). ``solved``: computed beforehand
    on a snapshot; used when the course's instance is still the same, else solved again
    here (``solve_again``) or :class:`PreparedStale` is raised so that the core solves
    again outside the write queue."""
    if solved is not None:
        fresh = await build_instance(
            session, course, seed, today=today, minimal_changes=minimal_changes
        )
        if fresh.inst != solved[0].inst:
            # Rankings, roster or rules changed while it was solving.
            if not solve_again:
                raise PreparedStale
            solved = None
    if solved is None:
        solved = await solve_course(
            session, course, seed=seed, today=today, minimal_changes=minimal_changes
        )
    ci, sol = solved
    rows: Rows = {
        RankKind.STANDARD: dict(sol.standard.assignment),
        RankKind.BATTLE: dict(sol.battle.assignment),
    }
    published = await rows_of(session, course.id, published=True)
    await session.execute(
        delete(Assignment).where(Assignment.course_id == course.id, Assignment.published.is_(False))
    )
    # One bulk INSERT (hundreds of rows; the ORM would send one statement per row).
    proposed = [
        {
            "course_id": course.id,
            "paper_id": ci.papers[number].id,
            "person_id": ci.people[key].id,
            "published": False,
        }
        for kind_rows in rows.values()
        for key, number in kind_rows.items()
    ]
    if proposed:
        await session.execute(insert(Assignment), proposed)
    summary = make_summary(ci, rows, published, today, sol, sol.running_battles)
    summary["minimal_changes"] = minimal_changes
    run = AssignmentRun(course_id=course.id, created_at=now, seed=seed, summary=summary)
    session.add(run)
    await session.flush()
    return run, ci, Current(rows, published, True)
