"""The course's Slack channels, bound by id (:mod:`commands.channels`).

At start the adapter lists the workspace's channels once (``conversations.list``, paged,
public and private ones the bot can see) and hands them to
:func:`commands.channels.bind_channels` in one transaction: the ids are kept on the
course's binding, and what could not be bound (a name two channels share, a name or an id
the bot cannot see) is logged as an error naming the key and what to do. A post then
finds its channel with :func:`commands.channels.channel_id`, never by name: a renamed
channel keeps its messages, and a key that is not bound is refused with
:class:`~commands.outbox.Gone` (nothing is posted to a guessed channel).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.slack.sender import slack_error
from commands.channels import ChannelInfo, bind_channels, channel_id, clean_name, is_channel_id
from commands.outbox import Gone
from db.models import Course, CourseBinding, Platform
from db.session import Database

log = logging.getLogger("coursebot.slack")

#: ``CHANNEL:TS`` of a message, ``CHANNEL:TS:THREAD`` of one in a thread.
MESSAGE_REF = re.compile(r"^([CGD][A-Z0-9]{6,}):(\d+\.\d+)(?::(\d+\.\d+))?$")
#: At most this many pages of 200 channels are listed.
MAX_PAGES = 50


def unbound(channel: str) -> str:
    """Why a post to ``channel`` was not sent, and what to do (for staff: `outbox failed`)."""
    key = clean_name(channel)
    return (
        f"the course channel `{key}` is not bound to a Slack channel (the bot found no "
        "single channel of that name it can see when it started; the log says what it "
        "found). Create the channel or invite the bot to it and restart the bot, or put "
        f"the channel's id in the course file (`channels: {{{key}: C0123ABCD}}`)."
    )


class Channels:
    """Lists the workspace's channels, binds the course's keys to their ids (once per
    process and workspace, or again on :meth:`bind`), and finds a post's channel."""

    def __init__(
        self, client: AsyncWebClient, db: Database, team: Callable[[], Awaitable[str | None]]
    ) -> None:
        self.client = client
        self.db = db
        self._team = team
        self._bound: set[str] = set()
        self._lock = asyncio.Lock()

    async def listing(self) -> list[ChannelInfo]:
        """Every channel the bot can see: public ones, and private ones it was invited to."""
        found: list[ChannelInfo] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            resp = await self.client.conversations_list(
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=200,
                cursor=cursor,
            )
            found += [
                ChannelInfo(str(ch["id"]), str(ch.get("name") or ""))
                for ch in resp.get("channels") or []
            ]
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return found

    async def bind(self, team: str | None = None) -> list[str]:
        """Resolve the course file's channels of the course bound to ``team`` (the bot's
        own by default) against the workspace, and keep their ids; the problems, each
        logged as an error. A workspace that cannot be listed keeps the ids bound
        before."""
        team = team or await self._team()
        if not team:
            return []
        async with self._lock:
            self._bound.add(team)
            try:
                listing = await self.listing()
            except SlackApiError as exc:
                log.error(
                    "Slack: cannot list the channels of team %s (%s): course channels stay "
                    "as bound before; the bot needs channels:read and groups:read.",
                    team,
                    slack_error(exc),
                )
                return []
            async with self.db.transaction() as session:
                problems = await bind_channels(session, Platform.SLACK, team, listing)
        for problem in problems:
            log.error("Slack channels of team %s: %s", team, problem)
        return problems

    async def resolve(self, course_id: int, channel: str) -> tuple[str, str | None]:
        """A course channel (its key, the course file's value, an id) or a message ref →
        (channel id, thread ts or None). :class:`Gone` when it is not bound here."""
        ref = MESSAGE_REF.match(channel)
        if ref is not None:
            return ref.group(1), ref.group(3) or ref.group(2)
        if channel.startswith("#") and is_channel_id(Platform.SLACK, channel[1:]):
            channel = channel[1:]  # `#C0123ABCD`: the channel a command was typed in
        team = await self._team()
        if team and team not in self._bound:
            await self.bind(team)  # a post before start, or a workspace bound since
        async with self.db.session() as session:
            bindings = list(
                await session.scalars(
                    select(CourseBinding).where(
                        CourseBinding.course_id == course_id,
                        CourseBinding.platform == Platform.SLACK,
                    )
                )
            )
            binding = next((b for b in bindings if b.external_id == team), None)
            binding = binding or (bindings[0] if bindings else None)
            course = await session.get(Course, course_id)
        if binding is None:
            raise Gone("the course is not bound to a Slack workspace")
        found = channel_id(binding, course, channel)
        if found is None:
            raise Gone(unbound(channel))
        return found, None

    @staticmethod
    def message(ref: str) -> tuple[str, str]:
        """(channel id, ts) of a message ref."""
        m = MESSAGE_REF.match(ref)
        if m is None:
            raise ValueError(f"not a Slack message ref: {ref!r}")
        return m.group(1), m.group(2)
