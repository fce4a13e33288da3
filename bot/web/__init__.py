"""The instructor's desk (issue #23): a web view the bot serves on its own event loop,
over the same database and the same command core (see docs/dashboard.md).

``start_app`` calls :func:`start_web` when the settings name an address (``coursebot
run`` and the interactive shell set it); tests and the benchmark use
:func:`build_web_app` directly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.web.server import DEFAULT_ADDRESS, WebServer, build_web_app, parse_address

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("coursebot.web")

__all__ = ["DEFAULT_ADDRESS", "WebServer", "build_web_app", "parse_address", "start_web"]


async def start_web(app: App, address: str, public_url: str | None = None) -> WebServer | None:
    """Serve the desk on ``address``; None (logged, the bot runs on) when it cannot
    bind there, e.g. another program holds the port."""
    server = WebServer(app, address, public_url)
    try:
        await server.start()
    except OSError as exc:
        log.warning("the course desk is not served: cannot listen on %s (%s)", address, exc)
        return None
    return server
