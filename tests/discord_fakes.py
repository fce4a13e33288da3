"""A simulated Discord for the adapter tests: simcord's in-memory REST and gateway
behind the real discord.py client, a guild bound to the sample course, and members
linked to roster entries (instructor, TA, students).

simcord's ids are deterministic (its clock starts at a fixed instant and snowflakes are
allocated in order), so two worlds built the same way, in two processes, have the same
guild, channels, users and application: a bot restarted in a new world meets the same
Discord. :func:`adopt_interaction` carries over an interaction the previous process
deferred and never answered (Discord keeps it, and its follow-up webhook, for 15
minutes), for the inbox tests (tests/test_inbox_discord.py)."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import discord
import simcord
from simcord import ChannelHandle, GuildHandle, MemberActor
from simcord.backend.models import Interaction
from simcord.http.router import dispatch
from sqlalchemy import select

from bot.app import App
from bot.discord import CourseBot
from commands.coursefile import link_identity
from db.models import Course, CourseBinding, Person, Platform

#: The guild's text channels: the sample course file's ``channels`` (bound by id at start).
CHANNELS = ("general", "announcements", "battles", "discussions")
#: The guild the sample course is bound to in these tests.
GUILD_ID = 1_180_000_000_000_000_001
#: Discord user name → the roster email it is linked to (None: on Discord, not linked).
PEOPLE = {
    "gedas": "gedas@cs.unc.edu",  # instructor; Discord role with Manage Server
    "maya": "maya.johnson@unc.edu",  # TA; Discord role with Manage Messages
    "alice": "alice.chen@unc.edu",  # student
    "bob": "bob.okafor@unc.edu",  # a student who moderates the server (Manage Messages)
    "zoe": None,  # on the server, not linked to the roster
}


@dataclass
class World:
    """The simulated guild around one running bot."""

    env: simcord.Env
    app: App
    bot: CourseBot
    guild: GuildHandle
    channels: dict[str, ChannelHandle]
    members: dict[str, MemberActor] = field(default_factory=dict)
    #: Errors the adapter logged (it answers users instead of raising); the test fails
    #: if any are left at the end.
    failures: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> MemberActor:
        try:
            return self.members[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def general(self) -> ChannelHandle:
        return self.channels["general"]

    @property
    def announcements(self) -> ChannelHandle:
        return self.channels["announcements"]

    async def restart(self, app: App) -> CourseBot:
        """A new process: a new app (same database) and a new bot on the same guild."""
        self.app = app
        self.bot = CourseBot(app, guild_id=GUILD_ID, scheduler=False)
        await self.env.restart_bot(self.bot)
        return self.bot


async def bind_and_link(app: App, users: dict[str, int]) -> None:
    """Bind the sample course to the test guild and link the Discord accounts."""
    async with app.db.transaction() as session:
        course = await session.scalar(select(Course))
        assert course is not None
        session.add(
            CourseBinding(course_id=course.id, platform=Platform.DISCORD, external_id=str(GUILD_ID))
        )
        for name, email in PEOPLE.items():
            if email is None:
                continue
            person = await session.scalar(
                select(Person).where(Person.course_id == course.id, Person.email == email)
            )
            assert person is not None, email
            await link_identity(
                session,
                course,
                person,
                Platform.DISCORD,
                str(users[name]),
                now=app.clock.now(),
                display_name=name,
            )


@asynccontextmanager
async def discord_world(
    app: App,
    *,
    bot_manages_battles: bool = True,
    bind: bool = True,
    prepare: Callable[[World], None] | None = None,
) -> AsyncIterator[World]:
    """A running bot in a guild with the sample course's channels (#general,
    #announcements, #battles, #discussions: the bot binds them by id at start), an
    instructor (Manage Server), a TA (Manage Messages) and three students.
    ``bot_manages_battles=False``: #battles denies the bot Manage Messages (it cannot
    remove other people's reactions there). ``bind=False``: the database already has
    the binding and the linked accounts (a world built the same way before, in another
    process). ``prepare`` runs on the world before the bot starts (connects)."""
    bot = CourseBot(app, guild_id=GUILD_ID, scheduler=False)
    env = simcord.Env(bot)
    guild = env.create_guild("COMP 790", id=GUILD_ID)
    bot_role = guild.roles[env.backend.bot_user.name]  # the bot's managed integration role
    deny = {bot_role: discord.PermissionOverwrite(manage_messages=False)}
    channels = {
        name: guild.create_text_channel(
            name, overwrites=deny if name == "battles" and not bot_manages_battles else None
        )
        for name in CHANNELS
    }
    instructor = guild.create_role(
        "Instructor", permissions=discord.Permissions(manage_guild=True, manage_messages=True)
    )
    ta = guild.create_role("TA", permissions=discord.Permissions(manage_messages=True))
    roles = {"gedas": [instructor], "maya": [ta], "bob": [ta]}
    users = {name: env.create_user(name, global_name=name.title()) for name in PEOPLE}
    if bind:
        await bind_and_link(app, {name: user.id for name, user in users.items()})
    members = {
        name: guild.add_member(user, roles=roles.get(name, ())) for name, user in users.items()
    }
    failures = _Failures()
    adapter_log = logging.getLogger("coursebot.discord")
    adapter_log.addHandler(failures)
    world = World(
        env=env,
        app=app,
        bot=bot,
        guild=guild,
        channels=channels,
        members=members,
        failures=failures.records,
    )
    if prepare is not None:
        prepare(world)
    try:
        await env.start()
    except BaseException:
        adapter_log.removeHandler(failures)
        raise
    try:
        yield world
    except BaseException:
        await env.shutdown()
        raise
    finally:
        adapter_log.removeHandler(failures)
    await env.shutdown()
    env.raise_errors()  # errors discord.py caught fail the test...
    assert not failures.records, failures.records  # ...and so do the adapter's own


class _Failures(logging.Handler):
    """Collects the adapter's logged errors (it answers users instead of raising)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


def adopt_interaction(
    env: simcord.Env,
    *,
    interaction_id: int,
    token: str,
    channel_id: int,
    user_id: int,
    guild_id: int | None,
    ephemeral: bool,
    command_name: str | None = None,
) -> simcord.InteractionResult:
    """An application-command interaction that a previous bot process deferred and
    never answered, as Discord still holds it: its token (valid 15 minutes from now)
    and its "thinking" message, public or private. Whatever the restarted bot sends
    through the follow-up webhook lands on it; the returned result shows it.

    The deferral is made through simcord's own callback route (it is what the previous
    process did); that call is then taken out of ``env.http_requests``, which keeps
    recording only what the bot under test sent."""
    backend = env.backend
    with contextlib.suppress(simcord.SetupError):  # reserved already if allocated here
        backend.reserve_id(interaction_id)  # never given to anything else in this world
    record = Interaction(
        id=interaction_id,
        token=token,
        type=discord.InteractionType.application_command.value,
        channel_id=channel_id,
        guild_id=guild_id,
        user_id=user_id,
        expires_at=backend.iso_after(15 * 60),
        command_name=command_name,
    )
    backend.interactions[interaction_id] = record
    backend.interaction_tokens[token] = interaction_id
    logged, transcribed = len(backend.http_requests), len(backend.transcript)
    dispatch(
        backend,
        "POST",
        f"/interactions/{interaction_id}/{token}/callback",
        json={"type": 5, "data": {"flags": 64 if ephemeral else 0}},
    )
    del backend.http_requests[logged:]
    del backend.transcript[transcribed:]
    return simcord.InteractionResult(env, record)


def world_ids(world: World) -> dict[str, int]:
    """The ids a restarted world must share with the first one."""
    return {
        "application": world.env.backend.application_id,
        "bot": world.env.backend.bot_user.id,
        "guild": world.guild.id,
        **{f"#{name}": channel.id for name, channel in world.channels.items()},
        **{name: member.id for name, member in world.members.items()},
    }


# ---------------------------------------------------------------------- a class at once


def students(names: list[str]) -> Callable[[World], None]:
    """A ``prepare`` for discord_world: these members join the guild before the bot."""

    def prepare(world: World) -> None:
        for name in names:
            user = world.env.create_user(name, global_name=name.title())
            world.members[name] = world.guild.add_member(user)

    return prepare


def react_together(
    env: simcord.Env, message: discord.Message, reactions: list[tuple[int, str]]
) -> None:
    """``(user id, emoji)`` reactions added to ``message`` in the same instant: one
    gateway event each, emitted before the bot handles any (simcord's ``react`` settles
    after each, one person at a time). The caller waits for what should follow."""
    for user_id, emoji in reactions:
        env.backend.set_reaction(message.channel.id, message.id, emoji, user_id, True)


async def slash_together(
    env: simcord.Env,
    actors: list[MemberActor],
    channel: ChannelHandle,
    name: str,
    options: list[dict[str, object]],
) -> list[simcord.InteractionResult]:
    """The slash command ``name`` typed by every actor in the same instant (``options[i]``
    for ``actors[i]``): simcord's ``slash`` settles after each and refuses overlapping
    operations, so its own payload builder runs here with the per-call settle skipped.
    The caller waits (``env.settle``, or polls what the bot sent)."""
    from simcord import actors as sim_actors

    async def no_settle(**_kw: object) -> None:
        return None

    env._settle_internal = no_settle  # type: ignore[method-assign]
    try:
        return [
            await sim_actors._slash(actor, channel, name, dict(opts))
            for actor, opts in zip(actors, options, strict=True)
        ]
    finally:
        del env._settle_internal


# ---------------------------------------------------------------------- rate limits


@dataclass
class PacedRoute:
    """One REST route under Discord's rate limit, as discord.py meets it: a call waits its
    turn in the route's bucket (one per channel: Discord buckets a route by its channel),
    then takes ``seconds``. discord.py waits out a 429 itself (it sleeps for Retry-After
    and tries again), so what the bot sees of a limit is this wait, never an error.
    While ``held`` is clear, every call waits at the head of its bucket (a limit longer
    than a test wants to sit through); setting it lets them go, one after another."""

    method: str
    pattern: str
    seconds: float
    held: asyncio.Event = field(default_factory=asyncio.Event)
    #: ``time.perf_counter()`` when each call reached the route (simcord replaces
    #: ``time.monotonic`` while its world runs).
    queued: list[float] = field(default_factory=list)
    #: Calls that went through to Discord (whatever it answered).
    sent: int = 0

    @property
    def pending(self) -> int:
        return len(self.queued) - self.sent


def api_path(url: str) -> str:
    """``https://discord.com/api/v10/channels/1/…`` → ``/channels/1/…`` (as simcord logs it)."""
    path = urlsplit(url).path
    if path.startswith("/api/v"):
        path = "/" + path.split("/", 3)[3]
    return path


def pace_route(
    world: World, method: str, pattern: str, *, seconds: float = 0.25, held: bool = False
) -> PacedRoute:
    """Put the bot's calls of ``method`` on paths matching ``pattern`` (fnmatch, as in
    ``env.inject_error``) under a rate limit: see :class:`PacedRoute`. Faults injected
    on the same route still apply, when a call's turn comes."""
    paced = PacedRoute(method, pattern, seconds)
    if not held:
        paced.held.set()
    env = world.env
    http = world.bot.http
    real = http.request
    #: bucket → the call last in line there (done when that call is).
    last: dict[Any, asyncio.Future[None]] = {}

    async def request(route: Any, **kwargs: Any) -> Any:
        if route.method != method or not fnmatch.fnmatchcase(api_path(route.url), pattern):
            return await real(route, **kwargs)
        paced.queued.append(time.perf_counter())
        bucket = route.channel_id
        ahead = last.get(bucket)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        last[bucket] = mine

        async def turn() -> None:
            if ahead is not None:
                await ahead
            await paced.held.wait()

        try:
            # A wait simcord must not count as the bot being busy (it would hold every
            # other timer): declared, as a rate limit is, input from outside the bot.
            await env.external_wait(turn(), reason="waiting its turn under a rate limit")
            await asyncio.sleep(paced.seconds)
            try:
                return await real(route, **kwargs)
            finally:
                paced.sent += 1
        finally:
            mine.set_result(None)
            if last.get(bucket) is mine:
                del last[bucket]

    http.request = request  # type: ignore[method-assign]
    return paced
