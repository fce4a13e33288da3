"""The outbox on Discord: scheduled reminders, poll updates, announcements and DMs the
core decides on, posted as ordinary messages (never as interaction follow-ups, whose
token lives only 15 minutes).

A channel is a course channel's key (``announcements``), the course file's value for
it (``#announcements``) or a channel or thread id (where a command was typed). Keys are
found by the id bound when the bot started (:meth:`CourseBot.bind_guild_channels`,
commands/channels.py), never by name at send time: a renamed channel keeps its posts,
and with two channels of one name a post goes to neither (the row fails, saying what to
do). A message reference is ``<channel id>:<message id>`` (the last message, the one
with buttons and reactions).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from sqlalchemy import select

from bot.discord.render import render
from commands.channels import channel_id, clean_name, is_channel_id
from commands.outbox import Gone, RetryLater, Unreachable
from commands.people import linked_accounts
from commands.replies import Reply
from db.models import Course, CourseBinding, Platform

if TYPE_CHECKING:
    from bot.discord.client import CourseBot

log = logging.getLogger("coursebot.discord")


class OutboxError(Gone):
    """A course, channel or message the outbox cannot find on Discord."""


#: Discord's JSON error codes that say how a send failed.
CANNOT_DM = 50007  # the user does not accept DMs from the bot (or shares no server)
UNKNOWN_CHANNEL, UNKNOWN_MESSAGE, UNKNOWN_USER = 10003, 10008, 10013
SLOW_DOWN = 40003  # "opening direct messages too fast": anti-spam, not closed DMs
#: How long to wait before trying again after Discord's anti-spam refusal.
SLOW_DOWN_SECONDS = 30.0


def classify(exc: discord.HTTPException) -> Exception:
    """The outbox's reading of a Discord error: unreachable, gone, or try again later.
    discord.py already waits out 429s (Retry-After) itself."""
    if exc.code == SLOW_DOWN:
        return RetryLater("Discord asked us to slow down (40003)", SLOW_DOWN_SECONDS)
    if exc.code == CANNOT_DM:
        return Unreachable("does not accept DMs from the bot")
    if exc.code == UNKNOWN_USER:
        return Unreachable("the Discord account no longer exists")
    if exc.code in (UNKNOWN_CHANNEL, UNKNOWN_MESSAGE):
        return Gone(f"Discord says the channel or message is gone ({exc.code})")
    if exc.status >= 500 or exc.status == 429:
        return RetryLater(f"Discord answered {exc.status}", 5.0)
    return exc


class DiscordOutbox:
    """Implements :class:`commands.outbox.Outbox` for one bot."""

    platform = Platform.DISCORD

    def __init__(self, bot: CourseBot) -> None:
        self.bot = bot

    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        """Post to a course channel; return ``<channel id>:<message id>``."""
        target = await self.channel(course_id, channel)
        try:
            sent = await self.bot.router.send_to(target, reply)
        except discord.HTTPException as exc:
            raise classify(exc) from exc
        # The reference is the message that takes the reactions, if one does (the bot
        # routes reactions by it), else the last one.
        parts = render(reply)
        holder = next((i for i, m in enumerate(parts) if m.reactions is not None), -1)
        return ref(sent[holder] if len(sent) == len(parts) else sent[-1])

    async def recorded(self, course_id: int, message_ref: str, reply: Reply) -> None:
        """The dispatcher has committed what the posted message's reactions mean: only
        now are its reaction choices added, so no reaction can come before the record
        that routes it (commands/reactions.py)."""
        if reply.reactions is None:
            return
        channel_id, message_id = parse_ref(message_ref)
        message = self.bot.get_partial_messageable(channel_id).get_partial_message(message_id)
        for emoji in reply.reactions.emojis:
            try:
                await message.add_reaction(emoji)
            except discord.HTTPException:
                log.warning("could not add reaction %s to message %s", emoji, message_id)

    async def edit(self, course_id: int, message_ref: str, reply: Reply) -> None:
        """Replace a posted message's content (a poll's running count)."""
        channel_id, message_id = parse_ref(message_ref)
        channel = self.bot.get_partial_messageable(channel_id)
        message = render(reply, single=True)[0]
        kwargs = message.send_kwargs()
        if "files" in kwargs:
            kwargs["attachments"] = kwargs.pop("files")
        kwargs.setdefault("view", None)
        kwargs.setdefault("content", None)
        self.bot.router.remember(reply)
        try:
            await channel.get_partial_message(message_id).edit(**kwargs)
        except discord.HTTPException as exc:
            raise classify(exc) from exc

    async def dm(self, course_id: int, person_id: int, reply: Reply) -> str:
        """A private message to a person through their linked Discord account; raises
        :class:`Unreachable` when they have none or do not accept DMs."""
        async with self.bot.app.db.session() as session:
            linked = await linked_accounts(session, course_id, [person_id], Platform.DISCORD)
        user_id = linked.get(person_id)
        if user_id is None:
            raise Unreachable("no linked Discord account")
        return await self.dm_account(course_id, user_id, reply)

    async def dm_account(self, course_id: int, user_id: str, reply: Reply) -> str:
        """A private message to one Discord account."""
        try:
            user = self.bot.get_user(int(user_id)) or await self.bot.fetch_user(int(user_id))
            sent = await self.bot.router.send_to(user, reply)  # type: ignore[arg-type]
        except ValueError:
            raise Unreachable(f"`{user_id}` is not a Discord account id") from None
        except discord.HTTPException as exc:
            raise classify(exc) from exc
        return ref(sent[-1]) if sent else ""

    async def thread(
        self,
        course_id: int,
        channel: str,
        name: str,
        reply: Reply,
        person_ids: Sequence[int] = (),
    ) -> str:
        """Open a thread in a course channel (a discussion group), post ``reply`` in it
        and add the people's linked accounts; return the thread's id (a channel that
        :meth:`post` takes)."""
        parent = await self.channel(course_id, channel)
        if not isinstance(parent, discord.TextChannel):
            raise OutboxError(f"#{channel} cannot hold threads")
        thread = await parent.create_thread(
            name=name[:100], type=discord.ChannelType.public_thread, auto_archive_duration=1440
        )
        sent = await self.bot.router.send_to(thread, reply)
        if person_ids:
            async with self.bot.app.db.session() as session:
                linked = await linked_accounts(session, course_id, person_ids, Platform.DISCORD)
            for user_id in linked.values():
                try:
                    await thread.add_user(discord.Object(int(user_id)))
                except discord.HTTPException:
                    log.info("could not add user %s to thread %s", user_id, thread.id)
        log.debug("opened thread %s (%d messages)", thread.id, len(sent))
        return str(thread.id)

    # ------------------------------------------------------------------ lookups
    async def channel(self, course_id: int, channel: str) -> discord.TextChannel | discord.Thread:
        """A course channel (its key, the course file's value for it) by the id bound
        for it, or a channel or thread of the course's guild by id; never by name.
        :class:`OutboxError` (the row fails, with what to do) when it is not bound."""
        guild, binding, course = await self.binding(course_id)
        found = channel_id(binding, course, channel)
        if found is None and guild.id not in self.bot.channels_bound:
            await self.bot.bind_guild_channels(guild)  # a post before the guild was bound
            guild, binding, course = await self.binding(course_id)
            found = channel_id(binding, course, channel)
        if found is None:
            raise OutboxError(unbound(course, channel))
        target = guild.get_channel_or_thread(int(found))
        if target is None:  # a thread opened before a restart is not in the cache
            try:
                fetched = await self.bot.fetch_channel(int(found))
            except (discord.NotFound, discord.Forbidden):
                fetched = None
            except discord.HTTPException as exc:
                raise classify(exc) from exc
            if getattr(fetched, "guild", None) is not None and fetched.guild.id == guild.id:  # type: ignore[union-attr]
                target = fetched  # type: ignore[assignment]
        if not isinstance(target, discord.TextChannel | discord.Thread):
            key = key_of(course, channel)
            if is_channel_id(Platform.DISCORD, key):  # no course channel: where one typed
                raise OutboxError(
                    f"channel {found} is not a text channel or thread the bot can see in "
                    "this Discord server (deleted, or the bot lost access to it)."
                )
            raise OutboxError(
                f"the course channel `{key}` (channel {found}) is not a text channel the "
                "bot can see in this Discord server (deleted, in another server, or hidden "
                "from the bot): give the bot access, or bind another with `coursebot course "
                f"channel {course.key} discord {key} <channel-id>`; then `outbox retry` "
                "sends it."
            )
        return target

    async def binding(self, course_id: int) -> tuple[discord.Guild, CourseBinding, Course]:
        """The course's Discord binding (the configured guild's, when the course is
        bound to several) with its guild and course."""
        async with self.bot.app.db.session() as session:
            bindings = list(
                await session.scalars(
                    select(CourseBinding).where(
                        CourseBinding.course_id == course_id,
                        CourseBinding.platform == Platform.DISCORD,
                    )
                )
            )
            course = await session.get(Course, course_id)
        mine = str(self.bot.guild_id) if self.bot.guild_id else None
        binding = next((b for b in bindings if b.external_id == mine), None)
        binding = binding or next(
            (
                b
                for b in bindings
                if b.external_id.isdigit() and self.bot.get_guild(int(b.external_id))
            ),
            bindings[0] if bindings else None,
        )
        if binding is None or course is None:
            raise OutboxError(f"course {course_id} is not bound to a Discord guild")
        guild = (
            self.bot.get_guild(int(binding.external_id)) if binding.external_id.isdigit() else None
        )
        if guild is None:  # not in the cache yet (starting), or the bot was removed
            raise RetryLater(
                f"the bot does not see guild {binding.external_id} (course {course_id})", 10.0
            )
        return guild, binding, course

    async def guild(self, course_id: int) -> discord.Guild:
        return (await self.binding(course_id))[0]


def key_of(course: Course, channel: str) -> str:
    """The course channel key a post names (``battles`` for ``#battles``)."""
    wanted = clean_name(channel)
    for key, value in (course.channels or {}).items():
        if clean_name(str(value)) == wanted:
            return key
    return wanted


def unbound(course: Course, channel: str) -> str:
    """Why a post to ``channel`` was not sent, and what to do (staff read it in
    ``outbox failed``)."""
    key = key_of(course, channel)
    return (
        f"the course channel `{key}` is not bound to a Discord channel: when the bot "
        "started it found no single text channel of that name it can see (the log says "
        "what it found), so nothing was posted. Put the channel's id in the course file "
        f"(`channels: {{{key}: '<channel-id>'}}`) and restart the bot, or run "
        f"`coursebot course channel {course.key} discord {key} <channel-id>`; then "
        "`outbox retry` sends it."
    )


def ref(message: discord.Message) -> str:
    return f"{message.channel.id}:{message.id}"


def parse_ref(message_ref: str) -> tuple[int, int]:
    try:
        channel_id, message_id = message_ref.split(":")
        return int(channel_id), int(message_id)
    except ValueError:
        raise OutboxError(f"not a Discord message reference: {message_ref!r}") from None
