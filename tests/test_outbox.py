"""The transactional outbox: what the bot owes is written with the change that causes
it, sent afterwards, counted per recipient, retried with backoff, kept when it keeps
failing, and never lost when the process is killed (real kill -9)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.scheduler import ReminderSweeper
from commands.clock import FixedClock
from commands.context import Caller, Request, Where
from commands.outbox import (
    FAILED,
    MAX_ATTEMPTS,
    PENDING,
    SENT,
    UNREACHABLE,
    Outgoing,
    RetryLater,
    Unreachable,
    enqueue,
)
from commands.replies import Reply, render_text
from db.models import Course, MessageRef, OutboxMessage, Person, Platform

ROOT = Path(__file__).resolve().parent.parent


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


async def say(app: App, user: str, line: str) -> Reply:
    return await app.core.handle_text(req(user), line)


class FakePlatform:
    """A platform at the outbox port: who does not accept DMs, who gets a "slow down"
    first, and whether channel posts fail; every accepted message is recorded."""

    platform = Platform.TERMINAL

    def __init__(self) -> None:
        self.closed: set[int] = set()
        self.slow_once: set[int] = set()
        self.posts_fail = False
        self.sent: list[tuple[str, str]] = []

    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        if self.posts_fail:
            raise ConnectionError("the platform answered 503")
        self.sent.append((channel, reply.text))
        return f"{channel}:{len(self.sent)}"

    async def edit(self, course_id: int, message_ref: str, reply: Reply) -> None:
        self.sent.append((f"edit {message_ref}", reply.text))

    async def dm(self, course_id: int, person_id: int, reply: Reply) -> str:
        if person_id in self.closed:
            raise Unreachable("does not accept DMs from the bot")
        if person_id in self.slow_once:
            self.slow_once.discard(person_id)
            raise RetryLater("the platform asked us to slow down", 30)
        self.sent.append((f"dm {person_id}", reply.text))
        return f"dm:{len(self.sent)}"

    async def dm_account(self, course_id: int, user_id: str, reply: Reply) -> str:
        self.sent.append((f"account {user_id}", reply.text))
        return f"dm:{len(self.sent)}"

    async def thread(
        self, course_id: int, channel: str, name: str, reply: Reply, person_ids: Sequence[int] = ()
    ) -> str:
        return await self.post(course_id, f"{channel} › {name}", reply)


async def ids_by_name(app: App, *names: str) -> list[int]:
    async with app.db.session() as session:
        rows = await session.execute(select(Person.name, Person.id).where(Person.name.in_(names)))
        found = {name: pid for name, pid in rows}
    return [found[n] for n in names]


async def statuses(app: App) -> Counter[str]:
    async with app.db.session() as session:
        rows = await session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        )
        return Counter({status: n for status, n in rows})


async def test_a_mass_send_reports_the_real_numbers(app: App) -> None:
    """`rankings remind` to 25 students: 2 have closed DMs, 1 is asked to wait; the
    reply counts what was delivered, names who was not and why; the wait is retried."""
    fake = FakePlatform()
    app.core.outbox = fake
    bob, carol, dan = await ids_by_name(app, "Bob Okafor", "Carol Martinez", "Deepak Raman")
    fake.closed = {bob, carol}
    fake.slow_once = {dan}

    reply = await say(app, "maya", "rankings remind")
    text = render_text(reply)
    assert "22 of 25 reminders delivered" in text
    assert "1 not sent yet" in text
    assert (
        "2 could not be reached: Bob Okafor (does not accept DMs from the bot); Carol Martinez"
        in text
    )
    assert len([s for s in fake.sent if s[0].startswith("dm ")]) == 22

    unreached = render_text(await say(app, "maya", "outbox unreached"))
    assert (
        "Bob Okafor" in unreached
        and "Carol Martinez" in unreached
        and "Deepak Raman" not in unreached
    )

    # The platform's wait is honoured: nothing is sent before it is over...
    assert isinstance(app.clock, FixedClock)
    dispatcher = app.core.dispatcher
    assert dispatcher is not None
    await dispatcher.deliver()
    assert (f"dm {dan}",) not in [s[:1] for s in fake.sent]
    # ...and then it is.
    app.clock.advance(timedelta(seconds=31))
    assert await dispatcher.deliver() == 1
    assert any(s[0] == f"dm {dan}" for s in fake.sent)
    assert await statuses(app) == Counter({SENT: 23, UNREACHABLE: 2})
    summary = render_text(await say(app, "maya", "outbox"))
    assert "23 of 25" in summary

    # Students cannot read who was not reached.
    assert (await say(app, "alice", "outbox unreached")).is_error


async def test_a_failing_post_is_retried_kept_and_sent_again_on_request(app: App) -> None:
    fake = FakePlatform()
    fake.posts_fail = True
    app.core.outbox = fake
    reply = await say(app, "gedas", 'announce "Class moves to SN011."')
    text = render_text(reply)
    assert not reply.is_error
    assert "Not delivered --\nthe post to #announcements (ConnectionError" in text
    assert "503" in text and "sent again automatically" in text
    assert await statuses(app) == Counter({PENDING: 1})

    dispatcher = app.core.dispatcher
    assert dispatcher is not None and isinstance(app.clock, FixedClock)
    for _ in range(MAX_ATTEMPTS + 2):  # backoff: each try waits longer, at most 5 minutes
        app.clock.advance(timedelta(minutes=5))
        await dispatcher.deliver()
    assert await statuses(app) == Counter({FAILED: 1})
    listing = render_text(await say(app, "maya", "outbox failed"))
    assert "#announcements" in listing and "Class moves to" in listing
    assert "ConnectionError" in listing

    fake.posts_fail = False
    assert "1 message will be sent again" in render_text(await say(app, "maya", "outbox retry all"))
    await dispatcher.deliver()
    assert len(fake.sent) == 1 and fake.sent[0][0] == "announcements"
    assert await statuses(app) == Counter({SENT: 1})
    bad = await say(app, "maya", "outbox retry x1")
    assert bad.is_error and "not a message id" in bad.text


async def test_a_refused_command_queues_nothing(app: App) -> None:
    fake = FakePlatform()
    app.core.outbox = fake
    reply = await say(app, "gedas", 'announce "Rankings are due." at 2020-01-01T09:00')
    assert reply.is_error and "in the past" in reply.text
    assert await statuses(app) == Counter()
    assert fake.sent == []


async def test_a_scheduled_reminder_is_queued_with_its_record(app: App) -> None:
    """The 24 h ranking reminders: the sweep writes the rows in the transaction that
    records them as due; if the platform is down, they wait and go out later, once."""
    fake = FakePlatform()
    fake.posts_fail = True
    sweeper = ReminderSweeper(app.db, fake, app.clock, hours_before=[24])
    assert isinstance(app.clock, FixedClock)
    app.clock.advance(timedelta(days=1, hours=14))  # Sun Aug 27, 00:00 EDT
    posts = await sweeper.sweep()
    assert posts, "a reminder was due"
    before = await statuses(app)
    assert before[PENDING] >= 1  # the channel post waits; nothing was lost
    assert await sweeper.sweep() == []  # and it is not queued twice
    fake.posts_fail = False
    app.clock.advance(timedelta(minutes=1))
    await sweeper.dispatcher.deliver()
    after = await statuses(app)
    assert after[PENDING] == 0 and after[SENT] == sum(before.values())
    assert sum(1 for c, _ in fake.sent if "announcements" in c) == 1
    # The private nudges of one pass are one mass send, counted in `outbox`.
    async with app.db.session() as session:
        batches = set(
            await session.scalars(
                select(OutboxMessage.batch).where(OutboxMessage.person_id.is_not(None))
            )
        )
    assert len(batches) == 1 and next(iter(batches)).startswith("reminders-2023")


async def test_edits_wait_for_the_post_they_edit(app: App) -> None:
    fake = FakePlatform()
    fake.posts_fail = True
    async with app.db.transaction() as session:
        course = await session.scalar(select(Course))
        assert course is not None
        enqueue(
            session,
            course.id,
            [
                Outgoing(Reply(text="poll: 0 votes"), channel="battles", remember="poll-1"),
                Outgoing(Reply(text="poll: 1 vote"), edit_key="poll-1"),
            ],
            app.clock.now(),
        )
    from commands.outbox import Dispatcher

    dispatcher = Dispatcher(app.db, fake, app.clock)
    await dispatcher.deliver()
    assert fake.sent == []  # the post failed, so the edit waits for it
    fake.posts_fail = False
    assert isinstance(app.clock, FixedClock)
    app.clock.advance(timedelta(seconds=10))
    await dispatcher.deliver()
    await dispatcher.deliver()
    assert [t for _, t in fake.sent] == ["poll: 0 votes", "poll: 1 vote"]
    assert fake.sent[1][0] == "edit battles:1"


# ------------------------------------------------------------------ kill -9


def _child(url: str, log: Path, die_at: str | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.outbox_child", url, str(log), *([die_at] if die_at else [])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _lines(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


@pytest.mark.parametrize("kills", [1, 3])
async def test_kill_9_while_sending_loses_nothing(
    app: App, db_url: str, tmp_path: Path, kills: int
) -> None:
    """60 queued messages; the dispatching process is killed with SIGKILL in the middle
    of sending (``kills`` times) and started again: every message arrives, and at most
    one per kill arrives twice (the instant between the platform's answer and the
    commit)."""
    texts = [f"message {i:02d}" for i in range(60)]
    async with app.db.transaction() as session:
        course = await session.scalar(select(Course))
        assert course is not None
        enqueue(
            session,
            course.id,
            [Outgoing(Reply(text=t), channel="general") for t in texts],
            app.clock.now(),
        )
    log = tmp_path / "delivered.txt"
    for k in range(kills):
        proc = _child(db_url, log)
        target = len(_lines(log)) + 8
        deadline = time.monotonic() + 60
        while len(_lines(log)) < target and proc.poll() is None:
            assert time.monotonic() < deadline, "the child sent nothing"
            await asyncio.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, k
    proc = _child(db_url, log)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"all sent" in out

    records = [json.loads(line) for line in _lines(log)]
    got = Counter(r["text"] for r in records if r["kind"] != "replay")
    assert set(got) == set(texts), "every message arrived"
    # A message the platform had accepted when the process died is sent again after
    # the restart (at most one per kill); the file platform keys it by the delivery
    # nonce, as Discord does, so it shows once.
    resent = sum(1 for r in records if r["kind"] == "replay")
    assert resent <= kills and sum(n - 1 for n in got.values()) == 0
    assert await statuses(app) == Counter({SENT: 60})


@pytest.mark.parametrize("die_at", [0, 4])
async def test_kill_9_between_the_platforms_answer_and_the_commit(
    app: App, db_url: str, tmp_path: Path, die_at: int
) -> None:
    """The worst instant: the platform has the message (a poll that later edits will
    name), the process dies before its row and its reference commit. After the restart
    the message is sent again under the same delivery key, so the platform keeps it
    once; its reference is recorded and the edit waiting for it reaches it."""
    texts = [f"message {i:02d}" for i in range(6)]
    async with app.db.transaction() as session:
        course = await session.scalar(select(Course))
        assert course is not None
        items = [
            Outgoing(Reply(text=t), channel="general", remember="poll" if i == die_at else None)
            for i, t in enumerate(texts)
        ]
        items.append(Outgoing(Reply(text="poll: 1 vote"), edit_key="poll"))
        enqueue(session, course.id, items, app.clock.now())
    log = tmp_path / "delivered.txt"
    proc = _child(db_url, log, die_at=texts[die_at])
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    posted = [json.loads(line) for line in _lines(log)]
    assert posted[-1]["text"] == texts[die_at]  # the platform has it...
    assert await statuses(app) == Counter({SENT: die_at, PENDING: 7 - die_at})  # ...not the db

    proc = _child(db_url, log)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"all sent" in out, err.decode()
    records = [json.loads(line) for line in _lines(log)]
    posts = Counter(r["text"] for r in records if r["kind"] == "post")
    assert posts == Counter(texts), "each message shows exactly once"
    replays = [r for r in records if r["kind"] == "replay"]
    assert len(replays) == 1 and replays[0]["key"] == posted[-1]["key"]
    edits = [r for r in records if r["kind"] == "edit"]
    assert [(e["where"], e["text"]) for e in edits] == [(posted[-1]["ref"], "poll: 1 vote")]
    async with app.db.session() as session:
        ref = await session.scalar(select(MessageRef.ref).where(MessageRef.key == "poll"))
    assert ref == posted[-1]["ref"]
    assert await statuses(app) == Counter({SENT: 7})


async def test_a_clock_that_jumps_back_is_logged_and_sends_nothing_twice(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakePlatform()
    sweeper = ReminderSweeper(app.db, fake, app.clock, hours_before=[24])
    assert isinstance(app.clock, FixedClock)
    app.clock.advance(timedelta(days=1, hours=14))  # the 24-hour rankings reminder is due
    await sweeper.run_due()
    sent = len(fake.sent)
    assert sent > 0
    app.clock.advance(timedelta(hours=-3))  # the clock jumps back
    with caplog.at_level("WARNING", logger="coursebot.scheduler"):
        await sweeper.run_due()
    assert "the clock went back" in caplog.text
    app.clock.advance(timedelta(hours=3))
    await sweeper.run_due()
    assert len(fake.sent) == sent  # what was sent stays sent: nothing twice
