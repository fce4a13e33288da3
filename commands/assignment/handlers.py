"""The assignment's commands: compute a proposal, review it (with the changes from the
published one), explain it, edit it, hold students in place, publish it (telling only
the students whose papers changed), and export it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from commands import offload, solver
from commands.assignment.explain import Change, change_rows, diff, explain, rank_text
from commands.assignment.instance import STANDARD_SLOTS, CourseInstance, build_instance
from commands.assignment.store import (
    Current,
    Proposal,
    Rows,
    changes_since,
    current,
    is_empty,
    latest_run,
    make_summary,
    prepare_proposal,
    rows_of,
    store_proposal,
)
from commands.assignment.summary import (
    chart_inputs,
    histograms,
    running_pairs,
    summary_sections,
)
from commands.audit import Reason, record
from commands.context import Context
from commands.errors import Conflict, InvalidInput, NotFound, PreparedStale
from commands.exports import csv_text, table_files
from commands.outbox import new_batch
from commands.people import find_person
from commands.registry import Access, Complete, registry
from commands.replies import Delivery, FileOut, Reply, Table, Tone
from commands.solver import plural
from commands.timefmt import fmt_day
from db.models import Assignment, Paper, Person, RankKind, Slot

# --------------------------------------------------------------------------- helpers


def _running(ci: CourseInstance, rows: Rows) -> set[int]:
    """Battle papers whose battle runs (both sides at the group's minimum)."""
    return {p for pair in running_pairs(ci, rows[RankKind.BATTLE]) for p in pair}


def _edited(run_summary: dict[str, Any], live: dict[str, Any]) -> bool:
    return any(
        run_summary.get(k, {}).get("profile") != live.get(k, {}).get("profile")
        for k in ("standard", "battle")
    )


async def _live(
    ctx: Context, cur: Current, ci: CourseInstance | None = None
) -> tuple[CourseInstance, dict[str, Any], bool]:
    """The report on what staff see now (the proposal or the published assignment),
    keeping the solver's facts when nothing was edited since it ran."""
    run = await latest_run(ctx.session, ctx.course.id)
    if run is None or is_empty(cur.rows):
        raise NotFound("No assignment yet.", hint="Compute one with `assign`.")
    if ci is None:
        ci = await build_instance(ctx.session, ctx.course, run.seed, today=ctx.today())
    previous = cur.published if cur.is_proposal else cur.rows
    today = ctx.today() if cur.is_proposal else None
    running = running_pairs(ci, cur.rows[RankKind.BATTLE])
    live = make_summary(ci, cur.rows, previous, today, None, running)
    edited = _edited(run.summary, live)
    for kind in ("standard", "battle"):
        stored = run.summary.get(kind, {})
        fresh = live[kind]
        assert isinstance(fresh, dict)
        if fresh and not edited:  # solver facts describe the computed proposal, not edits
            for k in (
                "total_rank",
                "min_sum_total",
                "fairness_cost",
                "proven_optimal",
                "method",
                "solve_seconds",
                "empty_reason",
                "notes",
            ):
                if k in stored:
                    fresh[k] = stored[k]
    if cur.is_proposal and run.summary.get("changed_while_solving"):
        live["changed_while_solving"] = run.summary["changed_while_solving"]
    return ci, live, edited


def _changes_table(ci: CourseInstance, changes: list[Change]) -> list[Table]:
    if not changes:
        return []
    return [
        Table(
            ["Student", "Kind", "Published (rank)", "Proposed (rank)"],
            change_rows(ci, changes),
            title="Changes from the published assignment",
        )
    ]


def _schedule_rows(ci: CourseInstance, rows: Rows, *, with_ranks: bool) -> list[list[str]]:
    by_paper: dict[int, list[str]] = defaultdict(list)
    for kind, kind_rows in rows.items():
        for key, number in kind_rows.items():
            person = ci.people.get(key)
            if person is None:
                continue
            label = person.name
            if with_ranks:
                label += f" ({rank_text(ci, kind, key, number)})"
            by_paper[number].append(label)
    out = []
    for number in sorted(
        ci.papers, key=lambda n: (ci.papers[n].class_date or datetime.max.date(), n)
    ):
        paper = ci.papers[number]
        if paper.slot is Slot.INSTRUCTOR:
            continue
        who = ", ".join(sorted(by_paper.get(number, []))) or "— (nobody: empty)"
        date = fmt_day(paper.class_date) if paper.class_date else "—"
        out.append([date, f"#{number} {paper.title}", paper.slot.value, who])
    return out


def _personal(
    ci: CourseInstance,
    person: Person,
    rows: Rows,
    *,
    before: Rows | None = None,
) -> Reply:
    """A student's papers, each with why; ``before``: say what it was (a change)."""
    key = str(person.id)
    running = _running(ci, rows)
    lines = []
    mates: dict[int, list[str]] = defaultdict(list)
    for kind_rows in rows.values():
        for other, number in kind_rows.items():
            if other != key and other in ci.people:
                mates[number].append(ci.people[other].name)
    std = rows[RankKind.STANDARD].get(key)
    if std is not None:
        p = ci.papers[std]
        when = fmt_day(p.class_date) if p.class_date else "date to be set"
        with_ = f" with {', '.join(sorted(mates[std]))}" if mates[std] else " (solo)"
        was = ""
        if before is not None and before[RankKind.STANDARD].get(key) not in (None, std):
            was = f" (changed: it was #{before[RankKind.STANDARD][key]})"
        lines.append(
            f"Presentation: #{std} {p.title} ({p.slot.value} min), {when}{with_}{was}. "
            + explain(ci, RankKind.STANDARD, rows[RankKind.STANDARD], key)
        )
    bat = rows[RankKind.BATTLE].get(key)
    if bat is not None:
        p = ci.papers[bat]
        pair = next((a, b) for a, b in ci.inst.battle_pairs if bat in (a, b))
        other = ci.papers[pair[1] if pair[0] == bat else pair[0]]
        when = fmt_day(p.class_date) if p.class_date else "date to be set"
        was = ""
        if before is not None and before[RankKind.BATTLE].get(key) not in (None, bat):
            was = f" (changed: it was #{before[RankKind.BATTLE][key]})"
        lines.append(
            f"Paper battle: you defend #{bat} {p.title} against #{other.number} "
            f"{other.title}, {when}, with {', '.join(sorted(mates[bat])) or 'nobody yet'}{was}. "
            + explain(ci, RankKind.BATTLE, rows[RankKind.BATTLE], key, running=running)
        )
    if not lines:
        lines.append("You have no presentation in the assignment any more.")
    title = "Your presentations changed" if before is not None else "Your presentations"
    return Reply(title=title, text="\n".join(lines), ephemeral=True)


# ---------------------------------------------------------------------------- assign


class AssignOptions(BaseModel):
    seed: int = Field(0, ge=0, description="tie-break seed (published, so a run is reproducible)")
    changes: Literal["any", "minimal"] = Field(
        "any",
        description="`minimal`: move as few students from the published assignment as "
        "the rules allow, before fairness",
    )


@dataclass(frozen=True)
class Solved:
    """What `assign` prepares on a snapshot, outside the write queue: the proposal, its
    rank profile charts (drawn in the worker process), and what changed in the course
    while it was computed."""

    proposal: Proposal
    charts: list[FileOut]
    changed: tuple[str, ...] = ()


async def _solve(ctx: Context, opts: AssignOptions) -> Solved:
    proposal = await prepare_proposal(
        ctx.session,
        ctx.course,
        seed=opts.seed,
        today=ctx.today(),
        minimal_changes=opts.changes == "minimal",
    )
    shows = chart_inputs(proposal.ci, proposal.sol)
    return Solved(proposal, await offload.run(histograms, shows))


async def _still_true(ctx: Context, _: AssignOptions, solved: Solved, final: bool) -> Solved:
    """Solve again (PreparedStale) when the course changed while the solver ran; on the
    last try keep the proposal and say what changed."""
    changed = await changes_since(ctx.session, ctx.course, solved.proposal, today=ctx.today())
    if changed and not final:
        raise PreparedStale
    return replace(solved, changed=tuple(changed))


@registry.command(
    "assign",
    "Compute a fair, optimal presentation assignment from the rankings",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="rank",
    examples=("assign", "assign seed=7", "assign changes=minimal"),
    prepare=_solve,  # the solver runs on a snapshot: other commands are not held up
    check=_still_true,
)
async def assign(ctx: Context, opts: AssignOptions) -> Reply:
    # Solved on a snapshot and checked by the core (``prepare``/``check``): this
    # transaction only stores the proposal. The "Propose a repair" button runs the
    # command line, so it comes this way too.
    solved: Solved = ctx.prepared
    changed = list(solved.changed)
    run = await store_proposal(
        ctx.session, ctx.course, solved.proposal, now=ctx.now, changed=changed
    )
    ci = solved.proposal.ci
    cur = Current(solved.proposal.rows, solved.proposal.published, True)
    running = ", ".join(f"#{a} vs #{b}" for a, b in run.summary["running_battles"]) or "none"
    text = f"{plural(len(ci.inst.students), 'student')}. Battles that run: {running}."
    tables = []
    if not is_empty(cur.published):
        changes = cur.changes
        moved = len({c.key for c in changes})
        text += (
            f" Next to the published assignment: {plural(moved, 'student')} would change "
            f"{'paper or side' if moved else 'nothing'}; students keep seeing the "
            "published one until you publish this."
        )
        tables = _changes_table(ci, changes)
    text += (
        " Review it with `assign show`, edit with `assign swap` / `assign set`, then "
        "`assign publish`."
    )
    for note in ci.ignored:
        text += f"\nIgnored rule — {note}."
    if changed:
        text += (
            f"\nWhile it was computed, {solver.names(changed)}: this proposal does not include "
            "that. Run `assign` again to include it (when rankings are still open, "
            "they may keep changing until the deadline)."
        )
    return Reply(
        title=f"Assignment proposal (seed {opts.seed})",
        text=text,
        tables=tables,
        sections=summary_sections(run.summary),
        files=solved.charts,
    )


@registry.command(
    "assign show",
    "The current assignment: who presents what, empty days, and how fair it is",
    access=Access.STAFF,
    ephemeral=True,
    topic="rank",
    reads=True,
)
async def assign_show(ctx: Context, _: BaseModel) -> Reply:
    cur = await current(ctx.session, ctx.course.id)
    ci, live, edited = await _live(ctx, cur)
    rows = _schedule_rows(ci, cur.rows, with_ranks=True)
    if cur.is_proposal:
        state = "a proposal (not published yet)"
        if not is_empty(cur.published):
            state += "; students see the published one until you publish"
    else:
        state = "published"
    if edited:
        state += ". It was edited by hand after it was computed"
    if live.get("changed_while_solving"):
        state += (
            f". While it was computed, {solver.names(live['changed_while_solving'])}: this "
            "proposal does not include that (`assign` again does)"
        )
    return Reply(
        title="Presentation assignment",
        text=f"This is {state}.",
        tables=[
            Table(["Date", "Paper", "Slot", "Presenters (their rank)"], rows),
            *_changes_table(ci, cur.changes),
        ],
        sections=summary_sections(live),
        files=await offload.run(histograms, live),
    )


class WhyOptions(BaseModel):
    student: str = Field(description="a student (email, onyen or name)")


@registry.command(
    "assign why",
    "Why a student got their papers, with who took their better choices",
    access=Access.STAFF,
    ephemeral=True,
    topic="rank",
    examples=("assign why alice",),
    reads=True,
)
async def assign_why(ctx: Context, opts: WhyOptions) -> Reply:
    person = await find_person(ctx.session, ctx.course.id, opts.student, list_matches=True)
    cur = await current(ctx.session, ctx.course.id)
    run = await latest_run(ctx.session, ctx.course.id)
    if run is None or is_empty(cur.rows):
        raise NotFound("No assignment yet.", hint="Compute one with `assign`.")
    ci = await build_instance(ctx.session, ctx.course, run.seed)
    key = str(person.id)
    if key not in ci.people:
        raise NotFound(f"{person.name} is not a student of the course.")
    running = _running(ci, cur.rows)
    lines = []
    for kind in (RankKind.STANDARD, RankKind.BATTLE):
        number = cur.rows[kind].get(key)
        if number is None:
            lines.append(f"{kind.value.title()}: none.")
            continue
        lines.append(
            f"{kind.value.title()}: #{number} {ci.papers[number].title}. "
            + explain(ci, kind, cur.rows[kind], key, staff=True, running=running)
        )
    which = "proposal" if cur.is_proposal else "published assignment"
    return Reply(title=f"{person.name}, in the {which}", text="\n".join(lines))


# ------------------------------------------------------------------------ hand edits


async def _row(session: AsyncSession, course_id: int, person: Person, kind: RankKind) -> Assignment:
    """The row staff edit: in the proposal when there is one, else the published one."""
    slots = (Slot.BATTLE,) if kind is RankKind.BATTLE else STANDARD_SLOTS
    row = await session.scalar(
        select(Assignment)
        .join(Paper, Paper.id == Assignment.paper_id)
        .where(
            Assignment.course_id == course_id,
            Assignment.person_id == person.id,
            Paper.slot.in_(slots),
        )
        .order_by(Assignment.published)  # the proposal (unpublished) first
    )
    if row is None:
        raise NotFound(
            f"{person.name} has no {kind.value} paper in the assignment.",
            hint="Run `assign` first.",
        )
    return row


async def _tell_changed(ctx: Context, people: list[Person], before: Rows) -> Delivery:
    """After a hand edit of the published assignment: each affected student is told."""
    rows = await rows_of(ctx.session, ctx.course.id, published=True)
    ci = await build_instance(ctx.session, ctx.course, 0)
    batch = new_batch("assignment-change")
    for person in people:
        ctx.dm(person.id, _personal(ci, person, rows, before=before), batch=batch)
    return Delivery(
        batch,
        what="private messages about the change",
        hint="They can see theirs with `assignment`; `outbox unreached` lists them.",
    )


class SwapOptions(BaseModel):
    first: str = Field(description="a student (email, onyen or name)")
    second: str = Field(description="another student")
    kind: Literal["standard", "battle"] = Field("standard", description="which papers to swap")
    reason: Reason = None


@registry.command(
    "assign swap",
    "Swap two students' papers in the assignment",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="rank",
    examples=(
        "assign swap alice bob",
        "assign swap alice bob battle",
        'assign swap alice bob reason="Alice is away that week"',
    ),
)
async def assign_swap(ctx: Context, opts: SwapOptions) -> Reply:
    a = await find_person(ctx.session, ctx.course.id, opts.first, list_matches=True)
    b = await find_person(ctx.session, ctx.course.id, opts.second, list_matches=True)
    if a.id == b.id:
        raise InvalidInput("Give two different students to swap.")
    kind = RankKind(opts.kind)
    row_a = await _row(ctx.session, ctx.course.id, a, kind)
    row_b = await _row(ctx.session, ctx.course.id, b, kind)
    if row_a.published != row_b.published:
        raise Conflict(
            f"Only one of {a.name} and {b.name} is in the proposal.",
            hint="Compute the proposal again with `assign`, or discard it with `assign discard`.",
        )
    if row_a.paper_id == row_b.paper_id:
        raise InvalidInput(f"{a.name} and {b.name} already share that paper; nothing to swap.")
    before = await rows_of(ctx.session, ctx.course.id, published=True)
    row_a.paper_id, row_b.paper_id = row_b.paper_id, row_a.paper_id
    await ctx.session.flush()
    pa = await ctx.session.get(Paper, row_a.paper_id)
    pb = await ctx.session.get(Paper, row_b.paper_id)
    assert pa is not None and pb is not None
    for who, other, old, new, row in ((a, b, pb, pa, row_a), (b, a, pa, pb, row_b)):
        record(
            ctx,
            "assign.swap",
            subject=who,
            summary=f"{kind.value} paper swapped with {other.name}",
            before={"kind": kind.value, "paper": old.number, "published": row.published},
            after={"kind": kind.value, "paper": new.number, "published": row.published},
            reason=opts.reason,
        )
    text = f"Swapped: {a.name} now has #{pa.number}, {b.name} now has #{pb.number}."
    delivery = None
    if row_a.published:
        text += " This is the published assignment: each of them gets a private message."
        delivery = await _tell_changed(ctx, [a, b], before)
    return Reply(text=text, tone=Tone.SUCCESS, delivery=delivery)


class SetOptions(BaseModel):
    student: str = Field(description="a student (email, onyen or name)")
    paper: Annotated[int, Complete("paper")] = Field(description="the paper id to give them")
    reason: Reason = None


@registry.command(
    "assign set",
    "Give a student a particular paper in the assignment",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="rank",
    examples=("assign set alice 7", 'assign set bob 8 reason="asked for a later date"'),
)
async def assign_set(ctx: Context, opts: SetOptions) -> Reply:
    person = await find_person(ctx.session, ctx.course.id, opts.student, list_matches=True)
    paper = await ctx.session.scalar(
        select(Paper).where(Paper.course_id == ctx.course.id, Paper.number == opts.paper)
    )
    if paper is None:
        raise NotFound(f"There is no paper #{opts.paper}.", hint="`papers` lists them.")
    if paper.slot is Slot.INSTRUCTOR:
        raise InvalidInput(f"#{paper.number} is presented by the instructor; it is never assigned.")
    kind = RankKind.BATTLE if paper.slot is Slot.BATTLE else RankKind.STANDARD
    row = await _row(ctx.session, ctx.course.id, person, kind)
    if row.paper_id == paper.id:
        return Reply(text=f"{person.name} already has #{paper.number}.")
    ci = await build_instance(ctx.session, ctx.course, 0)
    hi = ci.limits(paper.number)[1]

    async def count(paper_id: int) -> int:
        return len(
            list(
                await ctx.session.scalars(
                    select(Assignment.id).where(
                        Assignment.paper_id == paper_id,
                        Assignment.published.is_(row.published),
                    )
                )
            )
        )

    have = await count(paper.id)
    if have >= hi:
        what = "battle side" if kind is RankKind.BATTLE else f"{paper.slot.value}-minute paper"
        raise Conflict(
            f"#{paper.number} already has {plural(have, 'presenter')}, the most a {what} takes "
            f"({hi}).",
            hint="Use `assign swap` to exchange with one of them.",
        )
    before = await rows_of(ctx.session, ctx.course.id, published=True)
    old = await ctx.session.get(Paper, row.paper_id)
    row.paper_id = paper.id
    await ctx.session.flush()
    record(
        ctx,
        "assign.set",
        subject=person,
        summary=f"{kind.value} paper #{paper.number}",
        before={
            "kind": kind.value,
            "paper": old.number if old else None,
            "published": row.published,
        },
        after={"kind": kind.value, "paper": paper.number, "published": row.published},
        reason=opts.reason,
    )
    warn = ""
    if old is not None:
        left = await count(old.id)
        old_lo = ci.limits(old.number)[0]
        if left < max(old_lo, 1):
            what = "side" if kind is RankKind.BATTLE else "paper"
            warn = (
                f" Note: #{old.number}'s {what} now has {plural(left, 'presenter')}, fewer "
                f"than its minimum of {max(old_lo, 1)}"
                + (" (nobody presents it)" if left == 0 else "")
                + "."
            )
    text = f"{person.name} now presents #{paper.number} (was #{old.number if old else '?'}).{warn}"
    delivery = None
    if row.published:
        text += f" This is the published assignment: {person.name} gets a private message."
        delivery = await _tell_changed(ctx, [person], before)
    return Reply(text=text, tone=Tone.SUCCESS, delivery=delivery)


class KeepOptions(BaseModel):
    students: list[str] = Field(
        min_length=1,
        description="students to hold in place (email, onyen or name), or `none` to "
        "release everyone",
    )


@registry.command(
    "assign keep",
    "Hold students on their published papers when the assignment is computed again",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="rank",
    examples=("assign keep alice bob", "assign keep none"),
)
async def assign_keep(ctx: Context, opts: KeepOptions) -> Reply:
    published = await rows_of(ctx.session, ctx.course.id, published=True)
    if is_empty(published):
        raise Conflict(
            "Nothing is published yet, so there is nobody to hold in place.",
            hint="Publish an assignment with `assign publish` first.",
        )
    if [s.lower() for s in opts.students] == ["none"]:
        await ctx.session.execute(
            update(Assignment).where(Assignment.course_id == ctx.course.id).values(kept=False)
        )
        record(ctx, "assign.keep", summary="released everyone", after={"kept": []})
        return Reply(text="Nobody is held in place any more.", tone=Tone.SUCCESS)
    people = [
        await find_person(ctx.session, ctx.course.id, s, list_matches=True) for s in opts.students
    ]
    missing = [
        p.name
        for p in people
        if str(p.id) not in published[RankKind.STANDARD]
        and str(p.id) not in published[RankKind.BATTLE]
    ]
    if missing:
        raise InvalidInput(
            f"Not in the published assignment: {', '.join(missing)}.",
            hint="`assign show` lists who presents what.",
        )
    ids = [p.id for p in people]
    await ctx.session.execute(
        update(Assignment)
        .where(
            Assignment.course_id == ctx.course.id,
            Assignment.published.is_(True),
            Assignment.person_id.in_(ids),
        )
        .values(kept=True)
    )
    names = ", ".join(p.name for p in people)
    record(ctx, "assign.keep", summary=f"held in place: {names}", after={"kept": ids})
    return Reply(
        text=f"Held in place: {names}. The next `assign` keeps their published papers "
        "and battle sides; `assign keep none` releases everyone.",
        tone=Tone.SUCCESS,
    )


@registry.command(
    "assign discard",
    "Throw away the proposal; the published assignment (if any) stays",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="rank",
)
async def assign_discard(ctx: Context, _: BaseModel) -> Reply:
    proposal = await rows_of(ctx.session, ctx.course.id, published=False)
    if is_empty(proposal):
        return Reply(text="There is no proposal to discard.")
    await ctx.session.execute(
        delete(Assignment).where(
            Assignment.course_id == ctx.course.id, Assignment.published.is_(False)
        )
    )
    record(ctx, "assign.discard", summary="discarded the proposal")
    return Reply(text="The proposal is discarded.", tone=Tone.SUCCESS)


# --------------------------------------------------------------------------- publish


async def _by_name(session: AsyncSession, course_id: int, rows: Rows) -> dict[str, dict[str, int]]:
    """An assignment as name -> {"standard": n, "battle": n}, for the audit log."""
    names = {
        str(p.id): p.name
        for p in await session.scalars(select(Person).where(Person.course_id == course_id))
    }
    out: dict[str, dict[str, int]] = {}
    for kind, kind_rows in rows.items():
        for key, number in kind_rows.items():
            out.setdefault(names.get(key, key), {})[kind.value] = number
    return dict(sorted(out.items()))


class PublishOptions(BaseModel):
    reason: Reason = None


@registry.command(
    "assign publish",
    "Publish the proposal: tell each student whose papers it sets or changes",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="rank",
)
async def assign_publish(ctx: Context, opts: PublishOptions) -> Reply:
    run = await latest_run(ctx.session, ctx.course.id)
    proposal = await rows_of(ctx.session, ctx.course.id, published=False)
    if run is None or is_empty(proposal):
        raise Conflict(
            "There is no unpublished proposal to publish.", hint="Compute one with `assign`."
        )
    before = await rows_of(ctx.session, ctx.course.id, published=True)
    first = is_empty(before)
    kept = set(
        await ctx.session.scalars(
            select(Assignment.person_id).where(
                Assignment.course_id == ctx.course.id,
                Assignment.published.is_(True),
                Assignment.kept.is_(True),
            )
        )
    )
    record(
        ctx,
        "assign.publish",
        summary=f"published the assignment of {len(proposal[RankKind.STANDARD])} students "
        f"(seed {run.seed})",
        before={"assignment": await _by_name(ctx.session, ctx.course.id, before) or None},
        after={
            "assignment": await _by_name(ctx.session, ctx.course.id, proposal),
            "seed": run.seed,
        },
        reason=opts.reason,
    )
    await ctx.session.execute(
        delete(Assignment).where(
            Assignment.course_id == ctx.course.id, Assignment.published.is_(True)
        )
    )
    await ctx.session.execute(
        update(Assignment).where(Assignment.course_id == ctx.course.id).values(published=True)
    )
    if kept:
        await ctx.session.execute(
            update(Assignment)
            .where(Assignment.course_id == ctx.course.id, Assignment.person_id.in_(kept))
            .values(kept=True)
        )
    run.published_at = ctx.now
    await ctx.session.flush()
    ci = await build_instance(ctx.session, ctx.course, run.seed)
    changed_keys = {c.key for c in diff(before, proposal)}
    batch = new_batch("assignment")
    told = 0
    for key, person in ci.people.items():
        if key not in proposal[RankKind.STANDARD] and key not in proposal[RankKind.BATTLE]:
            continue
        if not first and key not in changed_keys:
            continue
        ctx.dm(
            person.id,
            _personal(ci, person, proposal, before=None if first else before),
            batch=batch,
        )
        told += 1
    if first:
        ctx.post(
            "announcements",
            Reply(
                text="📣 Presentation assignments are out! Type `assignment` to see yours, "
                "and `schedule` for who presents when.",
            ),
        )
        text = (
            f"Published. Each of the {told} assigned students gets a private message with "
            "their papers, and the announcement goes to #announcements."
        )
    else:
        if told:
            ctx.post(
                "announcements",
                Reply(
                    text=f"📣 The presentation schedule was updated: {plural(told, 'student')} "
                    f"{'has' if told == 1 else 'have'} new papers and got a message. "
                    "Type `schedule` to see it.",
                ),
            )
        text = (
            f"Published the new assignment. {plural(told, 'student')} whose papers changed "
            f"{'gets' if told == 1 else 'get'} a private message; the others keep theirs and "
            "are not messaged."
            if told
            else "Published; it is the same as before, so nobody is messaged."
        )
    return Reply(
        text=text,
        tone=Tone.SUCCESS,
        delivery=Delivery(
            batch,
            what="private messages",
            hint="They can see theirs with `assignment`; `outbox unreached` lists them.",
        )
        if told
        else None,
    )


# ------------------------------------------------------------------ students' view


@registry.command(
    "assignment",
    "Your presentation and battle papers, once published, and why you got them",
    ephemeral=True,
    topic="rank",
    reads=True,
)
async def my_assignment(ctx: Context, _: BaseModel) -> Reply:
    me = ctx.me()
    rows = await rows_of(ctx.session, ctx.course.id, published=True)
    key = str(me.id)
    if key not in rows[RankKind.STANDARD] and key not in rows[RankKind.BATTLE]:
        run = await latest_run(ctx.session, ctx.course.id)
        if is_empty(rows) or run is None:
            return Reply(
                text="Assignments are not published yet. You will get a message when they are."
            )
        return Reply(
            text="You have no presentation in the published assignment; ask the instructor."
        )
    ci = await build_instance(ctx.session, ctx.course, 0)
    return _personal(ci, me, rows)


@registry.command(
    "assign export",
    "The assignment as CSV, Markdown and HTML for the course website",
    access=Access.STAFF,
    ephemeral=True,
    topic="rank",
    reads=True,
)
async def assign_export(ctx: Context, _: BaseModel) -> Reply:
    cur = await current(ctx.session, ctx.course.id)
    if is_empty(cur.rows):
        raise NotFound("No assignment yet.", hint="Compute one with `assign`.")
    ci = await build_instance(ctx.session, ctx.course, 0)
    rows = _schedule_rows(ci, cur.rows, with_ranks=False)
    files = export_files(rows, ctx.course.key)
    state = "proposed (not yet published)" if cur.is_proposal else "published"
    return Reply(text=f"The {state} assignment, {len(rows)} papers.", files=files)


def export_files(rows: list[list[str]], stem: str) -> list[FileOut]:
    header = ["Date", "Paper", "Slot", "Presenters"]
    return table_files(f"{stem}-assignment", header, rows, ("csv", "md", "html"))


# ------------------------------------------------------------- without a bot (the CLI)


def solve_offline(ci: CourseInstance) -> tuple[dict[str, Any], str]:
    """Solve; return the summary and the assignment as CSV text."""
    try:
        sol = solver.solve(ci.inst)
    except solver.Infeasible as exc:
        raise InvalidInput(str(exc)) from None
    rows: Rows = {
        RankKind.STANDARD: dict(sol.standard.assignment),
        RankKind.BATTLE: dict(sol.battle.assignment),
    }
    empty: Rows = {RankKind.STANDARD: {}, RankKind.BATTLE: {}}
    summary = make_summary(ci, rows, empty, None, sol, sol.running_battles)
    out: list[list[object]] = []
    for kind in (RankKind.STANDARD, RankKind.BATTLE):
        for key in sorted(rows[kind], key=lambda k: ci.people[k].name):
            number = rows[kind][key]
            paper = ci.papers[number]
            person = ci.people[key]
            out.append(
                [
                    person.name,
                    person.email,
                    kind.value,
                    number,
                    paper.title,
                    paper.class_date.isoformat() if paper.class_date else "",
                    rank_text(ci, kind, key, number),
                ]
            )
    header = ["student", "email", "kind", "paper", "title", "date", "rank"]
    return summary, csv_text(header, out)
