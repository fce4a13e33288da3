"""The Slack app's listeners, one module per feature (as bolt apps are laid out):

- :mod:`.commands`: the slash command, ``@coursebot`` mentions, direct messages;
- :mod:`.forms`: the modals a typed line or a button opens (rankings, command forms);
- :mod:`.interactions`: buttons and submitted modals;
- :mod:`.events`: reactions (and events the bot only acknowledges).

Each listener is a plain async function of bolt's arguments (``ack``, ``body``,
``event``, ``action``, ``context``); the adapter and the caller come in ``context``
(:mod:`bot.slack.middleware`). :func:`register_listeners` wires them all.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import commands, events, interactions

log = logging.getLogger("coursebot.slack")


async def on_error(error: Exception, body: dict[str, Any]) -> None:
    log.error("Slack listener failed on a %s request", body.get("type"), exc_info=error)


def register_listeners(app: AsyncApp, *, command: str) -> None:
    """Every listener of the adapter, on ``app``; ``command`` is the slash command."""
    commands.register(app, command)
    interactions.register(app)
    events.register(app)
    app.error(on_error)
