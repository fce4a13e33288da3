"""Who is who: ``help``, ``whoami``, ``register`` and the staff's identity admin."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.context import Context
from commands.coursefile import link_identity
from commands.errors import Conflict, InvalidInput, NotFound
from commands.parsing import describe_option
from commands.registry import Access, Command, registry
from commands.replies import Reply, Section, Table, Tone
from db.models import Identity, Person, Platform

# ----------------------------------------------------------------------------- services


async def find_person(session: AsyncSession, course_id: int, who: str) -> Person:
    """A roster entry by email, onyen, SIS id or (unique) part of the name."""
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
    if len(like) > 1:
        names = ", ".join(f"{p.name} ({p.email})" for p in like[:5])
        raise InvalidInput(f"`{who}` matches several people: {names}. Use the email instead.")
    raise NotFound(
        f"Nobody on the roster matches `{who}`.",
        hint="Use an email, onyen or part of the name; `register list` shows the roster.",
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
        else "You are not registered yet: start with `register <your email>`."
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
            sections=[Section("Next step", "Type `register <your email>`.")],
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
    email: str = Field(description="the email the instructor has on the roster")


@registry.command(
    "register",
    "Link your chat account to your roster entry",
    access=Access.ANYONE,
    ephemeral=True,
    examples=("register alice.chen@unc.edu",),
    topic="course",
)
async def register(ctx: Context, opts: RegisterOptions) -> Reply:
    email = opts.email.strip().lower()
    if "@" not in email:
        raise InvalidInput(
            f"`{opts.email}` is not an email address.",
            hint="Example: `register alice.chen@unc.edu`.",
        )
    if ctx.person is not None:
        if ctx.person.email == email:
            return Reply(
                text=f"You are already registered as {ctx.person.name}.", tone=Tone.SUCCESS
            )
        raise Conflict(
            f"Your account is already linked to {ctx.person.name} ({ctx.person.email}).",
            hint="Ask an instructor to `register unlink` it if that is wrong.",
        )
    person = await ctx.session.scalar(
        select(Person).where(Person.course_id == ctx.course.id, func.lower(Person.email) == email)
    )
    if person is None:
        raise NotFound(
            f"No one with the email {email} is on the roster of {ctx.course.name}.",
            hint="Check the spelling (use your university email) or ask your instructor to add you.",
        )
    platform = ctx.caller.platform
    other = await ctx.session.scalar(
        select(Identity).where(Identity.person_id == person.id, Identity.platform == platform)
    )
    if other is not None:
        raise Conflict(
            f"{person.name} is already linked to another {platform.value} account.",
            hint="If that is not you, ask an instructor (`register unlink`).",
        )
    await link_identity(
        ctx.session,
        ctx.course,
        person,
        platform,
        ctx.caller.user_id,
        now=ctx.now,
        display_name=ctx.caller.display_name or None,
        replace=False,
    )
    return Reply(
        text=f"Welcome, {person.name}! Your {platform.value} account is now linked "
        f"({person.role.value}). Type `help` to see what you can do.",
        tone=Tone.SUCCESS,
    )


class LinkOptions(BaseModel):
    person: str = Field(description="email, onyen or name of the roster entry")
    account: str = Field(description="the chat user id to link")
    platform: Platform | None = Field(
        None, description="terminal, discord or slack (default: here)"
    )


@registry.command(
    "register link",
    "Link a chat account to someone on the roster",
    topic="roster",
    access=Access.STAFF,
    ephemeral=True,
    examples=("register link zoe.williams@unc.edu zoe",),
)
async def register_link(ctx: Context, opts: LinkOptions) -> Reply:
    person = await find_person(ctx.session, ctx.course.id, opts.person)
    platform = opts.platform or ctx.caller.platform
    await link_identity(ctx.session, ctx.course, person, platform, opts.account, now=ctx.now)
    return Reply(
        text=f"Linked {platform.value} account `{opts.account}` to {person.name}.",
        tone=Tone.SUCCESS,
    )


class UnlinkOptions(BaseModel):
    person: str = Field(description="email, onyen or name of the roster entry")
    platform: Platform | None = Field(None, description="only this platform (default: all)")


@registry.command(
    "register unlink",
    "Remove someone's linked chat account(s)",
    topic="roster",
    access=Access.STAFF,
    ephemeral=True,
    examples=("register unlink bob.okafor@unc.edu",),
)
async def register_unlink(ctx: Context, opts: UnlinkOptions) -> Reply:
    person = await find_person(ctx.session, ctx.course.id, opts.person)
    query = select(Identity).where(Identity.person_id == person.id)
    if opts.platform:
        query = query.where(Identity.platform == opts.platform)
    removed = list(await ctx.session.scalars(query))
    if not removed:
        raise NotFound(f"{person.name} has no linked account to remove.")
    for ident in removed:
        await ctx.session.delete(ident)
    names = ", ".join(f"{i.platform.value}: {i.user_id}" for i in removed)
    return Reply(text=f"Unlinked {person.name} ({names}).", tone=Tone.SUCCESS)


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
