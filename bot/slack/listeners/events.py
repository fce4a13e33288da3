"""Events: reactions added to or taken off a message. The core knows what a message's
reactions mean (the record kept with its reference when it was posted,
:meth:`CommandCore.handle_reaction`); the adapter only names the message
(``CHANNEL:TS``) and the emoji, and answers the reactor privately."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.slack import blocks as bk
from bot.slack.listeners.base import adapter, core_request, guard, who
from bot.slack.sender import Target
from commands.replies import ReactionFate, Reply

log = logging.getLogger("coursebot.slack")


def reaction_note(reply: Reply) -> str:
    """What became of a reaction the core wanted off, as it is on Slack: it stays, and
    everyone in the channel can see it."""
    if reply.reaction_fate is ReactionFate.HIDE:
        return (
            "Reactions on Slack are public and the bot cannot remove them: others can see "
            "yours. Take it off yourself if you like (your vote stays); the poll's Vote "
            "buttons are the private way to vote."
        )
    return (
        "Slack does not let the bot remove your reaction: it stays on the message, does "
        "not count, and you can take it off yourself."
    )


async def reaction(
    ack: AsyncAck, body: dict[str, Any], event: dict[str, Any], context: Any
) -> None:
    """``reaction_added`` / ``reaction_removed`` on a message: routed by the core's
    record of that message; a message it does not know is ignored."""
    await ack()
    bot = adapter(context)
    item = event.get("item") or {}
    caller = who(context)
    if item.get("type") != "message" or not caller.user or caller.user == bot.auth.user_id:
        return
    if context.get("course_id") is None:
        return  # a workspace bound to no course (logged once by the middleware)
    channel, ts = str(item["channel"]), str(item["ts"])
    target = Target(caller.user, channel=channel)
    added = event["type"] == "reaction_added"
    async with guard(bot, None):
        profile = await bot.profiles.get(caller.user)
        request = core_request(
            caller, caller.caller(profile), channel=channel, event_id=body.get("event_id")
        )
        reply = await bot.core.handle_reaction(
            request,
            f"{channel}:{ts}",
            str(event.get("reaction", "")),
            added=added,
            match=bk.emoji_for,
            removable=False,  # a Slack bot cannot take someone's reaction off
        )
        bot.retries.done(body)
        if reply is None:  # a message the bot does not (or no longer) know, an emoji it
            # does not take, or a repeated event: nothing to do, nothing to say
            log.info("reaction :%s: on %s:%s ignored", event.get("reaction"), channel, ts)
            return
        if reply.silent:
            return
        if reply.remove_reaction and added:
            # A Slack bot cannot remove someone else's reaction: say so, never claim it.
            reply.text = "\n".join(p for p in (reply.text, reaction_note(reply)) if p)
        # A vote's answer is for the voter only: chat.postEphemeral in the poll's
        # channel (no DM needed), else a DM.
        reply.ephemeral = True
        await bot.sender.send(reply, target)
        # Out: the outbox row that backs it is released (a failure above leaves it to
        # the dispatcher, which sends it as a DM).
        bot.core.answered(reply)


async def ignored(ack: AsyncAck) -> None:
    await ack()


def register(app: AsyncApp) -> None:
    app.event("reaction_added")(reaction)
    app.event("reaction_removed")(reaction)
    app.event("file_shared")(ignored)
