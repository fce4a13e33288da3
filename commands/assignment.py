"""The presentation assignment: compute a fair, optimal proposal from the rankings,
review and edit it, publish it, and export it for the course website.

The optimisation lives in :mod:`commands.solver` (pure); this module turns the course
into a solver instance, stores the result as ``assignments`` rows, and explains it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from commands import solver
from commands.audit import Reason, record
from commands.context import Context
from commands.coursefile import CourseFile
from commands.errors import Conflict, InvalidInput, NotFound
from commands.exports import csv_text, table_files
from commands.outbox import new_batch
from commands.people import find_person
from commands.rankings import RankingRows, check_choices, rankings_of, students
from commands.registry import Access, Complete, registry
from commands.replies import Delivery, FileOut, Reply, Section, Table, Tone
from commands.timefmt import fmt_day
from db.models import (
    Assignment,
    AssignmentRun,
    Battle,
    Course,
    Paper,
    Person,
    RankKind,
    Slot,
)

STANDARD_SLOTS = (Slot.MIN30, Slot.MIN45)

# ------------------------------------------------------------------------ the instance


@dataclass
class CourseInstance:
    """A solver instance built from the course, with the names to explain it."""

    inst: solver.Instance
    people: dict[str, Person]  # solver key (person id) -> person
    papers: dict[int, Paper]  # paper number -> paper
    submitted: dict[str, set[RankKind]] = field(default_factory=dict)

    def prefs(self, kind: RankKind) -> Mapping[str, Sequence[int]]:
        return self.inst.standard_prefs if kind is RankKind.STANDARD else self.inst.battle_prefs

    def ranked_prefs(self, kind: RankKind) -> dict[str, Sequence[int]]:
        """Preferences of the students who submitted this kind (for statistics)."""
        return {k: v for k, v in self.prefs(kind).items() if kind in self.submitted.get(k, set())}


async def build_instance(session: AsyncSession, course: Course, seed: int) -> CourseInstance:
    people = {str(p.id): p for p in await students(session, course.id)}
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
    have = await rankings_of(session, course.id)
    std: dict[str, list[int]] = {}
    bat: dict[str, list[int]] = {}
    submitted: dict[str, set[RankKind]] = {}
    for key, person in people.items():
        mine = have.get(person.id, {})
        submitted[key] = set(mine)
        for kind, target in ((RankKind.STANDARD, std), (RankKind.BATTLE, bat)):
            r = mine.get(kind)
            target[key] = [c.paper.number for c in r.choices] if r else []
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
    )
    return CourseInstance(inst, people, papers, submitted)


# ------------------------------------------------------------------------- the summary


def kind_summary(
    ci: CourseInstance,
    kind: RankKind,
    assignment: Mapping[str, int],
    result: solver.KindResult | None,
    capacity: Mapping[int, int],
) -> dict[str, Any]:
    """Everything the instructor's report says about one kind, JSON-ready."""
    prefs = ci.ranked_prefs(kind)
    mine = {k: v for k, v in assignment.items() if k in prefs}
    st = solver.stats(mine, prefs)
    rsd = solver.random_serial_dictatorship(ci.inst, kind.value, ci.inst.seed)
    better, worse, same = solver.head_to_head(mine, {k: rsd[k] for k in mine if k in rsd}, prefs)
    rsd_stats = solver.stats({k: rsd[k] for k in mine if k in rsd}, prefs)
    papers = (
        ci.inst.standard_papers
        if kind is RankKind.STANDARD
        else [p for pair in ci.inst.battle_pairs for p in pair]
    )
    used = set(assignment.values())
    out: dict[str, Any] = {
        "choices": max((len(v) for v in prefs.values()), default=0),
        "ranked": st.n,
        "not_ranked": len(ci.inst.students) - st.n,
        "profile": {str(k): v for k, v in sorted(st.profile.items())},
        "unranked": st.unranked,
        "mean_rank": round(st.mean_rank, 3),
        "pct_first": round(st.pct_first, 1),
        "pct_top3": round(st.pct_top3, 1),
        "worst_rank": st.worst_rank,
        "at_worst": st.at_worst,
        "rsd": {
            "prefer_ours": better,
            "prefer_rsd": worse,
            "same": same,
            "mean_rank": round(rsd_stats.mean_rank, 3),
            "worst_rank": rsd_stats.worst_rank,
            "unranked": rsd_stats.unranked,
        },
        "oversubscribed": [list(x) for x in solver.oversubscribed(prefs, capacity)[:5]],
        "unused": sorted(p for p in papers if p not in used),
    }
    if result is not None:
        out.update(
            total_rank=result.total_rank,
            min_sum_total=result.min_sum_total,
            fairness_cost=result.total_rank - result.min_sum_total,
            proven_optimal=result.proven_optimal,
            method=result.method,
            solve_seconds=round(result.solve_seconds, 4),
        )
    return out


def capacities(ci: CourseInstance) -> tuple[dict[int, int], dict[int, int]]:
    cap = solver.presenter_cap(ci.inst)
    std = dict.fromkeys(ci.inst.standard_papers, cap)
    bat = {p: ci.inst.battle_group[1] for pair in ci.inst.battle_pairs for p in pair}
    return std, bat


def summary_sections(summary: Mapping[str, Any]) -> list[Section]:
    sections = []
    for kind in ("standard", "battle"):
        s = summary.get(kind)
        if not s:
            continue
        choices = s.get("choices", 0)

        def label(rank: int, choices: int = choices) -> str:
            return "unranked" if choices and rank > choices else solver.ordinal(rank)

        profile = ", ".join(f"{label(int(r))}: {n}" for r, n in s["profile"].items())
        fields = [
            ("Rank profile", profile),
            ("Mean rank", f"{s['mean_rank']:.2f}"),
            ("First choice", f"{s['pct_first']:.0f}%"),
            ("Top 3", f"{s['pct_top3']:.0f}%"),
            ("Worst rank", f"{label(s['worst_rank'])} ({s['at_worst']} student(s))"),
        ]
        if "fairness_cost" in s:
            fields.append(
                (
                    "Cost of fairness",
                    f"+{s['fairness_cost']} total rank vs. the pure minimum-sum optimum "
                    f"({s['min_sum_total']} → {s['total_rank']})",
                )
            )
        rsd = s["rsd"]
        relaxed = (
            "; for battles RSD ignores the minimum group size and which battles run, "
            "so it is an optimistic bound, not a valid alternative"
            if kind == "battle"
            else ""
        )
        fields.append(
            (
                "vs. random serial dictatorship",
                f"{rsd['prefer_ours']} prefer ours, {rsd['prefer_rsd']} prefer RSD, "
                f"{rsd['same']} same (RSD: mean {rsd['mean_rank']:.2f}, worst "
                f"{label(rsd['worst_rank'])}, {rsd['unranked']} unranked{relaxed})",
            )
        )
        if s["oversubscribed"]:
            fields.append(
                (
                    "Over-subscribed",
                    ", ".join(f"#{p} ({n} first choices)" for p, n in s["oversubscribed"]),
                )
            )
        fields.append(("Unused papers", ", ".join(f"#{p}" for p in s["unused"]) or "none"))
        if "method" in s:
            proven = "proven optimal" if s["proven_optimal"] else "NOT proven optimal (time limit)"
            fields.append(
                ("Solver", f"{s['method']}, {s['solve_seconds'] * 1000:.0f} ms, {proven}")
            )
        if s["not_ranked"]:
            fields.append(
                ("Did not rank", f"{s['not_ranked']} student(s), placed where seats remained")
            )
        sections.append(Section(f"{kind.title()} papers", "", fields))
    return sections


def histograms(summary: Mapping[str, Any]) -> list[FileOut]:
    files = []
    for kind in ("standard", "battle"):
        s = summary.get(kind)
        if s and s["ranked"]:
            profile = {int(r): n for r, n in s["profile"].items()}
            png = solver.histogram_png(profile, f"{kind.title()} papers: rank profile")
            files.append(
                FileOut(f"rank-profile-{kind}.png", png, "image/png", f"{kind} rank profile")
            )
    return files


# ------------------------------------------------------------------------ persistence


async def current_assignment(
    session: AsyncSession, course_id: int
) -> tuple[dict[int, int], dict[int, int], bool]:
    """person id -> standard paper number, person id -> battle paper number, published?"""
    q = (
        select(Assignment.person_id, Paper.number, Paper.slot, Assignment.published)
        .join(Paper, Paper.id == Assignment.paper_id)
        .where(Assignment.course_id == course_id)
    )
    std: dict[int, int] = {}
    bat: dict[int, int] = {}
    published = False
    for person_id, number, slot, pub in await session.execute(q):
        (bat if slot is Slot.BATTLE else std)[person_id] = number
        published = published or pub
    return std, bat, published


async def latest_run(session: AsyncSession, course_id: int) -> AssignmentRun | None:
    return await session.scalar(
        select(AssignmentRun)
        .where(AssignmentRun.course_id == course_id)
        .order_by(AssignmentRun.id.desc())
        .limit(1)
    )


async def compute_proposal(
    session: AsyncSession, course: Course, *, seed: int, now: datetime, replace: bool = False
) -> tuple[AssignmentRun, CourseInstance]:
    """Solve, store the proposal (unpublished), and return the run with its summary."""
    _, _, published = await current_assignment(session, course.id)
    if published and not replace:
        raise Conflict(
            "An assignment is already published.",
            hint="Run `assign --replace` to compute a new proposal anyway "
            "(students keep seeing the published one until you publish again).",
        )
    ci = await build_instance(session, course, seed)
    if not ci.inst.students:
        raise InvalidInput("There are no students on the roster to assign.")
    try:
        # The solver is CPU-bound (and may take seconds): keep it off the event loop.
        sol = await asyncio.to_thread(solver.solve, ci.inst)
    except solver.Infeasible as exc:
        raise InvalidInput(str(exc)) from None
    std_cap, bat_cap = capacities(ci)
    summary = {
        "seed": seed,
        "standard": kind_summary(
            ci, RankKind.STANDARD, sol.standard.assignment, sol.standard, std_cap
        ),
        "battle": kind_summary(ci, RankKind.BATTLE, sol.battle.assignment, sol.battle, bat_cap),
        "running_battles": [list(p) for p in sol.running_battles],
    }
    await session.execute(
        delete(Assignment).where(Assignment.course_id == course.id, Assignment.published.is_(False))
    )
    # With --replace the published rows stay until the new proposal is published.
    for result in (sol.standard, sol.battle):
        for key, number in result.assignment.items():
            session.add(
                Assignment(
                    course_id=course.id,
                    paper_id=ci.papers[number].id,
                    person_id=ci.people[key].id,
                    published=False,
                )
            )
    run = AssignmentRun(course_id=course.id, created_at=now, seed=seed, summary=summary)
    session.add(run)
    await session.flush()
    return run, ci


# --------------------------------------------------------------------------- commands


class AssignOptions(BaseModel):
    seed: int = Field(0, ge=0, description="tie-break seed (published, so a run is reproducible)")
    replace: bool = Field(False, description="compute a new proposal even if one is published")


@registry.command(
    "assign",
    "Compute a fair, optimal presentation assignment from the rankings",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="rank",
    examples=("assign", "assign seed=7"),
)
async def assign(ctx: Context, opts: AssignOptions) -> Reply:
    run, ci = await compute_proposal(
        ctx.session, ctx.course, seed=opts.seed, now=ctx.now, replace=opts.replace
    )
    running = ", ".join(f"#{a} vs #{b}" for a, b in run.summary["running_battles"]) or "none"
    return Reply(
        title=f"Assignment proposal (seed {opts.seed})",
        text=f"{len(ci.inst.students)} students. Battles that run: {running}. "
        "Review it with `assign show`, edit with `assign swap` / `assign set`, "
        "then `assign publish`.",
        sections=summary_sections(run.summary),
        files=histograms(run.summary),
    )


def _rank_text(ci: CourseInstance, kind: RankKind, key: str, number: int) -> str:
    if kind not in ci.submitted.get(key, set()):
        return "did not rank"
    rank = solver.rank_of(ci.prefs(kind), key, number)
    listed = len(ci.prefs(kind).get(key, []))
    return "not ranked" if rank > listed else solver.ordinal(rank)


async def _live_summary(
    ctx: Context,
) -> tuple[CourseInstance, dict[int, int], dict[int, int], bool, dict[str, Any]]:
    run = await latest_run(ctx.session, ctx.course.id)
    if run is None:
        raise NotFound("No assignment yet.", hint="Compute one with `assign`.")
    ci = await build_instance(ctx.session, ctx.course, run.seed)
    std, bat, published = await current_assignment(ctx.session, ctx.course.id)
    std_cap, bat_cap = capacities(ci)
    live = dict(run.summary)
    for kind, rows, cap in ((RankKind.STANDARD, std, std_cap), (RankKind.BATTLE, bat, bat_cap)):
        keyed = {str(pid): n for pid, n in rows.items()}
        fresh = kind_summary(ci, kind, keyed, None, cap)
        stored = run.summary.get(kind.value, {})
        # Solver facts (time, optimality) describe the computed proposal, not later edits.
        for k in (
            "total_rank",
            "min_sum_total",
            "fairness_cost",
            "proven_optimal",
            "method",
            "solve_seconds",
        ):
            if k in stored and fresh["profile"] == stored.get("profile"):
                fresh[k] = stored[k]
        live[kind.value] = fresh
    return ci, std, bat, published, live


@registry.command(
    "assign show",
    "The current assignment: who presents what, and how fair it is",
    access=Access.STAFF,
    ephemeral=True,
    topic="rank",
)
async def assign_show(ctx: Context, _: BaseModel) -> Reply:
    ci, std, bat, published, live = await _live_summary(ctx)
    rows = _schedule_rows(ci, std, bat, with_ranks=True)
    state = "published" if published else "a proposal (not published yet)"
    return Reply(
        title="Presentation assignment",
        text=f"This is {state}.",
        tables=[Table(["Date", "Paper", "Slot", "Presenters (their rank)"], rows)],
        sections=summary_sections(live),
        files=histograms(live),
    )


def _schedule_rows(
    ci: CourseInstance, std: Mapping[int, int], bat: Mapping[int, int], *, with_ranks: bool
) -> list[list[str]]:
    by_paper: dict[int, list[str]] = defaultdict(list)
    for rows, kind in ((std, RankKind.STANDARD), (bat, RankKind.BATTLE)):
        for pid, number in rows.items():
            key = str(pid)
            person = ci.people.get(key)
            if person is None:
                continue
            label = person.name
            if with_ranks:
                label += f" ({_rank_text(ci, kind, key, number)})"
            by_paper[number].append(label)
    out = []
    for number in sorted(
        ci.papers, key=lambda n: (ci.papers[n].class_date or datetime.max.date(), n)
    ):
        paper = ci.papers[number]
        if paper.slot is Slot.INSTRUCTOR:
            continue
        who = ", ".join(sorted(by_paper.get(number, []))) or "—"
        date = fmt_day(paper.class_date) if paper.class_date else "—"
        out.append([date, f"#{number} {paper.title}", paper.slot.value, who])
    return out


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
    a = await find_person(ctx.session, ctx.course.id, opts.first)
    b = await find_person(ctx.session, ctx.course.id, opts.second)
    if a.id == b.id:
        raise InvalidInput("Give two different students to swap.")
    kind = RankKind(opts.kind)
    row_a = await _row(ctx.session, ctx.course.id, a, kind)
    row_b = await _row(ctx.session, ctx.course.id, b, kind)
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
    note = _unpublished_note(row_a)
    return Reply(
        text=f"Swapped: {a.name} now has #{pa.number}, {b.name} now has #{pb.number}.{note}",
        tone=Tone.SUCCESS,
    )


async def _row(session: AsyncSession, course_id: int, person: Person, kind: RankKind) -> Assignment:
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


def _unpublished_note(row: Assignment) -> str:
    return " (Published: students see the change now.)" if row.published else ""


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
    person = await find_person(ctx.session, ctx.course.id, opts.student)
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
    count = len(
        list(
            await ctx.session.scalars(
                select(Assignment.id).where(
                    Assignment.paper_id == paper.id, Assignment.published.is_(row.published)
                )
            )
        )
    )
    limit = ctx.course.battle_group_max if kind is RankKind.BATTLE else ctx.course.max_presenters
    if count >= limit:
        what = "battle side" if kind is RankKind.BATTLE else "paper"
        raise Conflict(
            f"#{paper.number} already has {count} presenter(s), the most a {what} takes ({limit}).",
            hint="Use `assign swap` to exchange with one of them.",
        )
    old = await ctx.session.get(Paper, row.paper_id)
    row.paper_id = paper.id
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
    if old is not None and kind is RankKind.BATTLE:
        left = (
            len(
                list(
                    await ctx.session.scalars(
                        select(Assignment.id).where(
                            Assignment.paper_id == old.id, Assignment.published.is_(row.published)
                        )
                    )
                )
            )
            - 1
        )
        if 0 < left < ctx.course.battle_group_min:
            warn = f" Note: #{old.number}'s side now has {left}, fewer than {ctx.course.battle_group_min}."
    return Reply(
        text=f"{person.name} now presents #{paper.number} (was #{old.number if old else '?'}).{warn}"
        + _unpublished_note(row),
        tone=Tone.SUCCESS,
    )


async def _assignment_by_name(
    session: AsyncSession, course_id: int, *, published: bool
) -> dict[str, dict[str, int]]:
    """The published (or proposed) assignment as name -> {"standard": n, "battle": n},
    for the audit log."""
    rows = await session.execute(
        select(Person.name, Paper.number, Paper.slot)
        .join(Assignment, Assignment.person_id == Person.id)
        .join(Paper, Paper.id == Assignment.paper_id)
        .where(Assignment.course_id == course_id, Assignment.published.is_(published))
        .order_by(Person.name)
    )
    out: dict[str, dict[str, int]] = {}
    for name, number, slot in rows:
        kind = RankKind.BATTLE if slot is Slot.BATTLE else RankKind.STANDARD
        out.setdefault(name, {})[kind.value] = number
    return out


class PublishOptions(BaseModel):
    reason: Reason = None


@registry.command(
    "assign publish",
    "Publish the assignment: announce it and tell each student theirs",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="rank",
)
async def assign_publish(ctx: Context, opts: PublishOptions) -> Reply:
    run = await latest_run(ctx.session, ctx.course.id)
    proposal = await ctx.session.scalar(
        select(Assignment.id)
        .where(Assignment.course_id == ctx.course.id, Assignment.published.is_(False))
        .limit(1)
    )
    if run is None or proposal is None:
        raise Conflict(
            "There is no unpublished proposal to publish.", hint="Compute one with `assign`."
        )
    before = await _assignment_by_name(ctx.session, ctx.course.id, published=True)
    after = await _assignment_by_name(ctx.session, ctx.course.id, published=False)
    record(
        ctx,
        "assign.publish",
        summary=f"published the assignment of {len(after)} students (seed {run.seed})",
        before={"assignment": before or None},
        after={"assignment": after, "seed": run.seed},
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
    run.published_at = ctx.now
    await ctx.session.flush()
    ci = await build_instance(ctx.session, ctx.course, run.seed)
    std, bat, _ = await current_assignment(ctx.session, ctx.course.id)
    batch = new_batch("assignment")
    told = 0
    for person in ci.people.values():
        if person.id in std or person.id in bat:
            ctx.dm(person.id, _personal(ci, person, std, bat), batch=batch)
            told += 1
    ctx.post(
        "announcements",
        Reply(
            text="📣 Presentation assignments are out! Type `assignment` to see yours, "
            "and `schedule` for who presents when.",
        ),
    )
    return Reply(
        text=f"Published. Each of the {told} assigned students gets a private message "
        "with their papers, and the announcement goes to #announcements.",
        tone=Tone.SUCCESS,
        delivery=Delivery(
            batch,
            what="private messages",
            hint="They can see theirs with `assignment`; `outbox unreached` lists them.",
        ),
    )


def _personal(
    ci: CourseInstance, person: Person, std: Mapping[int, int], bat: Mapping[int, int]
) -> Reply:
    key = str(person.id)
    lines = []
    partners = defaultdict(list)
    for rows in (std, bat):
        for pid, number in rows.items():
            if pid != person.id and ci.people.get(str(pid)):
                partners[number].append(ci.people[str(pid)].name)
    if person.id in std:
        n = std[person.id]
        p = ci.papers[n]
        when = fmt_day(p.class_date) if p.class_date else "date to be set"
        with_ = f" with {', '.join(sorted(partners[n]))}" if partners[n] else " (solo)"
        lines.append(
            f"Presentation: #{n} {p.title} ({p.slot.value} min), {when}{with_} — "
            f"{_choice(ci, RankKind.STANDARD, key, n)}."
        )
    if person.id in bat:
        n = bat[person.id]
        p = ci.papers[n]
        pair = next((a, b) for a, b in ci.inst.battle_pairs if n in (a, b))
        other = ci.papers[pair[1] if pair[0] == n else pair[0]]
        when = fmt_day(p.class_date) if p.class_date else "date to be set"
        lines.append(
            f"Paper battle: you defend #{n} {p.title} against #{other.number} {other.title}, "
            f"{when}, with {', '.join(sorted(partners[n])) or 'nobody yet'} — "
            f"{_choice(ci, RankKind.BATTLE, key, n)}."
        )
    return Reply(title="Your presentations", text="\n".join(lines), ephemeral=True)


def _choice(ci: CourseInstance, kind: RankKind, key: str, number: int) -> str:
    text = _rank_text(ci, kind, key, number)
    if text == "did not rank":
        return "you did not submit a ranking"
    if text == "not ranked":
        return "not one you ranked (all of yours were taken)"
    return f"your {text} choice"


@registry.command(
    "assignment",
    "Your presentation and battle papers, once published",
    ephemeral=True,
    topic="rank",
)
async def my_assignment(ctx: Context, _: BaseModel) -> Reply:
    me = ctx.me()
    rows = await ctx.session.execute(
        select(Assignment.person_id, Paper.number, Paper.slot)
        .join(Paper, Paper.id == Assignment.paper_id)
        .where(Assignment.course_id == ctx.course.id, Assignment.published.is_(True))
    )
    std: dict[int, int] = {}
    bat: dict[int, int] = {}
    for pid, number, slot in rows:
        (bat if slot is Slot.BATTLE else std)[pid] = number
    if me.id not in std and me.id not in bat:
        run = await latest_run(ctx.session, ctx.course.id)
        if run is None or run.published_at is None:
            return Reply(
                text="Assignments are not published yet. You will get a message when they are."
            )
        return Reply(
            text="You have no presentation in the published assignment; ask the instructor."
        )
    ci = await build_instance(ctx.session, ctx.course, 0)
    return _personal(ci, me, std, bat)


@registry.command(
    "assign export",
    "The assignment as CSV, Markdown and HTML for the course website",
    access=Access.STAFF,
    ephemeral=True,
    topic="rank",
)
async def assign_export(ctx: Context, _: BaseModel) -> Reply:
    ci, std, bat, published, _live = await _live_summary(ctx)
    rows = _schedule_rows(ci, std, bat, with_ranks=False)
    files = export_files(rows, ctx.course.key)
    state = "published" if published else "proposed (not yet published)"
    return Reply(text=f"The {state} assignment, {len(rows)} papers.", files=files)


def export_files(rows: list[list[str]], stem: str) -> list[FileOut]:
    header = ["Date", "Paper", "Slot", "Presenters"]
    return table_files(f"{stem}-assignment", header, rows, ("csv", "md", "html"))


# ------------------------------------------------------------- without a bot (the CLI)


def offline_instance(cf: CourseFile, rows: RankingRows, seed: int) -> CourseInstance:
    """A solver instance from a course file and a rankings CSV, with no database.

    Students are the course file's students (matched by email, onyen, handle or name,
    case-insensitively); if the file lists none, the students named in the CSV.
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
    inst = solver.Instance(
        students=tuple(people),
        standard_papers=tuple(sorted(n for n, s in slots.items() if s in STANDARD_SLOTS)),
        battle_pairs=tuple((b.a, b.b) for b in cf.battles),
        standard_prefs=std,
        battle_prefs=bat,
        max_presenters=cf.course.ranking.max_presenters,
        battle_group=cf.course.ranking.battle_group,
        seed=seed,
    )
    return CourseInstance(inst, people, papers, submitted)


def solve_offline(ci: CourseInstance) -> tuple[dict[str, Any], str]:
    """Solve; return the summary and the assignment as CSV text."""
    try:
        sol = solver.solve(ci.inst)
    except solver.Infeasible as exc:
        raise InvalidInput(str(exc)) from None
    std_cap, bat_cap = capacities(ci)
    summary = {
        "seed": ci.inst.seed,
        "standard": kind_summary(
            ci, RankKind.STANDARD, sol.standard.assignment, sol.standard, std_cap
        ),
        "battle": kind_summary(ci, RankKind.BATTLE, sol.battle.assignment, sol.battle, bat_cap),
        "running_battles": [list(p) for p in sol.running_battles],
    }
    rows: list[list[object]] = []
    for kind, result in ((RankKind.STANDARD, sol.standard), (RankKind.BATTLE, sol.battle)):
        for key in sorted(result.assignment, key=lambda k: ci.people[k].name):
            number = result.assignment[key]
            paper = ci.papers[number]
            person = ci.people[key]
            rows.append(
                [
                    person.name,
                    person.email,
                    kind.value,
                    number,
                    paper.title,
                    paper.class_date.isoformat() if paper.class_date else "",
                    _rank_text(ci, kind, key, number),
                ]
            )
    header = ["student", "email", "kind", "paper", "title", "date", "rank"]
    return summary, csv_text(header, rows)
