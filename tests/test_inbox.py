"""Acknowledged means done or known: slash commands, button presses and form (modal)
submissions Slack was told "got it" for are kept in the inbox before the
acknowledgement; the bot process is killed with SIGKILL in the middle of a burst, and
after the restart every acknowledged command has been answered (run again, or told it
went through), none in silence, and none acted twice. (Discord: test_inbox_discord.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.settings import Settings
from bot.slack import blocks as bk
from bot.slack.bot import SlackBot
from db.models import Discussion, DiscussionQuestion, InboxEntry, Paper, Platform, ProcessedEvent
from tests.slack_fakes import FORM, FakeSlack, Signer, command_body, interaction_body
from tests.test_slack import SECRET, bind_workspace, slack_settings

ROOT = Path(__file__).resolve().parent.parent
BURST = 60
#: Seconds the fake holds back the answers to half of a burst, so that the kill (right
#: after the last acknowledgement) surely comes between their commit and their answer.
HOLD = 3.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(team_id="T1")
    await fake.start()
    yield fake
    await fake.stop()


#: Runs tests/slack_child.py with the bot's view-submission ack budget set first.
_WITH_BUDGET = (
    "import runpy, sys; import bot.slack.listeners.interactions as b; "
    "b.ACK_BUDGET = float(sys.argv[1]); "
    "sys.argv = ['slack_child', *sys.argv[2:]]; "
    "runpy.run_module('tests.slack_child', run_name='__main__')"
)


def _bot(
    url: str, fake: FakeSlack, data: Path, *, ack_budget: float | None = None
) -> subprocess.Popen[str]:
    args = [url, fake.api_url, str(data)]
    if ack_budget is None:
        command = [sys.executable, "-m", "tests.slack_child", *args]
    else:
        command = [sys.executable, "-c", _WITH_BUDGET, str(ack_budget), *args]
    return subprocess.Popen(
        command,
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
            if i % 2 == 0:  # its answer waits: the kill comes between commit and answer
                fake.hold[response_url] = HOLD
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
        n_before = len(fake.responses)
        async with app.db.session() as session:
            cut = await session.scalar(
                select(func.count()).select_from(InboxEntry).where(InboxEntry.done_at.is_(None))
            )
        assert len(sent) == BURST
        assert cut, "the kill came after every command had finished: nothing was tested"

        fake.hold.clear()
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
    # Every acknowledged command got its answer, and each one the kill cut off got one
    # after the restart: run again, or (if it had committed and maybe even answered
    # just before the kill) told that it went through.
    assert {r["_url"] for r in fake.responses} >= set(sent)
    assert len(fake.responses) - n_before >= cut
    texts = [str(r.get("text", "")) for r in fake.responses]
    assert not any("error id" in t for t in texts)
    rows = await _entries(app)
    assert len(rows) == BURST and all(r.done_at is not None for r in rows)
    assert not any("response_url" in r.payload for r in rows)  # forgotten once done


async def _entries(app: App) -> list[InboxEntry]:
    async with app.db.session() as session:
        return list(await session.scalars(select(InboxEntry).order_by(InboxEntry.id)))


async def _questions(app: App, paper: int = 5) -> list[str]:
    async with app.db.session() as session:
        return list(
            await session.scalars(
                select(DiscussionQuestion.text)
                .join(Discussion, Discussion.id == DiscussionQuestion.discussion_id)
                .join(Paper, Paper.id == Discussion.paper_id)
                .where(Paper.number == paper)
            )
        )


def _form_submission(line: str, text: str, channel: str, trigger: str) -> dict[str, Any]:
    """The instructor submits the form a typed ``/course <line>`` opened (a modal with
    one long text field), its answer going to ``channel``."""
    return {
        "type": "view_submission",
        "team": {"id": "T1"},
        "user": {"id": "UGEDAS", "username": "gedas", "team_id": "T1"},
        "trigger_id": trigger,
        "view": {
            "type": "modal",
            "id": f"V-{trigger}",
            "hash": "h",
            "callback_id": bk.COMMAND_CALLBACK,
            "private_metadata": json.dumps({"line": line, "channel": channel, "thread": None}),
            "blocks": [{"type": "input", "block_id": "f.text"}],
            "state": {"values": {"f.text": {"value": {"type": "plain_text_input", "value": text}}}},
        },
    }


FORMS = 24


async def test_form_submissions_cut_by_kill_9_are_run_once_after_the_restart(
    app: App, db_url: str, fake: FakeSlack, tmp_path: Path
) -> None:
    """24 submissions of the `discussion add` form, each a different question answered
    in its own channel, acknowledged (the modal closed) before they ran; the bot is
    killed with SIGKILL right after the last acknowledgement. After the restart every
    submission has its answer, and every question is in the list exactly once."""
    await bind_workspace(app)
    proc = _bot(db_url, fake, tmp_path / "data", ack_budget=0.0)  # ack first, then run
    asked = {f"CQ{i:05d}": f"Question {i}: does it hold on audio?" for i in range(FORMS)}
    for channel in list(asked)[::2]:  # these answers wait: killed between commit and answer
        fake.hold[channel] = HOLD
    try:
        port = await _port(proc)
        url = f"http://127.0.0.1:{port}/slack/events"
        signer = Signer(SECRET)

        async def submit(http: aiohttp.ClientSession, channel: str, text: str) -> None:
            payload = _form_submission("discussion add 5", text, channel, f"f-{channel}")
            body = interaction_body(payload)
            async with http.post(url, data=body, headers=signer.headers(body, FORM)) as resp:
                assert resp.status == 200 and await resp.text() == ""  # the modal closes

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(submit(http, c, t) for c, t in asked.items()))
        os.kill(proc.pid, signal.SIGKILL)  # every submission acknowledged; many not yet run
        proc.wait()
        rows = await _entries(app)
        assert len(rows) == FORMS and {r.kind for r in rows} == {"modal"}
        cut = [r for r in rows if r.done_at is None]
        assert cut, "the kill came after every submission had finished: nothing was tested"

        def answered() -> set[str]:
            return {
                str(c["channel"])
                for c in fake.of("chat.postEphemeral")
                if c["user"] == "UGEDAS" and str(c["channel"]).startswith("CQ")
            }

        fake.hold.clear()
        proc = _bot(db_url, fake, tmp_path / "data")
        await _port(proc)
        deadline = time.monotonic() + 60
        while answered() < set(asked):
            if time.monotonic() > deadline:
                proc.kill()
                _, err = proc.communicate()
                missing = set(asked) - answered()
                raise AssertionError(f"{len(missing)} unanswered; the bot said:\n{err[-3000:]}")
            await asyncio.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    texts = [str(c.get("text", "")) for c in fake.of("chat.postEphemeral")]
    assert not any("error id" in t or "went wrong" in t for t in texts)
    assert sorted(await _questions(app)) == sorted(asked.values())  # each exactly once
    assert all(r.done_at is not None for r in await _entries(app))


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


async def test_recovery_submits_forms_again_and_tells_about_old_ones(
    app: App, fake: FakeSlack, settings: Settings
) -> None:
    """Form submissions a stopped process kept: a fresh one is submitted again (its
    answer goes where the form was opened), one that had committed is answered "went
    through", and an old one is told by DM which form was not saved and what to do."""
    await bind_workspace(app)
    now = app.clock.now()

    def kept(trigger: str, channel: str, text: str, age: timedelta) -> InboxEntry:
        body = _form_submission("discussion add 5", text, channel, trigger)
        view = dict(body["view"])
        del view["blocks"], view["type"]  # what the bot keeps of a view
        return InboxEntry(
            platform=Platform.SLACK,
            event_id=f"trigger:{trigger}",
            kind="modal",
            payload={
                "user": body["user"],
                "team": body["team"],
                "trigger_id": trigger,
                "view": view,
                "what": "form for `/course discussion add 5`",
                "again": "Please type `/course discussion add 5` again and fill in the form.",
            },
            received_at=now - age,
        )

    async with app.db.transaction() as session:
        session.add(kept("m-fresh", "CFRESH", "Fresh question?", timedelta(minutes=1)))
        session.add(kept("m-done", "CDONE", "Done question?", timedelta(minutes=2)))
        session.add(kept("m-old", "COLD", "Old question?", timedelta(hours=1)))
        session.add(
            ProcessedEvent(platform=Platform.SLACK, event_id="trigger:m-done", created_at=now)
        )
    bot = SlackBot(
        dataclasses.replace(app, settings=slack_settings(settings, fake)), post_interval=0.0
    )
    await bot.start(sweep=False)  # recovers the inbox
    try:
        answers = {c["channel"]: str(c["text"]) for c in fake.of("chat.postEphemeral")}
        assert "Added question 1." in answers["CFRESH"]
        assert "went through just before the bot restarted" in answers["CDONE"]
        assert "COLD" not in answers
        (dm,) = [c for c in fake.of("chat.postMessage") if c["channel"] == "DUGEDAS"]
        assert "Your form for `/course discussion add 5` was not run" in dm["text"]
        assert "type `/course discussion add 5` again and fill in the form" in dm["text"]
        assert await _questions(app) == ["Fresh question?"]
        assert all(r.done_at is not None for r in await _entries(app))
    finally:
        await bot.stop()
