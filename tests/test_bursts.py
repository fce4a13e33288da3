"""A class at once, on Discord (simcord) and on Slack (the fake Web API, with Slack's rate
limits on): 60 students react to a battle poll in the same instant, 50 type `papers` at
once (issue #20, points 3 and 7). The times are bench/burst.py's; these tests check the
structure, never a wall-clock figure:

- the poll's edits are coalesced. The tests' clock stands still, so the outbox's gap
  between two edits of one message (EDIT_GAP, 1 s) never passes during the burst: at
  most one edit goes out while it lasts, and one more once the clock has moved a second
  (``flush_edits``). Each edit is rendered from the votes when it is sent, so 60 votes
  cost at most 2 edits and the last one shows the true count;
- no answer waits for an edit: the platform holds every edit of the poll (a gate) until
  all 60 voters have their private answer. An answer that waited for an edit would never
  arrive, and the test would fail on it;
- lookups answer privately: 50 private answers, no channel message, no turn in Slack's
  per-channel pacer (it paces public posts only), no 429;
- a reaction on a poll the bot no longer takes reactions on (closed) changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import discord
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import func, select

from bench.burst import link_students
from bot.app import App
from db.models import Base, BattleVote, MessageRef, Platform
from tests.discord_fakes import discord_world, react_together, slash_together, students
from tests.helpers import QUIET_GROUPS, flush_edits, publish_groups, until
from tests.slack_fakes import FORM, SLACK_LIMITS, FakeSlack, command_body
from tests.test_battles import BATTLE_DAY
from tests.test_slack import Harness, fake, reaction, slack, texts  # noqa: F401 (fixtures)

VOTERS = 60
LOOKUPS = 50
A, B = "🅰️", "🅱️"
#: What a reaction's answer asks: the vote counts once the voter says why.
ASKED = "counts once you say why"
#: The secret ballot (the sample course's) after 60 reactions: 60 votes, none counted yet.
REACTED = "Votes so far: 60; 0 with a justification (counted)."


async def votes(app: App) -> list[tuple[str, str | None]]:
    async with app.db.session() as s:
        return [(v.side, v.justification) for v in await s.scalars(select(BattleVote))]


def flat(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------- Slack


async def slash(slack: Harness, text: str, user: str, n: int) -> str:  # noqa: F811
    """``/course <text>`` from ``user``, acknowledged; returns its response URL."""
    url = slack.fake.response_url()
    body = command_body(
        text,
        user=user,
        user_name=user.lower(),
        response_url=url,
        trigger_id=f"trig-burst-{n}-{user}",
    )
    resp = await slack.post(body, FORM)
    assert resp.status == 200
    return url


async def open_poll(slack: Harness, app: App) -> dict[str, Any]:  # noqa: F811
    """Battle 1's poll, posted through the outbox in #general, its choices added."""
    await publish_groups(app, QUIET_GROUPS)
    await slash(slack, "battle open 1", "UGEDAS", 0)
    poll = await slack.fake.wait_for(
        "chat.postMessage", lambda a: "which paper should be accepted" in texts(a.get("blocks", []))
    )
    await slack.fake.wait_for("reactions.add", lambda a: a["name"] == "b")
    return poll


async def test_sixty_reactions_at_once_on_slack(
    slack: Harness,  # noqa: F811
    app: App,
    fake: FakeSlack,  # noqa: F811
) -> None:
    fake.rate_limits = SLACK_LIMITS
    app.clock.at = BATTLE_DAY
    users = [f"UV{i:03d}" for i in range(VOTERS)]
    await link_students(app, Platform.SLACK, users)
    poll = await open_poll(slack, app)
    held = fake.gates["chat.update"] = asyncio.Event()  # Slack takes no edit until set
    seen = len(fake.calls)

    sent = await asyncio.gather(
        *(
            slack.event(reaction("reaction_added", "ab"[i % 2], poll, user=u), f"EvBurst{i}")
            for i, u in enumerate(users)
        )
    )
    assert sent == [200] * VOTERS

    def asked() -> set[str]:
        return {
            str(c.args["user"])
            for c in fake.calls[seen:]
            if c.method == "chat.postEphemeral" and ASKED in texts(c.args["blocks"])
        }

    await until(lambda: asked() == set(users), "every voter is asked for a justification")
    # Every voter was answered (privately, in the poll's channel) while Slack still held
    # every edit of the poll: no answer waited for one.
    assert not [c for c in fake.calls[seen:] if c.method == "chat.update"]
    held.set()
    await flush_edits(slack.bot.app)
    await fake.wait_for("chat.update", lambda a: REACTED in flat(texts(a["blocks"])), after=seen)
    edits = [c.args for c in fake.calls[seen:] if c.method == "chat.update"]
    assert all(e["ts"] == poll["ts"] for e in edits)
    assert 1 <= len(edits) <= 2  # coalesced: one while the clock stood still, one after
    assert REACTED in flat(texts(edits[-1]["blocks"]))
    assert sorted(await votes(app)) == sorted(("AB"[i % 2], None) for i in range(VOTERS))
    assert fake.limited == []  # within Slack's limits (chat.update ~1/s per channel)


async def test_fifty_lookups_at_once_on_slack(
    slack: Harness,  # noqa: F811
    fake: FakeSlack,  # noqa: F811
    app: App,
) -> None:
    fake.rate_limits = SLACK_LIMITS
    users = [f"UL{i:03d}" for i in range(LOOKUPS)]
    await link_students(app, Platform.SLACK, users)
    paced: list[str] = []
    real_turn = slack.bot.sender.pacer.turn

    def turn(channel: str) -> Any:
        paced.append(channel)
        return real_turn(channel)

    slack.bot.sender.pacer.turn = turn  # type: ignore[method-assign]
    posts = len(fake.of("chat.postMessage"))

    urls = await asyncio.gather(*(slash(slack, "papers", u, i) for i, u in enumerate(users)))

    def answers() -> dict[str, dict[str, Any]]:
        got: dict[str, dict[str, Any]] = {}
        for r in fake.responses:
            got.setdefault(r["_url"], r)
        return {u: got[u] for u in urls if u in got}

    await until(lambda: len(answers()) == LOOKUPS, "every lookup is answered")
    for answer in answers().values():
        assert answer["response_type"] == "ephemeral"
        assert "(page 1 of 3)" in texts(answer["blocks"])
    assert len(fake.of("chat.postMessage")) == posts  # nothing in the channel
    assert paced == []  # private answers never wait for the per-channel pacer
    assert fake.limited == []


async def test_a_reaction_on_a_closed_poll_changes_nothing_on_slack(
    slack: Harness,  # noqa: F811
    app: App,
    fake: FakeSlack,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once the poll is closed (its edit saying so has gone out), the bot no longer takes
    reactions on it: a reaction there stores nothing and is not answered."""
    app.clock.at = BATTLE_DAY
    await link_students(app, Platform.SLACK, ["UV000"])
    poll = await open_poll(slack, app)
    closing = await slash(slack, "battle close 1", "UGEDAS", 1)
    await fake.wait_response(lambda r: r["_url"] == closing)  # the command is done...
    await flush_edits(slack.bot.app)  # ...and so is its edit (it may wait for the gap)
    assert "the poll is closed" in texts(fake.of("chat.update")[-1]["blocks"])
    async with app.db.session() as s:
        spec = await s.scalar(
            select(MessageRef.reactions).where(MessageRef.ref == f"{poll['channel']}:{poll['ts']}")
        )
    assert not spec  # the record no longer routes reactions

    async def counts() -> dict[str, int]:
        async with app.db.session() as s:
            return {
                t.name: int(await s.scalar(select(func.count()).select_from(t)) or 0)
                for t in Base.metadata.sorted_tables
            }

    before, seen = await counts(), len(fake.calls)
    with caplog.at_level(logging.INFO):
        event = reaction("reaction_added", "a", poll, user="UV000")
        assert await slack.event(event, "EvClosed1") == 200
        await until(
            lambda: any("ignored" in r.getMessage() for r in caplog.records),
            "the reaction is handled",
        )
    assert await counts() == before
    assert [c.method for c in fake.calls[seen:] if c.method.startswith("chat.")] == []
    assert await votes(app) == []


async def test_the_fake_slack_refuses_calls_over_its_limits(fake: FakeSlack) -> None:  # noqa: F811
    """The rate-limit model itself: chat.update takes a burst of 3 per channel, then
    answers 429 ``ratelimited`` with Retry-After, as Slack does; other channels are
    counted apart."""
    fake.rate_limits = SLACK_LIMITS
    client = AsyncWebClient(token="xoxb-test", base_url=fake.api_url)
    for _ in range(3):
        await client.chat_update(channel="C1", ts="1.1", text="x")
    with pytest.raises(SlackApiError) as refused:
        await client.chat_update(channel="C1", ts="1.1", text="x")
    assert refused.value.response.status_code == 429
    assert refused.value.response.data["error"] == "ratelimited"
    assert int(refused.value.response.headers["Retry-After"]) >= 1
    await client.chat_update(channel="C2", ts="1.1", text="x")
    assert [c.args["channel"] for c in fake.limited] == ["C1"]
    assert len(fake.of("chat.update")) == 4


# ----------------------------------------------------------------------------- Discord


def discord_text(message: Any) -> str:
    parts = [message.content or ""]
    for embed in message.embeds:
        parts += [embed.title or "", embed.description or ""]
        parts += [f"{f.name} {f.value}" for f in embed.fields]
    return flat(" ".join(parts))


async def test_sixty_reactions_at_once_on_discord(app: App) -> None:
    app.clock.at = BATTLE_DAY
    names = [f"v{i:03d}" for i in range(VOTERS)]
    async with discord_world(app, prepare=students(names)) as w:
        ids = [w.members[n].id for n in names]
        await link_students(app, Platform.DISCORD, [str(i) for i in ids])
        await publish_groups(app, QUIET_GROUPS)
        battles = w.channels["battles"]
        await w.gedas.slash(battles, "admin battle open", battle="1")
        poll = battles.last_message
        assert poll is not None and [str(r.emoji) for r in poll.reactions] == [A, B]
        edit = f"/channels/{battles.id}/messages/{poll.id}"

        held = asyncio.Event()  # every edit of the poll waits until it is set
        real_edit = w.bot.outbox.edit

        async def held_edit(*args: Any, **kwargs: Any) -> None:
            await held.wait()
            await real_edit(*args, **kwargs)

        w.bot.outbox.edit = held_edit  # type: ignore[method-assign]
        seen = len(w.env.http_requests)
        react_together(w.env, poll, [(uid, B if i % 2 else A) for i, uid in enumerate(ids)])

        def asked() -> set[int]:
            dm = {str(w.env.backend.dm_channels.get(uid)): uid for uid in ids}
            got = set()
            for r in w.env.http_requests[seen:]:
                parts = r.path.strip("/").split("/")
                if r.method != "POST" or len(parts) != 3 or parts[1] not in dm:
                    continue
                if ASKED in json.dumps(r.json, ensure_ascii=False):
                    got.add(dm[parts[1]])
            return got

        # Each voter's answer is a DM: all 60 arrive while every edit of the poll is held.
        await until(lambda: asked() == set(ids), "every voter is asked for a justification")
        assert not [r for r in w.env.http_requests[seen:] if r.path == edit]
        held.set()
        await w.env.settle(timeout=60)
        await flush_edits(app)
        await w.env.settle(timeout=60)

        edits = [r for r in w.env.http_requests[seen:] if r.method == "PATCH" and r.path == edit]
        assert 1 <= len(edits) <= 2  # coalesced: one while the clock stood still, one after
        now = next(m for m in battles.history() if m.id == poll.id)
        assert REACTED in discord_text(now)
        assert sorted(await votes(app)) == sorted(("AB"[i % 2], None) for i in range(VOTERS))
        # A secret ballot: the bot took every voter's reaction off again.
        assert {str(r.emoji): r.count for r in now.reactions} == {A: 1, B: 1}


async def test_fifty_lookups_at_once_on_discord(app: App) -> None:
    names = [f"l{i:03d}" for i in range(LOOKUPS)]
    async with discord_world(app, prepare=students(names)) as w:
        await link_students(app, Platform.DISCORD, [str(w.members[n].id) for n in names])
        seen = len(w.env.http_requests)
        actors = [w.members[n] for n in names]
        results = await slash_together(w.env, actors, w.general, "papers", [{}] * LOOKUPS)
        await w.env.settle(timeout=120)

        for result in results:
            assert result.ephemeral and result.response is not None
            assert "(page 1 of 3)" in discord_text(result.response)
        sent = w.env.http_requests[seen:]
        callbacks = [r.json for r in sent if r.path.endswith("/callback")]
        assert len(callbacks) == LOOKUPS
        assert all(c["data"]["flags"] & discord.MessageFlags.ephemeral.flag for c in callbacks)
        guild = {str(c.id) for c in w.channels.values()}
        posted = [
            r.path
            for r in sent
            if r.method == "POST" and r.path.strip("/").split("/")[0] == "channels"
        ]
        assert [p for p in posted if p.split("/")[2] in guild] == []  # nothing in a channel
