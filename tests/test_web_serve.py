"""Serving the desk with the bot: ``start_app`` serves it when the settings name an
address (``coursebot run`` and the interactive shell do, scripted shells do not), the
``dashboard`` command links to it, a port already taken leaves the bot running, and
closing the app stops it."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from bot.app import start_app
from bot.cli import _serve_web
from bot.settings import Settings
from bot.web.server import DEFAULT_ADDRESS, parse_address
from commands.clock import FixedClock
from tests.conftest import Transcript


@pytest.fixture
def backend() -> str:
    return "sqlite"


async def test_the_bot_serves_the_desk_and_the_shell_links_to_it(
    settings: Settings, clock: FixedClock, tmp_path: object
) -> None:
    settings.web_address = "127.0.0.1:0"
    app = await start_app(settings, clock=clock)
    try:
        assert app.web is not None and app.core.config["web_url"] == app.web.url
        async with aiohttp.ClientSession() as http, http.get(app.web.url + "/") as r:
            assert r.status == 200 and "dashboard" in await r.text()
        from bot.shell import Shell

        lines: list[str] = []
        t = Transcript(Shell(app, workspace="default", speaker="gedas", out=lines.append), lines)
        out = await t.say("dashboard")
        assert f"{app.web.url}/signin?token=" in out and "only you can see this" in out
        out = await t.say(":as nobody")
        out = await t.say("dashboard")
        assert "is for registered students" in out
        url = app.web.url
    finally:
        await app.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(url + "/"):
            pass


async def test_a_taken_port_leaves_the_bot_running(
    settings: Settings, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings.web_address = f"127.0.0.1:{taken.getsockname()[1]}"
        app = await start_app(settings, clock=clock)
        try:
            assert app.web is None and "web_url" not in app.core.config
            assert "the course desk is not served" in caplog.text
        finally:
            await app.close()


def test_who_serves_it_and_where(settings: Settings) -> None:
    _serve_web(settings, scripted=True)
    assert settings.web_address is None  # a scripted shell (tests, pipes) serves nothing
    _serve_web(settings, scripted=False)
    assert settings.web_address == DEFAULT_ADDRESS == "127.0.0.1:8080"
    settings.web_address = "off"
    _serve_web(settings, scripted=False)
    assert settings.web_address == "off"
    assert parse_address("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ValueError, match="not host:port"):
        parse_address("localhost")
