"""Everything the bot says on Slack: the answer to a request (ephemeral through its
``response_url`` or ``chat.postEphemeral``, public through ``chat.postMessage``), and the
command core's outbox port (``post``, ``edit``, ``dm``, ``dm_account``, ``thread``).

``chat.postMessage`` is paced to about one message per second per channel
(:class:`ChannelPacer`); a public channel the bot is not in is joined once and the post
sent again; files go through ``files_upload_v2`` (private files to the user's DM).
Slack's failures reach the outbox dispatcher as :class:`~commands.outbox.Unreachable`,
:class:`~commands.outbox.Gone` or :class:`~commands.outbox.RetryLater`
(:func:`outbox_errors`).

A message that takes reactions carries them on its first message, and the reference
``post`` returns for it is ``CHANNEL:TS`` of that message: what a reaction event names
(``item.channel``, ``item.ts``), so the record the dispatcher keeps under it routes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.slack import blocks as bk
from commands.context import Request
from commands.outbox import Gone, RetryLater, Unreachable
from commands.people import linked_accounts
from commands.replies import Form, Reactions, Reply
from db.models import Platform

if TYPE_CHECKING:
    from bot.slack.channels import Channels
    from commands.core import CommandCore

log = logging.getLogger("coursebot.slack")

#: Slack errors that mean the person cannot be reached by the bot.
_UNREACHABLE = {"user_not_found", "cannot_dm_bot", "user_disabled", "messages_tab_disabled"}
#: Slack errors that mean the target is gone for good.
_GONE = {"channel_not_found", "is_archived", "message_not_found", "thread_not_found"}


@dataclass(frozen=True)
class Target:
    """Where the answer to one request goes."""

    user: str
    channel: str | None = None
    thread: str | None = None
    response_url: str | None = None
    #: The request came from an ephemeral message that the answer may replace (paging).
    replace_original: bool = False


class ChannelPacer:
    """About one ``chat.postMessage`` per second per channel, as Slack asks."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._locks: dict[str, asyncio.Lock] = {}
        self._last: dict[str, float] = {}

    @asynccontextmanager
    async def turn(self, channel: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            wait = self._last.get(channel, -1e9) + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                yield
            finally:
                self._last[channel] = time.monotonic()


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code (``not_in_channel``), or the HTTP status when there is none."""
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict):
        return str(data.get("error") or "unknown")
    return f"HTTP {getattr(exc.response, 'status_code', '?')}"


@contextmanager
def outbox_errors() -> Iterator[None]:
    """Slack's failures as the outbox reads them: unreachable, gone, or try again later
    (``ratelimited`` with its Retry-After; 5xx)."""
    try:
        yield
    except SlackApiError as exc:
        code = slack_error(exc)
        if code in _UNREACHABLE:
            raise Unreachable(f"Slack says {code}") from exc
        if code in _GONE:
            raise Gone(f"Slack says {code}") from exc
        if code == "ratelimited":
            headers = getattr(exc.response, "headers", None) or {}
            after = float(headers.get("Retry-After") or headers.get("retry-after") or 5)
            raise RetryLater("Slack rate limit", after) from exc
        if code.startswith("HTTP 5"):
            raise RetryLater(f"Slack answered {code}", 5.0) from exc
        raise


def has_message(reply: Reply) -> bool:
    return bool(
        reply.text
        or reply.title
        or reply.sections
        or reply.tables
        or reply.buttons
        or reply.reactions
    )


def is_dm(channel: str | None, channel_name: str | None = None) -> bool:
    return bool(channel and channel.startswith("D")) or channel_name == "directmessage"


class Sender:
    """Slack's half of every reply, and the outbox port the dispatcher sends through."""

    #: The outbox port's platform: the dispatcher sends this course's rows here.
    platform = Platform.SLACK

    def __init__(
        self,
        client: AsyncWebClient,
        core: CommandCore,
        channels: Channels,
        *,
        post_interval: float,
    ) -> None:
        self.client = client
        self.core = core
        self.db = core.db
        self.channels = channels
        self.pacer = ChannelPacer(post_interval)
        #: Forms sent lately, by custom id (a button that opens one is pressed later).
        self.forms: OrderedDict[str, Form] = OrderedDict()
        self._dm_channels: dict[str, str] = {}

    # ------------------------------------------------------------ answers to requests
    async def send(
        self, reply: Reply, target: Target, request: Request | None = None
    ) -> str | None:
        """Render a reply where ``request`` came from; the public message's ``CHANNEL:TS``
        (None when it was private or nothing was posted). A public reply that takes
        reactions (a poll) is recorded with the core, which routes its reactions."""
        if reply.duplicate or not (has_message(reply) or reply.files):
            return None
        self.remember_forms(reply)
        if reply.ephemeral or target.channel is None:
            await self.ephemeral(reply, target)
            return None
        try:
            return await self.post_reply(reply, target.channel, target.thread, request=request)
        except SlackApiError as exc:
            if target.response_url and not reply.files:
                log.info(
                    "posting in %s failed (%s); answering through response_url",
                    target.channel,
                    slack_error(exc),
                )
                await self.respond(reply, target.response_url, in_channel=True)
                return None
            raise

    def remember_forms(self, reply: Reply) -> None:
        for b in reply.buttons:
            if b.form is not None:
                self.forms[b.form.custom_id] = b.form
                self.forms.move_to_end(b.form.custom_id)
        while len(self.forms) > 1000:
            self.forms.popitem(last=False)

    async def ephemeral(self, reply: Reply, target: Target) -> None:
        """Only the user sees it: response_url, else chat.postEphemeral, else a DM.
        Files cannot be ephemeral: they go to the user's DM with the bot."""
        messages = bk.split_messages(bk.reply_blocks(reply))
        if reply.files and not is_dm(target.channel):
            n = len(reply.files)
            note = f":paperclip: {n} file{'s' * (n != 1)} sent to you in a direct message."
            messages[-1] = [*messages[-1], bk.context_block(note)][-bk.MAX_BLOCKS :]
        text = bk.fallback_text(reply)
        sent = False
        if has_message(reply):
            if target.response_url:
                sent = await self.respond(
                    reply,
                    target.response_url,
                    in_channel=False,
                    replace=target.replace_original,
                    messages=messages,
                )
            if not sent and target.channel:
                try:
                    for blocks in messages:
                        await self.client.chat_postEphemeral(
                            channel=target.channel,
                            user=target.user,
                            text=text,
                            blocks=blocks,
                            thread_ts=target.thread,
                        )
                    sent = True
                except SlackApiError as exc:
                    log.info("postEphemeral in %s failed: %s", target.channel, slack_error(exc))
            if not sent:
                await self.post_reply(reply, await self.dm_channel(target.user), None, files=False)
        if reply.files:
            await self.upload(reply, await self.dm_channel(target.user), None)

    async def respond(
        self,
        reply: Reply,
        url: str,
        *,
        in_channel: bool,
        replace: bool = False,
        messages: list[list[dict[str, Any]]] | None = None,
    ) -> bool:
        """Answer through an interaction's response_url (works where the bot is not a
        member); False if Slack did not take it."""
        webhook = AsyncWebhookClient(url)
        text = bk.fallback_text(reply)
        for i, blocks in enumerate(messages or bk.split_messages(bk.reply_blocks(reply))):
            resp = await webhook.send(
                text=text,
                blocks=blocks,
                response_type="in_channel" if in_channel else "ephemeral",
                replace_original=replace and i == 0,
            )
            if resp.status_code != 200:
                log.info("response_url answered %s: %s", resp.status_code, resp.body)
                return False
        return True

    async def ephemeral_blocks(
        self, target: Target, blocks: list[dict[str, Any]], text: str
    ) -> None:
        """Raw blocks for the user only (a button that opens a form)."""
        if target.response_url:
            resp = await AsyncWebhookClient(target.response_url).send(
                text=text, blocks=blocks, response_type="ephemeral"
            )
            if resp.status_code == 200:
                return
        if target.channel:
            await self.client.chat_postEphemeral(
                channel=target.channel,
                user=target.user,
                text=text,
                blocks=blocks,
                thread_ts=target.thread,
            )

    # ------------------------------------------------------------ public messages
    async def post_reply(
        self,
        reply: Reply,
        channel: str,
        thread: str | None,
        *,
        files: bool = True,
        lead: tuple[str, str] | None = None,
        request: Request | None = None,
        react: bool = True,
    ) -> str:
        """chat.postMessage (paced; joins a public channel it is not in), the reactions a
        poll takes, then its files. ``lead`` is raw mrkdwn put before the reply (mentions
        stay live) and its plain-text form for the notification. Returns ``CHANNEL:TS``
        (``:THREAD`` in a thread) of the first message ("" when the reply was only files);
        a message that takes reactions is always ``CHANNEL:TS``, as reactions name it.

        A reply to ``request`` that takes reactions is recorded with the core before its
        choices are added (``react``; an outbox post gets them in :meth:`recorded`), so
        no reaction arrives before the record that routes it."""
        ref = ""
        if lead is not None or has_message(reply):
            head = [bk.section_block(lead[0])] if lead is not None else []
            messages = bk.split_messages([*head, *bk.reply_blocks(reply)])
            text = bk.fallback_text(reply)
            if lead is not None:
                text = f"{lead[1]}: {text}"
            for i, blocks in enumerate(messages):
                kwargs: dict[str, Any] = {"channel": channel, "text": text, "blocks": blocks}
                if thread:
                    kwargs["thread_ts"] = thread
                resp = await self.post_message(kwargs)
                ts = str(resp["ts"])
                channel = str(resp.get("channel") or channel)
                if i > 0:
                    continue
                ref = f"{channel}:{ts}:{thread}" if thread else f"{channel}:{ts}"
                if reply.reactions is not None:
                    ref = f"{channel}:{ts}"
                    if request is not None:
                        await self.core.remember_reactions(request, ref, reply.reactions)
                    if react:
                        await self.add_reactions(channel, ts, reply.reactions)
        if files and reply.files:
            await self.upload(reply, channel, thread)
        return ref

    async def post_message(self, kwargs: dict[str, Any]) -> Any:
        channel = kwargs["channel"]
        async with self.pacer.turn(channel):
            try:
                return await self.client.chat_postMessage(**kwargs)
            except SlackApiError as exc:
                if slack_error(exc) != "not_in_channel":
                    raise
                await self.client.conversations_join(channel=channel)
                return await self.client.chat_postMessage(**kwargs)

    async def add_reactions(self, channel: str, ts: str, reactions: Reactions) -> None:
        """The poll's choices, added by the bot (its own reactions are not votes)."""
        for emoji in reactions.emojis:
            try:
                await self.client.reactions_add(
                    channel=channel, timestamp=ts, name=bk.emoji_name(emoji)
                )
            except SlackApiError as exc:
                log.info("reactions.add %s failed: %s", emoji, slack_error(exc))

    async def upload(self, reply: Reply, channel: str, thread: str | None) -> None:
        uploads = []
        for f in reply.files:
            upload: dict[str, Any] = {
                "file": f.data,
                "filename": f.name,
                "title": f.description or f.name,
            }
            if f.mime.startswith("image/") and f.description:
                upload["alt_txt"] = f.description  # what a screen reader says of it
            uploads.append(upload)
        kwargs: dict[str, Any] = {"channel": channel, "file_uploads": uploads}
        if thread:
            kwargs["thread_ts"] = thread
        try:
            await self.client.files_upload_v2(**kwargs)
        except SlackApiError as exc:
            if slack_error(exc) != "not_in_channel":
                raise
            await self.client.conversations_join(channel=channel)
            await self.client.files_upload_v2(**kwargs)

    async def dm_channel(self, user: str) -> str:
        if user not in self._dm_channels:
            resp = await self.client.conversations_open(users=user)
            self._dm_channels[user] = str(resp["channel"]["id"])
        return self._dm_channels[user]

    # ------------------------------------------------------------ the outbox port
    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        """Post to a course channel (its key such as ``announcements``, the course file's
        value for it, a channel id, or a message ref ``CHANNEL:TS`` to answer in that
        message's thread); return the message ref."""
        channel_id, thread = await self.channels.resolve(course_id, channel)
        self.remember_forms(reply)
        with outbox_errors():
            return await self.post_reply(reply, channel_id, thread, react=False)

    async def recorded(self, course_id: int, ref: str, reply: Reply) -> None:
        """The dispatcher committed the record of a post: a poll's choices go on now."""
        if reply.reactions is not None:
            channel, ts = self.channels.message(ref)
            await self.add_reactions(channel, ts, reply.reactions)

    async def edit(self, course_id: int, message_ref: str, reply: Reply) -> None:
        """Replace a posted message (progress, poll counts) with chat.update."""
        channel, ts = self.channels.message(message_ref)
        blocks = bk.split_messages(bk.reply_blocks(reply))[0]
        self.remember_forms(reply)
        with outbox_errors():
            await self.client.chat_update(
                channel=channel, ts=ts, text=bk.fallback_text(reply), blocks=blocks
            )

    async def dm(self, course_id: int, person_id: int, reply: Reply) -> str:
        """A private message to a person through their linked Slack account."""
        async with self.db.session() as session:
            linked = await linked_accounts(session, course_id, [person_id], Platform.SLACK)
        user = linked.get(person_id)
        if user is None:
            raise Unreachable("no linked Slack account")
        return await self.dm_account(course_id, user, reply)

    async def dm_account(self, course_id: int, user_id: str, reply: Reply) -> str:
        """A private message to one Slack account."""
        self.remember_forms(reply)
        with outbox_errors():
            return await self.post_reply(reply, await self.dm_channel(user_id), None, react=False)

    async def thread(
        self,
        course_id: int,
        channel: str,
        name: str,
        reply: Reply,
        person_ids: Sequence[int] = (),
    ) -> str:
        """A breakout group on Slack: a message in the channel that opens a thread, with
        its members mentioned (so Slack notifies them); returns ``CHANNEL:TS``, which
        :meth:`post` takes to answer in that thread."""
        mentions = ""
        if person_ids:
            async with self.db.session() as session:
                linked = await linked_accounts(session, course_id, person_ids, Platform.SLACK)
            mentions = " ".join(f"<@{u}>" for u in linked.values())  # Slack's mention syntax, raw
        head = f"🧵 *{bk.escape(name)}*" + (f" · {mentions}" if mentions else "")
        channel_id, _ = await self.channels.resolve(course_id, channel)
        self.remember_forms(reply)
        with outbox_errors():
            return await self.post_reply(reply, channel_id, None, lead=(head, name), react=False)
