"""How commands take turns on the database: on Postgres a few at once (the event loop
is one core), lookups without a transaction, and a slow step on a snapshot (the
assignment solver) beside everyone rather than in their queue."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.app import start_app
from bot.settings import Settings
from commands.clock import FixedClock
from commands.context import Caller, Context, Request, Where
from db.models import Platform
from db.session import PG_COMMANDS, Database, pg_commands


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


def test_commands_at_once_on_postgres_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.delenv("COURSEBOT_PG_COMMANDS", raising=False)
    assert pg_commands(10) == PG_COMMANDS == 3
    monkeypatch.setenv("COURSEBOT_PG_COMMANDS", "6")
    assert pg_commands(10) == 6
    assert pg_commands(4) == 4  # never more than the pool's share for commands
    monkeypatch.setenv("COURSEBOT_PG_COMMANDS", "0")
    assert pg_commands(10) == 1
    monkeypatch.setenv("COURSEBOT_PG_COMMANDS", "many")
    assert pg_commands(10) == PG_COMMANDS
    assert "COURSEBOT_PG_COMMANDS='many' is not a number; using 3" in caplog.text
    assert Database("postgresql+asyncpg://u@127.0.0.1/x").max_concurrency == PG_COMMANDS
    assert Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}").max_concurrency == 1


async def test_lookups_on_postgres_read_without_a_transaction_and_snapshots_with_one(
    db_url: str, backend: str
) -> None:
    """A lookup's statements each read the latest committed data (as in a READ
    COMMITTED transaction) but with no BEGIN/COMMIT round trips; a snapshot read (the
    solver's) sees one moment throughout."""
    if backend != "postgres":
        pytest.skip("SQLite reads in a deferred transaction on its WAL snapshot")
    db = Database(db_url)
    try:
        async with db.read() as s:
            first = await s.scalar(text("SELECT now()"))
            await asyncio.sleep(0.02)
            second = await s.scalar(text("SELECT now()"))
            assert second > first  # each statement is its own transaction
        async with db.read(snapshot=True) as s:
            assert await s.scalar(text("SHOW transaction_isolation")) == "repeatable read"
            first = await s.scalar(text("SELECT now()"))
            await asyncio.sleep(0.02)
            assert await s.scalar(text("SELECT now()")) == first  # one transaction
        async with db.transaction() as s:  # a command that writes: one transaction
            assert await s.scalar(text("SHOW transaction_isolation")) == "read committed"
            first = await s.scalar(text("SELECT now()"))
            await asyncio.sleep(0.02)
            assert await s.scalar(text("SELECT now()")) == first
    finally:
        await db.dispose()


async def test_the_solver_takes_no_turn_from_the_others(
    settings: Settings, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one command at a time, lookups and writes still run while `assign`'s slow
    step holds its own connection (on SQLite the writers' queue is one already)."""
    monkeypatch.setenv("COURSEBOT_PG_COMMANDS", "1")
    app = await start_app(settings, clock=clock)
    try:
        assert app.db.max_concurrency == 1
        cmd = app.core.registry.get("assign")
        assert cmd.prepare is not None
        solve = cmd.prepare
        solving, release = asyncio.Event(), asyncio.Event()

        async def held(ctx: Context, opts: Any) -> Any:
            solving.set()
            await release.wait()  # the solver, still running
            return await solve(ctx, opts)

        monkeypatch.setitem(
            app.core.registry.commands, cmd.path, dataclasses.replace(cmd, prepare=held)
        )
        assign = asyncio.create_task(app.core.handle_text(req("gedas"), "assign"))
        await asyncio.wait_for(solving.wait(), 10)
        for line in ("deadlines", "whoami", "rank standard 5 6 7 8 13 14 15"):
            reply = await asyncio.wait_for(app.core.handle_text(req("alice"), line), 5)
            assert not reply.is_error, reply.text
        assert not assign.done()
        release.set()
        reply = await asyncio.wait_for(assign, 60)
        assert not reply.is_error, reply.text
    finally:
        await app.close()
