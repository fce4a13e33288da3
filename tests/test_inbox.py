"""Acknowledged means done or known: slash commands Slack was told "got it" for are
kept in the inbox before the acknowledgement; the bot process is killed with SIGKILL in
the middle of a burst, and after the restart every acknowledged command has been
answered (run again, or told it went through), none in silence."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.settings import Settings
from bot.slack.bot import SlackBot
from db.models import InboxEntry, Platform, ProcessedEvent
from tests.slack_fakes import FORM, FakeSlack, Signer, command_body
from tests.test_slack import SECRET, bind_workspace, slack_settings

ROOT = Path(__file__).resolve().parent.parent
BURST = 60


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(team_id="T1")
    await fake.start()
    yield fake
    await fake.stop()


def _bot(url: str, fake: FakeSlack, data: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.slack_child", url, fake.api_url, str(data)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def _port(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 90)
    assert line.strip().isdigit(), (line, proc.stderr.read() if proc.stderr else "")
    return int(line)


async def test_a_burst_cut_by_kill_9_is_answered_after_the_restart(
    app: App, db_url: str, fake: FakeSlack, tmp_path: Path
) -> None:
    await bind_workspace(app)
    proc = _bot(db_url, fake, tmp_path / "data")
    try:
        port = await _port(proc)
        url = f"http://127.0.0.1:{port}/slack/events"
        signer = Signer(SECRET)
        lines = ["whoami", "help", "rank show", "help papers"]  # answered privately
        sent: list[str] = []

        async def one(http: aiohttp.ClientSession, i: int) -> None:
            response_url = fake.response_url()
            body = command_body(
                lines[i % len(lines)],
                user="UALICE",
                user_name="alice",
                response_url=response_url,
                trigger_id=f"burst-{i}-{time.monotonic_ns()}",
            )
            async with http.post(url, data=body, headers=signer.headers(body, FORM)) as resp:
                assert resp.status == 200
            sent.append(response_url)

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(one(http, i) for i in range(BURST)))
        os.kill(proc.pid, signal.SIGKILL)  # every command acknowledged; many not yet run
        proc.wait()
        answered_before = {r["_url"] for r in fake.responses}
        async with app.db.session() as session:
            cut = await session.scalar(
                select(func.count()).select_from(InboxEntry).where(InboxEntry.done_at.is_(None))
            )
        assert len(sent) == BURST
        assert cut, "the kill came after every command had finished: nothing was tested"

        proc = _bot(db_url, fake, tmp_path / "data")
        await _port(proc)
        deadline = time.monotonic() + 60
        while {r["_url"] for r in fake.responses} < set(sent):
            if time.monotonic() > deadline:
                proc.kill()
                _, err = proc.communicate()
                missing = set(sent) - {r["_url"] for r in fake.responses}
                raise AssertionError(f"{len(missing)} unanswered; the bot said:\n{err[-3000:]}")
            await asyncio.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Every acknowledged command got its answer, some of them after the restart: run
    # again, or (if it had committed just before the kill) told that it went through.
    assert {r["_url"] for r in fake.responses} >= set(sent)
    assert len(set(sent) - answered_before) >= 1
    texts = [str(r.get("text", "")) for r in fake.responses]
    assert not any("error id" in t for t in texts)
    async with app.db.session() as session:
        left = await session.scalar(
            select(func.count()).select_from(InboxEntry).where(InboxEntry.done_at.is_(None))
        )
    assert left == 0


async def test_recovery_presses_buttons_again_and_tells_about_old_ones(
    app: App, fake: FakeSlack, settings: Settings
) -> None:
    """Entries a stopped process left: a fresh button press is pressed again (its answer
    goes where the presser is); one that had committed is answered "went through"; one
    too old for its response URL is answered by DM, truthfully, either way."""
    await bind_workspace(app)
    now = app.clock.now()
    url_fresh, url_done = fake.response_url(), fake.response_url()

    def button(trigger: str, response_url: str) -> dict[str, object]:
        return {
            "user": {"id": "UALICE", "username": "alice", "team_id": "T1"},
            "team": {"id": "T1"},
            "channel": {"id": "DUALICE"},
            "container": {},
            "response_url": response_url,
            "trigger_id": trigger,
            "value": "papers.page:all:::2",
        }

    async with app.db.transaction() as session:
        for trigger, url, age in (("b-fresh", url_fresh, 1), ("b-done", url_done, 2)):
            session.add(
                InboxEntry(
                    platform=Platform.SLACK,
                    event_id=f"trigger:{trigger}",
                    kind="button",
                    payload=button(trigger, url),
                    received_at=now - timedelta(minutes=age),
                )
            )
        session.add(  # this one had committed before the crash
            ProcessedEvent(platform=Platform.SLACK, event_id="trigger:b-done", created_at=now)
        )
        session.add(
            InboxEntry(
                platform=Platform.SLACK,
                event_id="trigger:c-old",
                kind="command",
                payload={"user_id": "UBOB", "text": "whoami", "trigger_id": "c-old"},
                received_at=now - timedelta(hours=1),
            )
        )
    bot = SlackBot(
        dataclasses.replace(app, settings=slack_settings(settings, fake)), post_interval=0.0
    )
    await bot.start(sweep=False)  # recovers the inbox
    try:
        answered = {r["_url"]: r for r in fake.responses}
        assert "(page 2 of 3)" in answered[url_fresh]["text"]  # pressed again, answered
        assert "went through just before the bot restarted" in answered[url_done]["text"]
        dm = [c for c in fake.of("chat.postMessage") if c["channel"] == "DUBOB"]
        assert len(dm) == 1 and "was not run" in dm[0]["text"] and "/course whoami" in dm[0]["text"]
        async with app.db.session() as session:
            left = await session.scalar(
                select(func.count()).select_from(InboxEntry).where(InboxEntry.done_at.is_(None))
            )
        assert left == 0
    finally:
        await bot.stop()
