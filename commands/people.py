"""Who is who: ``help``, ``whoami``, ``register`` and the staff's identity admin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands import audit, registration
from commands.battles import battle_name
from commands.context import Context
from commands.errors import InvalidInput, NotFound
from commands.outbox import new_batch
from commands.parsing import describe_option
from commands.registry import Access, Command, registry
from commands.replies import Delivery, Reply, Section, Table, Tone
from commands.timefmt import fmt_day, fmt_instant, fmt_time, relative
from db.models import (
    Assignment,
    Battle,
    Identity,
    Milestone,
    Paper,
    Person,
    Platform,
    RegistrationRequest,
    Role,
)

# ----------------------------------------------------------------------------- services


async def find_person(
    session: AsyncSession, course_id: int, who: str, *, list_matches: bool = False
) -> Person:
    """A roster entry by email, onyen, SIS id or (unique) part of the name.

    When several people match, ``list_matches`` (pass it for staff callers only) names
    them, by display name only; otherwise nobody else on the roster is shown."""
    who = who.strip().lstrip("@")
    key = who.lower()
    exact = await session.scalar(
        select(Person).where(
            Person.course_id == course_id,
            or_(
                func.lower(Person.email) == key,
                func.lower(Person.onyen) == key,
                Person.sis_id == who,
            ),
        )
    )
    if exact is not None:
        return exact
    via_handle = await session.scalar(
        select(Person)
        .join(Identity)
        .where(Identity.course_id == course_id, func.lower(Identity.user_id) == key)
    )
    if via_handle is not None:
        return via_handle
    like = list(
        await session.scalars(
            select(Person).where(
                Person.course_id == course_id, func.lower(Person.name).contains(key)
            )
        )
    )
    if len(like) == 1:
        return like[0]
    if len(like) > 1 and list_matches:
        names = ", ".join(sorted(p.name for p in like)[:5]) + (", …" if len(like) > 5 else "")
        raise InvalidInput(
            f"`{who}` matches several people: {names}.",
            hint="Use the email or onyen instead (`register list` shows them).",
        )
    if len(like) > 1:
        raise InvalidInput(
            f"`{who}` matches several people; be more specific.",
            hint="Use the email or onyen.",
        )
    raise NotFound(
        f"Nobody on the roster matches `{who}`.",
        hint="Use an email, onyen or part of the name"
        + ("; `register list` shows the roster." if list_matches else "."),
    )


async def linked_accounts(
    session: AsyncSession, course_id: int, person_ids: Sequence[int], platform: Platform
) -> dict[int, str]:
    """The people's linked account ids on ``platform`` (person id → user id); people
    without one are left out. How an adapter reaches someone (a DM, a mention)."""
    rows = await session.execute(
        select(Identity.person_id, Identity.user_id).where(
            Identity.course_id == course_id,
            Identity.person_id.in_(person_ids),
            Identity.platform == platform,
        )
    )
    return {person: user for person, user in rows}


async def identities_by_person(session: AsyncSession, course_id: int) -> dict[int, list[Identity]]:
    out: dict[int, list[Identity]] = {}
    for ident in await session.scalars(select(Identity).where(Identity.course_id == course_id)):
        out.setdefault(ident.person_id, []).append(ident)
    return out


# ----------------------------------------------------------------------------- commands


class HelpOptions(BaseModel):
    command: list[str] = Field(default_factory=list, description="a command to explain")


#: Commands that only students run: their handlers refuse staff (staff do not rank,
#: present, vote, hand in critiques or join project groups), so ``help`` does not offer
#: them to a TA or an instructor. tests/test_help.py holds each to its refusal.
STUDENT_ONLY = frozenset(
    {
        "assignment",
        "battle vote",
        "battle withdraw",
        "critique status",
        "critique submit",
        "discussion group",
        "intro",
        "project create",
        "project instance add",
        "project join",
        "project leave",
        "project lfg",
        "project submit",
        "rank battle",
        "rank partner",
        "rank show",
        "rank standard",
    }
)


def runnable(cmd: Command, person: Person | None) -> bool:
    """Whether ``person`` (None: not registered) may run ``cmd`` and would not be refused
    for their role: what ``help`` lists."""
    if not cmd.access.allows(person):
        return False
    return person is None or person.role is Role.STUDENT or cmd.name not in STUDENT_ONLY


@dataclass(frozen=True)
class Moment:
    """A point of the course that calls for certain commands: ``help`` shows it first."""

    at: datetime
    heading: str
    commands: tuple[str, ...]


#: What each moment of the course calls for, students' and staff's commands together
#: (each caller sees those they may run).
RANKING_COMMANDS = (
    "rank standard",
    "rank battle",
    "rank partner",
    "rank show",
    "papers",
    "rankings status",
    "rankings remind",
    "rankings extend",
)
ASSIGN_COMMANDS = (
    "assign",
    "assign show",
    "assign why",
    "assign swap",
    "assign set",
    "assign keep",
    "assign publish",
    "assign export",
)
CRITIQUE_COMMANDS = (
    "critique submit",
    "critique status",
    "critique file",
    "discussion group",
    "critique list",
    "critique grade",
    "critique grade-all",
    "discussion questions",
    "discussion propose",
    "discussion accept",
    "discussion checkin",
    "discussion start",
    "discussion show",
    "discussion end",
)
BATTLE_COMMANDS = (
    "battle show",
    "battle vote",
    "battle withdraw",
    "battle timer",
    "battle open",
    "battle status",
    "battle close",
    "battle export",
)
PROJECT_COMMANDS = (
    "project submit",
    "project list",
    "project create",
    "project join",
    "project lfg",
    "project instance add",
    "project instances",
    "project submissions",
)
GRADE_COMMANDS = ("grades", "grading", "grade set", "grade export", "critique export")
#: How far ahead a class day or a project deadline counts as "coming up".
SOON = timedelta(days=7)
PROJECT_SOON = timedelta(days=14)


async def course_moments(ctx: Context) -> list[Moment]:
    """What the course calls for around ``ctx.now``, soonest first: rankings still
    open, an assignment to compute and publish, the next critique day and battle day
    (within a week), a project write-up due within two weeks, the end of term."""
    from commands.critiques import deadline_of
    from commands.rankings import deadline_for

    course, now, tz = ctx.course, ctx.now, ctx.tz
    today = now.astimezone(tz).date()
    out: list[Moment] = []

    deadline = course.ranking_deadline
    if ctx.person is not None and ctx.person.role is Role.STUDENT:
        deadline = await deadline_for(ctx.session, course, ctx.person.id)
    if deadline is not None and now < deadline:
        when = f"{fmt_instant(deadline, tz)}, {relative(deadline, now)}"
        out.append(Moment(deadline, f"Before rankings close ({when})", RANKING_COMMANDS))
    elif deadline is not None:
        published = await ctx.session.scalar(
            select(Assignment.id)
            .where(Assignment.course_id == course.id, Assignment.published.is_(True))
            .limit(1)
        )
        if published is None:  # overdue: after today's class, before anything later
            tonight = datetime.combine(today + timedelta(days=1), time(0), tzinfo=tz)
            heading = "Rankings are closed: compute and publish the assignment"
            out.append(Moment(tonight, heading, ASSIGN_COMMANDS))

    papers = list(
        await ctx.session.scalars(
            select(Paper)
            .where(
                Paper.course_id == course.id,
                Paper.critique.is_(True),
                Paper.class_date >= today,
                Paper.class_date <= today + SOON,
            )
            .order_by(Paper.class_date, Paper.number)
        )
    )
    if papers:
        paper = papers[0]
        due = deadline_of(course, paper)
        assert due is not None and paper.class_date is not None
        day = "Today" if paper.class_date == today else fmt_day(paper.class_date)
        state = f"due {fmt_time(due.astimezone(tz).time())}" + (
            f", {relative(due, now)}" if due > now else ", closed"
        )
        title = paper.title if len(paper.title) <= 60 else paper.title[:59].rstrip() + "…"
        heading = f"{day} is a critique day: #{paper.number} {title} (critiques {state})"
        out.append(Moment(due, heading, CRITIQUE_COMMANDS))

    battle = await ctx.session.scalar(
        select(Battle)
        .where(
            Battle.course_id == course.id,
            Battle.class_date >= today,
            Battle.class_date <= today + SOON,
        )
        .order_by(Battle.class_date, Battle.number)
        .limit(1)
    )
    if battle is not None and battle.class_date is not None:
        day = "Today" if battle.class_date == today else fmt_day(battle.class_date)
        begins = battle.start_time or course.class_start or time(0)
        start = datetime.combine(battle.class_date, begins, tzinfo=tz)
        heading = f"{day} is a battle day: battle {battle_name(battle)}"
        out.append(Moment(start, heading, BATTLE_COMMANDS))

    milestones = list(
        await ctx.session.scalars(select(Milestone).where(Milestone.course_id == course.id))
    )
    soon = sorted(
        (m for m in milestones if m.due is not None and now < m.due <= now + PROJECT_SOON),
        key=lambda m: (m.due, m.id),
    )
    milestone = soon[0] if soon else None
    if milestone is not None and milestone.due is not None:
        when = f"{fmt_instant(milestone.due, tz)}, {relative(milestone.due, now)}"
        heading = f"{milestone.title} write-up due ({when})"
        out.append(Moment(milestone.due, heading, PROJECT_COMMANDS))

    # The term is over after its last class, battle, project day and write-up.
    last_days = await ctx.session.execute(
        select(
            select(func.max(Paper.class_date))
            .where(Paper.course_id == course.id)
            .scalar_subquery(),
            select(func.max(Battle.class_date))
            .where(Battle.course_id == course.id)
            .scalar_subquery(),
        )
    )
    days: list[date | None] = list(last_days.one())
    for m in milestones:
        days += [date.fromisoformat(str(d)) for d in m.presentations or []]
        days.append(m.due.astimezone(tz).date() if m.due else None)
    known = [d for d in days if d is not None]
    if known and today > max(known):
        out.append(Moment(now, "The term's classes are over: grades", GRADE_COMMANDS))
    return sorted(out, key=lambda m: m.at)


def _for_whom(cmd: Command, person: Person | None) -> str:
    """Who may run a command that ``person`` may not: in their words."""
    if cmd.access.allows(person):
        return "students"  # one that only students run
    if cmd.access is Access.INSTRUCTOR and person is not None and person.role is Role.TA:
        return "instructors"
    return "staff" if cmd.access >= Access.STAFF else "registered people"


def _listing(cmds: list[Command]) -> str:
    """One line per command: its usage and what it does."""
    return "\n".join(
        f"`{c.usage()}`{' + file' if c.attachment else ''} — {c.description}" for c in cmds
    )


@registry.command(
    "help",
    "What you can run here, or how to use one command",
    access=Access.ANYONE,
    ephemeral=True,
    examples=("help", "help papers", "help battle"),
    topic="course",
    reads=True,
)
async def help_(ctx: Context, opts: HelpOptions) -> Reply:
    visible = [c for c in ctx.registry if runnable(c, ctx.person)]
    group = list(opts.command)
    if len(group) == 1 and not any(c.path == tuple(group) for c in ctx.registry):
        family = [c for c in ctx.registry if c.path[0] == group[0].lower()]
        mine = [c for c in family if c in visible]
        if mine:  # `help discussion`: that family's commands this caller may run
            body = _listing(mine)
            others = sorted({_for_whom(c, ctx.person) for c in family if c not in mine})
            hidden = len(family) - len(mine)
            verb = "is" if hidden == 1 else "are"
            more = f" ({hidden} more {verb} for {' and '.join(others)}.)" if hidden else ""
            return Reply(
                title=f"help: {group[0]}",
                text=f"Type `help {mine[0].name}` for one command's details.{more}",
                sections=[Section(heading=group[0], body=body)],
            )
        if family:  # `help rank` asked by an instructor
            names = ", ".join(f"`{c.name}`" for c in family)
            return Reply(
                title=f"help: {group[0]}",
                text=f"{names} {'are' if len(family) > 1 else 'is'} not for you: "
                "`help` lists what you can run.",
            )
    if opts.command:
        cmd, _ = ctx.registry.match(opts.command)
        lines = [cmd.description + ".", f"Usage: `{cmd.usage()}`"]
        lines += [f"  {s.name}: {describe_option(s)}" for s in cmd.specs]
        if cmd.attachment:
            lines.append(
                f"Attach {cmd.attachment}: in the terminal `:attach FILE` first; on Discord "
                "the file option; on Slack share the file with the command."
            )
        if cmd.examples:
            lines.append("Examples: " + ", ".join(f"`{e}`" for e in cmd.examples))
        who = "students" if cmd.name in STUDENT_ONLY else cmd.access.label
        lines.append(f"Who may run it: {who}.")
        return Reply(title=f"help: {cmd.name}", text="\n".join(lines))
    sections = []
    shown: set[str] = set()
    by_name = {c.name: c for c in visible}
    for moment in await course_moments(ctx) if ctx.person is not None else []:
        mine = [by_name[n] for n in moment.commands if n in by_name and n not in shown]
        if mine:
            sections.append(Section(heading=moment.heading, body=_listing(mine)))
            shown.update(c.name for c in mine)
    order = ["course", "rank", "critique", "discussion", "battle", "project", "grades", "gpu"]
    topics = sorted(
        ctx.registry.topics().items(),
        key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]),
    )
    soon = bool(sections)
    for topic, cmds in topics:
        mine = [c for c in cmds if c.name in by_name and c.name not in shown]
        if mine:
            heading = f"{topic} (any time)" if soon else topic
            sections.append(Section(heading=heading, body=_listing(mine)))
    who = (
        f"You are {ctx.person.name} ({ctx.person.role.value})."
        if ctx.person
        else f"You are not registered yet. {registration.next_step(ctx)}"
    )
    first = " What the course calls for now comes first." if soon else ""
    return Reply(
        title=f"{ctx.course.name}: commands",
        text=f"{who}{first} Type `help <command>` for details.",
        sections=sections,
    )


@registry.command(
    "whoami",
    "Your linked roster entry and role",
    access=Access.ANYONE,
    ephemeral=True,
    topic="course",
    reads=True,
)
async def whoami(ctx: Context, _: BaseModel) -> Reply:
    caller = ctx.caller
    account = f"{caller.platform.value} account `{caller.user_id}`"
    if ctx.person is None:
        return Reply(
            text=f"Your {account} is not linked to anyone on the roster of {ctx.course.name}.",
            sections=[Section("Next step", registration.next_step(ctx))],
        )
    p = ctx.person
    fields = [("Name", p.name), ("Email", p.email), ("Role", p.role.value)]
    if p.degree:
        fields.append(("Program", f"{p.degree.value}, year {p.year}" if p.year else p.degree.value))
    if p.section:
        fields.append(("Section", p.section))
    idents = await ctx.session.scalars(select(Identity).where(Identity.person_id == p.id))
    fields.append(
        ("Linked accounts", ", ".join(f"{i.platform.value}: {i.user_id}" for i in idents))
    )
    return Reply(
        title="whoami", text=f"Your {account} is linked to:", sections=[Section("", "", fields)]
    )


class RegisterOptions(BaseModel):
    email: str | None = Field(
        None, description="your email on the roster (not needed where the platform gives it)"
    )
    code: str | None = Field(None, description="the code mailed to you")


def _email_and_code(opts: RegisterOptions) -> tuple[str | None, str | None]:
    """``register 123456`` and ``register code 123456`` mean the code."""
    email = opts.email.strip() if opts.email and opts.email.strip() else None
    code = opts.code.strip() if opts.code and opts.code.strip() else None
    if email is not None and email.lower() == "code":
        email = None
    if email is not None and code is None and email.replace(" ", "").replace("-", "").isdigit():
        email, code = None, email
    return email, code


@registry.command(
    "register",
    "Link your chat account to your roster entry",
    access=Access.ANYONE,
    ephemeral=True,
    examples=("register alice.chen@unc.edu", "register 123456", "register"),
    topic="course",
)
async def register(ctx: Context, opts: RegisterOptions) -> Reply:
    email, code = _email_and_code(opts)
    return await registration.register(ctx, email, code)


def _staff_view(ctx: Context) -> bool:
    return ctx.person is not None and ctx.person.is_staff


class LinkOptions(BaseModel):
    person: str = Field(description="email, onyen or name of the roster entry")
    account: str = Field(max_length=100, description="the chat user id to link")
    platform: Platform | None = Field(
        None, description="terminal, discord or slack (default: here)"
    )
    reason: str | None = Field(None, description="why (kept in the audit log)")


@registry.command(
    "register link",
    "Link a chat account to someone on the roster",
    topic="roster",
    access=Access.STAFF,
    ephemeral=True,
    examples=("register link zoe.williams@unc.edu zoe",),
)
async def register_link(ctx: Context, opts: LinkOptions) -> Reply:
    actor = ctx.me()
    person = await find_person(ctx.session, ctx.course.id, opts.person, list_matches=True)
    platform = opts.platform or ctx.caller.platform
    account = opts.account.strip().lstrip("@")
    changed, lost = await registration.link_account(
        ctx.session, ctx.course, person, platform, account, now=ctx.now, actor=actor
    )
    if not changed:
        return Reply(
            text=f"{platform.value} account `{account}` is already linked to {person.name}; "
            "nothing changed."
        )
    audit.record(
        ctx,
        "people.link",
        subject=person,
        summary=f"linked {platform.value} account {account} to {person.name}",
        before={
            "accounts": [f"{lo.platform.value}:{lo.user_id}" for lo in lost if lo.moved_to is None],
            "account_was": {lo.user_id: lo.person.name for lo in lost if lo.moved_to is not None},
        },
        after={"platform": platform.value, "account": account},
        reason=opts.reason,
    )
    return Reply(
        text=f"Linked {platform.value} account `{account}` to {person.name}.",
        tone=Tone.SUCCESS,
        delivery=_tell_lost(ctx, lost, actor, opts.reason, "messages to the previous holder"),
    )


def _tell_lost(
    ctx: Context, lost: list[registration.Lost], actor: Person, reason: str | None, what: str
) -> Delivery | None:
    """Each account that lost its link is told, in one counted batch (the reply says how
    many messages went out, never just "they were told")."""
    if not lost:
        return None
    batch = new_batch("link")
    for lo in lost:
        ctx.dm_account(
            lo.platform,
            lo.user_id,
            registration.lost_message(ctx.course, lo, actor.name, reason),
            batch=batch,
        )
    return Delivery(batch, what=what)


class UnlinkOptions(BaseModel):
    person: str = Field(description="email, onyen or name of the roster entry")
    platform: Platform | None = Field(None, description="only this platform (default: all)")
    reason: str | None = Field(None, description="why (kept in the audit log, told to them)")


@registry.command(
    "register unlink",
    "Remove someone's linked chat accounts (all, or one platform's); each is told",
    topic="roster",
    access=Access.STAFF,
    ephemeral=True,
    examples=('register unlink bob.okafor@unc.edu discord "not Bob\'s account"',),
)
async def register_unlink(ctx: Context, opts: UnlinkOptions) -> Reply:
    actor = ctx.me()
    person = await find_person(ctx.session, ctx.course.id, opts.person, list_matches=True)
    removed = await registration.unlink_accounts(ctx.session, person, opts.platform, actor=actor)
    names = ", ".join(f"{i.platform.value}: {i.user_id}" for i in removed)
    audit.record(
        ctx,
        "people.unlink",
        subject=person,
        summary=f"unlinked {names} from {person.name}",
        before={"accounts": [f"{i.platform.value}:{i.user_id}" for i in removed]},
        after={},
        reason=opts.reason,
    )
    lost = [registration.Lost(i.platform, i.user_id, person) for i in removed]
    return Reply(
        text=f"Unlinked {person.name} ({names}).",
        tone=Tone.SUCCESS,
        delivery=_tell_lost(ctx, lost, actor, opts.reason, "messages to the unlinked accounts"),
    )


@registry.command(
    "register pending",
    "Registration requests waiting for approval",
    topic="roster",
    access=Access.STAFF,
    ephemeral=True,
    reads=True,
)
async def register_pending(ctx: Context, _: BaseModel) -> Reply:
    return await registration.pending_reply(ctx)


class DecideOptions(BaseModel):
    person: str = Field(description="email, onyen or name of the roster entry asked for")
    reason: str | None = Field(None, description="why (kept in the audit log, told to them)")
    account: str | None = Field(None, description="the requesting account, if several asked")


@registry.command(
    "register approve",
    "Approve a registration request: link the account",
    topic="roster",
    access=Access.STAFF,
    ephemeral=True,
    examples=("register approve zoe.williams@unc.edu",),
)
async def register_approve(ctx: Context, opts: DecideOptions) -> Reply:
    person = await find_person(ctx.session, ctx.course.id, opts.person, list_matches=True)
    req = await registration.request_for(ctx, person, opts.account)
    return await registration.decide(ctx, req, approve=True, reason=opts.reason)


@registry.command(
    "register deny",
    "Deny a registration request (the account is told)",
    topic="roster",
    access=Access.STAFF,
    ephemeral=True,
    examples=('register deny zoe.williams@unc.edu "not her account"',),
)
async def register_deny(ctx: Context, opts: DecideOptions) -> Reply:
    person = await find_person(ctx.session, ctx.course.id, opts.person, list_matches=True)
    req = await registration.request_for(ctx, person, opts.account)
    return await registration.decide(ctx, req, approve=False, reason=opts.reason)


async def _request_by_id(ctx: Context, args: tuple[str, ...]) -> RegistrationRequest:
    req = (
        await ctx.session.get(RegistrationRequest, int(args[0]))
        if args and args[0].isdigit()
        else None
    )
    if req is None or req.course_id != ctx.course.id:
        raise NotFound("That request no longer exists.", hint="`register pending` lists them.")
    return req


@registry.action("register.approve", access=Access.STAFF)
async def register_approve_button(ctx: Context, args: tuple[str, ...], value: str | None) -> Reply:
    return await registration.decide(ctx, await _request_by_id(ctx, args), approve=True)


@registry.action("register.deny", access=Access.STAFF)
async def register_deny_button(ctx: Context, args: tuple[str, ...], value: str | None) -> Reply:
    return await registration.decide(ctx, await _request_by_id(ctx, args), approve=False)


class ListOptions(BaseModel):
    unlinked: bool = Field(False, description="only people with no linked account")


@registry.command(
    "register list",
    "The roster and who has linked an account",
    topic="roster",
    access=Access.STAFF,
    ephemeral=True,
    reads=True,
)
async def register_list(ctx: Context, opts: ListOptions) -> Reply:
    people = list(
        await ctx.session.scalars(
            select(Person)
            .where(Person.course_id == ctx.course.id)
            .order_by(Person.role, Person.name)
        )
    )
    idents = await identities_by_person(ctx.session, ctx.course.id)
    rows = []
    for p in people:
        linked = ", ".join(f"{i.platform.value}:{i.user_id}" for i in idents.get(p.id, []))
        if opts.unlinked and linked:
            continue
        rows.append([p.name, p.email, p.role.value, linked or "— not linked"])
    n_linked = sum(1 for p in people if p.id in idents)
    return Reply(
        text=f"{n_linked} of {len(people)} people have linked an account.",
        tables=[Table(["Name", "Email", "Role", "Linked"], rows)],
    )
