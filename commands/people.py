"""Who is who: ``help``, ``whoami``, ``register`` and the staff's identity admin."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands import audit, registration
from commands.context import Context
from commands.errors import InvalidInput, NotFound
from commands.parsing import describe_option
from commands.registry import Access, Command, registry
from commands.replies import Reply, Section, Table, Tone
from db.models import Identity, Person, Platform, RegistrationRequest

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
    examples=("help", "help papers"),
    topic="course",
)
async def help_(ctx: Context, opts: HelpOptions) -> Reply:
    visible = ctx.registry.visible_to(ctx.person)
    group = list(opts.command)
    if len(group) == 1 and not any(c.path == tuple(group) for c in ctx.registry):
        family = [c for c in ctx.registry if c.path[0] == group[0]]
        mine = [c for c in family if c in visible]
        if mine:  # `help discussion`: that family's commands this caller may run
            body = _listing(mine)
            hidden = len(family) - len(mine)
            more = f" ({hidden} more are for staff.)" if hidden else ""
            return Reply(
                title=f"help: {group[0]}",
                text=f"Type `help {mine[0].name}` for one command's details.{more}",
                sections=[Section(heading=group[0], body=body)],
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
        lines.append(f"Who may run it: {cmd.access.label}.")
        return Reply(title=f"help: {cmd.name}", text="\n".join(lines))
    sections = []
    order = ["course", "rank", "critique", "discussion", "battle", "project", "grades", "gpu"]
    topics = sorted(
        ctx.registry.topics().items(),
        key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]),
    )
    for group, cmds in topics:
        mine = [c for c in cmds if c in visible]
        if mine:
            sections.append(Section(heading=group, body=_listing(mine)))
    who = (
        f"You are {ctx.person.name} ({ctx.person.role.value})."
        if ctx.person
        else f"You are not registered yet. {registration.next_step(ctx)}"
    )
    return Reply(
        title=f"{ctx.course.name}: commands",
        text=f"{who} Type `help <command>` for details.",
        sections=sections,
    )


@registry.command(
    "whoami",
    "Your linked roster entry and role",
    access=Access.ANYONE,
    ephemeral=True,
    topic="course",
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
    for lo in lost:
        ctx.dm_account(
            lo.platform,
            lo.user_id,
            registration.lost_message(ctx.course, lo, actor.name, opts.reason),
        )
    told = f" The previous holder{'s were' if len(lost) > 1 else ' was'} told." if lost else ""
    return Reply(
        text=f"Linked {platform.value} account `{account}` to {person.name}.{told}",
        tone=Tone.SUCCESS,
    )


class UnlinkOptions(BaseModel):
    person: str = Field(description="email, onyen or name of the roster entry")
    platform: Platform | None = Field(None, description="only this platform (default: all)")
    reason: str | None = Field(None, description="why (kept in the audit log, told to them)")


@registry.command(
    "register unlink",
    "Remove someone's linked chat account(s); the account is told",
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
    for ident in removed:
        lost = registration.Lost(ident.platform, ident.user_id, person)
        ctx.dm_account(
            ident.platform,
            ident.user_id,
            registration.lost_message(ctx.course, lost, actor.name, opts.reason),
        )
    told = "each account was told" if len(removed) > 1 else "the account was told"
    return Reply(text=f"Unlinked {person.name} ({names}); {told}.", tone=Tone.SUCCESS)


@registry.command(
    "register pending",
    "Registration requests waiting for approval",
    topic="roster",
    access=Access.STAFF,
    ephemeral=True,
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
