"""One strict timer engine (commands.timers) for talks, agenda items and battle phases,
on SQLite and Postgres: slot lengths, warnings, time's up, overrun, stop, a battle's
format from the course file, the engine's ticks as a property, and migration 0018
(old battle timers keep running)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from bot.app import App
from bot.settings import SAMPLE_COURSE
from commands.context import Caller, Request, Where
from commands.coursefile import import_course, parse_course_file
from commands.due import Scope, due_registry
from commands.replies import Reply, render_text
from commands.timers import (
    MAX_OVERRUN,
    TimerRules,
    due_timer_posts,
    next_timer_post,
    timer_ticks,
)
from db.migrate import alembic_config, upgrade
from db.models import Base, BattleTimer, Platform
from tests.conftest import PG_ADMIN_URL, SAMPLE_NOW, throwaway_pg_database
from tests.helpers import QUIET_GROUPS, publish_groups

#: Wed Aug 30 2023, 2:30 PM EDT: the class of #5 SlowFast (its agenda: the talk, 45
#: minutes, then a 30-minute breakout discussion).
SLOWFAST_DAY = datetime(2023, 8, 30, 18, 30, tzinfo=UTC)
BATTLE_DAY = datetime(2023, 9, 13, 18, 30, tzinfo=UTC)


def req(user: str, channel: str = "general") -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where(channel)
    )


async def say(app: App, user: str, line: str, channel: str = "general") -> Reply:
    return await app.core.handle_text(req(user, channel), line)


async def ticks(app: App) -> list[str]:
    async with app.db.transaction() as s:
        return [
            f"#{o.channel}: {o.reply.text}" for _, o in await due_timer_posts(s, app.clock.now())
        ]


# ------------------------------------------------------------------------------ talks
async def test_a_talk_is_timed_from_its_slot_with_warnings_and_overrun(app: App) -> None:
    app.clock.at = SLOWFAST_DAY  # type: ignore[attr-defined]
    assert "timers" in {p.name for p in due_registry}
    refused = await say(app, "alice", "talk timer 5")
    assert refused.is_error  # staff only
    r = await say(app, "maya", "talk timer 5")
    assert not r.is_error, r.text
    assert r.text.startswith("⏱ Talk #5 SlowFast Networks for Video Recognition. 45:00 starts now")
    assert "warnings at 5 min, 1 min" in r.text

    app.clock.advance(timedelta(minutes=39, seconds=59))  # type: ignore[attr-defined]
    assert await ticks(app) == []
    app.clock.advance(timedelta(seconds=1))  # type: ignore[attr-defined]
    assert await ticks(app) == [
        "#general: ⏳ Talk #5 SlowFast Networks for Video Recognition: 5 minutes left."
    ]
    assert await ticks(app) == []  # never twice
    app.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    # The 1-minute warning is 4 minutes stale: skipped; time's up goes out.
    assert await ticks(app) == [
        "#general: ⏰ Talk #5 SlowFast Networks for Video Recognition: time's up!"
    ]
    app.clock.advance(timedelta(minutes=2))  # type: ignore[attr-defined]
    # Talks count the overrun every minute (talk_rules); of missed ticks only the latest.
    assert await ticks(app) == [
        "#general: 🔴 Talk #5 SlowFast Networks for Video Recognition: over time +2:00"
    ]
    shown = render_text(await say(app, "maya", "timers"))
    assert "Talk #5" in shown and "+2:00 over" in shown
    r = await say(app, "maya", "talk timer 5 stop")
    assert (
        r.text
        == "⏹ Talk #5 SlowFast Networks for Video Recognition: stopped after 47:00 (of 45:00)."
    )
    app.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    assert await ticks(app) == []
    again = await say(app, "maya", "talk timer 5 stop")
    assert again.is_error and "No timer is running" in again.text


async def test_slot_lengths_minutes_and_what_cannot_be_timed(app: App) -> None:
    app.clock.at = SAMPLE_NOW  # type: ignore[attr-defined]
    r = await say(app, "gedas", "talk timer 7")  # a 30-minute paper, no agenda that day
    assert "Talk #7" in r.text and "30:00 starts now" in r.text
    r = await say(app, "gedas", "talk timer 7 minutes=25")  # replaces the running one
    assert "25:00 starts now" in r.text
    async with app.db.session() as s:
        running = list(await s.scalars(select(BattleTimer).where(BattleTimer.stopped_at.is_(None))))
    assert [(t.subject, t.seconds) for t in running] == [("paper:7", 25 * 60)]

    battle = await say(app, "gedas", "talk timer 9")
    assert battle.is_error and "battle timer" in battle.text
    instructor = await say(app, "gedas", "talk timer 1")
    assert instructor.is_error and "minutes=60" in instructor.text
    r = await say(app, "gedas", "talk timer 1 minutes=40")
    assert not r.is_error and "40:00 starts now" in r.text
    missing = await say(app, "gedas", "talk timer 99")
    assert missing.is_error and "no paper #99" in missing.text


# ---------------------------------------------------------------------------- agendas
async def test_agenda_items_are_timed_by_the_same_engine(app: App) -> None:
    app.clock.at = SLOWFAST_DAY  # type: ignore[attr-defined]
    shown = render_text(await say(app, "alice", "agenda"))
    assert "Wed Aug 30, 2:30 PM–3:45 PM" in shown
    assert "2:30 PM–3:15 PM #5 SlowFast Networks for Video Recognition (talk, 45 min)" in shown
    assert "3:15 PM–3:45 PM Breakout discussion of SlowFast (discussion, 30 min)" in shown
    assert "agenda timer" not in shown  # the hint is for staff

    r = await say(app, "maya", "agenda timer 1")  # the talk: the same timer as `talk timer 5`
    assert "Talk #5" in r.text and "45:00 starts now" in r.text
    r = await say(app, "maya", "agenda timer 2", channel="discussions")
    assert r.text.startswith("⏱ Breakout discussion of SlowFast. 30:00 starts now")
    stopped = await say(app, "maya", "talk timer 5 stop")
    assert "stopped after 0:00 (of 45:00)" in stopped.text
    app.clock.advance(timedelta(minutes=25))  # type: ignore[attr-defined]
    assert await ticks(app) == ["#discussions: ⏳ Breakout discussion of SlowFast: 5 minutes left."]
    assert "stopped after 25:00 (of 30:00)" in (await say(app, "maya", "agenda timer 2 stop")).text

    too_far = await say(app, "maya", "agenda timer 3")
    assert too_far.is_error and "has 2 items" in too_far.text
    battle = await say(app, "maya", "agenda timer 1 date=2023-09-13")
    assert battle.is_error and "battle timer 1 <a | b | reasons | rebuttal>" in battle.text
    vote = await say(app, "maya", "agenda timer 2 date=2023-09-13")
    assert "Vote with justifications. 10:00 starts now" in vote.text
    none = await say(app, "maya", "agenda timer 1 date=2023-09-11")
    assert none.is_error and "no timed agenda" in none.text
    off = await say(app, "alice", "agenda 2023-09-04")  # Labor Day
    assert off.is_error and "no class on Mon Sep 4" in off.text
    plain = render_text(await say(app, "alice", "agenda 2023-09-11"))
    assert "No timed agenda" in plain and "#7 A Closer Look" in plain


# ---------------------------------------------------------------------------- battles
async def test_a_battle_format_comes_from_the_course_file(app: App) -> None:
    """Phases in `battle_rules.phases` (or a battle's own) replace a, b, reasons,
    rebuttal; a battle id may be `B1`, and `battle timer 1` still names it."""
    text = SAMPLE_COURSE.read_text(encoding="utf-8")
    text = text.replace(
        "justification_min: 20, ballot: secret}",
        "justification_min: 20, ballot: secret,\n"
        "                 phases: [{key: opening, title: openings, minutes: 3},\n"
        "                          {key: a, title: side A presents, minutes: 15, side: A},\n"
        "                          {key: b, title: side B presents, minutes: 15, side: B},\n"
        "                          {key: qa, title: questions from the floor, minutes: 10}]}",
    )
    text = text.replace("  - id: 1\n    a: 9 ", "  - id: B1\n    a: 9 ")
    text = text.replace(
        "  - id: 2\n    a: 11      # TimeSformer\n    b: 12      # ViViT\n    date: 2023-09-18\n",
        "  - id: 2\n    a: 11      # TimeSformer\n    b: 12      # ViViT\n    date: 2023-09-18\n"
        "    phases: [{key: all, title: both sides, minutes: 30}]\n",
    )
    async with app.db.transaction() as s:
        await import_course(s, parse_course_file(text), now=SAMPLE_NOW)
    app.clock.at = BATTLE_DAY  # type: ignore[attr-defined]
    await publish_groups(app, QUIET_GROUPS)

    old = await say(app, "maya", "battle timer 1 reasons")
    assert old.is_error and "`opening` (openings)" in old.text and "`qa`" in old.text
    r = await say(app, "maya", "battle timer B1 opening", channel="battles")
    assert r.text.startswith("⏱ Battle B1, openings. 3:00 starts now"), r.text
    r = await say(app, "maya", "battle timer 1 a", channel="battles")  # replaces the opening
    assert r.text.startswith("⏱ Battle B1, side A presents: 🅰️ #9 TSM"), r.text
    assert "(Quinn O'Brien, Ravi Patel, Sofia Andersson)" in r.text and "15:00 starts" in r.text
    assert "timer running: side A presents (-15:00 left)" in render_text(
        await say(app, "alice", "battle show 1")
    )
    app.clock.advance(timedelta(minutes=10))  # type: ignore[attr-defined]
    assert await ticks(app) == ["#battles: ⏳ Battle B1, side A presents: 5 minutes left."]
    r = await say(app, "maya", "battle timer b1 stop")
    assert r.text == "⏹ Battle B1, side A presents: stopped after 10:00 (of 15:00)."
    assert (await say(app, "maya", "battle timer 2 a")).is_error  # battle 2: its own format
    unknown = await say(app, "maya", "battle timer X9 a")
    assert unknown.is_error and "not a battle" in unknown.text


async def test_timers_resume_after_a_restart_and_stop_themselves(app: App) -> None:
    app.clock.at = SAMPLE_NOW  # type: ignore[attr-defined]
    await say(app, "gedas", "talk timer 7")
    start = SAMPLE_NOW
    async with app.db.session() as s:
        # The next post of a running timer: its first warning, 25 minutes in.
        at = await next_timer_post(s, start, Scope())
        assert at == start + timedelta(minutes=25)
        assert await next_timer_post(s, start, Scope(course_ids={999})) is None
    app.clock.at = start + timedelta(minutes=30) + MAX_OVERRUN  # type: ignore[attr-defined]
    posts = await ticks(app)
    assert posts[-1].startswith("#general: ⏹ Talk #7 A Closer Look at Spatiotemporal")
    assert posts[-1].endswith(": timer stopped after 15 minutes over.")

    async with app.db.session() as s:
        assert await next_timer_post(s, app.clock.now(), Scope()) is None


# ------------------------------------------------------------------ the engine, alone
@given(
    seconds=st.integers(min_value=60, max_value=3 * 3600),
    warnings=st.lists(st.integers(min_value=1, max_value=60), max_size=4, unique=True),
    step=st.integers(min_value=5, max_value=600),
)
def test_ticks_are_ordered_unique_and_bounded(seconds: int, warnings: list[int], step: int) -> None:
    start = datetime(2023, 9, 13, 18, 30, tzinfo=UTC)
    timer = BattleTimer(id=1, started_at=start, seconds=seconds)
    ticks = timer_ticks(timer, TimerRules(tuple(warnings), step), "T")
    end = start + timedelta(seconds=seconds)
    times = [t.at for t in ticks]
    assert times == sorted(times) and len({t.key for t in ticks}) == len(ticks)
    warns = [t for t in ticks if ":warn" in t.key]
    assert all(start < t.at < end for t in warns)
    assert len(warns) == sum(1 for w in warnings if w * 60 < seconds)
    up = [t for t in ticks if t.key.endswith(":up")]
    assert [t.at for t in up] == [end] and up[0].text == "⏰ T: time's up!"
    overs = [t for t in ticks if ":over" in t.key]
    assert len(overs) == int(MAX_OVERRUN.total_seconds()) // step
    assert all(end < t.at <= end + MAX_OVERRUN for t in overs)


# ---------------------------------------------------------------------- migration 0018
@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
        return
    with throwaway_pg_database("coursebot_m18") as name:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)


def _sync(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


OURS = ("critique_marks", "battle_timers", "syllabus", "given_name", "family_name", "battles")


def test_0018_keeps_running_battle_timers_and_matches_the_models(fresh_url: str) -> None:
    upgrade(fresh_url, "0017")
    engine = create_engine(_sync(fresh_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO courses (id, key, name, term, timezone, class_days, "
                    "critique_deadline, standard_choices, battle_choices, max_presenters, "
                    "battle_group_min, battle_group_max, battle_rules, gpu_rules, grading, "
                    "channels, no_class) VALUES (1, 'c', 'C', '', 'UTC', '[]', '13:00:00', "
                    "7, 3, 2, 3, 4, '{}', '{}', '{}', '{}', '[]')"
                )
            )
            for pid, n in ((1, 9), (2, 10)):
                conn.execute(
                    text(
                        "INSERT INTO papers (id, course_id, number, title, authors, slot, "
                        f"critique, discussion) VALUES ({pid}, 1, {n}, 't', '', 'battle', "
                        "false, false)"
                    )
                )
            conn.execute(
                text(
                    "INSERT INTO battles (id, course_id, number, paper_a_id, paper_b_id) "
                    "VALUES (1, 1, 3, 1, 2)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO battle_timers (course_id, battle_id, phase, channel, "
                    "started_at, seconds) VALUES (1, 1, 'reasons', 'battles', "
                    "'2023-09-13 18:30:00+00:00', 300)"
                )
            )
        upgrade(fresh_url)
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT subject, title, warnings, overrun_seconds FROM battle_timers")
            ).one()
            assert tuple(row) == ("battle:3", "Battle 3, 3 reasons", None, None)
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert [d for d in diff if any(t in repr(d) for t in OURS)] == []
    finally:
        engine.dispose()
    command.downgrade(alembic_config(fresh_url), "0017")
    upgrade(fresh_url)
