"""The answer to a reaction is owed like any message the bot sends: a vote by reaction
commits together with an outbox row that backs the voter's private answer. The adapter
sends the answer itself at once (worded for what its platform did with the reaction)
and releases the row; if the process dies in between, the row is sent after the
restart (a real kill -9 here), so the voter is never left without the request for a
justification."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from bot.app import App
from commands.context import Caller, Request, Where
from commands.outbox import PENDING, SENT
from db.models import BattleVote, MessageRef, OutboxMessage, Person, Platform
from tests.helpers import QUIET_GROUPS, publish_groups
from tests.test_battles import BATTLE_DAY
from tests.test_outbox import ROOT, FakePlatform, _child, _lines

A, B = "🅰️", "🅱️"


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("battles")
    )


async def open_poll(app: App) -> str:
    """Battle 1's poll, posted; its message reference."""
    app.clock.at = BATTLE_DAY  # type: ignore[attr-defined]
    await publish_groups(app, QUIET_GROUPS)
    reply = await app.core.handle_text(req("gedas"), "battle open 1")
    assert not reply.is_error, reply.text
    async with app.db.session() as s:
        ref = await s.scalar(select(MessageRef.ref).where(MessageRef.reactions.is_not(None)))
    assert ref is not None
    return ref


async def answer_rows(app: App, user: str) -> list[OutboxMessage]:
    async with app.db.session() as s:
        return list(
            await s.scalars(
                select(OutboxMessage).where(OutboxMessage.channel == f"@terminal:{user}")
            )
        )


async def test_the_answer_is_backed_by_a_held_row_that_the_adapter_releases(app: App) -> None:
    fake = FakePlatform()
    app.core.outbox = fake
    dispatcher = app.core.dispatcher
    assert dispatcher is not None
    ref = await open_poll(app)

    reply = await app.core.handle_reaction(req("alice"), ref, A, added=True)
    assert reply is not None and "counts once you say why" in reply.text
    [row] = await answer_rows(app, "alice")
    assert reply.backup == row.id
    assert row.status == PENDING and row.claimed_by == dispatcher.token
    assert "counts once you say why" in json.dumps(row.reply, ensure_ascii=False)
    # Held: the dispatcher leaves it to the adapter, which is sending it right now.
    await dispatcher.deliver()
    assert not [s for s in fake.sent if s[0] == "account alice"]

    app.core.answered(reply)  # the adapter sent it
    assert reply.backup is None
    await app.core.settle()
    [row] = await answer_rows(app, "alice")
    assert row.status == SENT and row.claimed_by is None
    await dispatcher.deliver()
    assert not [s for s in fake.sent if s[0] == "account alice"]  # sent once, by the adapter

    # A reaction that changes nothing (staff do not vote: refused) owes nothing.
    refused = await app.core.handle_reaction(req("gedas"), ref, B, added=True)
    assert refused is not None and "do not vote" in refused.text
    assert refused.backup is None and await answer_rows(app, "gedas") == []


async def test_an_answer_the_adapter_never_confirmed_is_sent_after_a_restart(app: App) -> None:
    app.core.outbox = FakePlatform()
    ref = await open_poll(app)
    reply = await app.core.handle_reaction(req("bob"), ref, B, added=True)
    assert reply is not None and reply.backup is not None
    # The process stops before the adapter sends the answer. The next process's
    # dispatcher releases what the dead one held and sends it.
    after = FakePlatform()
    app.core.outbox = after
    restarted = app.core.dispatcher
    assert restarted is not None
    assert await restarted.release_stale() == 1
    await restarted.deliver()
    [text] = [text for to, text in after.sent if to == "account bob"]
    assert "counts once you say why" in text
    [row] = await answer_rows(app, "bob")
    assert row.status == SENT


async def test_kill_9_after_the_vote_commits_still_answers_the_voter(
    app: App, db_url: str, tmp_path: Path
) -> None:
    """A real bot process takes a reaction, commits the vote and is killed (SIGKILL)
    before it answers; the next process sends the answer, once."""
    app.core.outbox = FakePlatform()
    ref = await open_poll(app)
    log = tmp_path / "delivered.txt"
    proc = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "tests.reaction_child",
            db_url,
            str(tmp_path / "child-data"),
            str(log),
            BATTLE_DAY.isoformat(),
            "carol",
            ref,
            A,
        ],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    row_id = int(proc.stdout.decode().split()[-1])
    assert _lines(log) == []  # died before answering
    async with app.db.session() as s:
        carol = await s.scalar(select(Person).where(Person.name.like("Carol%")))
        assert carol is not None
        vote = await s.scalar(select(BattleVote).where(BattleVote.person_id == carol.id))
        assert vote is not None and vote.side == "A"  # the vote committed
        row = await s.get(OutboxMessage, row_id)
        assert row is not None and row.status == PENDING and row.claimed_by

    restart = _child(db_url, log)
    _, err = await asyncio.to_thread(restart.communicate, timeout=120)
    assert restart.returncode == 0, err.decode()
    records = [json.loads(line) for line in _lines(log)]
    answers = [r for r in records if r["where"] == "dm @carol"]
    assert len(answers) == 1 and "counts once you say why" in answers[0]["text"]
    async with app.db.session() as s:
        row = await s.get(OutboxMessage, row_id)
        assert row is not None and row.status == SENT


async def test_the_terminal_shows_an_answer_once_when_its_clock_moves_on(  # type: ignore[no-untyped-def]
    app: App, transcript
) -> None:
    """The terminal releases the backing row at once: a script that moves its virtual
    clock past the row's lease right after a reaction does not see the answer twice."""
    app.clock.at = BATTLE_DAY  # type: ignore[attr-defined]
    await publish_groups(app, QUIET_GROUPS)
    await transcript.say("battle open 1")
    number = next(n for n, m in transcript.shell.messages.items() if m.reply.reactions)
    await transcript.say(":as alice")
    start = len(transcript.lines)
    # Line after line as a script runs them (no waiting for background work between).
    await transcript.shell.handle_line(f":react {number} {A}")
    await transcript.shell.handle_line(":advance 2h")  # far past the 30-second lease
    out = "\n".join(transcript.lines[start:])
    assert out.count("counts once you say why") == 1, out
    assert [r.status for r in await answer_rows(app, "alice")] == [SENT]
