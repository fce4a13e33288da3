"""Discord interactions in the inbox (:mod:`bot.inbox`): acknowledged means done or known.

An interaction that runs something (a slash command, a core button, a submitted form,
the paper picker's Submit) is written to the inbox *before* it is deferred, with what
running it again needs: the command and its option values (or the button's custom id,
the form's typed values, the picked ids), who asked and where, how it was deferred, and
the interaction's application id and token, with which any process may answer through
the interaction's follow-up webhook for 15 minutes. Once the answer was handed over (or
the user was told of an error) the entry is marked done and the token is removed from
it: nothing is kept that could speak in the user's interaction afterwards.

When the bot comes up on the gateway (on the leading replica; see ``run_discord``), it
takes the entries a stopped process left unfinished, oldest first:

- younger than :data:`TOKEN_LIFETIME` (14 of the token's 15 minutes): run again, and
  answered through the follow-up webhook as if nothing had happened (the deferred
  "thinking" message is completed; a private answer stays private). The core's record
  of handled interaction ids turns one that had committed into "went through": nothing
  acts twice. If Discord no longer takes the token, a public answer goes to the
  channel and a private one by direct message;
- older: the user gets a direct message naming the command and saying that it went
  through, or that it did not run and what to do (type it again).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import discord

from bot import inbox
from bot.discord.render import render
from commands.attachments import DISCORD_FILE_HOSTS, file_origins
from commands.context import Attachment, Caller, Request, Where
from commands.replies import Reply
from db.models import InboxEntry, Platform

if TYPE_CHECKING:
    from bot.discord.client import CourseBot
    from bot.discord.router import Router

log = logging.getLogger("coursebot.discord.inbox")

#: An interaction token lives 15 minutes; an answer later than this goes elsewhere
#: (the channel, or a DM), and a cut-off command older than this is not run again.
TOKEN_LIFETIME = timedelta(minutes=14)
#: Discord error codes meaning the interaction's token or message is gone.
TOKEN_GONE = (10008, 10015, 10062, 50027)
#: Payload keys removed once an entry is done (they let one answer as the interaction).
SECRETS = ("token",)
#: How an interaction was acknowledged: a public or private "thinking" message that the
#: first follow-up completes, or a deferred update of the component's own message.
PUBLIC, PRIVATE, UPDATE = "public", "private", "update"
#: The longest command line quoted back to the user.
WHAT_LIMIT = 120


class Inbox:
    """Keeps the interactions the router runs, and recovers them after a restart."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.bot: CourseBot = router.bot
        #: Interactions this process kept and has not marked done yet.
        self._kept: set[int] = set()

    def _now(self) -> datetime:
        return self.bot.app.core.clock.now()

    # ------------------------------------------------------------------ live
    async def keep(
        self,
        interaction: discord.Interaction,
        kind: str,
        body: dict[str, Any],
        *,
        defer: str,
        what: str,
        again: str,
        attachments: tuple[Attachment, ...] = (),
    ) -> None:
        """Write the interaction to the inbox; call it before deferring. ``body`` is what
        its kind needs to run again; ``what`` names it to the user ("`/papers`") and
        ``again`` says what to do if it cannot be run again."""
        request = self.router.request(interaction)
        payload: dict[str, Any] = {
            "application_id": str(interaction.application_id),
            "token": interaction.token,
            "created_at": interaction.created_at.isoformat(),
            "user_id": request.caller.user_id,
            "user_name": request.caller.display_name,
            "guild_id": str(interaction.guild_id) if interaction.guild_id else None,
            "channel_id": str(interaction.channel_id) if interaction.channel_id else None,
            "workspace": request.workspace,
            "where": {
                "channel": request.where.channel,
                "thread": request.where.thread,
                "is_dm": request.where.is_dm,
            },
            "defer": defer,
            "what": what,
            "again": again,
            "attachments": [
                {"name": a.name, "url": a.url, "size": a.size, "content_type": a.content_type}
                for a in attachments
            ],
            **body,
        }
        kept = await inbox.receive(
            self.bot.app.db, Platform.DISCORD, str(interaction.id), kind, payload, self._now()
        )
        if kept:
            self._kept.add(interaction.id)

    async def finish(self, interaction: discord.Interaction) -> None:
        """The interaction was answered (or its user told of an error): done, token gone."""
        if interaction.id not in self._kept:
            return
        self._kept.discard(interaction.id)
        try:
            await inbox.done(
                self.bot.app.db,
                Platform.DISCORD,
                str(interaction.id),
                self._now(),
                forget=SECRETS,
            )
        except Exception:
            # Answered already; after a restart it is answered "went through" once more.
            log.exception("could not mark interaction %s done in the inbox", interaction.id)

    # ------------------------------------------------------------------ after a restart
    async def recover(self, since: datetime) -> int:
        """Run again, or tell the user about, what a process stopped before ``since``
        acknowledged and did not finish. How many entries were handled."""
        entries = await inbox.unfinished(self.bot.app.db, Platform.DISCORD, before=since)
        for entry, ran in entries:
            p = entry.payload
            try:
                if self._now() - entry.received_at < TOKEN_LIFETIME and p.get("token"):
                    log.warning(
                        "running interaction %s again: a restart cut it off", entry.event_id
                    )
                    await self._replay(entry)
                else:
                    what = str(p.get("what") or "command")
                    text = (
                        inbox.went_through(what)
                        if ran
                        else inbox.not_run(what, str(p.get("again") or "Please try again."))
                    )
                    await self.tell(p, Reply(text=text))
            except Exception:
                err_id = secrets.token_hex(4)
                log.exception("recovering interaction %s failed (error %s)", entry.event_id, err_id)
                what = str(p.get("what") or "command")
                text = (
                    f"✗ Your {what} was cut off by a restart, and answering it afterwards "
                    "failed. Check whether it took effect before trying again; if it "
                    f"happens again, tell your instructor and quote error id `{err_id}`."
                )
                try:
                    await self.tell(p, Reply(text=text))
                except Exception:
                    log.exception("could not tell user %s either", p.get("user_id"))
            await inbox.done(
                self.bot.app.db, Platform.DISCORD, entry.event_id, self._now(), forget=SECRETS
            )
        return len(entries)

    async def _replay(self, entry: InboxEntry) -> None:
        p = entry.payload
        request = self.request(entry)
        core = self.bot.app.core
        if entry.kind == "command":
            reply = await core.handle(request, str(p["command"]), dict(p.get("options") or {}))
        elif entry.kind == "button":
            reply = await core.handle_action(request, str(p["custom_id"]))
        elif entry.kind == "form":
            reply = await core.handle_form(request, str(p["form"]), dict(p.get("values") or {}))
        elif entry.kind == "pick":
            chosen = [int(n) for n in p.get("chosen") or []]
            reply = await core.handle(request, str(p["command"]), {str(p["option"]): chosen})
        else:
            raise ValueError(f"unknown inbox kind {entry.kind!r}")
        if reply.duplicate:
            reply = Reply(text=inbox.went_through(str(p.get("what"))), ephemeral=True)
        await self.answer(p, reply)

    def request(self, entry: InboxEntry) -> Request:
        """The core request of a kept interaction (its id as the event id, as live)."""
        p = entry.payload
        where = p.get("where") or {}
        origins = file_origins(DISCORD_FILE_HOSTS, self.bot.app.settings.discord.cdn_url)
        files = tuple(
            Attachment(
                name=str(a.get("name") or "file"),
                url=a.get("url"),
                size=a.get("size"),
                content_type=a.get("content_type"),
                origins=origins,
            )
            for a in p.get("attachments") or []
        )
        return Request(
            platform=Platform.DISCORD,
            workspace=str(p.get("workspace") or ""),
            caller=Caller(Platform.DISCORD, str(p["user_id"]), str(p.get("user_name") or "")),
            where=Where(
                channel=where.get("channel"),
                is_dm=bool(where.get("is_dm")),
                thread=where.get("thread"),
            ),
            attachments=files,
            event_id=entry.event_id,
        )

    async def answer(self, p: dict[str, Any], reply: Reply) -> None:
        """Answer a kept interaction through its follow-up webhook (as
        ``Interaction.followup`` does: an application webhook on the client's state, so
        private messages and persistent buttons work); if Discord no longer takes the
        token, public answers go to the channel and private ones by DM."""
        followup = discord.Webhook.from_state(
            {"id": int(p["application_id"]), "type": 3, "token": str(p["token"])},  # type: ignore[typeddict-item]
            state=self.bot._connection,
        )
        try:
            await self._followups(followup, reply, defer=str(p.get("defer") or PUBLIC))
        except discord.HTTPException as exc:
            if exc.status not in (401, 404) and exc.code not in TOKEN_GONE:
                raise
            log.info("interaction token unusable (%s); answering elsewhere", exc)
            channel_id = p.get("channel_id")
            if reply.ephemeral or not channel_id or (p.get("where") or {}).get("is_dm"):
                await self.tell(p, reply)
                return
            guild_id = p.get("guild_id")
            channel = self.bot.get_partial_messageable(
                int(channel_id), guild_id=int(guild_id) if guild_id else None
            )
            await self.router.send_to(channel, reply)

    async def _followups(self, followup: discord.Webhook, reply: Reply, *, defer: str) -> None:
        """Send ``reply`` as the interaction's follow-ups. The first one completes a
        deferred "thinking" message (Discord keeps that message's visibility), so a
        private answer to a public deferral first completes it with a placeholder, then
        answers privately and deletes the placeholder (what ``Router.respond`` does)."""
        router = self.router
        if reply.silent or not _has_content(reply):
            if defer != UPDATE:
                placeholder = await followup.send(content="…", wait=True)
                await placeholder.delete()
            return
        router.remember(reply)
        messages = render(reply)
        if reply.ephemeral and defer == PUBLIC:
            placeholder = await followup.send(content="…", wait=True)
            for message in messages:
                await followup.send(ephemeral=True, wait=True, **message.send_kwargs())
            await placeholder.delete()
            return
        for message in messages:
            sent = await followup.send(
                ephemeral=reply.ephemeral, wait=True, **message.send_kwargs()
            )
            if message.reactions is not None and not reply.ephemeral:
                await router.add_reactions(sent, message)

    async def tell(self, p: dict[str, Any], reply: Reply) -> None:
        """A direct message to the interaction's user (logged if they cannot get one)."""
        user_id = int(p["user_id"])
        user: discord.abc.User | None = self.bot.get_user(user_id)
        if user is None:
            try:
                user = await self.bot.fetch_user(user_id)
            except discord.HTTPException:
                user = None
        if user is None or not await self.router.deliver_dm(user, reply):
            log.warning("could not tell user %s about their %s", user_id, p.get("what"))


# ---------------------------------------------------------------------------- helpers
def command_line(slash: str, options: dict[str, Any]) -> str:
    """A command as the user typed it, quoted for a message: ``/rank standard papers:5 6``."""
    parts = [slash, *(f"{k}:{v}" for k, v in options.items())]
    line = " ".join(parts).replace("`", "'")
    if len(line) > WHAT_LIMIT:
        line = line[: WHAT_LIMIT - 1] + "…"
    return f"`{line}`"


def plain(value: Any) -> Any:
    """An option value as JSON keeps it (they are str, int, float or bool already)."""
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def button_label(interaction: discord.Interaction) -> str | None:
    """The label of the pressed button, read off the message it sits on."""
    custom_id = (interaction.data or {}).get("custom_id")
    message = interaction.message
    if message is None or not custom_id:
        return None
    for row in message.components:
        for item in getattr(row, "children", ()):
            if getattr(item, "custom_id", None) == custom_id:
                return getattr(item, "label", None)
    return None


def _has_content(reply: Reply) -> bool:
    return bool(
        reply.text or reply.title or reply.sections or reply.tables or reply.files or reply.buttons
    )
