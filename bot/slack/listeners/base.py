"""What every listener shares: the adapter and the caller from the request's context
(put there by :mod:`bot.slack.middleware`), the core's request, where the answer goes,
and the guard that turns a failure after the ack into a message with an error id."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

from bot.slack.middleware import Who
from bot.slack.sender import Target, is_dm
from commands.context import Caller, Request, Where
from commands.core import new_error_id
from commands.replies import Reply
from db.models import Platform

if TYPE_CHECKING:
    from bot.slack.bot import SlackBot

log = logging.getLogger("coursebot.slack")


def adapter(context: Any) -> SlackBot:
    """The adapter this request belongs to (``context["coursebot"]``)."""
    return context["coursebot"]  # type: ignore[no-any-return]


def who(context: Any) -> Who:
    return context["who"]  # type: ignore[no-any-return]


def core_request(
    who: Who,
    caller: Caller,
    *,
    channel: str | None,
    event_id: str | None,
    thread: str | None = None,
    channel_name: str | None = None,
) -> Request:
    """The command core's request: the team is the workspace the course is bound to."""
    return Request(
        platform=Platform.SLACK,
        workspace=who.team,
        caller=caller,
        where=Where(channel=channel, is_dm=is_dm(channel, channel_name), thread=thread),
        event_id=event_id,
    )


def trigger_event(body: dict[str, Any]) -> str | None:
    """A command's or an interaction's event id: its trigger id."""
    trigger = body.get("trigger_id")
    return f"trigger:{trigger}" if trigger else None


def interaction_target(body: dict[str, Any]) -> Target:
    """Where the answer to a button press goes: where the button is."""
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    return Target(
        user=body["user"]["id"],
        channel=channel,
        thread=container.get("thread_ts"),
        response_url=body.get("response_url"),
        replace_original=bool(container.get("is_ephemeral")),
    )


@asynccontextmanager
async def guard(bot: SlackBot, target: Target | None) -> AsyncIterator[None]:
    """After the ack: log a failure with an id the user is told (as the core does)."""
    try:
        yield
    except Exception:
        err_id = new_error_id()
        log.exception("Slack adapter error %s", err_id)
        if target is not None:
            with suppress(Exception):
                await bot.sender.ephemeral(
                    Reply.error(
                        "Something went wrong talking to Slack. If it happens again, "
                        f"tell your instructor and quote error id `{err_id}`.",
                        error_id=err_id,
                    ),
                    target,
                )
