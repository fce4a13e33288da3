"""Starting the Slack adapter: HTTP mode (events at ``/slack/events``) when the bot
token and signing secret are set, Socket Mode when an app-level token is set."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from contextlib import suppress

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.app import start_app
from bot.settings import Settings, SlackSettings
from commands import offload

log = logging.getLogger("coursebot.slack")


def slack_mode(slack: SlackSettings) -> tuple[str | None, str | None]:
    """``("http" | "socket", None)``, or ``(None, what is missing)``."""
    if slack.bot_token is None:
        return None, (
            "SLACK_BOT_TOKEN (xoxb-...) is not set: copy the Bot User OAuth Token from "
            "the app's OAuth & Permissions page."
        )
    if slack.app_token is not None:
        if not slack.app_token.get_secret_value().startswith("xapp-"):
            return None, "SLACK_APP_TOKEN must be an app-level token starting with xapp-."
        return "socket", None
    if slack.signing_secret is None:
        return None, (
            "HTTP mode needs SLACK_SIGNING_SECRET (Basic Information → App Credentials), "
            "or set SLACK_APP_TOKEN (xapp-...) to use Socket Mode instead."
        )
    return "http", None


async def run_slack(settings: Settings, *, stop: asyncio.Event | None = None) -> int:
    """Run the bot on Slack until interrupted (SIGINT/SIGTERM, or ``stop`` set); return the
    exit status: 0 after a clean stop, 1 if Slack refused the token, 2 if a setting is
    missing."""
    mode, problem = slack_mode(settings.slack)
    if mode is None:
        print(f"Cannot start on Slack: {problem}", file=sys.stderr)
        return 2
    from bot.slack.bot import SlackBot
    from bot.slack.sender import slack_error

    app = await start_app(settings)
    offload.prestart()  # the solver's process, started while nobody waits on the bot
    bot = SlackBot(app)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await bot.start()
        except SlackApiError as exc:
            print(
                f"Slack refused SLACK_BOT_TOKEN ({slack_error(exc)}). Check the token "
                "and that the app is installed in the workspace.",
                file=sys.stderr,
            )
            return 1
        except (aiohttp.ClientError, OSError) as exc:
            print(
                f"Cannot reach Slack at {settings.slack.api_url} ({exc}). Check the network "
                "or SLACK_API_URL.",
                file=sys.stderr,
            )
            return 1
        if mode == "socket":
            assert settings.slack.app_token is not None
            await bot.start_socket_mode(settings.slack.app_token.get_secret_value())
            print("coursebot is on Slack (Socket Mode). Ctrl-C to stop.", file=sys.stderr)
        else:
            host = settings.slack.host
            try:
                port = await bot.start_http(host, settings.slack.port)
            except OSError as exc:
                print(
                    f"Cannot listen on {host}:{settings.slack.port} ({exc.strerror}): set "
                    "SLACK_PORT to a free port, or SLACK_HOST to an address of this machine.",
                    file=sys.stderr,
                )
                return 1
            print(
                f"coursebot is on Slack (HTTP mode): listening on {host}:{port}; Slack's "
                "request URL is your HTTPS address + /slack/events. Ctrl-C to stop.",
                file=sys.stderr,
            )
        await stop.wait()
        return 0
    finally:
        await bot.stop()
        await app.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
