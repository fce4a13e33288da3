"""Driving the desk in a real browser: headless Chromium (Debian's ``chromium``, through
Playwright) for the end-to-end tests and ``make screenshots``, which writes a PNG of
each page to docs/screenshots/::

    python -m bot.web.shots [--out docs/screenshots]

Playwright is a development dependency; nothing here is imported by the bot itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.app import App, start_app
from bot.settings import SAMPLE_COURSE, Settings
from bot.web.demo import DEMO_NOW, populate
from bot.web.server import WebServer
from commands.clock import FixedClock
from commands.context import Caller, Request
from db.models import Platform

#: Staff pages, then the student's own: (path, file name).
STAFF_PAGES = (
    ("/week", "week"),
    ("/rankings", "rankings"),
    ("/assignment", "assignment"),
    ("/critiques", "critiques"),
    ("/critiques/6", "critiques-paper"),
    ("/discussions", "discussions"),
    ("/discussions/6", "discussion"),
    ("/battles", "battles"),
    ("/battles/1", "battle"),
    ("/grades", "gradebook"),
    ("/gpu", "gpu"),
    ("/audit", "audit"),
)
STUDENT_PAGES = (("/me", "student"),)


def shrink(path: Path) -> None:
    """A screenshot as a palette PNG (a tenth of the size; text stays sharp)."""
    from PIL import Image

    with Image.open(path) as img:
        small = img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def chromium_path() -> str | None:
    """Debian's Chromium (``.ci/setup-browser.sh`` installs it), or COURSEBOT_CHROMIUM."""
    for candidate in (
        os.environ.get("COURSEBOT_CHROMIUM"),
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return "Chromium is not installed (.ci/setup-browser.sh: apt-get install chromium)"
    return None


async def sign_in_link(app: App, handle: str, workspace: str = "default") -> str:
    """The link the ``dashboard`` command answers a terminal user with."""
    reply = await app.core.handle(
        Request(Platform.TERMINAL, workspace, Caller(Platform.TERMINAL, handle, handle)),
        "dashboard",
        {},
    )
    if reply.is_error:
        raise RuntimeError(reply.text)
    return reply.text.strip()


@asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium (Playwright's ``Browser``)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        try:
            yield b
        finally:
            await b.close()


async def signed_in_page(b: Any, app: App, handle: str, **context: Any) -> Any:
    """A new browser page signed in as ``handle`` the way a person does: the chat link,
    then the confirmation button."""
    ctx = await b.new_context(**context)
    page = await ctx.new_page()
    await page.goto(await sign_in_link(app, handle))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/week" if handle in ("gedas", "maya") else "**/me")
    return page


async def screenshots(out: Path, *, extra_students: int = 0) -> list[Path]:
    """A PNG of every page of a demo semester (the sample course, populated)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp}/desk.db",
            COURSEBOT_DATA_DIR=Path(tmp),
            COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
            _env_file=None,
        )
        app = await start_app(settings, clock=FixedClock(DEMO_NOW))
        server = WebServer(app, "127.0.0.1:0")
        try:
            await populate(app, extra_students=extra_students)
            await server.start()
            async with browser() as b:
                for handle, pages in (("gedas", STAFF_PAGES), ("alice", STUDENT_PAGES)):
                    page = await signed_in_page(
                        b, app, handle, viewport={"width": 1280, "height": 900}
                    )
                    for path, name in pages:
                        await page.goto(server.url + path)
                        target = out / f"{name}.png"
                        await page.screenshot(path=str(target), full_page=True)
                        written.append(target)
                phone = await signed_in_page(
                    b, app, "alice", viewport={"width": 390, "height": 844}
                )
                await phone.screenshot(path=str(out / "student-phone.png"), full_page=True)
                written.append(out / "student-phone.png")
        finally:
            await server.stop()
            await app.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args(argv)
    why = missing_browser()
    if why:
        print(f"No screenshots: {why}.", file=sys.stderr)
        return 2
    for path in asyncio.run(screenshots(args.out)):
        shrink(path)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
