"""Ballots as secret as they say: the course's `battle_rules.ballot` (secret | open) on
the terminal, Discord (simcord) and Slack (the fake Web API); nothing about sides or
reasons readable before the poll closes; a student whose DMs are closed is still told
how to finish a vote; and concurrent vote changes keep their justification on SQLite
and Postgres alike."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import discord
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from bot.app import App
from bot.discord.router import NOTICE_SECONDS
from commands.context import Caller, Request, Where
from commands.coursefile import BattleRules
from commands.replies import Reply, render_text
from db.models import (
    BattlePoll,
    BattleVote,
    Course,
    Identity,
    OutboxMessage,
    Person,
    Platform,
    Role,
)
from tests.discord_fakes import discord_world
from tests.helpers import QUIET_GROUPS, flush_edits, publish_groups
from tests.test_battles import BATTLE_DAY, POLL
from tests.test_discord import button_labels, message_text
from tests.test_slack import (  # noqa: F401 (fixtures)
    Harness,
    fake,
    reaction,
    recorded_action,
    slack,
    texts,
)

A, B = "🅰️", "🅱️"


def req(user: str, channel: str = "battles") -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where(channel)
    )


async def say(app, user: str, line: str) -> Reply:  # type: ignore[no-untyped-def]
    return await app.core.handle_text(req(user), line)


async def react(app, user: str, emoji: str) -> Reply:  # type: ignore[no-untyped-def]
    return await app.core.handle_action(req(user), POLL, emoji)


async def add_voters(app, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``n`` more students with terminal handles v000…; returns the handles."""
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        for i in range(n):
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
                    user_id=f"v{i:03d}",
                    linked_at=BATTLE_DAY,
                )
            )
    return [f"v{i:03d}" for i in range(n)]


async def set_ballot(app: App, ballot: str) -> None:
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        course.battle_rules = {**(course.battle_rules or {}), "ballot": ballot}


async def votes(app: App) -> list[tuple[str, str | None]]:
    async with app.db.session() as s:
        return [(v.side, v.justification) for v in await s.scalars(select(BattleVote))]


WHY = "Their ablations are far more convincing than the other side's."


async def backing_rows(app: App) -> list[tuple[str, str]]:
    """The outbox rows that back reactions' answers (a DM to one account), as
    ``(status, last error)``, once the adapters' confirmations are written (a fake
    platform sees a message before the adapter has its answer: waited for, 5 s)."""
    for _ in range(100):
        await app.core.settle()
        async with app.db.session() as s:
            rows = list(
                await s.scalars(select(OutboxMessage).where(OutboxMessage.channel.like("@%")))
            )
        if all(r.status != "pending" for r in rows):
            break
        await asyncio.sleep(0.05)
    return [(r.status, r.last_error or "") for r in rows]


# ------------------------------------------------------------------ the setting


def test_the_ballot_is_a_course_setting_secret_by_default() -> None:
    assert BattleRules().ballot == "secret"
    assert BattleRules.model_validate({"ballot": "open"}).ballot == "open"
    with pytest.raises(ValidationError):
        BattleRules.model_validate({"ballot": "public"})


# ------------------------------------------------------------------ the core and the terminal


async def test_nothing_about_sides_is_readable_before_the_poll_closes(app) -> None:  # type: ignore[no-untyped-def]
    app.clock.at = BATTLE_DAY
    await publish_groups(app, QUIET_GROUPS)
    await say(app, "gedas", "battle open 1")
    await say(app, "alice", f'battle vote 1 A "{WHY}"')
    await react(app, "hannah", B)  # pending: no justification yet

    status = await say(app, "maya", "battle status 1")
    shown = render_text(status)
    assert (
        "2 of 19 eligible students have voted: 1 with a justification" in shown
    )  # 25 students, 6 presenting
    assert "1 still owe one" in shown and "sealed until the poll closes" in shown
    for side_info in (A, B, "TSM", "X3D", "#9", "#10", WHY):
        assert side_info not in shown
    export = await say(app, "gedas", "battle export 1")
    assert export.is_error and "still open" in export.text and not export.files
    assert "sealed until it closes, for staff too" in export.text
    shown = render_text(await say(app, "maya", "battle show 1"))
    assert "secret ballot): 1 votes so far, 1 waiting" in shown and "A 1" not in shown

    await say(app, "gedas", "battle close 1")
    export = await say(app, "gedas", "battle export 1")
    assert not export.is_error and "2 votes in battle 1." in export.text
    assert WHY in export.files[0].data.decode()


async def test_a_secret_poll_in_the_terminal(app, transcript) -> None:  # type: ignore[no-untyped-def]
    app.clock.at = BATTLE_DAY
    await publish_groups(app, QUIET_GROUPS)
    out = await transcript.say("battle open 1")
    assert "Secret ballot" in out and "staff included" in out
    assert "taken off as soon as it is recorded" in out
    number = next(n for n, m in transcript.shell.messages.items() if m.reply.reactions)
    poll = transcript.shell.messages[number]
    await transcript.say(":as alice")
    out = await transcript.say(f":react {number} {A}")
    assert "counts once you say why" in out
    assert "your reaction was taken off the poll, so nobody else sees your pick" in out
    assert poll.reactions[A] == set()  # nobody's reaction shows
    assert "Votes so far: 1; 0 with a justification" in out and "Live count" not in out
    out = await transcript.say(f":unreact {number} {A}")  # changes nothing on a secret ballot
    assert await votes(app) == [("A", None)]
    await transcript.say(":as gedas")
    out = await transcript.say(f":react {number} {B}")  # staff do not vote: refused
    assert "do not vote" in out and "(your reaction was taken off the poll)" in out


async def test_an_open_poll_keeps_reactions_and_counts_live(app, transcript) -> None:  # type: ignore[no-untyped-def]
    app.clock.at = BATTLE_DAY
    await set_ballot(app, "open")
    await publish_groups(app, QUIET_GROUPS)
    out = await transcript.say("battle open 1")
    assert "Open ballot" in out and "reactions stay on the poll" in out
    assert "taken off" not in out
    number = next(n for n, m in transcript.shell.messages.items() if m.reply.reactions)
    poll = transcript.shell.messages[number]
    await transcript.say(":as alice")
    out = await transcript.say(f":react {number} {A}")
    assert "counts once you say why" in out and "taken off" not in out
    assert poll.reactions[A] == {"alice"}
    assert "🅰️ 0 · 🅱️ 0; 1 more waiting for a justification" in out
    out = await transcript.say(f'battle vote 1 A "{WHY}"')
    assert "It is in the poll's live count" in out
    # Poll edits are coalesced: at most one a second, the last one on the real count.
    assert "🅰️ 0 · 🅱️ 0" in render_text(poll.reply)
    await transcript.say(":advance 1s")
    assert "🅰️ 1 · 🅱️ 0" in render_text(poll.reply)
    out = await transcript.say(f":unreact {number} {A}")  # an open ballot: withdrawn
    assert "withdrawn" in out and await votes(app) == []


# ------------------------------------------------------------------ concurrency


async def test_concurrent_vote_changes_keep_their_justification(app, backend) -> None:  # type: ignore[no-untyped-def]
    """Each student, holding a counted vote for A, switches to B by reaction and by a
    justified vote at the same moment. In either order the result is a vote for B with
    the new reason; a reply that says "counts" must be true of the stored vote."""
    app.clock.at = BATTLE_DAY
    voters = await add_voters(app, 60)
    await publish_groups(app, QUIET_GROUPS)
    await say(app, "gedas", "battle open 1")
    first = await asyncio.gather(
        *(say(app, v, f'battle vote 1 A "{v} thinks A is the stronger paper."') for v in voters)
    )
    assert [r.text for r in first if r.is_error] == []

    async def switch(v: str) -> tuple[Reply, Reply]:
        reason = f'battle vote 1 B "{v} changed their mind: B ablates better."'
        reacted, voted = await asyncio.gather(react(app, v, B), say(app, v, reason))
        return reacted, voted

    for _ in range(3):  # a few rounds: the race is a matter of timing
        results = await asyncio.gather(*(switch(v) for v in voters))
        assert [r.text for pair in results for r in pair if r.is_error] == []
        assert all("counts" in voted.text for _, voted in results)
        async with app.db.session() as s:
            rows = [(v.side, v.justification) for v in await s.scalars(select(BattleVote))]
        lost = [r for r in rows if r[1] is None]
        assert lost == [], f"{len(lost)} of {len(rows)} votes lost their justification"
        assert {side for side, _ in rows} == {"B"} and len(rows) == len(voters)
        # back to A for the next round (one change at a time)
        back = await asyncio.gather(
            *(
                say(app, v, f'battle vote 1 A "{v} is back on A, for the next round."')
                for v in voters
            )
        )
        assert [r.text for r in back if r.is_error] == []
    async with app.db.session() as s:
        assert await s.scalar(select(BattlePoll.closed_at)) is None


# ------------------------------------------------------------------ Discord (simcord)


def counts(message: discord.Message) -> dict[str, int]:
    return {str(r.emoji): r.count for r in message.reactions}


async def test_discord_secret_ballot_removes_the_reaction_at_once(app: App) -> None:
    async with discord_world(app) as w:
        battles = w.channels["battles"]
        assert await w.bot.check_ballot_permissions() == []  # the bot may remove reactions
        await publish_groups(w.app, QUIET_GROUPS)
        await w.gedas.slash(battles, "admin battle open", battle="1")
        poll = battles.last_message
        assert poll is not None and len(button_labels(poll)) == 2  # the private path
        shown = message_text(poll)
        assert "Secret ballot" in shown and "Who sees your reaction" in shown
        assert "the bot removes your reaction as soon as it has recorded it" in shown

        await w.alice.react(poll, A)
        poll = battles.history()[0]
        assert counts(poll) == {A: 1, B: 1}  # only the bot's own: alice's is gone
        dm = message_text(w.alice.user.dm_channel.last_message)
        assert "counts once you say why" in dm
        assert "Your reaction was removed, so nobody else can see your pick." in dm
        assert await votes(app) == [("A", None)]  # recorded, pending
        shown = message_text(poll)  # edited: progress only, no side
        assert "Votes so far: 1; 0 with a justification" in shown and "Live count" not in shown
        assert counts(battles.history()[0]) == {A: 1, B: 1}  # its removal was not a withdrawal
        assert await votes(app) == [("A", None)]

        await w.maya.react(poll, B)  # staff do not vote: refused and removed
        assert "Your reaction was removed." in message_text(w.maya.user.dm_channel.last_message)
        assert counts(battles.history()[0]) == {A: 1, B: 1}
        # alice's answer was backed by an outbox row, released once the DM was out.
        assert await backing_rows(w.app) == [("sent", "")]


async def test_discord_open_ballot_keeps_reactions_and_shows_live_counts(app: App) -> None:
    await set_ballot(app, "open")
    async with discord_world(app) as w:
        battles = w.channels["battles"]
        assert await w.bot.check_ballot_permissions() == []
        await publish_groups(w.app, QUIET_GROUPS)
        await w.gedas.slash(battles, "admin battle open", battle="1")
        poll = battles.last_message
        assert poll is not None
        shown = message_text(poll)
        assert "Open ballot" in shown and "Who sees your reaction" not in shown

        await w.alice.react(poll, A)
        poll = battles.history()[0]
        assert counts(poll) == {A: 2, B: 1}  # alice's reaction stays
        dm = w.alice.user.dm_channel.last_message
        assert "removed" not in message_text(dm)
        assert "🅰️ 0 · 🅱️ 0; 1 more waiting for a justification" in message_text(poll)
        shown = await w.alice.user.click(dm, label=button_labels(dm)[0])
        await w.alice.user.submit_modal(shown, {"justification": WHY})
        await flush_edits(w.app)  # poll edits are coalesced, at most one a second
        assert "Live count (votes with a justification): 🅰️ 1 · 🅱️ 0" in message_text(
            battles.history()[0]
        )
        await w.alice.unreact(poll, A)  # open ballot: taking it off withdraws
        assert await votes(app) == []


async def test_discord_voter_with_closed_dms_is_pointed_to_the_buttons(app: App) -> None:
    async with discord_world(app) as w:
        battles = w.channels["battles"]
        await publish_groups(w.app, QUIET_GROUPS)
        await w.gedas.slash(battles, "admin battle open", battle="1")
        poll = battles.last_message
        assert poll is not None
        dm = w.alice.user.dm_channel
        w.env.inject_error(
            "POST",
            f"/channels/{dm.id}/messages",
            status=403,
            code=50007,
            message="Cannot send messages to this user",
            times=None,
        )
        await w.alice.react(poll, A)
        assert dm.last_message is None  # nothing reached her by DM...
        # ...and the row backing her answer says so (nobody sends it again).
        assert await backing_rows(w.app) == [("unreachable", "does not accept DMs from the bot")]
        notice = battles.last_message  # ...so the channel tells her, without her side
        assert notice is not None and notice.id != poll.id
        assert f"<@{w.alice.id}>" in notice.content and "Vote button" in notice.content
        for side_info in (A, B, "TSM", "X3D", "#9", "#10"):
            assert side_info not in notice.content
        # The poll's own button completes the vote, privately.
        poll = next(m for m in battles.history() if m.id == poll.id)
        shown = await w.alice.click(poll, label=button_labels(poll)[0])
        done = await w.alice.submit_modal(shown, {"justification": WHY})
        assert done.response is not None and "counts" in message_text(done.response)
        assert await votes(app) == [("A", WHY)]
        await w.env.advance_time(NOTICE_SECONDS + 1)  # the notice cleans itself up
        assert notice.id not in [m.id for m in battles.history()]


async def test_discord_without_manage_messages_warns_and_tells_the_truth(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "coursebot.discord")
    async with discord_world(app, bot_manages_battles=False) as w:
        startup = [r.getMessage() for r in caplog.records if "Manage Messages" in r.getMessage()]
        assert startup and "#battles" in startup[0] and "course comp790" in startup[0]
        battles = w.channels["battles"]
        await publish_groups(w.app, QUIET_GROUPS)
        await w.gedas.slash(battles, "admin battle open", battle="1")
        poll = battles.last_message
        assert poll is not None
        await w.alice.react(poll, A)
        assert counts(battles.history()[0]) == {A: 2, B: 1}  # it could not be removed
        dm = message_text(w.alice.user.dm_channel.last_message)
        assert "I could not remove your reaction" in dm and "others can see it" in dm
        assert "was removed" not in dm


# ------------------------------------------------------------------ Slack (fake Web API)


def said(harness: Harness) -> str:
    """Everything the bot said through the Web API and response URLs."""
    parts: list[Any] = [c.args.get("blocks") or c.args.get("text") for c in harness.fake.calls]
    parts += [r.get("blocks") or r.get("text") for r in harness.fake.responses]
    return texts(parts)


async def test_slack_secret_ballot_says_reactions_are_public(slack: Harness, app: App) -> None:  # noqa: F811
    app.clock.at = BATTLE_DAY
    await publish_groups(app, QUIET_GROUPS)
    await slack.command("battle open 1", user="gedas")
    poll = await slack.fake.wait_for(
        "chat.postMessage", lambda a: "which paper should be accepted" in texts(a.get("blocks", []))
    )
    shown = texts(poll["blocks"])
    assert "Secret ballot" in shown
    assert "reactions on Slack are public" in shown and "buttons are the private way" in shown
    # The poll is known by its reference once the post is recorded, as for a person
    # who sees it and reacts (the fake answers before the bot's record commits).
    assert await recorded_action(slack, poll) == "battle.react"

    await slack.event(reaction("reaction_added", "a", poll), "EvS1")
    note = await slack.fake.wait_for(
        "chat.postEphemeral", lambda a: "counts once you say why" in texts(a["blocks"])
    )
    # Asked in the poll's own channel, only to her: no DM is needed.
    assert note["user"] == "UALICE" and note["channel"] == poll["channel"]
    assert "Reactions on Slack are public and the bot cannot remove them" in texts(note["blocks"])
    assert slack.fake.of("conversations.open") == []
    assert await votes(app) == [("A", None)]
    assert await backing_rows(app) == [("sent", "")]  # answered: its backup released

    # Taking the reaction off to hide it keeps the vote, and says nothing.
    n = len(slack.fake.calls)
    await slack.event(reaction("reaction_removed", "a", poll), "EvS2")
    await slack.event(reaction("reaction_added", "b", poll, user="UGEDAS"), "EvS3")  # staff
    refused = await slack.fake.wait_for(
        "chat.postEphemeral", lambda a: a["user"] == "UGEDAS", after=n
    )
    assert "Slack does not let the bot remove your reaction" in texts(refused["blocks"])
    assert [c for c in slack.fake.calls[n:] if c.args.get("user") == "UALICE"] == []
    assert await votes(app) == [("A", None)]

    ids = await slack.command(f'battle vote 1 A "{WHY}"')
    assert "shows nobody, staff included" in texts((await slack.reply_to(ids))["blocks"])
    await flush_edits(slack.bot.app)  # poll edits are coalesced, at most one a second
    update = await slack.fake.wait_for(
        "chat.update", lambda a: "1 with a justification" in texts(a.get("blocks", []))
    )
    assert "Live count" not in texts(update["blocks"])

    assert slack.fake.of("reactions.remove") == []  # never tried, never claimed
    assert "was removed" not in said(slack)


async def test_slack_open_ballot_counts_live(slack: Harness, app: App) -> None:  # noqa: F811
    app.clock.at = BATTLE_DAY
    await set_ballot(app, "open")
    await publish_groups(app, QUIET_GROUPS)
    await slack.command("battle open 1", user="gedas")
    poll = await slack.fake.wait_for(
        "chat.postMessage", lambda a: "which paper should be accepted" in texts(a.get("blocks", []))
    )
    assert "Open ballot" in texts(poll["blocks"]) and "public" not in texts(poll["blocks"])
    assert await recorded_action(slack, poll) == "battle.react"  # known by its reference
    await slack.event(reaction("reaction_added", "b", poll), "EvO1")
    note = await slack.fake.wait_for("chat.postEphemeral", lambda a: a["user"] == "UALICE")
    assert "cannot remove" not in texts(note["blocks"])
    await slack.fake.wait_for(
        "chat.update",
        lambda a: "🅰️ 0 · 🅱️ 0; 1 more waiting" in texts(a.get("blocks", [])),
    )
    await slack.event(reaction("reaction_removed", "b", poll), "EvO2")  # withdrawn
    await slack.fake.wait_for("chat.postEphemeral", lambda a: "withdrawn" in texts(a["blocks"]))
    assert await votes(app) == []
    assert slack.fake.of("reactions.remove") == []


async def test_a_burst_of_votes_costs_few_poll_edits_and_ends_on_the_real_count(  # type: ignore[no-untyped-def]
    app, transcript
) -> None:
    """60 students vote in the same second (open ballot, so the poll shows the count):
    the poll is edited about once a second, never once per vote, each voter's reply does
    not wait for an edit, and the last edit shows all 60."""
    from db.models import OutboxMessage

    app.clock.at = BATTLE_DAY
    await set_ballot(app, "open")
    voters = await add_voters(app, 60)
    await publish_groups(app, QUIET_GROUPS)
    await transcript.say("battle open 1")
    number = next(n for n, m in transcript.shell.messages.items() if m.reply.reactions)
    poll = transcript.shell.messages[number]
    replies = await asyncio.gather(
        *(say(app, v, f'battle vote 1 A "{v} thinks A is the stronger paper."') for v in voters)
    )
    assert [r.text for r in replies if r.is_error] == []
    await app.core.settle()
    async with app.db.session() as s:
        edits = list(
            await s.scalars(select(OutboxMessage).where(OutboxMessage.edit_key == "poll:1"))
        )
    assert len(edits) == 60  # one per vote is queued...
    sent = [e for e in edits if e.status == "sent"]
    assert 1 <= len(sent) <= 2, [e.status for e in edits]  # ...a second's worth is sent
    for _ in range(3):  # the clock moves on: the newest pending edit goes out, once
        app.clock.advance(timedelta(seconds=1))
        await app.core.dispatcher.deliver()
    async with app.db.session() as s:
        statuses = [
            e.status
            for e in await s.scalars(
                select(OutboxMessage).where(OutboxMessage.edit_key == "poll:1")
            )
        ]
    assert statuses.count("pending") == 0
    assert statuses.count("sent") <= 3 and statuses.count("skipped") >= 57
    assert "🅰️ 60 · 🅱️ 0" in render_text(poll.reply)
