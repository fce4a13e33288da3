"""The dispatcher on both databases: typed options (as Discord sends them), roles,
actions, course resolution, and concurrent writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from commands.context import Caller, Request, Where
from commands.replies import render_text
from db.models import Identity, Notification, Platform, ProcessedEvent


def req(user: str, workspace: str = "default", email: str | None = None) -> Request:
    """A terminal caller; ``email``: as if the platform vouched for it (Slack profiles)."""
    return Request(
        platform=Platform.TERMINAL,
        workspace=workspace,
        caller=Caller(Platform.TERMINAL, user, user, email),
        where=Where(channel="general"),
    )


async def test_typed_options_go_through_the_same_validation(app) -> None:  # type: ignore[no-untyped-def]
    reply = await app.core.handle(req("alice"), "papers", {"kind": "battle", "date": None})
    assert not reply.is_error and "10 battle papers" in reply.text
    reply = await app.core.handle(req("alice"), "papers", {"kind": "nope"})
    assert reply.is_error and "`kind` must be one of" in reply.text
    reply = await app.core.handle(req("alice"), "no such", {})
    assert reply.is_error and "Unknown command" in reply.text


async def test_unbound_workspace_and_roles(app) -> None:  # type: ignore[no-untyped-def]
    reply = await app.core.handle_text(req("alice", workspace="elsewhere"), "papers")
    assert reply.is_error and "not connected to a course" in reply.text
    assert "coursebot course bind" in reply.text
    reply = await app.core.handle_text(req("alice"), "register unlink bob.okafor@unc.edu")
    assert reply.is_error and "only for TAs and instructors" in reply.text
    reply = await app.core.handle_text(req("maya"), "register unlink bob.okafor@unc.edu")
    assert not reply.is_error and "Unlinked Bob Okafor (terminal: bob)" in reply.text
    reply = await app.core.handle_text(req("bob"), "whoami")
    assert "not linked" in reply.text


async def test_staff_link_moves_an_account_and_find_person_is_unambiguous(app) -> None:  # type: ignore[no-untyped-def]
    reply = await app.core.handle_text(req("gedas"), "register link chen alice2")
    assert "Linked terminal account `alice2` to Alice Chen" in reply.text
    reply = await app.core.handle_text(req("alice2"), "whoami")
    assert "Name: Alice Chen" in render_text(reply)
    reply = await app.core.handle_text(req("alice"), "whoami")
    assert "not linked" in reply.text  # one account per person and platform
    reply = await app.core.handle_text(req("gedas"), "register link a x")
    assert reply.is_error and "matches several people" in reply.text


async def test_buttons_are_actions_with_stable_ids(app) -> None:  # type: ignore[no-untyped-def]
    reply = await app.core.handle_text(req("alice"), "papers")
    button, share = reply.buttons
    assert button.custom_id == "papers.page:all:::2"
    # A lookup answers privately; the second button shares it with the channel.
    assert reply.ephemeral and share.label == "Share in channel"
    assert share.custom_id == "share:papers"
    page2 = await app.core.handle_action(req("alice"), button.custom_id)
    assert "(page 2 of 3)" in page2.text
    stale = await app.core.handle_action(req("alice"), "gone.action:1")
    assert stale.is_error and "no longer active" in stale.text


async def test_two_people_claiming_one_roster_entry_at_once(app) -> None:  # type: ignore[no-untyped-def]
    """Concurrent registrations for the same (verified) email: exactly one wins, the
    others are told."""
    replies = await asyncio.gather(
        *(
            app.core.handle_text(
                req(f"claimer{i}", email="zoe.williams@unc.edu"), "register zoe.williams@unc.edu"
            )
            for i in range(8)
        )
    )
    wins = [r for r in replies if not r.is_error]
    assert len(wins) == 1, [r.text for r in replies]
    assert all(
        "already linked" in r.text or "at the same moment" in r.text for r in replies if r.is_error
    )
    async with app.db.session() as s:
        n = await s.scalar(
            select(func.count()).select_from(Identity).where(Identity.user_id.like("claimer%"))
        )
    assert n == 1


async def test_instants_come_back_aware_and_equal(app) -> None:  # type: ignore[no-untyped-def]
    at = datetime(2023, 11, 5, 6, 30, tzinfo=UTC)
    async with app.db.transaction() as s:
        s.add(Notification(course_id=1, key="probe", sent_at=at))
    async with app.db.session() as s:
        got = await s.scalar(select(Notification.sent_at).where(Notification.key == "probe"))
    assert got == at and got.tzinfo is not None


async def test_a_retried_event_acts_once(app) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    first = replace(req("zoe-id", email="zoe.williams@unc.edu"), event_id="Ev123")
    replies = await asyncio.gather(
        *(app.core.handle_text(first, "register zoe.williams@unc.edu") for _ in range(3))
    )
    assert sum("Welcome, Zoe Williams" in r.text for r in replies) == 1
    assert sum(r.duplicate for r in replies) == 2
    # A failed command records nothing, so its retry runs again.
    bad = replace(req("nobody"), event_id="Ev124")
    assert (await app.core.handle_text(bad, "register no@x.edu")).is_error
    assert (await app.core.handle_text(bad, "register no@x.edu")).is_error


async def test_handled_event_ids_are_forgotten_after_a_day(app) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from commands.core import prune_events

    # `register` is not read-only, so its event ids are kept in the database (a
    # read-only command's are kept in memory only).
    await app.core.handle_text(replace(req("zoe-id"), event_id="EvOld"), "register")
    app.clock.advance(timedelta(hours=23))
    await app.core.handle_text(replace(req("zoe-id"), event_id="EvNew"), "register")
    async with app.db.transaction() as s:
        assert await prune_events(s, app.clock.now()) == 0  # both younger than a day
    app.clock.advance(timedelta(hours=2))
    async with app.db.transaction() as s:
        assert await prune_events(s, app.clock.now()) == 1
    async with app.db.session() as s:
        kept = list(await s.scalars(select(ProcessedEvent.event_id)))
    assert kept == ["EvNew"]


async def test_lookups_answer_privately_and_can_be_shared(app, transcript) -> None:  # type: ignore[no-untyped-def]
    """Fifty students typing `schedule` no longer flood the channel: the answer is
    private, and "Share in channel" posts it (computed again, for the presser)."""
    await transcript.say(":as alice")
    out = await transcript.say("schedule week=3")
    assert "(only you can see this)" in out and "Share in channel" in out
    number = max(transcript.shell.messages)
    out = await transcript.say(f":click {number} 1")
    assert "Shared in the channel." in out
    posted = [m for m in transcript.shell.messages.values() if not m.reply.ephemeral]
    assert posted and "(shared by Alice Chen)" in posted[-1].reply.text
    assert "Week 3" in render_text(posted[-1].reply)
    # An id the bot never wrote (a command that is not a lookup) is refused.
    r = await app.core.handle_action(req("alice"), "share:assign")
    assert r.is_error
    # In a direct message there is no channel to share to: no button.
    dm = Request(
        Platform.TERMINAL,
        "default",
        Caller(Platform.TERMINAL, "alice", "alice"),
        Where(None, is_dm=True),
    )
    r = await app.core.handle_text(dm, "deadlines")
    assert [b.label for b in r.buttons if b.action == "share"] == []


async def test_on_sqlite_lookups_do_not_wait_behind_a_writer(app, backend) -> None:  # type: ignore[no-untyped-def]
    """SQLite has one writer: commands that write queue one at a time. A lookup only
    reads, so it runs beside the writer (a deferred transaction, WAL) instead of waiting
    behind, say, an `assign` that takes seconds."""
    if backend != "sqlite":
        pytest.skip("Postgres runs commands side by side already (one connection each)")
    async with app.core._slots, app.db.transaction() as writer:  # a slow writer holds SQLite
        await writer.execute(text("UPDATE courses SET term = term"))
        reply = await asyncio.wait_for(app.core.handle_text(req("alice"), "deadlines"), 5)
        assert not reply.is_error and reply.ephemeral
        rank = "rank standard 5 6 7 8 13 14 15"  # a command that writes
        blocked = asyncio.create_task(app.core.handle_text(req("alice"), rank))
        await asyncio.sleep(0.3)
        assert not blocked.done()  # a command that may write waits its turn
    assert not (await blocked).is_error
