"""Course projects: groups of 2-3 (a solo project needs the instructor's approval), a
looking-for-group board, the undergraduate track's application instances, and the
milestone write-ups (PDF) with who submitted and when."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.attachments import FileRule, read_attachment, safe_name
from commands.audit import Reason, record
from commands.context import Context
from commands.errors import Conflict, Forbidden, InvalidInput, NotFound
from commands.intros import interests_by_person
from commands.registry import Access, LongText, registry
from commands.replies import Reply, Section, Table, Tone
from commands.timefmt import fmt_instant
from db.models import (
    Course,
    LookingForGroup,
    Milestone,
    Person,
    Project,
    ProjectInstance,
    ProjectMember,
    ProjectSubmission,
    Role,
)

GROUP_MIN = 2
GROUP_MAX = 3
#: The undergraduate track: this many applications, each with this many instances of
#: each outcome.
APPLICATIONS = 5
PER_OUTCOME = 3
OUTCOMES = ("success", "failure")
MAX_PDF_BYTES = 20 * 1024 * 1024
_NAME = re.compile(r"^[\w][\w .&+'-]{0,59}$")

Track = Literal["graduate", "undergraduate"]

# ----------------------------------------------------------------------------- services


@dataclass
class ProjectView:
    project: Project
    members: list[Person]

    @property
    def complete(self) -> bool:
        n = len(self.members)
        return GROUP_MIN <= n <= GROUP_MAX or (n == 1 and self.project.solo_approved)

    @property
    def status(self) -> str:
        n = len(self.members)
        if n == 0:
            return "no members"
        if n == 1:
            return "solo (approved)" if self.project.solo_approved else "solo: needs approval"
        return "full" if n >= GROUP_MAX else "open"


async def find_project(session: AsyncSession, course: Course, name: str) -> Project:
    project = await session.scalar(
        select(Project).where(
            Project.course_id == course.id, func.lower(Project.name) == name.strip().lower()
        )
    )
    if project is None:
        raise NotFound(
            f"There is no project called `{name}`.",
            hint="`project list` shows the groups; `project create <name>` starts one.",
        )
    return project


async def members_of(session: AsyncSession, project: Project) -> list[Person]:
    return list(
        await session.scalars(
            select(Person)
            .join(ProjectMember, ProjectMember.person_id == Person.id)
            .where(ProjectMember.project_id == project.id)
            .order_by(Person.name)
        )
    )


async def project_of(session: AsyncSession, course: Course, person: Person) -> Project | None:
    return await session.scalar(
        select(Project)
        .join(ProjectMember, ProjectMember.project_id == Project.id)
        .where(ProjectMember.course_id == course.id, ProjectMember.person_id == person.id)
    )


def _student(ctx: Context) -> Person:
    me = ctx.me()
    if me.role is not Role.STUDENT:
        raise Forbidden("Project groups are for students; instructors and TAs do not join them.")
    return me


async def _not_in_a_group(ctx: Context, me: Person) -> None:
    current = await project_of(ctx.session, ctx.course, me)
    if current is not None:
        raise Conflict(
            f"You are already in project `{current.name}`; a student is in one group only.",
            hint="`project leave` first if you want to switch.",
        )


async def create_project(ctx: Context, name: str, track: str) -> Project:
    me = _student(ctx)
    name = name.strip()
    if not _NAME.match(name):
        raise InvalidInput(
            f"`{name}` is not a usable project name: up to 60 letters, digits, spaces or - _ . &."
        )
    await _not_in_a_group(ctx, me)
    taken = await ctx.session.scalar(
        select(Project.id).where(
            Project.course_id == ctx.course.id, func.lower(Project.name) == name.lower()
        )
    )
    if taken is not None:
        raise Conflict(f"A project called `{name}` exists already.", hint="Pick another name.")
    project = Project(course_id=ctx.course.id, name=name, track=track, created_at=ctx.now)
    ctx.session.add(project)
    await ctx.session.flush()
    ctx.session.add(
        ProjectMember(
            course_id=ctx.course.id, project_id=project.id, person_id=me.id, joined_at=ctx.now
        )
    )
    await _clear_lfg(ctx.session, ctx.course, me)
    return project


async def join_project(ctx: Context, name: str) -> ProjectView:
    me = _student(ctx)
    project = await find_project(ctx.session, ctx.course, name)
    current = await project_of(ctx.session, ctx.course, me)
    if current is not None and current.id == project.id:
        raise Conflict(f"You are already in `{project.name}`.")
    await _not_in_a_group(ctx, me)
    members = await members_of(ctx.session, project)
    if len(members) >= GROUP_MAX:
        raise Conflict(
            f"`{project.name}` is full: groups have at most {GROUP_MAX} members "
            f"({', '.join(p.name for p in members)}).",
            hint="`project list` shows groups with room; `project lfg` finds partners.",
        )
    ctx.session.add(
        ProjectMember(
            course_id=ctx.course.id, project_id=project.id, person_id=me.id, joined_at=ctx.now
        )
    )
    await _clear_lfg(ctx.session, ctx.course, me)
    return ProjectView(project, sorted([*members, me], key=lambda p: p.name))


async def _clear_lfg(session: AsyncSession, course: Course, person: Person) -> None:
    await session.execute(
        delete(LookingForGroup).where(
            LookingForGroup.course_id == course.id, LookingForGroup.person_id == person.id
        )
    )


async def _my_project(ctx: Context) -> tuple[Person, Project]:
    me = ctx.me()
    project = await project_of(ctx.session, ctx.course, me)
    if project is None:
        raise Conflict(
            "You are not in any project group.",
            hint="`project join <name>` or `project create <name>` first.",
        )
    return me, project


async def _project_for(ctx: Context, name: str | None) -> Project:
    """Staff name a project; a student gets their own (and may not look at others)."""
    me = ctx.me()
    if me.is_staff:
        if not name:
            raise InvalidInput("Name the project, for example `project instances Robo`.")
        return await find_project(ctx.session, ctx.course, name)
    _, mine = await _my_project(ctx)
    if name and name.strip().lower() != mine.name.lower():
        await find_project(ctx.session, ctx.course, name)  # unknown names get NotFound
        raise Forbidden(f"You can only see your own group's project (`{mine.name}`).")
    return mine


async def instance_counts(session: AsyncSession, project: Project) -> dict[str, dict[str, int]]:
    rows = await session.execute(
        select(ProjectInstance.application, ProjectInstance.outcome, func.count())
        .where(ProjectInstance.project_id == project.id)
        .group_by(ProjectInstance.application, ProjectInstance.outcome)
    )
    out: dict[str, dict[str, int]] = {}
    for app, outcome, n in rows:
        out.setdefault(app, dict.fromkeys(OUTCOMES, 0))[outcome] = n
    return out


async def find_milestone(session: AsyncSession, course: Course, key: str) -> Milestone:
    milestones = list(
        await session.scalars(
            select(Milestone).where(Milestone.course_id == course.id).order_by(Milestone.due)
        )
    )
    for m in milestones:
        if key.strip().lower() in (m.key.lower(), m.title.lower()):
            return m
    keys = ", ".join(f"`{m.key}`" for m in milestones) or "none in the course file"
    raise NotFound(f"There is no milestone `{key}`.", hint=f"Milestones: {keys}.")


#: A milestone's write-up: one PDF of at most MAX_PDF_BYTES (commands/attachments.py).
WRITE_UP_FILE = FileRule(
    noun="the write-up",
    form="a PDF",
    one="one PDF",
    kinds=frozenset({"pdf"}),
    max_bytes=MAX_PDF_BYTES,
    wrong_kind="not a PDF",
    kind_hint="Export the write-up as a PDF.",
    size_hint="Please compress it.",
)


# ----------------------------------------------------------------------------- commands


class CreateOptions(BaseModel):
    name: str = Field(max_length=100, description="the project's name (quote it if it has spaces)")
    track: Track = Field("graduate", description="graduate or undergraduate track")


@registry.command(
    "project create",
    "Start a project group (2-3 students) and join it",
    topic="project",
    examples=("project create Robo", "project create VidQA track=undergraduate"),
)
async def project_create(ctx: Context, opts: CreateOptions) -> Reply:
    project = await create_project(ctx, opts.name, opts.track)
    return Reply(
        f"Created project `{project.name}` ({project.track} track) with you in it. "
        f"Groups have {GROUP_MIN}-{GROUP_MAX} members: partners join with "
        f"`project join {project.name}`; a solo project needs the instructor's approval.",
        tone=Tone.SUCCESS,
    )


class NameOptions(BaseModel):
    name: str = Field(description="the project's name")


@registry.command(
    "project join",
    "Join a project group (at most 3 members, one group each)",
    topic="project",
    examples=("project join Robo",),
)
async def project_join(ctx: Context, opts: NameOptions) -> Reply:
    view = await join_project(ctx, opts.name)
    names = ", ".join(p.name for p in view.members)
    return Reply(f"You joined `{view.project.name}`: {names}.", tone=Tone.SUCCESS)


@registry.command("project leave", "Leave your project group", topic="project")
async def project_leave(ctx: Context, _: BaseModel) -> Reply:
    me, project = await _my_project(ctx)
    await ctx.session.execute(
        delete(ProjectMember).where(
            ProjectMember.project_id == project.id, ProjectMember.person_id == me.id
        )
    )
    left = await members_of(ctx.session, project)
    left = [p for p in left if p.id != me.id]
    if not left:
        has_work = await ctx.session.scalar(
            select(func.count())
            .select_from(ProjectSubmission)
            .where(ProjectSubmission.project_id == project.id)
        )
        if not has_work:
            await ctx.session.delete(project)
            return Reply(f"You left `{project.name}`; it had no other members, so it is gone.")
        return Reply(f"You left `{project.name}`; it has no members now (its submissions stay).")
    if len(left) == 1:
        project.solo_approved = False  # an earlier approval was for a different group
    return Reply(
        f"You left `{project.name}`; it now has {', '.join(p.name for p in left)}.",
        tone=Tone.SUCCESS,
    )


@registry.command(
    "project list",
    "Project groups, their members and status",
    access=Access.ANYONE,
    topic="project",
    reads=True,
)
async def project_list(ctx: Context, _: BaseModel) -> Reply:
    projects = list(
        await ctx.session.scalars(
            select(Project).where(Project.course_id == ctx.course.id).order_by(Project.name)
        )
    )
    rows = []
    for project in projects:
        view = ProjectView(project, await members_of(ctx.session, project))
        rows.append(
            [
                project.name,
                project.track,
                ", ".join(p.name for p in view.members) or "-",
                view.status,
            ]
        )
    text = (
        f"{len(projects)} project groups. Groups have {GROUP_MIN}-{GROUP_MAX} members."
        if projects
        else "No project groups yet: `project create <name>` starts one."
    )
    return Reply(
        title="Projects", text=text, tables=[Table(["Project", "Track", "Members", "Status"], rows)]
    )


class ApproveOptions(BaseModel):
    name: str = Field(description="the project's name")
    reason: Reason = None


@registry.command(
    "project approve",
    "Approve a solo project (one member)",
    access=Access.INSTRUCTOR,
    topic="project",
    examples=("project approve Robo", 'project approve Robo reason="part-time student"'),
)
async def project_approve(ctx: Context, opts: ApproveOptions) -> Reply:
    project = await find_project(ctx.session, ctx.course, opts.name)
    members = await members_of(ctx.session, project)
    if len(members) != 1:
        raise Conflict(
            f"`{project.name}` has {len(members)} members; only a one-person project needs "
            "approval."
        )
    before = project.solo_approved
    project.solo_approved = True
    record(
        ctx,
        "project.approve",
        subject=members[0],
        summary=f"solo project `{project.name}` approved",
        before={"project": project.name, "solo_approved": before},
        after={"project": project.name, "solo_approved": True},
        reason=opts.reason,
    )
    ctx.dm(members[0].id, Reply(f"Your solo project `{project.name}` was approved."))
    return Reply(
        f"Approved `{project.name}` as a solo project ({members[0].name}).", tone=Tone.SUCCESS
    )


class LfgOptions(BaseModel):
    interests: Annotated[str | None, LongText()] = Field(
        None,
        max_length=500,
        description="what you would like to work on (quote it); omit to see the board",
    )
    clear: bool = Field(False, description="take your post off the board")


@registry.command(
    "project lfg",
    "Looking for a group: post your interests, or see who is looking",
    topic="project",
    examples=('project lfg "video QA, long-form video"', "project lfg", "project lfg --clear"),
)
async def project_lfg(ctx: Context, opts: LfgOptions) -> Reply:
    me = ctx.me()
    if opts.clear:
        await _clear_lfg(ctx.session, ctx.course, me)
        return Reply("Your post is off the looking-for-group board.", tone=Tone.SUCCESS)
    if opts.interests:
        me = _student(ctx)
        await _not_in_a_group(ctx, me)
        post = await ctx.session.scalar(
            select(LookingForGroup).where(
                LookingForGroup.course_id == ctx.course.id, LookingForGroup.person_id == me.id
            )
        )
        text = opts.interests.strip()  # at most 500 characters (the option's limit)
        if post is None:
            ctx.session.add(
                LookingForGroup(
                    course_id=ctx.course.id, person_id=me.id, interests=text, posted_at=ctx.now
                )
            )
        else:
            post.interests, post.posted_at = text, ctx.now
        await ctx.session.flush()
    # No emails: the board is public (and students' addresses are theirs to share).
    rows = list(
        await ctx.session.execute(
            select(Person.id, Person.name, LookingForGroup.interests, LookingForGroup.posted_at)
            .join(Person, Person.id == LookingForGroup.person_id)
            .where(LookingForGroup.course_id == ctx.course.id)
            .order_by(LookingForGroup.posted_at)
        )
    )
    # What excites each poster (their `intro`, shortened): the only part of an
    # introduction other students see.
    excited = await interests_by_person(ctx.session, ctx.course.id, [r[0] for r in rows])
    table = [[n, i, excited.get(pid, "-"), fmt_instant(at, ctx.tz)] for pid, n, i, at in rows]
    lead = "Your interests are on the board. " if opts.interests else ""
    if opts.interests and me.id not in excited:
        lead += "`intro` adds what excites you in computer vision and AI. "
    return Reply(
        title="Looking for a group",
        text=lead + f"{len(table)} looking: message them here. Joining a group takes you off "
        "the board. “Excited about” is each poster's `intro`.",
        tables=[Table(["Student", "Interests", "Excited about", "Posted"], table)],
    )


class InstanceOptions(BaseModel):
    application: str = Field(
        max_length=100, description="the application (quote it if it has spaces)"
    )
    outcome: Literal["success", "failure"] = Field(description="success or failure")
    description: Annotated[str, LongText()] = Field(description="what happened (quote it)")


@registry.command(
    "project instance add",
    "Undergraduate track: record a success or failure instance of an application",
    topic="project",
    form=("description",),
    examples=('project instance add "action recognition" success "works on cooking clips"',),
)
async def project_instance_add(ctx: Context, opts: InstanceOptions) -> Reply:
    me, project = await _my_project(ctx)
    if project.track != "undergraduate":
        raise Conflict(
            f"`{project.name}` is on the graduate track; instances are for the undergraduate track."
        )
    app = " ".join(opts.application.split())  # at most 100 characters (the option's limit)
    desc = opts.description.strip()
    if not app or not desc:
        raise InvalidInput("Give the application and a description of the instance.")
    counts = await instance_counts(ctx.session, project)
    known = {a.lower(): a for a in counts}
    app = known.get(app.lower(), app)
    if app not in counts and len(counts) >= APPLICATIONS:
        raise Conflict(
            f"`{project.name}` already has {APPLICATIONS} applications: "
            + ", ".join(f"`{a}`" for a in counts)
            + "."
        )
    have = counts.get(app, {}).get(opts.outcome, 0)
    if have >= PER_OUTCOME:
        raise Conflict(f"`{app}` already has {PER_OUTCOME} {opts.outcome} instances.")
    ctx.session.add(
        ProjectInstance(
            course_id=ctx.course.id,
            project_id=project.id,
            application=app,
            outcome=opts.outcome,
            description=desc,  # at most LONG_TEXT_MAX characters (validated)
            added_by=me.id,
            added_at=ctx.now,
        )
    )
    total = sum(sum(c.values()) for c in counts.values()) + 1
    goal = APPLICATIONS * PER_OUTCOME * len(OUTCOMES)
    return Reply(
        f"Recorded a {opts.outcome} instance of `{app}` ({have + 1}/{PER_OUTCOME}). "
        f"Progress: {total}/{goal} instances.",
        tone=Tone.SUCCESS,
    )


class ProjectRef(BaseModel):
    project: str | None = Field(None, description="the project (staff); yours by default")


@registry.command(
    "project instances",
    "Undergraduate track: the recorded instances and progress (your group; staff any)",
    topic="project",
    ephemeral=True,
    examples=("project instances", "project instances Robo"),
    reads=True,
)
async def project_instances(ctx: Context, opts: ProjectRef) -> Reply:
    project = await _project_for(ctx, opts.project)
    rows = list(
        await ctx.session.scalars(
            select(ProjectInstance)
            .where(ProjectInstance.project_id == project.id)
            .order_by(ProjectInstance.application, ProjectInstance.outcome, ProjectInstance.id)
        )
    )
    counts = await instance_counts(ctx.session, project)
    goal = APPLICATIONS * PER_OUTCOME * len(OUTCOMES)
    fields = [
        (a, f"{c['success']}/{PER_OUTCOME} success, {c['failure']}/{PER_OUTCOME} failure")
        for a, c in sorted(counts.items())
    ]
    done = sum(min(n, PER_OUTCOME) for c in counts.values() for n in c.values())
    return Reply(
        title=f"{project.name}: application instances",
        text=f"Progress: {done}/{goal} instances ({len(counts)}/{APPLICATIONS} applications).",
        sections=[Section("Per application", "", fields)] if fields else [],
        tables=[
            Table(
                ["Application", "Outcome", "Description"],
                [[r.application, r.outcome, r.description] for r in rows],
            )
        ],
    )


class SubmitOptions(BaseModel):
    milestone: str = Field(description="proposal, milestone or final")


@registry.command(
    "project submit",
    "Submit your group's write-up (PDF) for a milestone",
    topic="project",
    ephemeral=True,
    attachment="the write-up (PDF)",
    examples=("project submit proposal",),
)
async def project_submit(ctx: Context, opts: SubmitOptions) -> Reply:
    milestone = await find_milestone(ctx.session, ctx.course, opts.milestone)
    me, project = await _my_project(ctx)
    view = ProjectView(project, await members_of(ctx.session, project))
    if not view.complete:
        raise Conflict(
            f"`{project.name}` has one member and no approval for a solo project.",
            hint="Find a partner (`project lfg`) or ask the instructor for `project approve`.",
        )
    got = await read_attachment(ctx.request, WRITE_UP_FILE)
    assert got is not None  # required
    data = got.data
    rel = Path("projects") / str(project.id) / f"{safe_name(milestone.key)}.pdf"
    dest = ctx.data_dir / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    late = milestone.due is not None and ctx.now > milestone.due
    sub = await ctx.session.scalar(
        select(ProjectSubmission).where(
            ProjectSubmission.project_id == project.id,
            ProjectSubmission.milestone_id == milestone.id,
        )
    )
    if sub is None:
        sub = ProjectSubmission(
            course_id=ctx.course.id,
            project_id=project.id,
            milestone_id=milestone.id,
            path=str(rel),
            size=len(data),
            submitted_at=ctx.now,
        )
        ctx.session.add(sub)
    sub.person_id, sub.size, sub.submitted_at, sub.late = me.id, len(data), ctx.now, late
    when = fmt_instant(ctx.now, ctx.tz)
    due = f" (due {fmt_instant(milestone.due, ctx.tz)})" if milestone.due else ""
    for p in view.members:
        if p.id != me.id:
            ctx.dm(p.id, Reply(f"{me.name} submitted `{project.name}`'s {milestone.title}."))
    return Reply(
        f"Submitted `{project.name}`'s {milestone.title} write-up ({len(data) // 1024} KB) "
        f"at {when}{due}" + (": LATE." if late else ". Resubmitting replaces it."),
        tone=Tone.WARNING if late else Tone.SUCCESS,
    )


class MilestoneRef(BaseModel):
    milestone: str = Field(description="proposal, milestone or final")


@registry.command(
    "project submissions",
    "Who submitted a milestone's write-up, and when",
    access=Access.STAFF,
    topic="project",
    ephemeral=True,
    examples=("project submissions proposal",),
    reads=True,
)
async def project_submissions(ctx: Context, opts: MilestoneRef) -> Reply:
    milestone = await find_milestone(ctx.session, ctx.course, opts.milestone)
    projects = list(
        await ctx.session.scalars(
            select(Project).where(Project.course_id == ctx.course.id).order_by(Project.name)
        )
    )
    subs = {
        s.project_id: s
        for s in await ctx.session.scalars(
            select(ProjectSubmission).where(ProjectSubmission.milestone_id == milestone.id)
        )
    }
    rows = []
    for project in projects:
        members = ", ".join(p.name for p in await members_of(ctx.session, project))
        s = subs.get(project.id)
        if s is None:
            rows.append([project.name, members, "not submitted", "", ""])
            continue
        by = await ctx.session.get(Person, s.person_id) if s.person_id else None
        rows.append(
            [
                project.name,
                members,
                fmt_instant(s.submitted_at, ctx.tz),
                by.name if by else "",
                "late" if s.late else "on time",
            ]
        )
    due = fmt_instant(milestone.due, ctx.tz) if milestone.due else "no due date"
    return Reply(
        title=f"{milestone.title}: submissions",
        text=f"{len(subs)}/{len(projects)} groups submitted; due {due}.",
        tables=[Table(["Project", "Members", "Submitted", "By", "Status"], rows)],
    )
