"""Mass sends counted on the real adapters: Discord (discord.py against simcord, with
Discord's own error codes injected) and Slack (slack-bolt's client against the fake Web
API): closed DMs are "could not be reached", Discord's anti-spam 40003 and Slack's
429 are waited out and sent again, never counted as closed."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.app import App
from bot.settings import Settings
from bot.slack.bot import SlackBot
from commands.clock import FixedClock
from commands.context import Caller, Request, Where
from commands.outbox import SENT, UNREACHABLE
from commands.replies import Reply, render_text
from db.models import OutboxMessage, Platform
from tests.discord_fakes import GUILD_ID, World, discord_world
from tests.slack_fakes import FakeSlack
from tests.test_discord import message_text
from tests.test_slack import TEAM, bind_workspace, slack_settings


@pytest.fixture
async def world(app: App) -> AsyncIterator[World]:
    async with discord_world(app) as w:
        yield w


async def as_discord(w: World, who: str, line: str) -> Reply:
    member = w.members[who]
    request = Request(
        Platform.DISCORD,
        str(GUILD_ID),
        Caller(Platform.DISCORD, str(member.id), who),
        Where(str(w.general.id)),
    )
    return await w.app.core.handle_text(request, line)


async def outbox_states(app: App) -> dict[str, int]:
    async with app.db.session() as session:
        rows = await session.scalars(
            select(OutboxMessage.status).where(OutboxMessage.person_id.is_not(None))
        )
        out: dict[str, int] = {}
        for status in rows:
            out[status] = out.get(status, 0) + 1
        return out


async def test_discord_publish_counts_closed_dms_and_waits_out_40003(world: World) -> None:
    w = world
    alice_dm = await (await w.bot.fetch_user(w.alice.id)).create_dm()
    bob_dm = await (await w.bot.fetch_user(w.bob.id)).create_dm()
    w.env.inject_error(
        "POST",
        f"/channels/{alice_dm.id}/messages",
        status=403,
        code=50007,
        message="Cannot send messages to this user",
        times=None,
    )
    w.env.inject_error(
        "POST",
        f"/channels/{bob_dm.id}/messages",
        status=400,
        code=40003,
        message="You are opening direct messages too fast.",
        times=1,
    )
    assert not (await as_discord(w, "gedas", "assign")).is_error
    reply = await as_discord(w, "gedas", "assign publish")
    text = render_text(reply)
    # 25 students are assigned; only Alice and Bob have linked Discord accounts.
    assert "0 of 25 private messages delivered" in text
    assert "1 not sent yet" in text  # Bob: Discord said "slow down", not "closed"
    assert "24 could not be reached" in text
    assert "Alice Chen (does not accept DMs from the bot)" in text
    assert "Carol Martinez (no linked Discord account)" in text
    assert "Bob Okafor" not in text.split("could not be reached")[1]
    assert await outbox_states(w.app) == {UNREACHABLE: 24, "pending": 1}

    assert isinstance(w.app.clock, FixedClock)
    w.app.clock.advance(timedelta(seconds=31))
    dispatcher = w.app.core.dispatcher
    assert dispatcher is not None
    await dispatcher.deliver()
    dm = message_text(w.bob.user.dm_channel.last_message)
    assert "Presentation" in dm or "Battle" in dm, dm
    assert await outbox_states(w.app) == {UNREACHABLE: 24, SENT: 1}
    summary = render_text(await as_discord(w, "gedas", "outbox"))
    assert "1 of 25" in summary
    # Every outbox send carried a nonce (with enforce_nonce), the same on each try, so
    # Discord keeps one copy of a message sent again after a crash.
    sends = [
        r.json
        for r in w.env.http_requests
        if r.method == "POST" and r.path == f"/channels/{bob_dm.id}/messages"
    ]
    assert len(sends) == 2 and sends[0]["nonce"] == sends[1]["nonce"]
    assert sends[0]["nonce"].startswith("cb") and sends[0]["enforce_nonce"] is True


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(team_id=TEAM)
    await fake.start()
    yield fake
    await fake.stop()


async def test_slack_reminders_honour_429_and_count_the_unreached(
    app: App, fake_slack: FakeSlack, settings: Settings
) -> None:
    """`rankings remind` on Slack: Bob's DM gets one 429 (the client waits Retry-After
    and sends it), Alice's gets three (more than the client retries: the outbox waits
    and sends it later); the 23 with no Slack account are named."""
    await bind_workspace(app)
    bot = SlackBot(
        dataclasses.replace(app, settings=slack_settings(settings, fake_slack)), post_interval=0.0
    )
    fake_slack.fail_channel = {"DUALICE": ["ratelimited"] * 3, "DUBOB": ["ratelimited"]}
    request = Request(
        Platform.SLACK, TEAM, Caller(Platform.SLACK, "UGEDAS", "gedas"), Where("CGENERAL")
    )
    reply = await app.core.handle_text(request, "rankings remind")
    text = render_text(reply)
    assert "1 of 25 reminders delivered" in text
    assert "1 not sent yet" in text
    assert "23 could not be reached" in text and "Carol Martinez (no linked Slack account)" in text
    posted = [c["channel"] for c in fake_slack.of("chat.postMessage")]
    assert posted.count("DUBOB") == 2 and posted.count("DUALICE") == 3

    assert isinstance(app.clock, FixedClock)
    app.clock.advance(timedelta(seconds=2))
    assert bot.app.core.dispatcher is not None
    await bot.app.core.dispatcher.deliver()
    posted = [c["channel"] for c in fake_slack.of("chat.postMessage")]
    assert posted.count("DUALICE") == 4
    assert await outbox_states(app) == {UNREACHABLE: 23, SENT: 2}


async def test_slack_a_channel_that_is_gone_fails_at_once_and_is_kept(
    app: App, fake_slack: FakeSlack, settings: Settings
) -> None:
    """A post to a channel Slack no longer has is not retried for minutes: it is kept
    as failed at once, with Slack's reason, for staff to see and send again."""
    await bind_workspace(app)
    SlackBot(
        dataclasses.replace(app, settings=slack_settings(settings, fake_slack)), post_interval=0.0
    )
    fake_slack.fail_channel = {"CANNOUNCE": ["channel_not_found"]}
    request = Request(
        Platform.SLACK, TEAM, Caller(Platform.SLACK, "UGEDAS", "gedas"), Where("CGENERAL")
    )
    reply = await app.core.handle_text(request, 'announce "Room change: SN011."')
    assert "Not delivered" in render_text(reply)
    async with app.db.session() as session:
        row = await session.scalar(select(OutboxMessage).where(OutboxMessage.person_id.is_(None)))
    assert row is not None and row.status == "failed" and row.attempts == 1
    assert "channel_not_found" in (row.last_error or "")
    listing = render_text(await app.core.handle_text(request, "outbox failed"))
    assert "channel_not_found" in listing and "Room change" in listing
