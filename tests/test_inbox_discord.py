"""Acknowledged means done or known, on Discord: an interaction that runs something is
kept in the inbox before it is deferred, and a bot killed with SIGKILL between the
deferral and the answer answers it after the restart through the interaction's
follow-up webhook (run again, or "went through" if it had committed: never twice), or,
when the token is gone, tells the user by DM what became of it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import App
from commands.clock import FixedClock
from db.models import Discussion, DiscussionQuestion, InboxEntry, Paper, Platform, ProcessedEvent
from db.models import Slot as PaperSlot
from tests.discord_child import QUESTION
from tests.discord_fakes import GUILD_ID, World, adopt_interaction, discord_world, world_ids
from tests.test_discord import message_text, text_of

ROOT = Path(__file__).resolve().parent.parent


async def entries(app: App) -> list[InboxEntry]:
    async with app.db.session() as session:
        return list(await session.scalars(select(InboxEntry).order_by(InboxEntry.id)))


async def questions(app: App, paper: int = 5) -> list[str]:
    async with app.db.session() as session:
        return list(
            await session.scalars(
                select(DiscussionQuestion.text)
                .join(Discussion, Discussion.id == DiscussionQuestion.discussion_id)
                .join(Paper, Paper.id == Discussion.paper_id)
                .where(Paper.number == paper)
            )
        )


async def processed(app: App, event_id: str) -> int:
    async with app.db.session() as session:
        found = await session.scalar(
            select(func.count())
            .select_from(ProcessedEvent)
            .where(ProcessedEvent.platform == Platform.DISCORD, ProcessedEvent.event_id == event_id)
        )
    return int(found or 0)


def followups_sent(world: World, application_id: int, token: str) -> list[Any]:
    return [
        r
        for r in world.env.http_requests
        if r.method == "POST" and r.path == f"/webhooks/{application_id}/{token}"
    ]


# ------------------------------------------------------------------- kill -9
def _child(url: str, data: Path, crash: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.discord_child", url, str(data), crash],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize("crash", ["before", "after"])
async def test_a_command_cut_by_kill_9_is_answered_through_its_followup_after_the_restart(
    app: App, clock: FixedClock, db_url: str, tmp_path: Path, crash: str
) -> None:
    """A real discord.py bot process is killed with SIGKILL once the instructor's
    ``/admin discussion add`` was deferred: ``before`` the command committed, or
    ``after`` it committed but before its answer. The bot restarted two minutes later
    (same Discord, the interaction still deferred there) answers it through the
    interaction's follow-up: it runs it (the question is added) or says it went through
    (the question is not added twice)."""
    proc = _child(db_url, tmp_path / "data", crash)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 90)
        if not line.startswith("{"):
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"the bot process said: {line}\n{err[-3000:]}")
        ids = json.loads(line)
        os.kill(proc.pid, signal.SIGKILL)  # deferred, not answered
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # What the dead process left: the command, kept before it was deferred, not done.
    (entry,) = await entries(app)
    p = entry.payload
    assert entry.platform is Platform.DISCORD and entry.kind == "command"
    assert entry.done_at is None and p["token"]
    assert p["command"] == "discussion add" and p["options"] == {"paper": 5, "text": QUESTION}
    assert p["user_id"] == str(ids["gedas"]) and p["channel_id"] == str(ids["#general"])
    assert p["defer"] == "private"  # `discussion add` answers privately
    assert await processed(app, entry.event_id) == (1 if crash == "after" else 0)
    assert await questions(app) == ([QUESTION] if crash == "after" else [])

    clock.advance(timedelta(minutes=2))  # the restart: the token (15 minutes) still lives
    adopted: list[Any] = []

    def same_discord(world: World) -> None:
        assert world_ids(world) == ids  # the same guild, channels, users and application
        adopted.append(
            adopt_interaction(
                world.env,
                interaction_id=int(entry.event_id),
                token=str(p["token"]),
                channel_id=int(p["channel_id"]),
                user_id=int(p["user_id"]),
                guild_id=int(p["guild_id"]),
                ephemeral=True,
            )
        )

    async with discord_world(app, bind=False, prepare=same_discord) as world:
        assert world.bot.recovery is not None
        await world.bot.recovery  # started once the bot was ready
        (result,) = adopted
        assert followups_sent(world, ids["application"], str(p["token"]))
        answer = text_of(result)
        if crash == "before":
            assert "Added question 1." in answer and QUESTION in answer  # run, answered
        else:
            assert "went through just before the bot restarted" in answer
        assert result.ephemeral  # a private answer stays private
        assert "error id" not in answer

    # The state changed exactly once, and the entry is done without its token.
    assert await questions(app) == [QUESTION]
    assert await processed(app, entry.event_id) == 1
    (entry,) = await entries(app)
    assert entry.done_at is not None and "token" not in entry.payload


# ------------------------------------------------------------------- recovery, by kind
def kept(
    event_id: int,
    kind: str,
    user: int,
    channel: int,
    body: dict[str, Any],
    *,
    token: str,
    defer: str,
    what: str,
    again: str,
    received_at: Any,
) -> InboxEntry:
    """An entry as the router keeps it (``bot.discord.recovery.Inbox.keep``)."""
    return InboxEntry(
        platform=Platform.DISCORD,
        event_id=str(event_id),
        kind=kind,
        received_at=received_at,
        payload={
            "application_id": "0",  # filled in by the test
            "token": token,
            "created_at": received_at.isoformat(),
            "user_id": str(user),
            "user_name": "",
            "guild_id": str(GUILD_ID),
            "channel_id": str(channel),
            "workspace": str(GUILD_ID),
            "where": {"channel": "general", "thread": None, "is_dm": False},
            "defer": defer,
            "what": what,
            "again": again,
            "attachments": [],
            **body,
        },
    )


async def test_recovery_runs_buttons_and_forms_again_and_tells_about_the_rest(app: App) -> None:
    """Entries a stopped process left, each as its own case: a button press and a form
    submission still within the token's life are run again and answered through their
    follow-ups; one that had committed is answered "went through"; one whose token
    Discord no longer takes is answered by DM; older ones are told by DM, plainly,
    that they went through, or which command did not run and to type it again."""
    async with discord_world(app) as w:
        backend = w.env.backend
        now = app.clock.now()
        since = now + timedelta(seconds=1)  # this process started after all of them
        general = w.general.id
        action = app.core.registry.actions["papers.page"]
        form = app.core.registry.get("discussion add").form_spec({"paper": "5"})

        def new_id() -> tuple[int, str]:
            n = backend.snowflake()
            return n, f"token-{n}"

        press, form_sent, committed, public, gone, old, old_done = (new_id() for _ in range(7))
        cases = [
            kept(
                press[0],
                "button",
                w.alice.id,
                general,
                {"custom_id": "papers.page:all:::2"},
                token=press[1],
                defer="private" if action.ephemeral else "public",
                what="press of the **Next ▶** button",
                again="Please press the button again.",
                received_at=now - timedelta(minutes=3),
            ),
            kept(
                form_sent[0],
                "form",
                w.gedas.id,
                general,
                {"form": form.custom_id, "values": {"text": "Does it work on audio?"}},
                token=form_sent[1],
                defer="private",
                what="form for `/admin discussion add`",
                again="Please open the form again and send it.",
                received_at=now - timedelta(minutes=2),
            ),
            kept(
                committed[0],
                "command",
                w.maya.id,
                general,
                # (a command that writes: a read-only one is simply answered again)
                {"command": "discussion propose", "options": {"paper": 5}},
                token=committed[1],
                defer="private",
                what="`/admin discussion propose`",
                again="Please type `/admin discussion propose` again.",
                received_at=now - timedelta(minutes=1),
            ),
            kept(  # committed too; its public "thinking" message must not show the answer
                public[0],
                "command",
                w.bob.id,
                general,
                {"command": "project leave", "options": {}},
                token=public[1],
                defer="public",
                what="`/project leave`",
                again="Please type `/project leave` again.",
                received_at=now - timedelta(minutes=1),
            ),
            kept(  # Discord no longer knows this token (expired early, or revoked)
                gone[0],
                "command",
                w.alice.id,
                general,
                {"command": "whoami", "options": {}},
                token=gone[1],
                defer="private",
                what="`/whoami`",
                again="Please type `/whoami` again.",
                received_at=now - timedelta(minutes=1),
            ),
            kept(
                old[0],
                "command",
                w.bob.id,
                general,
                {"command": "rank show", "options": {}},
                token=old[1],
                defer="private",
                what="`/rank show`",
                again="Please type `/rank show` again.",
                received_at=now - timedelta(minutes=20),
            ),
            kept(
                old_done[0],
                "pick",
                w.alice.id,
                general,
                {"command": "rank standard", "option": "papers", "chosen": [5, 6]},
                token=old_done[1],
                defer="update",
                what="picks for `/rank standard`",
                again="Please type `/rank standard` again.",
                received_at=now - timedelta(hours=1),
            ),
        ]
        async with app.db.transaction() as session:
            for case in cases:
                case.payload["application_id"] = str(backend.application_id)
                session.add(case)
            for event in (committed, public, old_done):
                session.add(
                    ProcessedEvent(
                        platform=Platform.DISCORD, event_id=str(event[0]), created_at=now
                    )
                )
        adopted = {
            n: adopt_interaction(
                w.env,
                interaction_id=n,
                token=token,
                channel_id=general,
                user_id=user,
                guild_id=GUILD_ID,
                ephemeral=ephemeral,
            )
            for (n, token), user, ephemeral in (
                (press, w.alice.id, action.ephemeral),
                (form_sent, w.gedas.id, True),
                (committed, w.maya.id, True),
                (public, w.bob.id, False),
            )
        }

        assert await w.bot.router.inbox.recover(since) == 7

        assert "(page 2 of 3)" in text_of(adopted[press[0]])  # pressed again
        answer = text_of(adopted[form_sent[0]])
        assert "Added question 1." in answer and adopted[form_sent[0]].ephemeral
        assert await questions(app) == ["Does it work on audio?"]
        assert "went through just before the bot restarted" in text_of(adopted[committed[0]])
        # A private answer to a public deferral: the public placeholder is gone, the
        # answer is a private follow-up.
        shown = adopted[public[0]]
        assert shown.response is None
        (private,) = shown.followups
        assert private.ephemeral and "`/project leave` went through" in message_text(private)
        alice_dms = [message_text(m) for m in w.alice.user.dm_channel.history()]
        assert any("Your Discord account" in m or "linked to" in m for m in alice_dms)
        assert any(
            "Your picks for `/rank standard` went through just before the bot restarted" in m
            for m in alice_dms
        )
        bob_dm = message_text(w.bob.user.dm_channel.last_message)
        assert "Your `/rank show` was not run" in bob_dm
        assert "Please type `/rank show` again." in bob_dm
        for left in await entries(app):
            assert left.done_at is not None and "token" not in left.payload


# ------------------------------------------------------------------- the live path
async def test_every_interaction_that_runs_something_is_kept_before_its_deferral(
    app: App,
) -> None:
    """A slash command, a button, a form and the picker's Submit: each is in the inbox
    before Discord hears of it, and done (its token forgotten) once answered."""
    async with discord_world(app) as w:
        router = w.bot.router
        defer = router._defer
        kept_first: list[bool] = []

        async def checked_defer(interaction: Any, *, ephemeral: bool) -> None:
            async with app.db.session() as session:
                row = await session.scalar(
                    select(InboxEntry).where(InboxEntry.event_id == str(interaction.id))
                )
            kept_first.append(row is not None and row.done_at is None)
            await defer(interaction, ephemeral=ephemeral)

        router._defer = checked_defer  # type: ignore[method-assign]

        listing = await w.alice.slash(w.general, "papers", kind="all")
        first = next(m for m in (listing.response, *listing.followups) if m is not None)
        page2 = await w.alice.click(first, label="Next ▶")
        assert "(page 2 of 3)" in text_of(page2)
        shown = await w.gedas.slash(w.general, "admin discussion add", paper=5)
        assert shown.modal is not None
        done = await w.gedas.submit_modal(shown, {"text": "What about audio?"})
        assert "Added question 1." in text_of(done)

        async with app.db.session() as session:
            standard = list(
                await session.scalars(
                    select(Paper.number)
                    .where(Paper.slot.in_([PaperSlot.MIN30, PaperSlot.MIN45]))
                    .order_by(Paper.number)
                )
            )
        picker = (await w.alice.slash(w.general, "rank standard")).response
        assert picker is not None
        for n in standard[:7]:
            custom_id = next(
                c["custom_id"]
                for row in picker.components
                for c in row["components"]
                if c["type"] == 3 and any(o["value"] == str(n) for o in c["options"])
            )
            await w.alice.select(picker, [str(n)], custom_id=custom_id)
        await w.alice.click(picker, label="Submit")
        assert "ranking" in message_text(picker.message).lower()

        # Kept before the deferral: the command, the button, the form; the picker's
        # opening runs nothing and is not kept (its Submit is, and defers an update).
        assert kept_first == [True, True, True, False]
        rows = await entries(app)
        assert [r.kind for r in rows] == ["command", "button", "form", "pick"]
        command, button, form, pick = (r.payload for r in rows)
        assert command["command"] == "papers" and command["options"] == {"kind": "all"}
        assert command["what"] == "`/papers kind:all`" and command["defer"] == "private"  # a lookup
        assert button["custom_id"].startswith("papers.page:")
        assert button["what"] == "press of the **Next ▶** button"
        assert form["values"] == {"text": "What about audio?"} and form["form"].startswith("form:")
        assert pick["chosen"] == standard[:7] and pick["defer"] == "update"
        for row in rows:
            assert row.done_at is not None and "token" not in row.payload
            assert row.payload["application_id"] == str(w.env.backend.application_id)
