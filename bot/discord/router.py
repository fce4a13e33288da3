"""Interactions and reactions → the command core → replies on Discord.

Every interaction is acknowledged first (a defer, a modal, or autocomplete choices,
all within Discord's 3 seconds), then the core runs, then the reply goes out as the
deferred message and follow-ups. A reply that comes back after the interaction's
15-minute token is gone is posted to the channel (or DM'd, if private) instead.

An interaction that runs something is kept in the inbox before it is deferred and marked
done once answered (:mod:`bot.discord.recovery`): a restart in between runs it again and
answers through its follow-up webhook, or tells its user what became of it.

Only translation happens here: the core finds the course and the caller, checks
roles, validates options and dedupes retries by the interaction id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time as clock
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord import app_commands
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.discord.components import (
    FormModal,
    PickState,
    fits_custom_id,
    modal_values,
    ordinal,
    picker_view,
)
from bot.discord.recovery import (
    PRIVATE,
    PUBLIC,
    TOKEN_GONE,
    TOKEN_LIFETIME,
    UPDATE,
    Inbox,
    button_label,
    command_line,
    plain,
)
from bot.discord.render import (
    Outgoing,
    render,
)
from bot.discord.tree import FILE_OPTION, is_paper_list
from commands.attachments import DISCORD_FILE_HOSTS, file_origins
from commands.battles import battle_choices
from commands.context import Attachment, Caller, Request, Where
from commands.logistics import course_papers
from commands.outbox import delivery_nonce
from commands.registry import Command, OptionSpec
from commands.replies import Form, ReactionFate, Reply
from db.models import CourseBinding, Platform

if TYPE_CHECKING:
    from bot.discord.client import CourseBot

log = logging.getLogger("coursebot.discord")

AUTOCOMPLETE_LIMIT = 25
CHOICE_LIMIT = 100
#: How long a command form keeps the files given with the command (Discord: 15 min).
PENDING_FILES_SECONDS = 15 * 60
CACHE_SIZE = 2048


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[None]])


def guarded(method: Handler) -> Handler:
    """Turn an adapter failure in an interaction handler into a quotable error reply;
    either way, an interaction kept in the inbox is done after it."""

    @functools.wraps(method)
    async def wrapper(self: Router, interaction: discord.Interaction, *args: Any) -> None:
        try:
            await method(self, interaction, *args)
        except Exception as exc:
            await self.fail(interaction, exc)
        await self.inbox.finish(interaction)

    return wrapper  # type: ignore[return-value]


class LRU(OrderedDict[Any, Any]):
    """A small bounded mapping (recently sent forms, messages that take reactions)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class Router:
    """The adapter's handlers for slash commands, autocomplete, buttons, selects,
    modals and reactions."""

    def __init__(self, bot: CourseBot) -> None:
        self.bot = bot
        self.core = bot.app.core
        self.registry = bot.app.core.registry
        #: Forms seen on buttons this process sent (their exact labels); after a restart
        #: the command's own form spec stands in.
        self._forms: LRU = LRU()
        #: (user id, form id) → (expiry, files given with a command that opened a form).
        self._pending_files: dict[tuple[int, str], tuple[float, tuple[Attachment, ...]]] = {}
        #: Reactions the bot removed itself, whose removal event must not count.
        self._removing: LRU = LRU()
        #: Interactions kept before they are deferred (acknowledged means done or known).
        self.inbox = Inbox(self)

    # ------------------------------------------------------------------ requests
    def request(
        self,
        interaction: discord.Interaction,
        *,
        attachments: Iterable[Attachment] = (),
    ) -> Request:
        """The core request for an interaction (its id dedupes retries)."""
        user = interaction.user
        return Request(
            platform=Platform.DISCORD,
            workspace=self.workspace(interaction.guild_id),
            caller=Caller(Platform.DISCORD, str(user.id), user.display_name),
            where=self.where(
                interaction.channel, interaction.channel_id, is_dm=interaction.guild_id is None
            ),
            attachments=tuple(attachments),
            event_id=str(interaction.id),
        )

    def workspace(self, guild_id: int | None) -> str:
        """The binding id: the guild, or for a DM the course's configured guild."""
        return str(guild_id) if guild_id else (self.bot.dm_workspace or "dm")

    @staticmethod
    def where(channel: Any, channel_id: int | None, *, is_dm: bool) -> Where:
        """Where it happened: the channel's id (what is posted "here" goes there by id,
        never by a name two channels may share), the thread's id inside it, or a DM."""
        if is_dm or isinstance(channel, discord.DMChannel | discord.GroupChannel):
            return Where(channel=None, is_dm=True)
        if isinstance(channel, discord.Thread):
            return Where(channel=str(channel.parent_id), thread=str(channel.id))
        found = getattr(channel, "id", None) or channel_id
        return Where(channel=str(found) if found else None)

    # ------------------------------------------------------------------ slash commands
    @guarded
    async def run_command(
        self, interaction: discord.Interaction, cmd: Command, values: dict[str, Any]
    ) -> None:
        files = [v for v in values.values() if isinstance(v, discord.Attachment)]
        origins = file_origins(DISCORD_FILE_HOSTS, self.bot.app.settings.discord.cdn_url)
        attachments = tuple(_attachment(f, origins) for f in files)
        options = {
            k: v
            for k, v in values.items()
            if v is not None and k != FILE_OPTION and not isinstance(v, discord.Attachment)
        }
        # The form opens by itself only for required options (see missing_form_options).
        required = {s.name for s in cmd.specs if s.required}
        missing_form = [name for name in cmd.form if name not in options and name in required]
        if missing_form:
            fixed = {k: str(v) for k, v in options.items()}
            form = cmd.form_spec(fixed)
            if fits_custom_id(form) and all(":" not in v for v in fixed.values()):
                if attachments:
                    self._keep_files(interaction.user.id, form.custom_id, attachments)
                await interaction.response.send_modal(FormModal(form))
                return
        pick = next(
            (s for s in cmd.specs if is_paper_list(s) and s.required and s.name not in options),
            None,
        )
        if pick is not None and len(options) == 0:
            await self.open_picker(interaction, PickState(cmd.name, pick.name))
            return
        slash = self.bot.layout.slash(cmd)
        await self.inbox.keep(
            interaction,
            "command",
            {"command": cmd.name, "options": {k: plain(v) for k, v in options.items()}},
            defer=PRIVATE if cmd.ephemeral else PUBLIC,
            what=command_line(slash, options),
            again=f"Please type `{slash}` again.",
            attachments=attachments,
        )
        await self._defer(interaction, ephemeral=cmd.ephemeral)
        reply = await self.core.handle(
            self.request(interaction, attachments=attachments), cmd.name, options
        )
        await self.respond(interaction, reply, deferred_ephemeral=cmd.ephemeral)

    # ------------------------------------------------------------------ autocomplete
    async def complete(
        self, interaction: discord.Interaction, cmd: Command, spec: OptionSpec, current: str
    ) -> list[app_commands.Choice[Any]]:
        """Suggestions for one option: paper ids with their titles, battles with their
        papers, or long choice lists."""
        try:
            if spec.choices:
                low = current.lower()
                return [
                    app_commands.Choice(name=c, value=c) for c in spec.choices if low in c.lower()
                ][:AUTOCOMPLETE_LIMIT]
            kind = str(spec.complete).split(":")[0]
            if kind == "battle":
                return await self.battles(interaction.guild_id, current)
            if kind != "paper":
                return []
            papers = await self.papers(interaction.guild_id, spec)
            return paper_choices(papers, current, many=spec.many, integer=spec.type is int)
        except Exception:
            log.exception("autocomplete for %s %s failed", cmd.name, spec.name)
            return []

    async def papers(self, guild_id: int | None, spec: OptionSpec) -> list[tuple[int, str]]:
        """(number, title) of the course's papers an option can take (``paper:<kind>``)."""
        _, _, kind = str(spec.complete).partition(":")
        async with self.bot.app.db.session() as session:
            course_id = await self._course_id(session, guild_id)
            if course_id is None:
                return []
            found = await course_papers(session, course_id, kind=kind or "all")
        return [(p.number, p.title) for p in found]

    async def battles(self, guild_id: int | None, current: str) -> list[app_commands.Choice[Any]]:
        """The course's battles matching what was typed (``battle``): ``Battle B4: #19
        VideoMAE… vs #20 MAE…``, with the id the bot prints for it as the value."""
        async with self.bot.app.db.session() as session:
            course_id = await self._course_id(session, guild_id)
            if course_id is None:
                return []
            found = await battle_choices(session, course_id, current, limit=AUTOCOMPLETE_LIMIT)
        return [
            app_commands.Choice(name=_cut(label), value=value[:CHOICE_LIMIT])
            for label, value in found
        ]

    async def _course_id(self, session: AsyncSession, guild_id: int | None) -> int | None:
        """The course bound to the guild (or to the DM workspace), if any."""
        return await session.scalar(
            select(CourseBinding.course_id).where(
                CourseBinding.platform == Platform.DISCORD,
                CourseBinding.external_id == self.workspace(guild_id),
            )
        )

    # ------------------------------------------------------------------ buttons and forms
    @guarded
    async def on_button(self, interaction: discord.Interaction, custom_id: str) -> None:
        """A core button: open its form, or run its action."""
        if custom_id.startswith("form:"):
            form = self._forms.get(custom_id) or self.form_for(custom_id)
            if form is None or not fits_custom_id(form):
                await interaction.response.send_message(
                    embeds=render(Reply.error("That form is no longer available."))[0].embeds,
                    ephemeral=True,
                )
                return
            await interaction.response.send_modal(FormModal(form))
            return
        action = self.registry.actions.get(custom_id.split(":")[0])
        ephemeral = action.ephemeral if action is not None else True
        label = button_label(interaction)
        await self.inbox.keep(
            interaction,
            "button",
            {"custom_id": custom_id},
            defer=PRIVATE if ephemeral else PUBLIC,
            what=f"press of the **{label}** button" if label else "button press",
            again="Please press the button again.",
        )
        await self._defer(interaction, ephemeral=ephemeral)
        reply = await self.core.handle_action(self.request(interaction), custom_id)
        await self.respond(interaction, reply, deferred_ephemeral=ephemeral)

    def form_for(self, custom_id: str) -> Form | None:
        """The form a form id opens, rebuilt from its command (after a restart)."""
        try:
            command, fixed = Form.parse_custom_id(custom_id)
            return self.registry.get(command).form_spec(fixed)
        except (KeyError, ValueError):
            return None

    @guarded
    async def on_modal(self, interaction: discord.Interaction, form_id: str) -> None:
        """A submitted form: its command runs with the fixed and the typed options."""
        try:
            command, _ = Form.parse_custom_id(form_id)
            cmd = self.registry.get(command)
            ephemeral, slash = cmd.ephemeral, self.bot.layout.slash(cmd)
        except (KeyError, ValueError):
            ephemeral, slash = True, None
        files = self._take_files(interaction.user.id, form_id)
        values = modal_values(interaction.data)
        await self.inbox.keep(
            interaction,
            "form",
            {"form": form_id, "values": values},
            defer=PRIVATE if ephemeral else PUBLIC,
            what=f"form for `{slash}`" if slash else "form",
            again="Please open the form again"
            + (f" (its button, or `{slash}`)" if slash else "")
            + " and send it.",
            attachments=files,
        )
        await self._defer(interaction, ephemeral=ephemeral)
        reply = await self.core.handle_form(
            self.request(interaction, attachments=files), form_id, values
        )
        await self.respond(interaction, reply, deferred_ephemeral=ephemeral)

    def _keep_files(self, user_id: int, form_id: str, files: tuple[Attachment, ...]) -> None:
        now = clock.monotonic()
        for key in [k for k, (until, _) in self._pending_files.items() if until < now]:
            del self._pending_files[key]
        self._pending_files[(user_id, form_id)] = (now + PENDING_FILES_SECONDS, files)

    def _take_files(self, user_id: int, form_id: str) -> tuple[Attachment, ...]:
        until, files = self._pending_files.pop((user_id, form_id), (0.0, ()))
        return files if until >= clock.monotonic() else ()

    # ------------------------------------------------------------------ the paper picker
    @guarded
    async def open_picker(self, interaction: discord.Interaction, state: PickState) -> None:
        await self._defer(interaction, ephemeral=True)
        embed, view = await self._picker(interaction, state)
        await interaction.followup.send(embed=embed, view=view, ephemeral=True, wait=True)

    @guarded
    async def on_pick(self, interaction: discord.Interaction, state: PickState, n: int) -> None:
        await interaction.response.defer()  # an update of the picker itself
        if n not in state.chosen:
            state = state.plus(n)
        embed, view = await self._picker(interaction, state)
        await interaction.edit_original_response(embed=embed, view=view)

    @guarded
    async def on_pick_undo(self, interaction: discord.Interaction, state: PickState) -> None:
        await interaction.response.defer()
        embed, view = await self._picker(interaction, state.undo())
        await interaction.edit_original_response(embed=embed, view=view)

    @guarded
    async def on_pick_submit(self, interaction: discord.Interaction, state: PickState) -> None:
        """Run the command with the picked list; the result replaces the picker (an
        error keeps the picker, with the error above it)."""
        try:
            slash = self.bot.layout.slash(state.command)
        except KeyError:  # not a command (a crafted id): the core says so
            slash = f"/{state.command}"
        await self.inbox.keep(
            interaction,
            "pick",
            {"command": state.command, "option": state.option, "chosen": list(state.chosen)},
            defer=UPDATE,
            what=f"picks for `{slash}`",
            again=f"Please type `{slash}` again.",
        )
        await interaction.response.defer()
        reply = await self.core.handle(
            self.request(interaction), state.command, {state.option: list(state.chosen)}
        )
        if reply.duplicate:
            return
        if reply.is_error:
            embed, view = await self._picker(interaction, state)
            error = render(reply)[0].embeds
            await interaction.edit_original_response(embeds=[*error, embed], view=view)
            return
        self.remember(reply)
        messages = render(reply)
        if reply.ephemeral:  # the answer takes the picker's place
            first, *messages = messages
            kwargs = first.send_kwargs()
            if "files" in kwargs:
                kwargs["attachments"] = kwargs.pop("files")
            await interaction.edit_original_response(**{"view": None, **kwargs})
        else:  # a public answer: the picker says so, the answer goes to the channel
            done = discord.Embed(description="Submitted.", colour=discord.Colour.green())
            await interaction.edit_original_response(embeds=[done], view=None)
        for message in messages:
            sent = await interaction.followup.send(
                ephemeral=reply.ephemeral, wait=True, **message.send_kwargs()
            )
            if message.reactions is not None and not reply.ephemeral:
                await self.add_reactions(sent, message, self.request(interaction))

    async def _picker(
        self, interaction: discord.Interaction, state: PickState
    ) -> tuple[discord.Embed, discord.ui.View]:
        cmd = self.registry.get(state.command)
        spec = next(s for s in cmd.specs if s.name == state.option)
        papers = await self.papers(interaction.guild_id, spec)
        titles = dict(papers)
        lines = [
            f"{ordinal(i)}. #{n} {titles.get(n, '')}".rstrip()
            for i, n in enumerate(state.chosen, 1)
        ]
        embed = discord.Embed(
            title=f"{self.bot.layout.slash(cmd)}: pick papers, best first",
            description="\n".join(lines) or "Nothing picked yet.",
            colour=discord.Colour.blurple(),
        )
        embed.set_footer(text=f"{cmd.description}. Submit when your list is complete.")
        return embed, picker_view(state, papers)

    # ------------------------------------------------------------------ reactions
    async def on_reaction(self, payload: discord.RawReactionActionEvent, *, added: bool) -> None:
        """A reaction on a message that takes them runs its action with the emoji
        (``-`` + emoji for a removal); the answer goes to the reactor by DM."""
        me = self.bot.user
        if me is None or payload.user_id == me.id:
            return
        emoji = str(payload.emoji)
        key = (payload.message_id, payload.user_id, emoji)
        if not added and self._removing.pop(key, None):
            return
        author = getattr(payload, "message_author_id", None)
        if added and author is not None and author != me.id:
            return
        user = await self._user(payload.user_id, payload.member)
        request = Request(
            platform=Platform.DISCORD,
            workspace=self.workspace(payload.guild_id),
            caller=Caller(
                Platform.DISCORD, str(payload.user_id), getattr(user, "display_name", "")
            ),
            where=self.where(
                self.bot.get_channel(payload.channel_id),
                payload.channel_id,
                is_dm=payload.guild_id is None,
            ),
        )
        reply = await self.core.handle_reaction(
            request, f"{payload.channel_id}:{payload.message_id}", emoji, added=added
        )
        if reply is None:  # a message that takes no such reaction, or a repeated event
            return
        if not (reply.remove_reaction and added):
            await self._answer(payload, user, reply)
            return
        # The removal and the answer go out side by side: Discord paces reaction removals
        # per channel, and in a class-wide burst the 60th removal waits its turn for
        # seconds; the voter's private answer never waits in that queue.
        removal = asyncio.create_task(self._remove_reaction(payload, emoji))
        if not reply.says_something:
            await removal
            return
        removed = await _outcome_within(removal, REMOVAL_GRACE)
        reply.text = "\n".join(p for p in (reply.text, reaction_note(reply, removed)) if p)
        try:
            await self._answer(payload, user, reply)
        finally:
            refused = removed is None and not await removal
        if refused:  # the answer said it was on its way: now the truth
            await self._answer(
                payload,
                user,
                Reply(
                    text=reaction_note(reply, False),
                    ephemeral=reply.ephemeral,
                    reaction_fate=reply.reaction_fate,
                ),
            )

    async def _answer(
        self,
        payload: discord.RawReactionActionEvent,
        user: discord.abc.User | None,
        reply: Reply,
    ) -> None:
        """Send the answer to a reaction: privately by DM (a notice in the channel when
        DMs are closed and it asks for something), else in the reaction's channel. Once
        it is out (or cannot be), the core releases the outbox row that backs it; an
        error leaves that row to the dispatcher."""
        if not reply.says_something:
            return
        if reply.ephemeral or payload.guild_id is None:
            if user is None:  # not found just now: the dispatcher tries after the lease
                return
            if await self.deliver_dm(user, reply):
                self.core.answered(reply)
            else:
                await self._dm_refused(payload, reply)
                self.core.answered(reply, unreachable="does not accept DMs from the bot")
            return
        channel = self.bot.get_channel(payload.channel_id)
        if isinstance(channel, discord.abc.Messageable):
            await self.send_to(channel, reply)

    async def _dm_refused(self, payload: discord.RawReactionActionEvent, reply: Reply) -> None:
        """The reactor does not accept DMs, and a reaction has no interaction to answer
        privately. When the answer asks for something (a vote's justification: it has a
        form button), a short notice in the channel mentions them, names no side, points
        to the poll's Vote buttons (which answer privately) and deletes itself after
        :data:`NOTICE_SECONDS`. Other answers (a refused reaction) need nothing more."""
        if payload.guild_id is None or not any(b.form for b in reply.buttons):
            return
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        text = (
            f"<@{payload.user_id}> your vote is not complete, and I could not send you a "
            "direct message (yours are closed to this server). Press the Vote button for "
            "your side on the poll to give your justification: only you see that form."
        )
        try:
            await channel.send(
                text,
                delete_after=NOTICE_SECONDS,
                allowed_mentions=discord.AllowedMentions(users=[discord.Object(payload.user_id)]),
            )
        except discord.HTTPException:
            log.info("could not tell user %s to finish their vote", payload.user_id)

    async def _remove_reaction(self, payload: discord.RawReactionActionEvent, emoji: str) -> bool:
        """Take a user's reaction off (needs Manage Messages there); True if it is gone."""
        channel = self.bot.get_partial_messageable(payload.channel_id, guild_id=payload.guild_id)
        key = (payload.message_id, payload.user_id, emoji)
        self._removing[key] = True
        try:
            await channel.get_partial_message(payload.message_id).remove_reaction(
                emoji, discord.Object(payload.user_id)
            )
        except discord.HTTPException:
            self._removing.pop(key, None)
            log.warning(
                "could not remove a reaction in channel %s: the bot needs Manage Messages there",
                payload.channel_id,
            )
            return False
        return True

    async def _user(self, user_id: int, member: discord.Member | None) -> discord.abc.User | None:
        if member is not None:
            return member
        user = self.bot.get_user(user_id)
        if user is not None:
            return user
        try:
            return await self.bot.fetch_user(user_id)
        except discord.HTTPException:
            return None

    # ------------------------------------------------------------------ replies
    async def _defer(self, interaction: discord.Interaction, *, ephemeral: bool) -> None:
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)

    async def respond(
        self, interaction: discord.Interaction, reply: Reply, *, deferred_ephemeral: bool
    ) -> None:
        """Send ``reply`` for a deferred interaction: the deferred message, follow-ups,
        then reactions. A private reply to a public deferral replaces it privately."""
        if reply.duplicate or reply.silent:
            await self._drop_original(interaction)
            return
        self.remember(reply)
        messages = render(reply)
        ephemeral = reply.ephemeral
        late = discord.utils.utcnow() - interaction.created_at > TOKEN_LIFETIME
        if late:
            await self._respond_late(interaction, reply)
            return
        try:
            if ephemeral and not deferred_ephemeral:
                # The public "thinking" message cannot turn private: answer privately,
                # then remove it.
                await interaction.edit_original_response(content="…", embeds=[])
                for message in messages:
                    await interaction.followup.send(
                        ephemeral=True, wait=True, **message.send_kwargs()
                    )
                await interaction.delete_original_response()
                return
            for message in messages:
                sent = await interaction.followup.send(
                    ephemeral=ephemeral, wait=True, **message.send_kwargs()
                )
                if message.reactions is not None and not ephemeral:
                    await self.add_reactions(sent, message, self.request(interaction))
        except discord.HTTPException as exc:
            if exc.status not in (401, 404) and exc.code not in TOKEN_GONE:
                raise
            log.info("interaction token unusable (%s); replying in the channel", exc)
            await self._respond_late(interaction, reply)

    async def _drop_original(self, interaction: discord.Interaction) -> None:
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()

    async def _respond_late(self, interaction: discord.Interaction, reply: Reply) -> None:
        """After the token expired: public replies to the channel, private ones by DM."""
        channel = interaction.channel
        if reply.ephemeral or not isinstance(channel, discord.abc.Messageable):
            await self.deliver_dm(interaction.user, reply)
        else:
            await self.send_to(channel, reply)

    async def send_to(self, target: discord.abc.Messageable, reply: Reply) -> list[discord.Message]:
        """Post ``reply`` as channel messages (outbox posts, DMs, late answers)."""
        self.remember(reply)
        sent = []
        for part, message in enumerate(render(reply)):
            kwargs = message.send_kwargs()
            nonce = delivery_nonce(part)  # an outbox send: a retry after a crash is kept once
            if nonce is not None:
                kwargs["nonce"] = nonce
            msg = await target.send(**kwargs)
            # An outbox post gets its reaction choices once the dispatcher has recorded
            # what they mean (DiscordOutbox.recorded): none can arrive before the record.
            if message.reactions is not None and nonce is None:
                await self.add_reactions(msg, message)
            sent.append(msg)
        return sent

    async def deliver_dm(
        self, user: discord.User | discord.Member | discord.abc.User, reply: Reply
    ) -> list[discord.Message]:
        try:
            return await self.send_to(user, reply)  # type: ignore[arg-type]
        except discord.Forbidden:
            log.info("user %s does not accept DMs from the bot", user.id)
            return []

    async def add_reactions(
        self, message: discord.Message, outgoing: Outgoing, request: Request | None = None
    ) -> None:
        """Add the message's reaction choices. A reply to a command (``request``) is
        recorded here with what its reactions mean; an outbox post is recorded by the
        dispatcher."""
        reactions = outgoing.reactions
        if reactions is None:
            return
        if request is not None:
            await self.core.remember_reactions(
                request, f"{message.channel.id}:{message.id}", reactions
            )
        for emoji in reactions.emojis:
            try:
                await message.add_reaction(emoji)
            except discord.HTTPException:
                log.warning("could not add reaction %s to message %s", emoji, message.id)

    def remember(self, reply: Reply) -> None:
        """Keep the exact forms of the reply's buttons (labels, lengths) for their modals."""
        for button in reply.buttons:
            if button.form is not None:
                self._forms[button.form.custom_id] = button.form

    async def fail(self, interaction: discord.Interaction, exc: BaseException) -> None:
        """The last resort for an adapter failure: log it with an id, tell the user."""
        err_id = secrets.token_hex(4)
        log.error("discord adapter error %s", err_id, exc_info=exc)
        # Plain text: this must work even when rendering is what failed.
        text = (
            "✗ Something went wrong on our side. If it happens again, tell your instructor "
            f"and quote error id `{err_id}`."
        )
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            log.info("could not tell the user about error %s", err_id)


# ---------------------------------------------------------------------------- helpers
#: How long the channel notice for a voter whose DMs are closed stays up.
NOTICE_SECONDS = 120.0


#: How long the answer to a reaction waits for the reaction's removal, to say truly that
#: it is gone: about one round trip to Discord. A removal still queued after it (Discord
#: paces removals per channel, so in a burst they wait their turn) does not hold the
#: answer back: the answer says the reaction is on its way off, and a refusal that comes
#: later is told in a second message.
REMOVAL_GRACE = 0.25


async def _outcome_within(task: asyncio.Task[bool], seconds: float) -> bool | None:
    """The task's result if it is done within ``seconds``, else None (it runs on)."""
    done, _ = await asyncio.wait({task}, timeout=seconds)
    return task.result() if done else None


def reaction_note(reply: Reply, removed: bool | None) -> str:
    """What became of a reaction the core asked to take off, as it is on Discord
    (``None``: its removal is still queued at Discord; nothing is claimed yet)."""
    if removed is None:
        if reply.reaction_fate is ReactionFate.HIDE:
            return (
                "I am taking your reaction off the poll, so nobody else will see your pick "
                "(Discord paces removals, so it can take a few seconds); I will tell you if "
                "I cannot."
            )
        return "I am taking your reaction off (it does not count); I will tell you if I cannot."
    if removed:
        if reply.reaction_fate is ReactionFate.HIDE:
            return "Your reaction was removed, so nobody else can see your pick."
        return "Your reaction was removed."
    if reply.reaction_fate is ReactionFate.HIDE:
        return (
            "I could not remove your reaction (the bot needs the Manage Messages permission "
            "in this channel), so others can see it: take it off yourself if you like (your "
            "vote stays). The poll's Vote buttons are private."
        )
    return (
        "I could not remove your reaction (the bot needs the Manage Messages permission in "
        "this channel); it does not count, and you can take it off yourself."
    )


def _attachment(file: discord.Attachment, origins: tuple[str, ...]) -> Attachment:
    """A file option's upload as a command attachment: its CDN URL (fetched by the command
    that reads it, only from ``origins``), its declared size and type."""
    return Attachment(
        name=file.filename,
        url=file.url,
        size=file.size,
        content_type=file.content_type,
        origins=origins,
    )


def paper_choices(
    papers: list[tuple[int, str]], current: str, *, many: bool, integer: bool
) -> list[app_commands.Choice[Any]]:
    """Autocomplete choices: ``#5 SlowFast Networks…`` with the number as the value.

    For a list option (``5 12 1``) the last word is the query and the choice value is
    the whole list with the completed id, so picking a suggestion extends the list."""
    words = current.replace(",", " ").split()
    if many and current and not current[-1].isspace() and words:
        query, before = words[-1], words[:-1]
    elif many:
        query, before = "", words
    else:
        query, before = current.strip(), []
    taken = {w for w in before if w.isdigit()}
    low = query.lower().lstrip("#")
    ranked: list[tuple[int, int, str]] = []
    for number, title in papers:
        if str(number) in taken:
            continue
        if not low:
            score = 2
        elif str(number) == low:
            score = 0
        elif str(number).startswith(low):
            score = 1
        elif low in title.lower():
            score = 3
        else:
            continue
        ranked.append((score, number, title))
    ranked.sort()
    choices: list[app_commands.Choice[Any]] = []
    prefix = " ".join(before)
    for _, number, title in ranked[:AUTOCOMPLETE_LIMIT]:
        label = f"#{number} {title}"
        if many:
            value = f"{prefix} {number}".strip()
            name = f"{prefix} → {label}" if prefix else label
            choices.append(app_commands.Choice(name=_cut(name), value=value[:CHOICE_LIMIT]))
        else:
            choices.append(
                app_commands.Choice(name=_cut(label), value=number if integer else str(number))
            )
    return choices


def _cut(text: str, limit: int = CHOICE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
