"""Reactions on Slack go through the one reaction model (commands/reactions.py): the
outbox keeps, with a posted poll's reference (``CHANNEL:TS``), what its reactions mean,
and the adapter hands each reaction event to ``CommandCore.handle_reaction``. Nothing is
read back from Slack and nothing lives only in the adapter's memory: a vote counts after
a restart, a reaction on a message the bot does not know changes nothing, and a repeated
event (a plain duplicate, Slack's retry, a replay under a new id) counts once."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.settings import Settings
from bot.slack import SlackBot
from commands.core import CommandCore
from db.models import Base, BattleVote, ProcessedEvent
from tests.helpers import QUIET_GROUPS, publish_groups
from tests.slack_fakes import FakeSlack
from tests.test_slack import (  # noqa: F401 (fixtures: fake, slack)
    Harness,
    build_registry,
    fake,
    reaction,
    recorded_action,
    slack,
    slack_settings,
    texts,
)

ASKED = "counts once you say why"


async def open_poll(slack: Harness, app: App) -> dict[str, Any]:  # noqa: F811
    """Battle 1's poll, posted through the outbox in #general, with its choices added."""
    await publish_groups(app, QUIET_GROUPS)
    await slack.command("battle open 1", user="gedas")
    poll = await slack.fake.wait_for(
        "chat.postMessage", lambda a: "which paper should be accepted" in texts(a.get("blocks", []))
    )
    await slack.fake.wait_for("reactions.add", lambda a: a["name"] == "b")
    return poll


async def votes(app: App) -> list[tuple[str, str | None]]:
    async with app.db.session() as s:
        return [(v.side, v.justification) for v in await s.scalars(select(BattleVote))]


async def row_counts(app: App) -> dict[str, int]:
    """How many rows each table holds (to show that nothing stored changed)."""
    async with app.db.session() as s:
        return {
            t.name: int(await s.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


async def logged(caplog: pytest.LogCaptureFixture, words: str) -> None:
    """Wait (at most 10 s) until the bot has logged ``words``: it handled the event."""
    for _ in range(500):
        if any(words in r.getMessage() for r in caplog.records):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never logged: {words}")


async def test_a_vote_on_an_outbox_poll_counts_after_a_restart(
    slack: Harness,  # noqa: F811
    app: App,
    fake: FakeSlack,  # noqa: F811
    settings: Settings,
) -> None:
    poll = await open_poll(slack, app)
    assert await recorded_action(slack, poll) == "battle.react"  # the outbox's record

    # A restart: a new process (a new core, empty memories) on the same database.
    await slack.bot.stop()
    core = CommandCore(app.db, build_registry([]), clock=app.clock, data_dir=settings.data_dir)
    bot_app = dataclasses.replace(app, core=core, settings=slack_settings(settings, fake))
    bot = SlackBot(bot_app, post_interval=0.0)
    try:
        await bot.start(sweep=False)
        port = await bot.start_http("127.0.0.1", 0)
        again = Harness(bot, fake, f"http://127.0.0.1:{port}/slack/events", slack.http, [])
        assert await again.event(reaction("reaction_added", "a", poll), "EvR1") == 200
        note = await fake.wait_for("chat.postEphemeral", lambda a: ASKED in texts(a["blocks"]))
        assert note["user"] == "UALICE" and note["channel"] == poll["channel"]
        assert await votes(app) == [("A", None)]  # pending: the reason is asked privately
        assert fake.of("conversations.history") == []  # nothing read back from Slack
    finally:
        await bot.stop()
        await core.close()  # its edits and confirmations end before the database goes


async def test_a_reaction_on_an_unknown_message_changes_nothing(
    slack: Harness,  # noqa: F811
    app: App,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await open_poll(slack, app)
    before = await row_counts(app)
    n = len(slack.fake.calls)
    unknown = {"channel": "CGENERAL", "ts": "1700000999.000001"}  # never posted by the bot
    with caplog.at_level(logging.INFO):
        for kind in ("reaction_added", "reaction_removed"):
            assert await slack.event(reaction(kind, "a", unknown), f"EvU-{kind}") == 200
            await logged(caplog, "reaction :a: on CGENERAL:1700000999.000001 ignored")
            caplog.clear()
    assert await row_counts(app) == before
    said = [c.method for c in slack.fake.calls[n:] if c.method.startswith("chat.")]
    assert said == []  # nobody is answered either
    assert await votes(app) == []


async def test_a_repeated_reaction_event_counts_once(
    slack: Harness,  # noqa: F811
    app: App,
    caplog: pytest.LogCaptureFixture,
) -> None:
    poll = await open_poll(slack, app)
    event = reaction("reaction_added", "a", poll)
    assert await slack.event(event, "EvD1") == 200
    await slack.fake.wait_for("chat.postEphemeral", lambda a: ASKED in texts(a["blocks"]))
    with caplog.at_level(logging.INFO):
        assert await slack.event(event, "EvD1") == 200  # delivered twice
        await logged(caplog, "repeated reaction event")
        assert await slack.event(event, "EvD1", retry=1) == 200  # Slack's retry
        await logged(caplog, "Slack retry 1 of event EvD1 ignored")
        caplog.clear()
        assert await slack.event(event, "EvD2") == 200  # replayed under a new id
        await logged(caplog, "repeated reaction event")
    asked = [c for c in slack.fake.of("chat.postEphemeral") if ASKED in texts(c["blocks"])]
    assert len(asked) == 1
    assert await votes(app) == [("A", None)]
    async with app.db.session() as s:
        events = list(await s.scalars(select(ProcessedEvent.event_id)))
    assert events.count("EvD1") == 1 and "EvD2" not in events
