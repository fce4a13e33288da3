"""The Slack adapter: slack-bolt's :class:`AsyncApp` in front of the command core.

It only translates. One slash command (``/course``, configurable) carries every
command of the registry as its text; buttons, modals, reactions and direct messages
become core calls; a :class:`~commands.replies.Reply` becomes Block Kit messages and
file uploads. It is also the core's outbox (posts, edits, DMs) and runs the reminder
sweeper, like the terminal shell does.

Every listener acknowledges first (Slack wants an answer within 3 s) and then works:
replies go through ``response_url`` or ``chat.postEphemeral`` when private and
``chat.postMessage`` when public (paced to about one per second per channel), files
through ``files_upload_v2``. Each request carries Slack's stable id (the Events API
``event_id``, or the interaction's ``trigger_id``) as its event id, so the core never
acts twice on a retry or a duplicate delivery.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import shlex
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from sqlalchemy import select

from bot import inbox
from bot.app import App
from bot.scheduler import ReminderSweeper
from bot.slack import blocks as bk
from commands.attachments import SLACK_FILE_HOSTS, download, file_origins, path_in, safe_name
from commands.context import Attachment, Caller, Request, Where
from commands.core import CommandCore, new_error_id
from commands.errors import CourseBotError, InvalidInput, UsageError
from commands.outbox import Gone, RetryLater, Unreachable
from commands.parsing import split_line
from commands.people import linked_accounts
from commands.registry import Command
from commands.replies import Form, ReactionFate, Reactions, Reply
from db.models import CourseBinding, Platform, RankKind, Role

log = logging.getLogger("coursebot.slack")

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
#: What the inbox keeps of a button press (the message it sits on is not needed).
BUTTON_FIELDS = ("user", "team", "channel", "container", "response_url", "trigger_id")
#: What the inbox keeps of a submitted modal's view: its inputs and the bot's own
#: metadata (not its blocks, which are only needed to place an error inside the modal).
VIEW_FIELDS = ("id", "hash", "callback_id", "private_metadata", "state")
#: Removed from an inbox entry once it is done: it lets anyone answer as the bot.
INBOX_SECRETS = ("response_url",)
#: A command cut off by a restart is run again if it is younger than this (its response
#: URL lives 30 minutes); an older one is answered with what became of it.
INBOX_REPLAY = timedelta(minutes=25)

#: How long a view submission may run before the modal is closed and the answer posted.
ACK_BUDGET = 2.0
#: Files a user shares with the bot wait this long for the command they belong to.
PENDING_TTL = 30 * 60
#: Largest file the bot downloads from Slack for a command.
MAX_DOWNLOAD = 50 * 1024 * 1024
RANK_COMMANDS = {("rank", "standard"): RankKind.STANDARD, ("rank", "battle"): RankKind.BATTLE}

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
_MESSAGE_REF = re.compile(r"^([CGD][A-Z0-9]{6,}):(\d+\.\d+)(?::(\d+\.\d+))?$")
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


def _retry_num(request: AsyncBoltRequest) -> int:
    raw = request.headers.get("x-slack-retry-num", ["0"])
    try:
        return int(raw[0] if raw else 0)
    except ValueError:
        return 0


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


class RecentIds:
    """A bounded set of ids (oldest forgotten first)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> None:
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._ids


@dataclass(frozen=True)
class Submission:
    """A submitted modal: who and where, how to run it, and how to name it to the user
    (``what``) with what to do if it was lost (``again``)."""

    request: Request
    target: Target
    run: Callable[[], Awaitable[Reply]]
    what: str
    again: str


@dataclass
class Profile:
    name: str = ""
    email: str | None = None
    fetched: float = field(default_factory=time.monotonic)


class SlackBot:
    """The Slack adapter for one workspace (one bot token)."""

    #: The outbox port's platform: the dispatcher sends this course's rows here.
    platform = Platform.SLACK

    def __init__(
        self,
        app: App,
        *,
        client: AsyncWebClient | None = None,
        post_interval: float = 1.0,
        files_dir: Path | None = None,
    ) -> None:
        s = app.settings.slack
        self.app = app
        self.core: CommandCore = app.core
        self.command = s.command if s.command.startswith("/") else f"/{s.command}"
        token = s.bot_token.get_secret_value() if s.bot_token else None
        self.token = token
        base_url = s.api_url if s.api_url.endswith("/") else s.api_url + "/"
        self.client = client or AsyncWebClient(token=token, base_url=base_url)
        self.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
        self.bolt = AsyncApp(
            signing_secret=s.signing_secret.get_secret_value() if s.signing_secret else "",
            client=self.client,
            process_before_response=False,
            logger=logging.getLogger("coursebot.slack.bolt"),
        )
        self.pacer = ChannelPacer(post_interval)
        self.files_dir = files_dir or app.settings.data_dir / "slack-files"
        self.bot_user_id: str | None = None
        self.team_id: str | None = None
        self._handled = RecentIds()
        self._reactive: OrderedDict[tuple[str, str], Reactions] = OrderedDict()
        self._forms: OrderedDict[str, Form] = OrderedDict()
        self._pending: dict[tuple[str, str], tuple[float, list[Attachment]]] = {}
        self._channels: dict[str, str] = {}
        self._dm_channels: dict[str, str] = {}
        self._profiles: dict[str, Profile] = {}
        self._runner: web.AppRunner | None = None
        self._socket: Any = None
        self._http: aiohttp.ClientSession | None = None
        self.sweeper = ReminderSweeper(
            app.db,
            self,
            app.clock,
            hours_before=app.settings.reminder_hours,
            platform=Platform.SLACK,
        )
        app.core.outbox = self
        #: Inbox entries received before this instant belong to a stopped process.
        self._started = app.core.clock.now()
        self._register()

    # ================================================================== lifecycle
    async def start(self, *, sweep: bool = True) -> None:
        """Check the token (auth.test) and start the reminder sweeper."""
        auth = await self.client.auth_test()
        self.bot_user_id = auth.get("user_id")
        self.team_id = auth.get("team_id")
        log.info("Slack: signed in as %s in team %s", auth.get("user"), self.team_id)
        if self.team_id and not await self._bound(self.team_id):
            log.warning(
                "Slack team %s is not bound to any course; run "
                "`coursebot course bind <course-key> slack %s`",
                self.team_id,
                self.team_id,
            )
        await self.recover_inbox()
        if sweep:
            self.sweeper.start(self.app.settings.sweep_seconds)
            await self.sweeper.sweep()

    async def start_http(
        self, host: str = "0.0.0.0", port: int = 3000, path: str = "/slack/events"
    ) -> int:
        """Serve slash commands, events and interactivity on ``path``; return the port."""
        web_app = web.Application(client_max_size=8 * 1024 * 1024)
        web_app.router.add_post(path, self._on_http)
        web_app.router.add_get("/healthz", self._on_health)
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound = self._runner.addresses[0][1]
        log.info("Slack HTTP mode: listening on %s:%s%s", host, bound, path)
        return int(bound)

    async def start_socket_mode(self, app_token: str) -> None:
        """Connect to Slack over a websocket (Socket Mode: no public URL needed)."""
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        self._socket = AsyncSocketModeHandler(self.bolt, app_token, web_client=self.client)
        await self._socket.connect_async()
        log.info("Slack Socket Mode: connected")

    async def stop(self) -> None:
        await self.sweeper.aclose()
        if self._socket is not None:
            with suppress(Exception):
                await self._socket.close_async()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _on_http(self, request: web.Request) -> web.Response:
        bolt_response = await self.bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def _on_health(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _bound(self, team_id: str) -> bool:
        async with self.app.db.session() as session:
            found = await session.scalar(
                select(CourseBinding.id).where(
                    CourseBinding.platform == Platform.SLACK, CourseBinding.external_id == team_id
                )
            )
        return found is not None

    # ================================================================== listeners
    def _register(self) -> None:
        b = self.bolt
        b.command(self.command)(self._on_command)
        b.action(re.compile(rf"^{re.escape(bk.BUTTON_ACTION)}\.\d+$"))(self._on_button)
        b.action(bk.FILL_ACTION)(self._on_fill)
        b.view(bk.FORM_CALLBACK)(self._on_submission)
        b.view(bk.COMMAND_CALLBACK)(self._on_submission)
        b.view(bk.RANK_CALLBACK)(self._on_submission)
        b.event("reaction_added")(self._on_reaction)
        b.event("reaction_removed")(self._on_reaction)
        b.event("app_mention")(self._on_mention)
        b.event("message")(self._on_message)
        b.event("file_shared")(self._on_ignored_event)
        b.error(self._on_error)

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("Slack listener failed on a %s request", body.get("type"), exc_info=error)

    async def _on_ignored_event(self, ack: AsyncAck) -> None:
        await ack()

    @asynccontextmanager
    async def _guard(self, target: Target | None) -> AsyncIterator[None]:
        """After the ack: log a failure with an id the user is told (as the core does)."""
        try:
            yield
        except Exception:
            err_id = new_error_id()
            log.exception("Slack adapter error %s", err_id)
            if target is not None:
                with suppress(Exception):
                    await self._send_ephemeral(
                        Reply.error(
                            "Something went wrong talking to Slack. If it happens again, "
                            f"tell your instructor and quote error id `{err_id}`.",
                            error_id=err_id,
                        ),
                        target,
                    )

    # -- the slash command ----------------------------------------------------------
    async def _on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        trigger = body.get("trigger_id")
        event_id = f"trigger:{trigger}" if trigger else None
        if event_id is not None:  # kept before Slack hears "got it": never lost after
            payload = {k: str(body.get(k) or "") for k in INBOX_FIELDS}
            await inbox.receive(
                self.app.db, Platform.SLACK, event_id, "command", payload, self.core.clock.now()
            )
        await ack()
        await self._run_command(body)
        if event_id is not None:
            await self._inbox_done(event_id)

    async def _inbox_done(self, event_id: str) -> None:
        await inbox.done(
            self.app.db,
            Platform.SLACK,
            event_id,
            self.core.clock.now(),
            forget=INBOX_SECRETS,
        )

    async def _run_command(self, body: dict[str, Any], *, replay: bool = False) -> None:
        user, channel = body["user_id"], body.get("channel_id") or None
        target = Target(user=user, channel=channel, response_url=body.get("response_url") or None)
        async with self._guard(target):
            team = body.get("team_id") or ""
            trigger = body.get("trigger_id") or None
            # The profile's email is Slack's proof of who this is (`register` alone).
            profile = await self._profile(user)
            request = self._request(
                team=team,
                user=user,
                name=body.get("user_name", ""),
                email=profile.email,
                channel=channel,
                is_dm=self._is_dm(channel, body.get("channel_name")),
                event_id=f"trigger:{trigger}" if trigger else None,
            )
            text = unescape(body.get("text", ""))
            if not replay:
                await self._dispatch_text(request, text, target, trigger)
                return
            # After a restart: no modal can open (its trigger expired); run the line.
            reply = await self.core.handle_text(self._with_pending(request), text or "help")
            if reply.duplicate:
                what = f"`{self.command} {text}`"
                reply = Reply(text=inbox.went_through(what), ephemeral=True)
            await self.send(reply, target)

    async def recover_inbox(self) -> int:
        """Commands, button presses and form submissions a stopped process acknowledged
        but did not finish: run them now if their answer can still reach the sender
        (Slack's response URL lives 30 minutes), else tell the sender by DM what became
        of them. How many were handled."""
        now = self.core.clock.now()
        entries = await inbox.unfinished(self.app.db, Platform.SLACK, before=self._started)
        for entry, ran in entries:
            body = entry.payload
            if now - entry.received_at < INBOX_REPLAY:
                # Run again: the core's event record turns one that did commit into "it
                # went through", answered where the sender is waiting for it.
                log.warning("running %s again: it was cut off by a restart", entry.event_id)
                if entry.kind == "button":
                    await self._press(body, str(body.get("value", "")), replay=True)
                elif entry.kind == "modal":
                    await self._resubmit(body)
                else:
                    await self._run_command(body, replay=True)
            else:
                if entry.kind == "command":
                    what, again = f"`{self.command} {body.get('text', '')}`", "Please try again."
                    user = body.get("user_id")
                else:
                    what = str(body.get("what") or "button press")
                    again = str(body.get("again") or "Please try again.")
                    user = (body.get("user") or {}).get("id")
                text = inbox.went_through(what) if ran else inbox.not_run(what, again)
                with suppress(Exception):
                    await self.dm_account(0, str(user), Reply(text=text))
            await self._inbox_done(entry.event_id)
        return len(entries)

    async def _dispatch_text(
        self, request: Request, text: str, target: Target, trigger_id: str | None
    ) -> None:
        """A typed command: the rankings modal, a command's form, or straight to the core."""
        text = text or "help"
        if await self._maybe_modal(request, text, target, trigger_id):
            return
        reply = await self.core.handle_text(self._with_pending(request), text)
        await self.send(reply, target)

    async def _maybe_modal(
        self, request: Request, text: str, target: Target, trigger_id: str | None
    ) -> bool:
        """Open a modal instead of running the command: ``rank standard`` / ``rank battle``
        without ids (the rankings modal) or a command whose form options were not typed."""
        try:
            cmd, rest = self.core.registry.match(split_line(text))
        except UsageError:
            return False
        kind = RANK_COMMANDS.get(cmd.path)
        if kind is not None and not rest and trigger_id:
            return await self._open_rank_modal(request, kind, target, trigger_id)
        missing = missing_form_options(cmd, rest)
        if not missing or len(text) > 2000:  # a line that long is typed out in full
            return False
        fields = tuple(f for f in cmd.form_spec().fields if f.name in missing)
        form = Form(cmd.description[:24], cmd.name, fields)
        meta = {"line": text, "channel": target.channel, "thread": target.thread}
        if trigger_id:
            view = bk.form_modal(form, callback_id=bk.COMMAND_CALLBACK, metadata=meta)
            await self.client.views_open(trigger_id=trigger_id, view=view)
            return True
        # No trigger (a direct message): a button opens the modal.
        button = {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": bk.FILL_ACTION,
                    "text": {"type": "plain_text", "text": f"Fill in {cmd.name}"[:75]},
                    "value": text[:2000],
                    "style": "primary",
                }
            ],
        }
        names = ", ".join(f.label for f in fields)
        note = f"`{cmd.name}` takes {names} in a form. Press the button to fill it in."
        await self._post_ephemeral_blocks(
            target, [bk.section_block(bk.mrkdwn(note)), button], note.replace("`", "")
        )
        return True

    # -- buttons --------------------------------------------------------------------
    async def _on_button(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        value = str(action.get("value", ""))
        trigger = body.get("trigger_id")
        # A button that acts (not one that opens a form) is kept before the ack, like a
        # slash command: after a crash it is pressed again or its presser is told.
        event_id = f"trigger:{trigger}" if trigger and not value.startswith("form:") else None
        if event_id is not None:
            payload = {k: body.get(k) for k in BUTTON_FIELDS} | {"value": value}
            await inbox.receive(
                self.app.db, Platform.SLACK, event_id, "button", payload, self.core.clock.now()
            )
        await ack()
        await self._press(body, value)
        if event_id is not None:
            await self._inbox_done(event_id)

    async def _press(self, body: dict[str, Any], value: str, *, replay: bool = False) -> None:
        target = self._interaction_target(body)
        async with self._guard(target):
            if value.startswith("form:"):
                await self._open_form(value, body, target)
                return
            request = self._interaction_request(body, target)
            reply = await self.core.handle_action(request, value)
            if replay and reply.duplicate:
                reply = Reply(text=inbox.went_through("button press"), ephemeral=True)
            await self.send(reply, target)

    async def _open_form(self, custom_id: str, body: dict[str, Any], target: Target) -> None:
        form = self._forms.get(custom_id) or self._rebuild_form(custom_id)
        if form is None or not form.fields:
            await self._send_ephemeral(
                Reply.error("That form is no longer available. Run the command again."), target
            )
            return
        meta = {"form": custom_id, "channel": target.channel, "thread": target.thread}
        view = bk.form_modal(form, callback_id=bk.FORM_CALLBACK, metadata=meta)
        await self.client.views_open(trigger_id=body["trigger_id"], view=view)

    def _rebuild_form(self, custom_id: str) -> Form | None:
        """A form from its custom id alone (after a restart): the command's own form."""
        try:
            command, fixed = Form.parse_custom_id(custom_id)
            cmd = self.core.registry.get(command)
        except (KeyError, ValueError):
            return None
        return cmd.form_spec(fixed)

    async def _on_fill(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        target = self._interaction_target(body)
        async with self._guard(target):
            request = self._interaction_request(body, target)
            text = str(action.get("value", ""))
            await self._dispatch_text(request, text, target, body.get("trigger_id"))

    # -- modal submissions ----------------------------------------------------------
    async def _on_submission(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """A submitted modal (a command's form, a button's form, the rankings modal),
        kept in the inbox before Slack hears "got it", like a slash command."""
        submission = self._submission_of(body)
        event_id = submission.request.event_id
        if event_id is not None:
            view = body.get("view") or {}
            payload = {
                "user": body.get("user"),
                "team": body.get("team"),
                "trigger_id": body.get("trigger_id"),
                "view": {k: view.get(k) for k in VIEW_FIELDS},
                "what": submission.what,
                "again": submission.again,
            }
            await inbox.receive(
                self.app.db, Platform.SLACK, event_id, "modal", payload, self.core.clock.now()
            )
        await self._submit(ack, body["view"], submission.target, submission.run)
        if event_id is not None:
            await self._inbox_done(event_id)

    async def _resubmit(self, body: dict[str, Any]) -> None:
        """A kept submission, after a restart: run it again and post the answer (the
        modal closed long ago); "went through" if it had committed."""
        submission = self._submission_of(body)
        async with self._guard(submission.target):
            reply = await submission.run()
            if reply.duplicate:
                reply = Reply(text=inbox.went_through(submission.what), ephemeral=True)
            await self.send(reply, submission.target)

    def _submission_of(self, body: dict[str, Any]) -> Submission:
        """What a submitted modal runs, by its callback id: a button's form (the core's
        form id and the typed fields), a typed command's form (the line and the typed
        fields) or the rankings modal (the selected papers, in rank order)."""
        view = body["view"]
        meta = _metadata(view)
        values = bk.view_values(view)
        request, target = self._submission(body, meta)
        callback = view.get("callback_id")
        if callback == bk.RANK_CALLBACK:
            positions = sorted(
                (int(k.split(".", 1)[1]), v)
                for k, v in values.items()
                if k.startswith("rank.") and k.split(".", 1)[1].isdigit()
            )
            papers = [int(v) for _, v in positions if v and v.isdigit()]
            is_battle = meta.get("kind") == RankKind.BATTLE.value
            name = f"rank {(RankKind.BATTLE if is_battle else RankKind.STANDARD).value}"
            line = f"`{self.command} {name}`"
            return Submission(
                request,
                target,
                lambda: self.core.handle(request, name, {"papers": papers}),
                what=f"ranking from {line}",
                again=f"Please type {line} again.",
            )
        typed = {
            k.removeprefix("f."): v
            for k, v in values.items()
            if k.startswith("f.") and v not in (None, "")
        }
        if callback == bk.COMMAND_CALLBACK:
            words = [str(meta.get("line", ""))]
            words += [f"{k}={shlex.quote(str(v))}" for k, v in typed.items()]
            full = " ".join(words)
            line = f"`{self.command} {str(meta.get('line', ''))[:100]}`"
            return Submission(
                request,
                target,
                lambda: self.core.handle_text(self._with_pending(request), full),
                what=f"form for {line}",
                again=f"Please type {line} again and fill in the form.",
            )
        form_id = str(meta.get("form", ""))
        try:
            command = f"`{self.command} {Form.parse_custom_id(form_id)[0]}`"
        except ValueError:
            command = "a command"
        return Submission(
            request,
            target,
            lambda: self.core.handle_form(self._with_pending(request), form_id, typed),
            what=f"form for {command}",
            again="Please open the form again (its button) and send it.",
        )

    async def _submit(
        self,
        ack: AsyncAck,
        view: dict[str, Any],
        target: Target,
        run: Callable[[], Awaitable[Reply]],
    ) -> None:
        """Run a submission; an error within the ack budget shows in the modal itself,
        anything else closes it and the answer is posted (ephemeral or public)."""

        async def safe() -> Reply:
            try:
                return await run()
            except Exception:
                err_id = new_error_id()
                log.exception("Slack adapter error %s in a modal submission", err_id)
                return Reply.error(
                    f"Something went wrong and nothing was saved (error id `{err_id}`).",
                    error_id=err_id,
                )

        task = asyncio.ensure_future(safe())
        done, _ = await asyncio.wait({task}, timeout=ACK_BUDGET)
        if task in done:
            reply = task.result()
            block = bk.block_for_error(view, reply.text) if reply.is_error else None
            if block is not None:
                await ack(response_action="errors", errors={block: reply.text[:1500]})
                return
            await ack()
        else:
            await ack()
            reply = await task
        async with self._guard(target):
            await self.send(reply, target)

    # -- the rankings modal -----------------------------------------------------------
    async def _open_rank_modal(
        self, request: Request, kind: RankKind, target: Target, trigger_id: str
    ) -> bool:
        """One select per rank position, preset to the student's current ranking.
        Only for registered students; anyone else gets the core's answer instead."""
        from commands.logistics import course_papers
        from commands.rankings import rankings_of, required_count

        async with self.app.db.session() as session:
            try:
                course, person = await CommandCore.resolve(session, request)
            except CourseBotError:
                return False
            if person is None or person.role is not Role.STUDENT:
                return False
            count = required_count(course, kind)
            papers = await course_papers(session, course.id, kind=kind.value)
            mine = (await rankings_of(session, course.id)).get(person.id, {}).get(kind)
            current = [str(c.paper.number) for c in mine.choices] if mine else []
        choices = [bk.Choice(str(p.number), f"#{p.number} {p.title}") for p in papers]
        what = "30/45-min" if kind is RankKind.STANDARD else "battle"
        view = bk.ranking_modal(
            title=f"Rank {kind.value} papers",
            intro=f"Choose {count} different {what} papers, best first. "
            f"(Or type `{self.command} rank {kind.value} <{count} paper ids>`.)",
            count=count,
            choices=choices,
            current=current,
            metadata={"kind": kind.value, "channel": target.channel, "thread": target.thread},
        )
        await self.client.views_open(trigger_id=trigger_id, view=view)
        return True

    # -- events -----------------------------------------------------------------------
    def _first_time(self, body: dict[str, Any], request: AsyncBoltRequest) -> bool:
        """False for a retry (``X-Slack-Retry-Num`` > 0) of an event already handled here;
        other duplicates are caught by the core on the stored event id."""
        event_id = body.get("event_id")
        if event_id and _retry_num(request) > 0 and event_id in self._handled:
            log.info("Slack retry %s of event %s ignored", _retry_num(request), event_id)
            return False
        return True

    def _done(self, body: dict[str, Any]) -> None:
        if body.get("event_id"):
            self._handled.add(str(body["event_id"]))

    async def _on_reaction(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        event: dict[str, Any],
        request: AsyncBoltRequest,
    ) -> None:
        await ack()
        item = event.get("item") or {}
        user = event.get("user")
        if item.get("type") != "message" or not user or user == self.bot_user_id:
            return
        if not self._first_time(body, request):
            return
        channel, ts = item["channel"], item["ts"]
        target = Target(user=user, channel=channel)
        async with self._guard(None):
            spec = await self._reactions_of(channel, ts)
            emoji = bk.emoji_for(event.get("reaction", ""), spec.emojis) if spec else None
            if spec is None or emoji is None:
                self._done(body)
                return
            value = emoji if event["type"] == "reaction_added" else f"-{emoji}"
            profile = await self._profile(user)
            req = self._request(
                team=self._event_team(body),
                user=user,
                name=profile.name,
                email=profile.email,
                channel=channel,
                is_dm=self._is_dm(channel),
                event_id=body.get("event_id"),
            )
            reply = await self.core.handle_action(req, ":".join((spec.action, *spec.args)), value)
            self._done(body)
            if reply.silent:
                return
            if reply.remove_reaction and event["type"] == "reaction_added":
                # A Slack bot cannot remove someone else's reaction: say so, never claim it.
                reply.text = "\n".join(p for p in (reply.text, reaction_note(reply)) if p)
            # A vote's answer is for the voter only: chat.postEphemeral in the poll's
            # channel (no DM needed), else a DM.
            reply.ephemeral = True
            await self.send(reply, target)

    async def _on_mention(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        event: dict[str, Any],
        request: AsyncBoltRequest,
    ) -> None:
        """``@coursebot papers battle`` in a channel runs ``papers battle``."""
        await ack()
        if not self._first_time(body, request) or event.get("bot_id"):
            return
        me = re.escape(self.bot_user_id) if self.bot_user_id else "[A-Z0-9]+"
        text = re.sub(rf"<@{me}(\|[^>]*)?>", " ", event.get("text", ""))
        if event.get("files") and event.get("user"):  # a file shared with the mention
            user, channel = event["user"], event["channel"]
            target = Target(user=user, channel=channel, thread=event.get("thread_ts"))
            async with self._guard(target):
                got, refused = await self._download_all(event["files"])
                if got:
                    self._keep_pending(self._event_team(body), user, got)
                if refused:
                    await self.send(Reply.error(refused), target)
        await self._event_command(body, event, unescape(text))

    async def _on_message(
        self,
        ack: AsyncAck,
        body: dict[str, Any],
        event: dict[str, Any],
        request: AsyncBoltRequest,
    ) -> None:
        """A direct message to the bot is a command (like the terminal's ``:dm``); files
        shared with it are attached to the command they come with, or the next one."""
        await ack()
        if (
            event.get("channel_type") != "im"
            or event.get("subtype") not in (None, "file_share")
            or event.get("bot_id")
            or not event.get("user")
            or event.get("user") == self.bot_user_id
        ):
            return
        if not self._first_time(body, request):
            return
        user, channel = event["user"], event["channel"]
        target = Target(user=user, channel=channel, thread=event.get("thread_ts"))
        async with self._guard(target):
            got, refused = await self._download_all(event.get("files") or [])
            if got:
                self._keep_pending(self._event_team(body), user, got)
            if refused:
                await self.send(Reply.error(refused), target)
            text = unescape(event.get("text", ""))
            if not text:
                if got:
                    names = ", ".join(f"`{a.name}`" for a in got)
                    note = (
                        f"Got {names}. It goes with your next command "
                        f"(here, or `{self.command} ...`) within 30 minutes."
                    )
                    await self.send(Reply(text=note), target)
                self._done(body)
                return
            await self._event_command(body, event, text)

    async def _event_command(self, body: dict[str, Any], event: dict[str, Any], text: str) -> None:
        user, channel = event["user"], event["channel"]
        thread = event.get("thread_ts")
        target = Target(user=user, channel=channel, thread=thread)
        async with self._guard(target):
            profile = await self._profile(user)
            request = self._request(
                team=self._event_team(body),
                user=user,
                name=profile.name,
                email=profile.email,
                channel=channel,
                is_dm=self._is_dm(channel),
                thread=thread,
                event_id=body.get("event_id"),
            )
            await self._dispatch_text(request, text, target, None)
            self._done(body)

    # ================================================================== requests
    def _request(
        self,
        *,
        team: str,
        user: str,
        name: str = "",
        email: str | None = None,
        channel: str | None,
        is_dm: bool,
        event_id: str | None,
        thread: str | None = None,
    ) -> Request:
        return Request(
            platform=Platform.SLACK,
            workspace=team,
            caller=Caller(Platform.SLACK, user, name, email),
            where=Where(channel=channel, is_dm=is_dm, thread=thread),
            event_id=event_id,
        )

    def _with_pending(self, request: Request) -> Request:
        """The request with the files this user shared with the bot before it."""
        key = (request.workspace, request.caller.user_id)
        expires, files = self._pending.pop(key, (0.0, []))
        if not files or expires < time.monotonic():
            return request
        return replace(request, attachments=(*request.attachments, *files))

    def _keep_pending(self, team: str, user: str, files: list[Attachment]) -> None:
        now = time.monotonic()
        for key in [k for k, (exp, _) in self._pending.items() if exp < now]:
            del self._pending[key]
        _, before = self._pending.get((team, user), (0.0, []))
        known = {a.path for a in before}
        fresh = [f for f in files if f.path not in known]  # a duplicate delivery adds nothing
        self._pending[(team, user)] = (now + PENDING_TTL, [*before, *fresh])

    @staticmethod
    def _is_dm(channel: str | None, channel_name: str | None = None) -> bool:
        return bool(channel and channel.startswith("D")) or channel_name == "directmessage"

    @staticmethod
    def _event_team(body: dict[str, Any]) -> str:
        event = body.get("event") or {}
        return str(body.get("team_id") or event.get("team") or "")

    @staticmethod
    def _interaction_target(body: dict[str, Any]) -> Target:
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        return Target(
            user=body["user"]["id"],
            channel=channel,
            thread=container.get("thread_ts"),
            response_url=body.get("response_url"),
            replace_original=bool(container.get("is_ephemeral")),
        )

    def _interaction_request(self, body: dict[str, Any], target: Target) -> Request:
        user = body.get("user") or {}
        team = (body.get("team") or {}).get("id") or user.get("team_id") or ""
        trigger = body.get("trigger_id")
        return self._request(
            team=team,
            user=target.user,
            name=user.get("username") or user.get("name") or "",
            channel=target.channel,
            is_dm=self._is_dm(target.channel),
            thread=target.thread,
            event_id=f"trigger:{trigger}" if trigger else None,
        )

    def _submission(self, body: dict[str, Any], meta: dict[str, Any]) -> tuple[Request, Target]:
        user = body["user"]
        channel = meta.get("channel")
        target = Target(user=user["id"], channel=channel, thread=meta.get("thread"))
        team = (body.get("team") or {}).get("id") or user.get("team_id") or ""
        trigger = body.get("trigger_id")
        view = body.get("view") or {}
        event_id = f"trigger:{trigger}" if trigger else f"view:{view.get('id')}:{view.get('hash')}"
        request = self._request(
            team=team,
            user=user["id"],
            name=user.get("username") or user.get("name") or "",
            channel=channel,
            is_dm=self._is_dm(channel),
            thread=target.thread,
            event_id=event_id,
        )
        return request, target

    async def _profile(self, user: str) -> Profile:
        """The user's display name and email (users.info, cached for an hour)."""
        cached = self._profiles.get(user)
        if cached is not None and time.monotonic() - cached.fetched < 3600:
            return cached
        profile = Profile()
        try:
            info = (await self.client.users_info(user=user)).get("user") or {}
            p = info.get("profile") or {}
            profile = Profile(
                name=p.get("display_name") or info.get("real_name") or info.get("name") or "",
                email=p.get("email"),
            )
        except SlackApiError as exc:
            log.info("users.info %s failed: %s", user, slack_error(exc))
        self._profiles[user] = profile
        return profile

    async def _download(self, file: dict[str, Any]) -> Attachment:
        """Fetch a file shared with the bot into the data folder, as a command attachment:
        only from Slack's file host (the token goes nowhere else), its declared size
        checked first and its bytes counted (``commands.attachments.download``), stored
        under a name made of its id and name, never a path they choose.
        ``InvalidInput`` (the user's message) when it is refused."""
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        name = str(file.get("name") or file.get("title") or file.get("id") or "file")
        if not url:
            raise InvalidInput(f"`{name}` could not be downloaded: Slack gave no address for it.")
        origins = file_origins(SLACK_FILE_HOSTS, self.app.settings.slack.api_url)
        if self._http is None:
            self._http = aiohttp.ClientSession()
        data = await download(
            url,
            name,
            MAX_DOWNLOAD,
            origins=origins,
            hint="Share a smaller file.",
            declared_size=int(file.get("size") or 0) or None,
            token=self.token,
            token_origins=origins,
            session=self._http,
            timeout_s=120,
        )
        file_id = re.sub(r"[^A-Za-z0-9]+", "", str(file.get("id") or ""))[:40] or "F"
        path = path_in(self.files_dir, f"{file_id}-{safe_name(name)}")
        self.files_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return Attachment(name, path=path, size=len(data), content_type=file.get("mimetype"))

    async def _download_all(self, files: list[dict[str, Any]]) -> tuple[list[Attachment], str]:
        """The files of a message that could be fetched, and why the others were not."""
        got: list[Attachment] = []
        refused: list[str] = []
        for f in files:
            try:
                got.append(await self._download(f))
            except InvalidInput as exc:
                log.info("not taking Slack file %s: %s", f.get("id"), exc)
                refused.append(str(exc))
        return got, " ".join(refused)

    # ================================================================== replies
    async def send(self, reply: Reply, target: Target) -> str | None:
        """Render a reply where a request came from; return the public message ref."""
        if reply.duplicate or not _has_content(reply):
            return None
        self._remember_forms(reply)
        if reply.ephemeral:
            await self._send_ephemeral(reply, target)
            return None
        if target.channel is None:
            await self._send_ephemeral(reply, target)
            return None
        try:
            return await self._post(reply, target.channel, target.thread)
        except SlackApiError as exc:
            if target.response_url and not reply.files:
                log.info(
                    "posting in %s failed (%s); answering through response_url",
                    target.channel,
                    slack_error(exc),
                )
                await self._respond(reply, target.response_url, in_channel=True)
                return None
            raise

    def _remember_forms(self, reply: Reply) -> None:
        for b in reply.buttons:
            if b.form is not None:
                self._forms[b.form.custom_id] = b.form
                self._forms.move_to_end(b.form.custom_id)
        while len(self._forms) > 1000:
            self._forms.popitem(last=False)

    async def _send_ephemeral(self, reply: Reply, target: Target) -> None:
        """Only the user sees it: response_url, else chat.postEphemeral, else a DM.
        Files cannot be ephemeral: they go to the user's DM with the bot."""
        messages = bk.split_messages(bk.reply_blocks(reply))
        if reply.files and not self._is_dm(target.channel):
            n = len(reply.files)
            note = f":paperclip: {n} file{'s' * (n != 1)} sent to you in a direct message."
            messages[-1] = [*messages[-1], bk.context_block(note)][-bk.MAX_BLOCKS :]
        text = bk.fallback_text(reply)
        sent = False
        if _has_message(reply):
            if target.response_url:
                sent = await self._respond(
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
                dm = await self._dm_channel(target.user)
                await self._post(reply, dm, None, files=False)
        if reply.files:
            dm = await self._dm_channel(target.user)
            await self._upload(reply, dm, None)

    async def _respond(
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

    async def _post_ephemeral_blocks(
        self, target: Target, blocks: list[dict[str, Any]], text: str
    ) -> None:
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

    async def _post(
        self,
        reply: Reply,
        channel: str,
        thread: str | None,
        *,
        files: bool = True,
        lead: tuple[str, str] | None = None,
    ) -> str:
        """chat.postMessage (paced; joins a public channel it is not in), the reactions a
        poll takes, then its files. ``lead`` is raw mrkdwn put before the reply (mentions
        stay live) and its plain-text form for the notification. Returns ``CHANNEL:TS``
        (``:THREAD`` in a thread) of the first message ("" when the reply was only files)."""
        first: str | None = None
        if lead is not None or _has_message(reply):
            head = [bk.section_block(lead[0])] if lead is not None else []
            messages = bk.split_messages([*head, *bk.reply_blocks(reply)])
            text = bk.fallback_text(reply)
            if lead is not None:
                text = f"{lead[1]}: {text}"
            for i, blocks in enumerate(messages):
                last = i == len(messages) - 1
                kwargs: dict[str, Any] = {"channel": channel, "text": text, "blocks": blocks}
                if thread:
                    kwargs["thread_ts"] = thread
                if last and reply.reactions is not None:
                    kwargs["metadata"] = bk.reactions_metadata(reply.reactions)
                resp = await self._post_message(kwargs)
                ts = str(resp["ts"])
                channel = str(resp.get("channel") or channel)
                first = first or ts
                if last and reply.reactions is not None:
                    await self._add_reactions(channel, ts, reply.reactions)
        if files and reply.files:
            await self._upload(reply, channel, thread)
        if first is None:
            return ""
        return f"{channel}:{first}:{thread}" if thread else f"{channel}:{first}"

    async def _post_message(self, kwargs: dict[str, Any]) -> Any:
        channel = kwargs["channel"]
        async with self.pacer.turn(channel):
            try:
                return await self.client.chat_postMessage(**kwargs)
            except SlackApiError as exc:
                if slack_error(exc) != "not_in_channel":
                    raise
                await self.client.conversations_join(channel=channel)
                return await self.client.chat_postMessage(**kwargs)

    async def _add_reactions(self, channel: str, ts: str, reactions: Reactions) -> None:
        self._reactive[(channel, ts)] = reactions
        while len(self._reactive) > 5000:
            self._reactive.popitem(last=False)
        for emoji in reactions.emojis:
            try:
                await self.client.reactions_add(
                    channel=channel, timestamp=ts, name=bk.emoji_name(emoji)
                )
            except SlackApiError as exc:
                log.info("reactions.add %s failed: %s", emoji, slack_error(exc))

    async def _reactions_of(self, channel: str, ts: str) -> Reactions | None:
        """The reactions a message takes: remembered, or read back from its metadata."""
        spec = self._reactive.get((channel, ts))
        if spec is not None:
            return spec
        try:
            resp = await self.client.conversations_history(
                channel=channel,
                latest=ts,
                oldest=ts,
                inclusive=True,
                limit=1,
                include_all_metadata=True,
            )
        except SlackApiError as exc:
            log.info("conversations.history %s failed: %s", channel, slack_error(exc))
            return None
        for message in resp.get("messages") or []:
            if message.get("ts") == ts:
                spec = bk.reactions_from_metadata(message.get("metadata"))
                if spec is not None:
                    self._reactive[(channel, ts)] = spec
                return spec
        return None

    async def _upload(self, reply: Reply, channel: str, thread: str | None) -> None:
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

    async def _dm_channel(self, user: str) -> str:
        if user not in self._dm_channels:
            resp = await self.client.conversations_open(users=user)
            self._dm_channels[user] = str(resp["channel"]["id"])
        return self._dm_channels[user]

    # ================================================================== the outbox
    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        """Post to a course channel (a name such as ``announcements``, an id, or a message
        ref ``CHANNEL:TS`` to answer in that message's thread); return the message ref."""
        try:
            channel_id, thread = await self.resolve_channel(channel)
        except LookupError as exc:
            raise Gone(str(exc)) from None
        self._remember_forms(reply)
        with outbox_errors():
            return await self._post(reply, channel_id, thread)

    async def edit(self, course_id: int, message_ref: str, reply: Reply) -> None:
        """Replace a posted message (progress, poll counts) with chat.update."""
        m = _MESSAGE_REF.match(message_ref)
        if m is None:
            raise ValueError(f"not a Slack message ref: {message_ref!r}")
        blocks = bk.split_messages(bk.reply_blocks(reply))[0]
        self._remember_forms(reply)
        with outbox_errors():
            await self.client.chat_update(
                channel=m.group(1), ts=m.group(2), text=bk.fallback_text(reply), blocks=blocks
            )

    async def dm(self, course_id: int, person_id: int, reply: Reply) -> str:
        """A private message to a person through their linked Slack account ("" if none)."""
        async with self.app.db.session() as session:
            linked = await linked_accounts(session, course_id, [person_id], Platform.SLACK)
        user = linked.get(person_id)
        if user is None:
            raise Unreachable("no linked Slack account")
        return await self.dm_account(course_id, user, reply)

    async def dm_account(self, course_id: int, user_id: str, reply: Reply) -> str:
        """A private message to one Slack account."""
        self._remember_forms(reply)
        with outbox_errors():
            return await self._post(reply, await self._dm_channel(user_id), None)

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
            async with self.app.db.session() as session:
                linked = await linked_accounts(session, course_id, person_ids, Platform.SLACK)
            mentions = " ".join(f"<@{u}>" for u in linked.values())  # Slack's mention syntax, raw
        head = f"🧵 *{bk.escape(name)}*" + (f" · {mentions}" if mentions else "")
        channel_id, _ = await self.resolve_channel(channel)
        self._remember_forms(reply)
        return await self._post(reply, channel_id, None, lead=(head, name))

    async def resolve_channel(self, channel: str) -> tuple[str, str | None]:
        """A channel name, id or message ref → (channel id, thread ts or None)."""
        ref = _MESSAGE_REF.match(channel)
        if ref is not None:
            return ref.group(1), ref.group(3) or ref.group(2)
        name = channel.lstrip("#")
        if _CHANNEL_ID.match(name):
            return name, None
        if name not in self._channels:
            await self._load_channels()
        if name not in self._channels:
            raise LookupError(
                f"The bot sees no Slack channel #{name}: create it, or invite the bot "
                "to it if it is private."
            )
        return self._channels[name], None

    async def _load_channels(self) -> None:
        cursor: str | None = None
        for _ in range(50):  # at most 50 pages of 200 channels
            resp = await self.client.conversations_list(
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=200,
                cursor=cursor,
            )
            for ch in resp.get("channels") or []:
                self._channels[str(ch["name"])] = str(ch["id"])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break


# ---------------------------------------------------------------------- helpers


#: Slack errors that mean the person cannot be reached by the bot.
_UNREACHABLE = {"user_not_found", "cannot_dm_bot", "user_disabled", "messages_tab_disabled"}
#: Slack errors that mean the target is gone for good.
_GONE = {"channel_not_found", "is_archived", "message_not_found", "thread_not_found"}


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


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code (``not_in_channel``), or the HTTP status when there is none."""
    data = getattr(exc.response, "data", None)
    if isinstance(data, dict):
        return str(data.get("error") or "unknown")
    return f"HTTP {getattr(exc.response, 'status_code', '?')}"


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _has_message(reply: Reply) -> bool:
    return bool(
        reply.text
        or reply.title
        or reply.sections
        or reply.tables
        or reply.buttons
        or reply.reactions
    )


def _has_content(reply: Reply) -> bool:
    return _has_message(reply) or bool(reply.files)


def missing_form_options(cmd: Command, tokens: Iterable[str]) -> list[str]:
    """The command's form options (collected in a modal) when none was typed inline,
    else ``[]``: ``critique submit 5`` → the modal; ``critique submit 5 answer=...`` or
    a line that already fills them positionally → the core parses it as typed."""
    form = [name for name in cmd.form if any(s.name == name for s in cmd.specs)]
    if not form:
        return []
    by_name = {s.name: s for s in cmd.specs}
    named: set[str] = set()
    positionals = 0
    toks = list(tokens)
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.startswith("--") and len(tok) > 2:
            body = tok[2:]
            if "=" in body:
                named.add(body.split("=", 1)[0].replace("-", "_"))
            else:
                key = body.removeprefix("no-").replace("-", "_")
                spec = by_name.get(key)
                if spec is not None and spec.is_flag:
                    named.add(key)
                else:
                    named.add(body.replace("-", "_"))
                    i += 1
        elif "=" in tok and tok.split("=", 1)[0].replace("-", "_") in by_name:
            named.add(tok.split("=", 1)[0].replace("-", "_"))
        else:
            positionals += 1
        i += 1
    if any(name in named for name in form):
        return []
    free = [s for s in cmd.specs if s.name not in named and s.name not in form and not s.is_flag]
    if positionals > len(free) and not any(s.many for s in free):
        return []
    return form
