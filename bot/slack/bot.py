"""The Slack adapter: slack-bolt's :class:`AsyncApp` in front of the command core.

It only translates. One slash command (``/course``, configurable) carries every command
of the registry as its text; buttons, modals, reactions and direct messages become core
calls; a :class:`~commands.replies.Reply` becomes Block Kit messages and file uploads.
This module assembles the parts, laid out as bolt apps are:

- :mod:`bot.slack.middleware`: the bot's identity (``auth.test``, once per process),
  the caller, the course binding, Slack's retries dropped;
- :mod:`bot.slack.listeners`: one module per feature, registered by
  ``register_listeners(app)``;
- :mod:`bot.slack.sender`: replies, and the core's outbox port (posts, edits, DMs,
  threads), paced per channel;
- :mod:`bot.slack.channels`: the course's channels bound by id at start;
- :mod:`bot.slack.files`: files shared with the bot;
- :mod:`bot.slack.blocks`: the Block Kit renderer.

Every listener acknowledges first (Slack wants an answer within 3 s) and then works.
Each request carries Slack's stable id (the Events API ``event_id``, or the
interaction's ``trigger_id``) as its event id, so the core never acts twice on a retry
or a duplicate delivery.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from pathlib import Path
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot import inbox
from bot.app import App
from bot.scheduler import ReminderSweeper
from bot.slack import middleware
from bot.slack.channels import Channels
from bot.slack.files import SharedFiles
from bot.slack.listeners import register_listeners
from bot.slack.listeners.commands import INBOX_REPLAY, inbox_done, run_command
from bot.slack.listeners.interactions import press, resubmit
from bot.slack.middleware import Bindings, BotAuth, Profiles, RetryFilter
from bot.slack.sender import Sender
from commands.core import CommandCore
from commands.replies import Reply
from db.models import Platform

log = logging.getLogger("coursebot.slack")


class SlackBot:
    """The Slack adapter for one workspace (one bot token)."""

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
        self.settings = s
        self.command = s.command if s.command.startswith("/") else f"/{s.command}"
        token = s.bot_token.get_secret_value() if s.bot_token else None
        base_url = s.api_url if s.api_url.endswith("/") else s.api_url + "/"
        self.client = client or AsyncWebClient(token=token, base_url=base_url)
        self.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))
        self.auth = BotAuth(self.client)
        self.profiles = Profiles(self.client)
        self.bindings = Bindings(app.db)
        self.retries = RetryFilter()
        self.channels = Channels(self.client, app.db, self.auth.team)
        self.sender = Sender(self.client, self.core, self.channels, post_interval=post_interval)
        self.files = SharedFiles(
            files_dir or app.settings.data_dir / "slack-files", s.api_url, token
        )
        auth = self.auth

        async def authorize() -> AuthorizeResult:
            return await auth.authorize()  # the kept auth.test: never asked per request

        self.bolt = AsyncApp(
            signing_secret=s.signing_secret.get_secret_value() if s.signing_secret else "",
            # bolt makes a client per request from this one; the token is ``authorize``'s
            client=AsyncWebClient(base_url=self.client.base_url),
            authorize=authorize,
            process_before_response=False,
            logger=logging.getLogger("coursebot.slack.bolt"),
        )
        middleware.install(self.bolt, self)
        register_listeners(self.bolt, command=self.command)
        self.sweeper = ReminderSweeper(
            app.db,
            self.sender,
            app.clock,
            hours_before=app.settings.reminder_hours,
            platform=Platform.SLACK,
        )
        app.core.outbox = self.sender
        self._runner: web.AppRunner | None = None
        self._socket: Any = None
        #: Inbox entries received before this instant belong to a stopped process.
        self._started = app.core.clock.now()

    @property
    def files_dir(self) -> Path:
        return self.files.dir

    @property
    def bot_user_id(self) -> str | None:
        return self.auth.user_id

    @property
    def team_id(self) -> str | None:
        return self.auth.team_id

    # ================================================================== lifecycle
    async def start(self, *, sweep: bool = True) -> None:
        """Check the token (auth.test, once per process), bind the course's channels,
        finish what a stopped process left in the inbox, start the reminder sweeper."""
        answer = await self.auth.test()
        log.info("Slack: signed in as %s in team %s", answer.get("user"), self.team_id)
        if self.team_id and await self.bindings.course_of(self.team_id) is not None:
            await self.bind_channels()
        await self.recover_inbox()
        if sweep:
            self.sweeper.start(self.app.settings.sweep_seconds)
            await self.sweeper.sweep()

    async def bind_channels(self) -> list[str]:
        """List the workspace's channels and bind the course file's to their ids (at
        start; again only when asked). The problems, each also logged as an error."""
        return await self.channels.bind(self.team_id)

    async def start_http(
        self, host: str | None = None, port: int | None = None, path: str = "/slack/events"
    ) -> int:
        """Serve slash commands, events and interactivity on ``path`` at ``host``:``port``
        (``SLACK_HOST``, ``SLACK_PORT`` by default); return the port."""
        host = self.settings.host if host is None else host
        port = self.settings.port if port is None else port
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
        await self.files.close()

    async def _on_http(self, request: web.Request) -> web.Response:
        bolt_response = await self.bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def _on_health(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    # ================================================================== the inbox
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
                    await press(self, body, str(body.get("value", "")), replay=True)
                elif entry.kind == "modal":
                    await resubmit(self, body)
                else:
                    await run_command(self, body, replay=True)
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
                    await self.sender.dm_account(0, str(user), Reply(text=text))
            await inbox_done(self, entry.event_id)
        return len(entries)
