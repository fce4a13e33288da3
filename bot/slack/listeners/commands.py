"""Commands: the slash command (``/course <line>``), ``@coursebot <line>`` in a channel,
and a direct message to the bot. Each runs one line of the command registry; files
shared with a mention or a DM go with it (or with the sender's next command)."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot import inbox
from bot.slack.listeners.base import adapter, core_request, guard, trigger_event, who
from bot.slack.listeners.forms import dispatch_text
from bot.slack.middleware import who_of
from bot.slack.sender import Target
from commands.replies import Reply
from db.models import Platform

if TYPE_CHECKING:
    from bot.slack.bot import SlackBot

#: What the inbox keeps of a slash command (never the verification token).
INBOX_FIELDS = (
    "team_id",
    "user_id",
    "user_name",
    "channel_id",
    "channel_name",
    "text",
    "response_url",
    "trigger_id",
)
#: Removed from an inbox entry once it is done: it lets anyone answer as the bot.
INBOX_SECRETS = ("response_url",)
#: A command cut off by a restart is run again if it is younger than this (its response
#: URL lives 30 minutes); an older one is answered with what became of it.
INBOX_REPLAY = timedelta(minutes=25)

_LINK = re.compile(r"<((?:mailto:|https?://)[^|>]+)(?:\|([^>]*))?>")
_MENTION = re.compile(r"<([@#!])([^|>]+)(?:\|([^>]*))?>")
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})


def unescape(text: str) -> str:
    """Slack's message text as the user typed it: ``<mailto:a@b|a@b>`` → ``a@b``,
    ``<@U123|ana>`` → ``U123``, ``<#C1|general>`` → ``general``, smart quotes → plain."""

    def link(m: re.Match[str]) -> str:
        target, label = m.group(1), m.group(2)
        if target.startswith("mailto:"):
            return label or target.removeprefix("mailto:")
        return target

    def mention(m: re.Match[str]) -> str:
        kind, ident, label = m.group(1), m.group(2), m.group(3)
        return ident if kind == "@" else (label or ident)

    text = _MENTION.sub(mention, _LINK.sub(link, text))
    return html.unescape(text).translate(_QUOTES).strip()


async def inbox_done(bot: SlackBot, event_id: str) -> None:
    await inbox.done(
        bot.app.db, Platform.SLACK, event_id, bot.core.clock.now(), forget=INBOX_SECRETS
    )


# ---------------------------------------------------------------------- the slash command
async def slash_command(ack: AsyncAck, body: dict[str, Any], context: Any) -> None:
    """``/course <line>``: kept in the inbox before Slack hears "got it" (never lost
    after), acknowledged, then run."""
    bot = adapter(context)
    event_id = trigger_event(body)
    if event_id is not None:
        payload = {k: str(body.get(k) or "") for k in INBOX_FIELDS}
        await inbox.receive(
            bot.app.db, Platform.SLACK, event_id, "command", payload, bot.core.clock.now()
        )
    await ack()
    await run_command(bot, body)
    if event_id is not None:
        await inbox_done(bot, event_id)


async def run_command(bot: SlackBot, body: dict[str, Any], *, replay: bool = False) -> None:
    """A slash command's line (or its inbox entry, after a restart: no modal can open
    then, its trigger expired, so the line runs as typed)."""
    caller = who_of(body)
    channel = body.get("channel_id") or None
    target = Target(caller.user, channel=channel, response_url=body.get("response_url") or None)
    async with guard(bot, target):
        # The profile's email is Slack's proof of who this is (`register` alone).
        profile = await bot.profiles.get(caller.user)
        request = core_request(
            caller,
            caller.caller(profile),
            channel=channel,
            channel_name=body.get("channel_name"),
            event_id=trigger_event(body),
        )
        text = unescape(body.get("text", ""))
        if not replay:
            await dispatch_text(bot, request, text, target, body.get("trigger_id") or None)
            return
        reply = await bot.core.handle_text(bot.files.with_pending(request), text or "help")
        if reply.duplicate:
            reply = Reply(text=inbox.went_through(f"`{bot.command} {text}`"), ephemeral=True)
        await bot.sender.send(reply, target, request)


# ---------------------------------------------------------------------- mentions and DMs
async def app_mention(
    ack: AsyncAck, body: dict[str, Any], event: dict[str, Any], context: Any
) -> None:
    """``@coursebot papers battle`` in a channel runs ``papers battle`` (answered in the
    thread it came from); a file shared with it goes with the command."""
    await ack()
    bot = adapter(context)
    if event.get("bot_id"):
        return
    me = re.escape(bot.auth.user_id) if bot.auth.user_id else "[A-Z0-9]+"
    text = re.sub(rf"<@{me}(\|[^>]*)?>", " ", event.get("text", ""))
    if event.get("files") and event.get("user"):
        user, channel = event["user"], event["channel"]
        target = Target(user, channel=channel, thread=event.get("thread_ts"))
        async with guard(bot, target):
            got, refused = await bot.files.download_all(event["files"])
            if got:
                bot.files.keep(who(context).team, user, got)
            if refused:
                await bot.sender.send(Reply.error(refused), target)
    await event_command(bot, body, event, unescape(text))


async def direct_message(
    ack: AsyncAck, body: dict[str, Any], event: dict[str, Any], context: Any
) -> None:
    """A direct message to the bot is a command (like the terminal's ``:dm``); files
    shared with it are attached to the command they come with, or the next one."""
    await ack()
    bot = adapter(context)
    if (
        event.get("channel_type") != "im"
        or event.get("subtype") not in (None, "file_share")
        or event.get("bot_id")
        or not event.get("user")
        or event.get("user") == bot.auth.user_id
    ):
        return
    user, channel = event["user"], event["channel"]
    target = Target(user, channel=channel, thread=event.get("thread_ts"))
    async with guard(bot, target):
        got, refused = await bot.files.download_all(event.get("files") or [])
        if got:
            bot.files.keep(who(context).team, user, got)
        if refused:
            await bot.sender.send(Reply.error(refused), target)
        text = unescape(event.get("text", ""))
        if not text:
            if got:
                names = ", ".join(f"`{a.name}`" for a in got)
                note = (
                    f"Got {names}. It goes with your next command "
                    f"(here, or `{bot.command} ...`) within 30 minutes."
                )
                await bot.sender.send(Reply(text=note), target)
            bot.retries.done(body)
            return
        await event_command(bot, body, event, text)


async def event_command(
    bot: SlackBot, body: dict[str, Any], event: dict[str, Any], text: str
) -> None:
    caller = who_of(body)
    channel, thread = event["channel"], event.get("thread_ts")
    target = Target(caller.user, channel=channel, thread=thread)
    async with guard(bot, target):
        profile = await bot.profiles.get(caller.user)
        request = core_request(
            caller,
            caller.caller(profile),
            channel=channel,
            thread=thread,
            event_id=body.get("event_id"),
        )
        await dispatch_text(bot, request, text, target, None)
        bot.retries.done(body)


def register(app: AsyncApp, command: str) -> None:
    app.command(command)(slash_command)
    app.event("app_mention")(app_mention)
    app.event("message")(direct_message)
