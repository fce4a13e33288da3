"""Paper battles on SQLite and Postgres: the justified, secret reaction poll, strict
timers that survive restarts, and 100 students voting at once."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bot.app import start_app
from bot.settings import Settings
from commands.battles import due_battle_posts
from commands.clock import FixedClock
from commands.context import Caller, Request, Where
from commands.replies import ReactionFate, Reply, render_text
from commands.timers import due_timer_posts
from db.models import (
    BattleVote,
    Course,
    Identity,
    Person,
    Platform,
    Role,
)
from tests.helpers import QUIET_GROUPS, publish_groups

BATTLE_DAY = datetime(2023, 9, 13, 18, 30, tzinfo=UTC)  # Wed 2:30 PM EDT
POLL = "battle.react:1"
A, B = "🅰️", "🅱️"


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


async def say(app, user: str, line: str) -> Reply:  # type: ignore[no-untyped-def]
    return await app.core.handle_text(req(user), line)


async def react(app, user: str, emoji: str) -> Reply:  # type: ignore[no-untyped-def]
    return await app.core.handle_action(req(user), POLL, emoji)


async def counted(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        rows = await s.execute(
            select(BattleVote.side, func.count())
            .where(BattleVote.justification.is_not(None))
            .group_by(BattleVote.side)
        )
        return dict(rows.all())


async def test_poll_votes_need_justifications_and_stay_secret(app, transcript) -> None:  # type: ignore[no-untyped-def]
    app.clock.at = BATTLE_DAY
    await publish_groups(app)
    shown = render_text(await say(app, "alice", "battle show 1"))
    assert "Bob Okafor, Carol Martinez, Deepak Raman" in shown and "poll is not open yet" in shown

    assert (await say(app, "alice", "battle open 1")).is_error  # staff only
    out = await transcript.say("battle open 1")
    assert "Battle 1: which paper should be accepted?" in out and "react with: 🅰️ 🅱️" in out
    again = await say(app, "gedas", "battle open 1")
    assert again.is_error and "already open" in again.text

    # A reaction alone is a pending vote: it does not count until justified.
    r = await react(app, "alice", A)
    assert "counts once you say why" in r.text
    form = r.buttons[0].form
    assert form is not None and form.command == "battle vote"
    assert await counted(app) == {}
    r = await app.core.handle_form(req("alice"), form.custom_id, {"justification": "too short"})
    assert r.is_error and "at least 20 characters" in r.text
    r = await app.core.handle_form(
        req("alice"), form.custom_id, {"justification": "Temporal shift is free at inference time."}
    )
    assert not r.is_error and "counts" in r.text
    assert await counted(app) == {"A": 1}

    # Changing sides drops a reason given for the other paper; the last vote counts.
    r = await react(app, "alice", B)
    assert "counts once you say why" in r.text
    assert await counted(app) == {}
    await say(app, "alice", 'battle vote 1 B "X3D scales to every compute budget."')
    assert await counted(app) == {"B": 1}

    # Who cannot vote, and what cannot be a vote.
    r = await react(app, "bob", A)
    assert "You present in battle 1" in r.text and r.reaction_fate is ReactionFate.REFUSE
    r = await react(app, "gedas", A)
    assert "do not vote" in r.text and r.reaction_fate is ReactionFate.REFUSE
    r = await react(app, "carol", "👍")
    assert "Only 🅰️ and 🅱️ count" in r.text and r.reaction_fate is ReactionFate.REFUSE
    r = await say(app, "zoe", 'battle vote 1 A "I am not registered, so no vote."')
    assert r.is_error and "register" in r.text
    r = await say(app, "hannah", 'battle vote 1 C "There is no side C in a battle."')
    assert r.is_error and "not a side" in r.text

    # Secrecy: students see only how many voted; staff see progress, not sides.
    shown = render_text(await say(app, "hannah", "battle show 1"))
    assert "1 votes so far" in shown and "A 1" not in shown and "B 1" not in shown
    assert (await say(app, "hannah", "battle status 1")).is_error
    assert (await say(app, "hannah", "battle export 1")).is_error
    status = render_text(await say(app, "maya", "battle status 1"))
    assert "1 of 19 eligible students have voted" in status and "X3D" not in status

    # On a secret ballot a reaction is only a way in (the bot removes it): taking one
    # off changes nothing; `battle withdraw` takes the vote back.
    await say(app, "hannah", 'battle vote 1 A "Shift modules are elegant and cheap."')
    r = await react(app, "hannah", "-" + A)
    assert r.silent and await counted(app) == {"A": 1, "B": 1}
    r = await say(app, "hannah", "battle withdraw 1")
    assert "withdrawn" in r.text
    assert await counted(app) == {"B": 1}
    await say(app, "hannah", 'battle vote 1 A "Shift modules are elegant and cheap."')

    out = await transcript.say("battle close 1")
    assert "It's a tie, 1–1." in out and "2 of 19 eligible students voted (11%)" in out
    assert "battle-1-results.png" in out
    r = await say(app, "jiawen", 'battle vote 1 A "Too late for this, sadly."')
    assert r.is_error and "closed" in r.text
    r = await react(app, "jiawen", A)
    assert "closed" in r.text and r.reaction_fate is ReactionFate.REFUSE
    assert "closed, a tie: A 1, B 1" in render_text(await say(app, "jiawen", "battle show 1"))
    r = await say(app, "gedas", "battle close 1")
    assert r.is_error and "already closed" in r.text

    export = await say(app, "maya", "battle export 1")
    rows = list(csv.DictReader(io.StringIO(export.files[0].data.decode())))
    assert {(r["Student"], r["Side"], r["Counted"]) for r in rows} == {
        ("Alice Chen", "B", "yes"),
        ("Hannah Kowalski", "A", "yes"),
    }
    assert rows[0]["Justification"] == "X3D scales to every compute budget."


async def test_timer_warnings_overrun_and_restart(settings: Settings) -> None:
    clock = FixedClock(BATTLE_DAY)
    app = await start_app(settings, clock=clock)
    await publish_groups(app, QUIET_GROUPS)
    posts: list[str] = []

    async def tick() -> None:
        async with app.db.transaction() as s:
            posts.extend(o.reply.text for _, o in await due_timer_posts(s, clock.now()))

    try:
        r = await say(app, "maya", "battle timer 1 a")
        assert "20:00 starts now" in r.text
        assert (await say(app, "alice", "battle timer 1 b")).is_error
        clock.advance(timedelta(minutes=14, seconds=59))
        await tick()
        assert posts == []
        clock.advance(timedelta(seconds=1))
        await tick()
        await tick()  # never twice
        assert posts == ["⏳ Battle 1, side A presents: 5 minutes left."]
    finally:
        await app.close()

    # The bot restarts; the timer keeps its time.
    app = await start_app(settings, clock=clock)
    try:
        clock.advance(timedelta(minutes=4))
        await tick()
        clock.advance(timedelta(minutes=1))
        await tick()
        clock.advance(timedelta(seconds=30))
        await tick()
        clock.advance(timedelta(seconds=30))
        await tick()
        assert posts[1:] == [
            "⏳ Battle 1, side A presents: 1 minute left.",
            "⏰ Battle 1, side A presents: time's up!",
            "🔴 Battle 1, side A presents: over time +0:30",
            "🔴 Battle 1, side A presents: over time +1:00",
        ]
        r = await say(app, "maya", "battle timer 1 reasons")  # the next phase replaces it
        assert "3 reasons. 5:00 starts now" in r.text
        clock.advance(timedelta(minutes=6))
        await tick()
        assert posts[-2:] == [
            "⏰ Battle 1, 3 reasons: time's up!",
            "🔴 Battle 1, 3 reasons: over time +1:00",
        ]  # a missed warning is skipped; of missed overrun ticks only the latest goes out
        r = await say(app, "maya", "battle timer 1 stop")
        assert "stopped after 6:00 (of 5:00)" in r.text
        clock.advance(timedelta(minutes=5))
        n = len(posts)
        await tick()
        assert len(posts) == n
    finally:
        await app.close()


async def test_hundred_students_vote_within_a_second(app, backend) -> None:  # type: ignore[no-untyped-def]
    """Each of 100 students reacts and sends a justification at the same moment: no
    vote is lost and none counts twice."""
    app.clock.at = BATTLE_DAY
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        for i in range(100):
            p = Person(
                course_id=course.id, name=f"Voter {i:03d}", email=f"v{i}@unc.edu", role=Role.STUDENT
            )
            s.add(p)
            await s.flush()
            s.add(
                Identity(
                    course_id=course.id,
                    person_id=p.id,
                    platform=Platform.TERMINAL,
                    user_id=f"v{i}",
                    linked_at=BATTLE_DAY,
                )
            )
    await publish_groups(app, QUIET_GROUPS)
    await say(app, "gedas", "battle open 1")

    async def one(i: int) -> list[Reply]:
        side = A if i % 3 else B
        letter = "A" if i % 3 else "B"
        return await asyncio.gather(
            react(app, f"v{i}", side),
            say(
                app,
                f"v{i}",
                f'battle vote 1 {letter} "Voter {i} finds this paper more convincing."',
            ),
        )

    replies = [r for pair in await asyncio.gather(*(one(i) for i in range(100))) for r in pair]
    errors = [r.text for r in replies if r.is_error]
    assert errors == []
    async with app.db.session() as s:
        rows = await s.scalar(select(func.count()).select_from(BattleVote))
    assert rows == 100
    assert await counted(app) == {"A": 66, "B": 34}


async def test_restart_keeps_votes_and_buttons_still_work(settings: Settings) -> None:
    clock = FixedClock(BATTLE_DAY)
    app = await start_app(settings, clock=clock)
    try:
        await publish_groups(app, QUIET_GROUPS)
        await say(app, "gedas", "battle open 1 minutes=10")
        await say(app, "alice", 'battle vote 1 A "Shifting channels is a clever trick."')
        pending = await react(app, "hannah", B)
        form_id = pending.buttons[0].custom_id
    finally:
        await app.close()
    app = await start_app(settings, clock=clock)  # restart
    try:
        assert await counted(app) == {"A": 1}
        r = await app.core.handle_form(
            req("hannah"), form_id, {"justification": "X3D's search is principled."}
        )
        assert not r.is_error
        r = await react(app, "ibrahim", A)  # not registered on the terminal: refused clearly
        assert "register" in r.text
        await say(app, "jiawen", 'battle vote 1 A "Fast and simple beats big."')
        assert await counted(app) == {"A": 2, "B": 1}
        clock.advance(timedelta(minutes=10))  # the poll closes by itself
        async with app.db.transaction() as s:
            posts = await due_battle_posts(s, clock.now())
        texts = [o.reply.text for _, o in posts]
        assert any("The winner is 🅰️ #9 TSM" in t and "2–1" in t for t in texts)
        assert any(o.edit_key == "poll:1" for _, o in posts)
    finally:
        await app.close()
