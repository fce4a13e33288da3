"""Reactions on a secret-ballot poll when Discord paces their removal (issue #20).

Discord rate-limits the removal of reactions per channel, so when a class reacts at once
the bot's removals queue for seconds (60 voters: the last one ~15 s). The voter's private
answer (the request for a justification) must never wait in that queue: it goes out
beside the removal, and says only what is true when it is sent. Every removal still
happens; one Discord refuses is told to the voter afterwards.

The removal route is paced with :func:`tests.discord_fakes.pace_route` (what discord.py
does under a rate limit: wait its turn), or held shut until every answer is out: an
answer that waited for a removal would never arrive, and the test would fail on it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import discord
import pytest
from sqlalchemy import select

from bench.burst import link_students
from bot.app import App
from db.models import BattleVote, Platform
from tests.discord_fakes import (
    PacedRoute,
    World,
    discord_world,
    pace_route,
    react_together,
    students,
)
from tests.helpers import QUIET_GROUPS, publish_groups, until
from tests.test_battles import BATTLE_DAY
from tests.test_discord import message_text

A, B = "🅰️", "🅱️"
VOTERS = 60
#: What the answer to a reaction asks: the vote counts once the voter says why.
ASKED = "counts once you say why"
#: What the answer says while the removal is still queued at Discord.
ON_ITS_WAY = "I am taking your reaction off the poll"
CLAIMED = "was removed"


def dms_since(w: World, seen: int, users: list[int]) -> dict[int, list[str]]:
    """What the bot sent each of ``users`` by DM since request ``seen`` (the JSON text)."""
    channel_of = {str(w.env.backend.dm_channels.get(uid)): uid for uid in users}
    got: dict[int, list[str]] = {}
    for r in w.env.http_requests[seen:]:
        parts = r.path.strip("/").split("/")
        if r.method == "POST" and len(parts) == 3 and parts[1] in channel_of:
            got.setdefault(channel_of[parts[1]], []).append(json.dumps(r.json, ensure_ascii=False))
    return got


def counts(channel: Any, message_id: int) -> dict[str, int]:
    message = next(m for m in channel.history() if m.id == message_id)
    return {str(r.emoji): r.count for r in message.reactions}


async def open_poll(w: World) -> tuple[Any, discord.Message, PacedRoute]:
    """Battle 1's secret-ballot poll in #battles, and its reaction removals (one voter's
    reaction at a time: ``DELETE …/reactions/{emoji}/{user}``) under a rate limit held
    shut until the test opens it."""
    battles = w.channels["battles"]
    await publish_groups(w.app, QUIET_GROUPS)
    await w.gedas.slash(battles, "admin battle open", battle="1")
    poll = battles.last_message
    assert poll is not None and [str(r.emoji) for r in poll.reactions] == [A, B]
    removals = pace_route(
        w,
        "DELETE",
        f"/channels/{battles.id}/messages/{poll.id}/reactions/*/*",
        seconds=0.05,
        held=True,
    )
    return battles, poll, removals


async def test_sixty_answers_go_out_while_every_removal_waits(app: App) -> None:
    app.clock.at = BATTLE_DAY
    names = [f"r{i:03d}" for i in range(VOTERS)]
    async with discord_world(app, prepare=students(names)) as w:
        ids = [w.members[n].id for n in names]
        await link_students(app, Platform.DISCORD, [str(i) for i in ids], name="Reacting Student")
        battles, poll, removals = await open_poll(w)
        seen = len(w.env.http_requests)
        react_together(w.env, poll, [(uid, B if i % 2 else A) for i, uid in enumerate(ids)])

        def asked() -> set[int]:
            return {u for u, sent in dms_since(w, seen, ids).items() if ASKED in " ".join(sent)}

        # Every voter has their answer while not one removal has gone through.
        await until(lambda: asked() == set(ids), "every voter is asked for a justification")
        assert removals.sent == 0 and removals.pending == VOTERS
        assert counts(battles, poll.id) == {A: 1 + VOTERS // 2, B: 1 + VOTERS // 2}
        answers = dms_since(w, seen, ids)
        for uid in ids:
            (answer,) = answers[uid]  # one message each, and it claims nothing yet
            assert ON_ITS_WAY in answer and CLAIMED not in answer

        removals.held.set()  # the bucket lets them through, one per 0.05 s
        await w.env.settle(timeout=60)
        assert removals.sent == VOTERS
        assert counts(battles, poll.id) == {A: 1, B: 1}  # every voter's reaction is off
        assert all(len(sent) == 1 for sent in dms_since(w, seen, ids).values())  # no more
        async with app.db.session() as s:
            recorded = sorted(v.side for v in await s.scalars(select(BattleVote)))
        assert recorded == sorted("AB"[i % 2] for i in range(VOTERS))  # removal ≠ withdrawal


async def test_the_answer_comes_within_a_second_while_the_removal_is_paced(app: App) -> None:
    async with discord_world(app) as w:
        battles, poll, removals = await open_poll(w)
        removals.seconds = 2.0  # a slow bucket: this removal takes two seconds
        removals.held.set()
        seen = len(w.env.http_requests)
        react_together(w.env, poll, [(w.alice.id, A)])

        def answer() -> str:
            return " ".join(dms_since(w, seen, [w.alice.id]).get(w.alice.id, []))

        await until(lambda: ASKED in answer(), "alice is asked for a justification")
        answered = time.perf_counter()
        (queued,) = removals.queued
        assert answered - queued < 1.0  # not the removal's two seconds
        assert removals.sent == 0  # the removal is still on its way
        assert ON_ITS_WAY in answer() and CLAIMED not in answer()

        await w.env.settle(timeout=30)
        assert removals.sent == 1
        assert counts(battles, poll.id) == {A: 1, B: 1}
        assert message_text(w.alice.user.dm_channel.last_message).count(ASKED) == 1


async def test_a_quick_removal_is_still_told_as_done(app: App) -> None:
    """An uncrowded bucket answers within the grace: the answer says the reaction is gone
    (tests/test_ballots.py checks the same with no rate limit at all)."""
    async with discord_world(app) as w:
        battles, poll, removals = await open_poll(w)
        removals.held.set()  # 0.05 s: well within REMOVAL_GRACE
        await w.alice.react(poll, A)
        dm = message_text(w.alice.user.dm_channel.last_message)
        assert ASKED in dm
        assert "Your reaction was removed, so nobody else can see your pick." in dm
        assert counts(battles, poll.id) == {A: 1, B: 1}


async def test_a_removal_refused_after_the_answer_is_told_truthfully(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "coursebot.discord")
    async with discord_world(app) as w:
        battles, poll, removals = await open_poll(w)
        seen = len(w.env.http_requests)
        react_together(w.env, poll, [(w.alice.id, A)])
        await until(
            lambda: any(ASKED in t for t in dms_since(w, seen, [w.alice.id]).get(w.alice.id, [])),
            "alice is asked for a justification",
        )
        # By the time its turn comes, the bot has lost Manage Messages in the channel.
        w.env.inject_error(
            "DELETE",
            removals.pattern,
            status=403,
            code=50013,
            message="Missing Permissions",
            times=None,
        )
        removals.held.set()
        await w.env.settle(timeout=30)

        assert counts(battles, poll.id) == {A: 2, B: 1}  # it stays: Discord refused
        first, then = dms_since(w, seen, [w.alice.id])[w.alice.id]
        assert ASKED in first and CLAIMED not in first
        assert "I could not remove your reaction" in then and "others can see it" in then
        assert CLAIMED not in then
        logged = [r.getMessage() for r in caplog.records]
        assert any("could not remove a reaction" in m for m in logged)
        async with app.db.session() as s:  # the vote itself stands
            assert [v.side for v in await s.scalars(select(BattleVote))] == ["A"]
