"""The gradebook (issue #19): what counts in each component of ``course.grading``, and
the staff commands that record what the bot cannot grade on its own.

- ``critiques``: computed from the graded critiques and those past their deadline,
  under the course's critique rules (:mod:`commands.critiques`).
- ``project``: per milestone, one grade per group shared by the members it was given to,
  plus each member's adjustment (``grade project``, ``grade adjust``), weighted by the
  milestones' weights over the milestones graded so far.
- ``participation``: suggested from what the bot saw (discussions attended, battle votes
  with a justification), stored only once the instructor confirms
  (``grade participation``).

A grade set by hand (``grade set``) wins over what is computed. Every change is an audit
entry, written with the change."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.audit import Reason, record
from commands.context import Context
from commands.critiques import Tally, course_students, critique_tallies
from commands.errors import Conflict, InvalidInput, NotFound
from commands.people import find_person
from commands.projects import find_milestone, find_project, members_of
from commands.registry import Access, registry
from commands.replies import Reply, Table, Tone
from db.models import (
    Assignment,
    Battle,
    BattlePoll,
    BattleVote,
    Course,
    Discussion,
    DiscussionCheckin,
    DiscussionGroup,
    GradeAdjustment,
    GradeEntry,
    Milestone,
    Person,
    Project,
    ProjectGrade,
    Role,
)

#: The components the bot computes (the keys of ``course.grading`` they need).
CRITIQUES, PROJECT, PARTICIPATION = "critiques", "project", "participation"
MAX_POINTS = 100.0


def components(course: Course) -> dict[str, float]:
    """Component -> weight in percent, in the course file's order."""
    return {str(k).lower(): float(v) for k, v in (course.grading or {}).items()}


def component(course: Course, name: str) -> str:
    """A component of the course's grading, or an error naming them."""
    comps = components(course)
    key = name.strip().lower()
    if key not in comps:
        listed = ", ".join(f"`{c}`" for c in comps) or "none (the course file sets `grading`)"
        raise InvalidInput(f"`{name}` is not a grading component.", hint=f"Components: {listed}.")
    return key


def fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def check_points(points: float, what: str = "Points") -> None:
    if not 0 <= points <= MAX_POINTS:
        raise InvalidInput(f"{what} are out of 100: {fmt(points)} is outside 0-100.")


def enrolled(person: Person) -> None:
    """Refuse anyone but an enrolled student (staff, a withdrawn student)."""
    if person.role is Role.WITHDRAWN:
        raise InvalidInput(f"{person.name} withdrew from the course (not enrolled).")
    if person.role is not Role.STUDENT:
        raise InvalidInput(f"{person.name} is not a student.")


# ------------------------------------------------------------------------ project grades


@dataclass
class MilestoneGrade:
    """One student's grade for one milestone: their group's, plus their adjustment."""

    milestone: Milestone
    group: float | None = None  # the group's grade (None: not graded)
    project: str | None = None  # the group's name
    adjustment: float = 0.0
    reason: str | None = None

    @property
    def points(self) -> float | None:
        if self.group is None:
            return None
        return min(MAX_POINTS, max(0.0, self.group + self.adjustment))


async def course_milestones(session: AsyncSession, course: Course) -> list[Milestone]:
    return list(
        await session.scalars(
            select(Milestone)
            .where(Milestone.course_id == course.id)
            .order_by(Milestone.due.is_(None), Milestone.due, Milestone.id)
        )
    )


async def milestone_grades(
    session: AsyncSession, course: Course
) -> dict[int, list[MilestoneGrade]]:
    """Person id -> their grade for every milestone (in order; ungraded ones too): the
    grade of the group they were in when it was set, and their adjustment."""
    milestones = await course_milestones(session, course)
    names = {
        p.id: p.name
        for p in await session.scalars(select(Project).where(Project.course_id == course.id))
    }
    group: dict[tuple[int, int], ProjectGrade] = {}
    for g in await session.scalars(
        select(ProjectGrade)
        .where(ProjectGrade.course_id == course.id)
        .order_by(ProjectGrade.updated_at)
    ):
        for pid in g.members or []:
            group[(int(pid), g.milestone_id)] = g  # the latest wins
    adjust = {
        (a.person_id, a.milestone_id): a
        for a in await session.scalars(
            select(GradeAdjustment).where(GradeAdjustment.course_id == course.id)
        )
    }
    out: dict[int, list[MilestoneGrade]] = {}
    for pid in {p for p, _ in group} | {p for p, _ in adjust}:
        rows = []
        for m in milestones:
            g, a = group.get((pid, m.id)), adjust.get((pid, m.id))
            rows.append(
                MilestoneGrade(
                    m,
                    None if g is None else g.points,
                    None if g is None else names.get(g.project_id),
                    0.0 if a is None else a.points,
                    None if a is None else a.reason,
                )
            )
        out[pid] = rows
    return out


def project_points(grades: list[MilestoneGrade]) -> float | None:
    """The project component out of 100: the graded milestones averaged by their weights
    (equal weights when the course file gives none); None while none is graded."""
    graded = [g for g in grades if g.points is not None]
    if not graded:
        return None
    weighted = any(g.milestone.weight for g in grades)
    weights = [float(g.milestone.weight or 0) if weighted else 1.0 for g in graded]
    if not sum(weights):
        return None
    return sum(w * (g.points or 0.0) for w, g in zip(weights, graded, strict=True)) / sum(weights)


def project_note(grades: list[MilestoneGrade]) -> str:
    graded = [g for g in grades if g.points is not None]
    return f"{len(graded)} of {len(grades)} milestones graded" if grades else ""


# ---------------------------------------------------------------------- participation


@dataclass
class Participation:
    """What the bot saw of a student: discussions held and attended (checked in, or in
    a breakout group), closed battle polls they could vote in and their votes with a
    justification."""

    discussions: int = 0
    attended: int = 0
    polls: int = 0
    voted: int = 0

    @property
    def suggestion(self) -> float | None:
        """Out of 100: the share of those chances they took (None: no chance yet)."""
        chances = self.discussions + self.polls
        return round(100.0 * (self.attended + self.voted) / chances, 1) if chances else None

    def evidence(self) -> str:
        return (
            f"{self.attended}/{self.discussions} discussions attended, "
            f"{self.voted}/{self.polls} battle votes with a justification"
        )


async def participation(session: AsyncSession, course: Course) -> dict[int, Participation]:
    """Every enrolled student's participation record (see :class:`Participation`)."""
    students = await course_students(session, course.id)
    out = {s.id: Participation() for s in students}
    held = list(
        await session.scalars(
            select(Discussion.id).where(
                Discussion.course_id == course.id, Discussion.started_at.is_not(None)
            )
        )
    )
    present: set[tuple[int, int]] = set()
    if held:
        rows = await session.execute(
            select(DiscussionCheckin.discussion_id, DiscussionCheckin.person_id).where(
                DiscussionCheckin.discussion_id.in_(held)
            )
        )
        present |= {(d, p) for d, p in rows}
        for g in await session.scalars(
            select(DiscussionGroup).where(DiscussionGroup.discussion_id.in_(held))
        ):
            present |= {(g.discussion_id, int(p)) for p in g.members or []}
    polls = list(
        await session.execute(
            select(BattlePoll.id, Battle.paper_a_id, Battle.paper_b_id)
            .join(Battle, Battle.id == BattlePoll.battle_id)
            .where(BattlePoll.course_id == course.id, BattlePoll.closed_at.is_not(None))
        )
    )
    on_stage: dict[int, set[int]] = {}
    for paper_id, person_id in await session.execute(
        select(Assignment.paper_id, Assignment.person_id).where(
            Assignment.course_id == course.id, Assignment.published.is_(True)
        )
    ):
        on_stage.setdefault(paper_id, set()).add(person_id)
    voted: set[tuple[int, int]] = set()
    if polls:
        rows = await session.execute(
            select(BattleVote.poll_id, BattleVote.person_id).where(
                BattleVote.poll_id.in_([p for p, _, _ in polls]),
                BattleVote.justification.is_not(None),
            )
        )
        voted = {(poll, person) for poll, person in rows}
    for sid, rec in out.items():
        rec.discussions = len(held)
        rec.attended = sum((d, sid) in present for d in held)
        for poll, a, b in polls:
            if sid in on_stage.get(a, set()) | on_stage.get(b, set()):
                continue  # presenters of a battle do not vote in it
            rec.polls += 1
            rec.voted += (poll, sid) in voted
    return out


# ---------------------------------------------------------------------------- standings


@dataclass
class Gradebook:
    """Everything the grades are computed from, read once."""

    course: Course
    tallies: dict[int, Tally]
    milestones: dict[int, list[MilestoneGrade]]
    entries: dict[int, dict[str, GradeEntry]] = field(default_factory=dict)

    def points(self, person_id: int) -> dict[str, float]:
        """Points out of 100 per component that has something counted: a grade set by
        hand wins; critiques and project are computed."""
        comps = components(self.course)
        out: dict[str, float] = {}
        t = self.tallies.get(person_id)
        if CRITIQUES in comps and t is not None and t.points is not None:
            out[CRITIQUES] = t.points
        project = project_points(self.milestones.get(person_id, []))
        if PROJECT in comps and project is not None:
            out[PROJECT] = project
        for comp, entry in self.entries.get(person_id, {}).items():
            out[comp] = entry.points
        return out

    def by_hand(self, person_id: int, comp: str) -> bool:
        return comp in self.entries.get(person_id, {})


async def gradebook(session: AsyncSession, course: Course, now: datetime) -> Gradebook:
    book = Gradebook(
        course,
        await critique_tallies(session, course, now),
        await milestone_grades(session, course),
    )
    for g in await session.scalars(select(GradeEntry).where(GradeEntry.course_id == course.id)):
        book.entries.setdefault(g.person_id, {})[g.component] = g
    return book


def weighted(course: Course, points: dict[str, float]) -> tuple[float, float]:
    """The weighted total so far and the weight it covers, both in percent."""
    comps = components(course)
    total = sum(points[c] * w / 100 for c, w in comps.items() if c in points)
    covered = sum(w for c, w in comps.items() if c in points)
    return total, covered


# ---------------------------------------------------------------------------- commands


def _project_component(course: Course) -> None:
    if PROJECT not in components(course):
        raise NotFound(
            "The course's grading has no `project` component, so project grades count nowhere.",
            hint="Add `project: <weight>` to `grading` in the course file.",
        )


class ProjectGradeOptions(BaseModel):
    group: str = Field(description="the project group's name (quote it if it has spaces)")
    milestone: str = Field(description="the milestone: proposal, milestone, final (its key)")
    points: float = Field(description="the group's points out of 100")
    reason: Reason = None


@registry.command(
    "grade project",
    "Grade a project group for a milestone (0-100): every member gets it",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    examples=(
        "grade project Robo proposal 88",
        'grade project "Video QA" final 93 reason="regraded after the demo"',
    ),
)
async def grade_project(ctx: Context, opts: ProjectGradeOptions) -> Reply:
    _project_component(ctx.course)
    check_points(opts.points)
    project = await find_project(ctx.session, ctx.course, opts.group)
    milestone = await find_milestone(ctx.session, ctx.course, opts.milestone)
    members = await members_of(ctx.session, project)
    if not members:
        raise Conflict(f"Project `{project.name}` has no members; nothing was graded.")
    row = await ctx.session.scalar(
        select(ProjectGrade).where(
            ProjectGrade.project_id == project.id, ProjectGrade.milestone_id == milestone.id
        )
    )
    before = None if row is None else row.points
    if row is None:
        row = ProjectGrade(
            course_id=ctx.course.id,
            project_id=project.id,
            milestone_id=milestone.id,
            points=opts.points,
            updated_at=ctx.now,
        )
        ctx.session.add(row)
    row.points, row.set_by, row.updated_at = opts.points, ctx.me().id, ctx.now
    row.members = [m.id for m in members]
    adjust = {
        a.person_id: a
        for a in await ctx.session.scalars(
            select(GradeAdjustment).where(GradeAdjustment.milestone_id == milestone.id)
        )
    }
    notes = []
    for m in members:
        a = adjust.get(m.id)
        if a is not None:
            mine = MilestoneGrade(milestone, opts.points, project.name, a.points, a.reason)
            capped = " (capped)" if mine.points != opts.points + a.points else ""
            notes.append(f"{m.name}: {fmt(mine.points or 0)} ({a.points:+g}{capped})")
        record(
            ctx,
            "grade.project",
            subject=m,
            summary=f"{milestone.title} ({project.name}): {fmt(opts.points)}/100",
            before={"milestone": milestone.key, "group": project.name, "points": before},
            after={"milestone": milestone.key, "group": project.name, "points": opts.points},
            reason=opts.reason,
        )
    was = "" if before is None else f" (was {fmt(before)})"
    names = ", ".join(m.name for m in members)
    text = f"{project.name} · {milestone.title}: {fmt(opts.points)}/100{was} for {names}."
    if notes:
        text += " With their adjustments: " + "; ".join(notes) + "."
    return Reply(text, tone=Tone.SUCCESS)


_CHANGE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")


class AdjustOptions(BaseModel):
    student: str = Field(description="email, onyen or name")
    milestone: str = Field(description="the milestone: proposal, milestone, final (its key)")
    change: str = Field(description="points added to the group's grade: +5 or -3 (0 removes it)")
    reason: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description="why (kept in the audit log and shown to the student)"
    )


@registry.command(
    "grade adjust",
    "Adjust one member's project grade for a milestone (+/- points), with the reason",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    examples=(
        "grade adjust bob proposal -5 missed the presentation",
        'grade adjust alice.chen@unc.edu final +3 "led the demo"',
        "grade adjust bob proposal 0 presented after all",
    ),
)
async def grade_adjust(ctx: Context, opts: AdjustOptions) -> Reply:
    _project_component(ctx.course)
    text = opts.change.strip()
    if not _CHANGE.fullmatch(text):
        raise InvalidInput(
            f"`{text}` is not a change of points: write it like +5 or -3 (0 removes one)."
        )
    change = float(text)
    reason = " ".join(opts.reason.split())
    if not reason:
        raise InvalidInput("Give the reason (it is kept in the audit log and shown to them).")
    student = await find_person(ctx.session, ctx.course.id, opts.student)
    enrolled(student)
    milestone = await find_milestone(ctx.session, ctx.course, opts.milestone)
    mine = (await milestone_grades(ctx.session, ctx.course)).get(student.id, [])
    now = next((g for g in mine if g.milestone.id == milestone.id), None)
    if now is None or now.group is None:
        raise Conflict(
            f"{student.name}'s group has no grade for {milestone.title} yet; nothing changed.",
            hint=f"`grade project <group> {milestone.key} <points>` grades the group first.",
        )
    total = now.group + change
    if not 0 <= total <= MAX_POINTS:
        raise InvalidInput(
            f"That would make {student.name}'s {milestone.title} {fmt(total)}/100 (the group "
            f"has {fmt(now.group)}); a grade stays within 0-100. Nothing changed."
        )
    row = await ctx.session.scalar(
        select(GradeAdjustment).where(
            GradeAdjustment.person_id == student.id, GradeAdjustment.milestone_id == milestone.id
        )
    )
    before = None if row is None else row.points
    if change == 0:
        if row is None:
            raise Conflict(f"{student.name} has no adjustment for {milestone.title}.")
        await ctx.session.delete(row)
    else:
        if row is None:
            row = GradeAdjustment(
                course_id=ctx.course.id,
                person_id=student.id,
                milestone_id=milestone.id,
                points=change,
                reason=reason,
                updated_at=ctx.now,
            )
            ctx.session.add(row)
        row.points, row.reason, row.set_by, row.updated_at = change, reason, ctx.me().id, ctx.now
    record(
        ctx,
        "grade.adjust",
        subject=student,
        summary=f"{milestone.title}: {change:+g} on the group's {fmt(now.group)}",
        before={"milestone": milestone.key, "adjustment": before},
        after={"milestone": milestone.key, "adjustment": change or None},
        reason=reason,
    )
    if change == 0:
        return Reply(
            f"Removed {student.name}'s adjustment for {milestone.title}: "
            f"{fmt(now.group)}/100, the group's grade.",
            tone=Tone.SUCCESS,
        )
    return Reply(
        f"{student.name} · {milestone.title}: {fmt(now.group)} {change:+g} = {fmt(total)}/100 "
        f"({reason}).",
        tone=Tone.SUCCESS,
    )


class ParticipationOptions(BaseModel):
    action: Literal["show", "confirm"] = Field(
        "show", description="show the suggestions, or confirm them (store them as grades)"
    )
    student: str | None = Field(
        None, description="one student (email, onyen or name), or `all` to confirm everyone"
    )
    reason: Reason = None

    @model_validator(mode="before")
    @classmethod
    def _student_first(cls, data: Any) -> Any:
        """``grade participation bob`` shows Bob's (the action left out)."""
        action = data.get("action") if isinstance(data, dict) else None
        if (
            isinstance(action, str)
            and action.strip().lower() not in ("show", "confirm")
            and data.get("student") is None
        ):
            data = {**data, "action": "show", "student": action}
        return data


@registry.command(
    "grade participation",
    "Participation suggested from discussions and battle votes; confirm to store it",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    examples=(
        "grade participation",
        "grade participation bob",
        "grade participation confirm all",
        "grade participation confirm bob.okafor@unc.edu",
    ),
)
async def grade_participation(ctx: Context, opts: ParticipationOptions) -> Reply:
    comp = component(ctx.course, PARTICIPATION)
    records = await participation(ctx.session, ctx.course)
    students = {s.id: s for s in await course_students(ctx.session, ctx.course.id)}
    who: list[Person] = list(students.values())
    if opts.student and opts.student.strip().lower() != "all":
        one = await find_person(ctx.session, ctx.course.id, opts.student, list_matches=True)
        enrolled(one)
        who = [one]
    elif opts.action == "confirm" and not opts.student:
        raise InvalidInput(
            "Name a student, or `all`: `grade participation confirm all` stores every suggestion."
        )
    stored = {
        g.person_id: g
        for g in await ctx.session.scalars(
            select(GradeEntry).where(
                GradeEntry.course_id == ctx.course.id, GradeEntry.component == comp
            )
        )
    }
    if opts.action == "show":
        rows = []
        for s in who:
            rec = records[s.id]
            suggestion = rec.suggestion
            has = stored.get(s.id)
            rows.append(
                [
                    s.name,
                    f"{rec.attended}/{rec.discussions}",
                    f"{rec.voted}/{rec.polls}",
                    "—" if suggestion is None else fmt(suggestion),
                    "—" if has is None else fmt(has.points),
                ]
            )
        return Reply(
            title="Participation: suggestions",
            text="Suggested = the share of chances taken: discussions attended (checked in or "
            "in a breakout group) and closed battle polls voted in with a justification "
            "(presenters of a battle do not vote in it). Nothing is stored until you "
            "confirm: `grade participation confirm all` (or one student).",
            tables=[Table(["Student", "Discussions", "Votes", "Suggested", "Recorded"], rows)],
        )
    if len(who) == 1 and records[who[0].id].suggestion is None:
        raise Conflict(
            f"There is nothing to suggest for {who[0].name} yet: no discussion or closed "
            "battle poll so far; nothing was stored.",
            hint=f"`grade set {who[0].onyen or who[0].email} {comp} <points>` sets it by hand.",
        )
    me = ctx.me()
    changed, same, none = [], 0, 0
    for s in who:
        rec = records[s.id]
        suggestion = rec.suggestion
        if suggestion is None:
            none += 1
            continue
        row = stored.get(s.id)
        before = None if row is None else row.points
        if before == suggestion:
            same += 1
            continue
        if row is None:
            row = GradeEntry(
                course_id=ctx.course.id,
                person_id=s.id,
                component=comp,
                points=suggestion,
                updated_at=ctx.now,
            )
            ctx.session.add(row)
        row.points, row.set_by, row.updated_at = suggestion, me.id, ctx.now
        record(
            ctx,
            "grade.set",
            subject=s,
            summary=f"{comp}: {fmt(suggestion)}/100 (suggestion confirmed: {rec.evidence()})",
            before={"component": comp, "points": before},
            after={"component": comp, "points": suggestion},
            reason=opts.reason or f"participation suggestion confirmed: {rec.evidence()}",
        )
        changed.append(
            f"{s.name} {fmt(suggestion)}" + ("" if before is None else f" (was {fmt(before)})")
        )
    text = f"Stored {len(changed)} participation grade{'s' * (len(changed) != 1)}"
    more = f", and {len(changed) - 10} more" if len(changed) > 10 else ""
    text += (": " + ", ".join(changed[:10]) + more + ".") if changed else "."
    if same:
        text += f" {same} already had their suggestion."
    if none:
        text += f" {none} without anything to go on yet, left as they were."
    return Reply(text, tone=Tone.SUCCESS)
