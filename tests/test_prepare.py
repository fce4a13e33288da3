"""A command's slow ``prepare`` step (the assignment solver) runs on a read snapshot
outside the write queue; when the data changes meanwhile, the core prepares again rather
than redoing the slow work while holding the queue."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from commands.context import Caller, Context, Request, Where
from db.models import AssignmentRun, Platform


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


async def test_assign_solves_again_when_rankings_change_while_it_solves(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = app.core.registry
    cmd = registry.get("assign")
    assert cmd.prepare is not None
    solve = cmd.prepare
    finals: list[bool] = []
    calls = 0

    async def slow_and_overtaken(ctx: Context, opts: Any) -> Any:
        nonlocal calls
        calls += 1
        solved = await solve(ctx, opts)
        if calls == 1:  # a student changes her ranking while the solver runs
            reply = await app.core.handle_text(req("alice"), "rank standard 15 14 13 8 7 6 5")
            assert not reply.is_error, reply.text
        return solved

    handler = cmd.handler

    async def watched(ctx: Context, opts: Any) -> Any:
        finals.append(ctx.prepared_final)
        return await handler(ctx, opts)

    monkeypatch.setitem(
        registry.commands,
        cmd.path,
        dataclasses.replace(cmd, prepare=slow_and_overtaken, handler=watched),
    )
    reply = await app.core.handle_text(req("gedas"), "assign")
    assert not reply.is_error, reply.text
    # Solved twice outside the queue; the first result was refused, not redone inside.
    assert calls == 2 and finals == [False, False]
    async with app.db.session() as s:
        runs = (await s.scalars(select(AssignmentRun))).all()
    assert len(runs) == 1  # one proposal stored, from the second solve
