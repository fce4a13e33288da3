"""The Discord bot: a :class:`discord.Client` with an app-command tree built from the
registry, the router, the outbox and the reminder scheduler; and :func:`run_discord`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

import aiohttp
import discord
from discord import app_commands
from sqlalchemy import select

from bot.app import App, start_app
from bot.discord.components import DYNAMIC_ITEMS
from bot.discord.layout import Layout, build_layout
from bot.discord.outbox import DiscordOutbox
from bot.discord.render import FORM_PREFIX
from bot.discord.router import Router
from bot.discord.tree import build_commands, limit_problems
from bot.leader import leadership
from bot.scheduler import ReminderSweeper
from bot.settings import Settings
from commands import offload
from commands.channels import ChannelInfo, bind_channels, channel_id
from commands.coursefile import BattleRules
from db.models import Course, CourseBinding, Platform

log = logging.getLogger("coursebot.discord")


def intents() -> discord.Intents:
    """What the bot needs: guilds (channels, threads, its own permissions) and
    reactions in guilds and DMs. No privileged intent: commands arrive as
    interactions, so neither message content nor the member list is needed."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_reactions = True
    wanted.dm_reactions = True
    return wanted


class CourseBot(discord.Client):
    """The whole course bot on Discord, over the shared command core."""

    def __init__(
        self,
        app: App,
        *,
        guild_id: str | int | None = None,
        scheduler: bool = True,
        sync: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(intents=intents(), **options)
        self.app = app
        self.guild_id = int(guild_id) if guild_id else None
        self.tree: app_commands.CommandTree[CourseBot] = app_commands.CommandTree(self)
        self.tree.error(self._tree_error)
        self.router = Router(self)
        self.outbox = DiscordOutbox(self)
        self.layout: Layout = build_layout(app.core.registry)
        self.sync_on_start = sync
        self.use_scheduler = scheduler
        self.sweeper = ReminderSweeper(
            app.db,
            self.outbox,
            app.clock,
            hours_before=app.settings.reminder_hours,
            platform=Platform.DISCORD,
        )
        self._ready_once = False
        #: Inbox entries received before this instant belong to a stopped process (set
        #: when the bot logs in: no interaction reaches this process before).
        self.inbox_since: datetime | None = None
        #: The recovery of what a stopped process left (a task, started once ready).
        self.recovery: asyncio.Task[None] | None = None
        #: The guild a DM (a button on a private message) belongs to; see Router.workspace.
        self.dm_workspace: str | None = str(self.guild_id) if self.guild_id else None
        #: Guilds whose course channels this process has bound (names resolved to ids
        #: once: :meth:`bind_guild_channels`), and the problems last logged for each.
        self.channels_bound: set[int] = set()
        self._channel_problems: dict[int, frozenset[str]] = {}
        self._binding_lock = asyncio.Lock()
        app.core.outbox = self.outbox

    # ------------------------------------------------------------------ start
    async def setup_hook(self) -> None:
        """Register the persistent components, build the commands and sync them."""
        self.inbox_since = self.app.core.clock.now()
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        guild = discord.Object(self.guild_id) if self.guild_id else None
        for command in build_commands(self.layout, self.router):
            self.tree.add_command(command, guild=guild)
        if self.dm_workspace is None:
            self.dm_workspace = await self._only_binding()
        await self._check_binding()
        if self.sync_on_start:
            await self.sync_commands()

    async def sync_commands(self) -> bool:
        """Upload the command tree to Discord if it differs from what is registered
        (to the course's guild: instant; with no guild id: global). True if synced."""
        guild = discord.Object(self.guild_id) if self.guild_id else None
        local: list[dict[str, Any]] = [
            dict(c.to_dict(self.tree)) for c in self.tree.get_commands(guild=guild)
        ]
        problems = limit_problems(local)
        if problems:
            # Discord would refuse the whole sync; say which command, keep what is there.
            for problem in problems:
                log.error("app commands not synced: %s", problem)
            return False
        try:
            remote: list[dict[str, Any]] | None = [
                _registered(c) for c in await self.tree.fetch_commands(guild=guild)
            ]
        except discord.HTTPException:
            remote = None
        if remote is not None and _signature(local) == _signature(remote):
            log.info("app commands unchanged (%d top-level); no sync needed", len(local))
            return False
        synced = await self.tree.sync(guild=guild)
        where = f"guild {self.guild_id}" if self.guild_id else "all guilds (global)"
        log.info("synced %d top-level app commands to %s", len(synced), where)
        return True

    async def on_ready(self) -> None:
        if self._ready_once:
            return
        self._ready_once = True
        log.info("logged in to Discord as %s (%s)", self.user, getattr(self.user, "id", "?"))
        for guild in self.guilds:  # each guild was bound as it became available; not twice
            if guild.id not in self.channels_bound:
                await self._bind_quietly(guild)
        try:
            await self.check_ballot_permissions()
        except Exception:
            log.exception("checking the bot's permissions for secret ballots failed")
        if self.inbox_since is not None:
            # Interactions a stopped process deferred and did not answer: run them again
            # while their tokens live, or tell their users (bot/discord/recovery.py). A
            # task of its own: a slow command run again does not hold up the scheduler.
            self.recovery = asyncio.create_task(self._recover(self.inbox_since))
        if self.use_scheduler:
            try:
                await self.sweeper.sweep()  # catch up on what came due while down
            except Exception:
                log.exception("the catch-up sweep failed; the scheduler retries")
            self.sweeper.start(self.app.settings.sweep_seconds)

    async def _recover(self, since: datetime) -> None:
        try:
            await self.router.inbox.recover(since)
        except Exception:
            log.exception("recovering the interactions of a stopped process failed")

    async def close(self) -> None:
        if self.recovery is not None and not self.recovery.done():
            self.recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.recovery
        await self.sweeper.aclose()
        await super().close()

    async def _only_binding(self) -> str | None:
        async with self.app.db.session() as session:
            ids = list(
                await session.scalars(
                    select(CourseBinding.external_id).where(
                        CourseBinding.platform == Platform.DISCORD
                    )
                )
            )
        return ids[0] if len(ids) == 1 else None

    # ------------------------------------------------------------------ course channels
    async def bind_guild_channels(self, guild: discord.Guild) -> list[str]:
        """Bind the channels of the course bound to ``guild`` by id (commands/channels.py):
        the guild's text and announcement channels are listed from the gateway's cache
        and the course file's names resolved against them, in one transaction; a name
        resolved before keeps its id (a renamed channel keeps its posts). Each problem (a
        name two channels share, an id or a name not in the guild) is logged as an error,
        once while it lasts; the problems are returned."""
        listing = channel_listing(guild)
        async with self._binding_lock:
            async with self.app.db.transaction() as session:
                problems = await bind_channels(session, Platform.DISCORD, str(guild.id), listing)
            self.channels_bound.add(guild.id)
            logged = self._channel_problems.get(guild.id, frozenset())
            for problem in problems:
                if problem not in logged:
                    log.error("Discord server %s (%s): %s", guild.name, guild.id, problem)
            self._channel_problems[guild.id] = frozenset(problems)
        return problems

    async def _bind_quietly(self, guild: discord.Guild | None) -> None:
        """Bind ``guild``'s channels from an event; a failure is logged (the outbox
        binds again before a post that needs it)."""
        if guild is None:
            return
        try:
            await self.bind_guild_channels(guild)
        except Exception:
            self.channels_bound.discard(guild.id)
            log.exception("binding the course channels of guild %s failed", guild.id)

    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self._bind_quietly(guild)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._bind_quietly(guild)

    async def on_guild_channel_create(self, channel: discord.abc.GuildChannel) -> None:
        """A new channel may be the one a key was waiting for (none of its name before)."""
        await self._bind_quietly(channel.guild)

    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        """A key bound to a deleted channel is bound no more (and that is logged)."""
        await self._bind_quietly(channel.guild)

    async def on_guild_channel_update(
        self, before: discord.abc.GuildChannel, after: discord.abc.GuildChannel
    ) -> None:
        """A rename keeps every binding (ids); it may settle a name two channels shared."""
        if before.name != after.name:
            await self._bind_quietly(after.guild)

    async def check_ballot_permissions(self) -> list[str]:
        """Warn, per bound guild, when a course with secret ballots (the default) has a
        battles channel where the bot lacks Manage Messages: it could not remove votes by
        reaction there, so they would stay visible. Returns the warnings logged."""
        async with self.app.db.session() as session:
            rows = (
                await session.execute(
                    select(CourseBinding, Course)
                    .join(Course, Course.id == CourseBinding.course_id)
                    .where(CourseBinding.platform == Platform.DISCORD)
                )
            ).all()
        warnings: list[str] = []
        for binding, course in rows:
            guild_id = binding.external_id
            guild = self.get_guild(int(guild_id)) if guild_id.isdigit() else None
            if guild is None or guild.me is None:
                continue
            if BattleRules.model_validate(course.battle_rules or {}).ballot != "secret":
                continue
            bound = channel_id(binding, course, "battles")  # the bound id, never a name
            channel = guild.get_channel(int(bound)) if bound else None
            if channel is not None:
                allowed = channel.permissions_for(guild.me).manage_messages
                where = f"#{channel.name} ({channel.id})"
            else:
                allowed = guild.me.guild_permissions.manage_messages
                where = "guild-wide (the course's `battles` channel is not bound)"
            if not allowed:
                warnings.append(
                    f"guild {guild.id} ({guild.name}), course {course.key}: the bot lacks "
                    f"Manage Messages in {where}, so it cannot remove 🅰️/🅱️ reactions from "
                    "secret battle polls there and votes by reaction stay visible (voters are "
                    "told). Grant Manage Messages to the bot's role in that channel "
                    "(docs/discord.md), or set battle_rules.ballot: open."
                )
        for warning in warnings:
            log.warning("%s", warning)
        return warnings

    async def _check_binding(self) -> None:
        if self.guild_id is None:
            return
        async with self.app.db.session() as session:
            bound = await session.scalar(
                select(CourseBinding.course_id).where(
                    CourseBinding.platform == Platform.DISCORD,
                    CourseBinding.external_id == str(self.guild_id),
                )
            )
        if bound is None:
            log.warning(
                'guild %s is not bound to a course: add `discord: "%s"` to the course file\'s '
                "bindings, or run `coursebot course bind <course-key> discord %s`",
                self.guild_id,
                self.guild_id,
                self.guild_id,
            )

    # ------------------------------------------------------------------ events
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Form (modal) submissions; commands and components route themselves."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        if not custom_id.startswith(FORM_PREFIX):
            return
        await self.router.on_modal(interaction, custom_id.removeprefix(FORM_PREFIX))

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._reaction(payload, added=True)

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._reaction(payload, added=False)

    async def _reaction(self, payload: discord.RawReactionActionEvent, *, added: bool) -> None:
        try:
            await self.router.on_reaction(payload, added=added)
        except Exception:
            log.exception("reaction on message %s failed", payload.message_id)

    async def _tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await self.router.fail(interaction, getattr(error, "original", error))


def channel_listing(guild: discord.Guild) -> list[ChannelInfo]:
    """The channels of ``guild`` a course can post to, as the gateway's cache has them:
    text channels and announcement (news) channels (threads are found by id)."""
    return [ChannelInfo(str(c.id), c.name) for c in guild.text_channels]


def _registered(command: app_commands.AppCommand) -> dict[str, Any]:
    data = dict(command.to_dict())
    perms = command.default_member_permissions
    data["default_member_permissions"] = str(perms.value) if perms is not None else None
    return data


def _signature(commands: list[dict[str, Any]]) -> list[Any]:
    """What matters of a command list when deciding whether to sync."""
    keys = (
        "name",
        "description",
        "type",
        "required",
        "autocomplete",
        "min_value",
        "max_value",
        "min_length",
        "max_length",
        "default_member_permissions",
    )

    def norm(item: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {k: item.get(k) for k in keys if item.get(k) not in (None, False)}
        if item.get("choices"):
            out["choices"] = [(c["name"], c["value"]) for c in item["choices"]]
        if item.get("options"):
            out["options"] = [norm(o) for o in item["options"]]
        perms = out.get("default_member_permissions")
        if perms is not None:
            out["default_member_permissions"] = str(perms)
        return out

    return sorted((norm(c) for c in commands), key=lambda c: str(c.get("name")))


async def run_discord(settings: Settings) -> int:
    """Start the app, log in with ``DISCORD_TOKEN``, sync the commands to
    ``DISCORD_GUILD_ID`` and serve until stopped. Returns the exit status."""
    if settings.discord.token is None:
        log.error("DISCORD_TOKEN is not set; see docs/discord.md")
        return 2
    if not settings.discord.guild_id:
        log.warning(
            "DISCORD_GUILD_ID is not set: commands are synced globally and the course is "
            "found by each guild's binding"
        )
    app = await start_app(settings)
    offload.prestart()  # the solver's process, started while nobody waits on the bot
    bot = CourseBot(app, guild_id=settings.discord.guild_id)
    # Only the leading replica holds the gateway (Discord sends each event to one
    # connection); a follower waits here and takes over if the leader stops.
    lead = leadership(settings.database_url)
    await lead.wait()
    try:
        async with bot:
            await bot.start(settings.discord.token.get_secret_value())
    except discord.LoginFailure:
        log.error("Discord rejected DISCORD_TOKEN; copy the bot token again (docs/discord.md)")
        return 1
    except discord.PrivilegedIntentsRequired:
        log.error("Discord refused an intent; the bot needs no privileged intent")
        return 1
    except (aiohttp.ClientError, OSError) as exc:
        log.error("Cannot reach Discord (%s); check the network and try again", exc)
        return 1
    finally:
        await lead.release()  # another replica may take the gateway now
        await app.close()
    return 0
