"""A command's slow ``prepare`` step (the assignment solver) runs on a read snapshot
outside the write queue; when the data changes meanwhile, the core prepares again rather
than redoing the slow work while holding the queue."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from commands.assignment import store
from commands.assignment.instance import changes_between
from commands.context import Caller, Context, Request, Where
from commands.core import PREPARE_ATTEMPTS
from commands.solver import Instance
from db.models import AssignmentRun, Platform


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


def overtake_assign(
    app: App, monkeypatch: pytest.MonkeyPatch, rankings: list[str | None]
) -> tuple[list[bool], list[int]]:
    """Replace `assign`'s prepare step by the real one followed, at its n-th call, by
    alice submitting ``rankings[n]`` (None: nobody ranks). Returns the handler's
    ``prepared_final`` at each call and the count of prepare calls (one item)."""
    registry = app.core.registry
    cmd = registry.get("assign")
    assert cmd.prepare is not None
    solve, handler = cmd.prepare, cmd.handler
    finals: list[bool] = []
    calls = [0]

    async def overtaken(ctx: Context, opts: Any) -> Any:
        solved = await solve(ctx, opts)
        order = rankings[calls[0] % len(rankings)]
        calls[0] += 1
        if order is not None:  # a student changes her ranking while the solver runs
            reply = await app.core.handle_text(req("alice"), f"rank standard {order}")
            assert not reply.is_error, reply.text
        return solved

    async def watched(ctx: Context, opts: Any) -> Any:
        finals.append(ctx.prepared_final)
        return await handler(ctx, opts)

    monkeypatch.setitem(
        registry.commands, cmd.path, dataclasses.replace(cmd, prepare=overtaken, handler=watched)
    )
    return finals, calls


async def test_assign_solves_again_when_rankings_change_while_it_solves(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    finals, calls = overtake_assign(app, monkeypatch, ["15 14 13 8 7 6 5", None])
    reply = await app.core.handle_text(req("gedas"), "assign")
    assert not reply.is_error, reply.text
    # Solved twice outside the queue: the first result was found stale on a fresh
    # snapshot and refused before the write queue; the handler stored the second.
    assert calls == [2] and len(finals) == 1
    async with app.db.session() as s:
        runs = (await s.scalars(select(AssignmentRun))).all()
    assert len(runs) == 1  # one proposal stored, from the second solve


async def test_assign_keeps_its_snapshot_when_rankings_keep_changing(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While rankings are open, students may rank during every solve: after the last
    attempt the proposal is stored as computed on its snapshot, the instructor is told
    what changed, and the solver never runs while holding the write queue."""
    solves = 0
    real_solve_course = store.solve_course

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal solves
        solves += 1
        return await real_solve_course(*args, **kwargs)

    monkeypatch.setattr(store, "solve_course", counted)
    seen, calls = overtake_assign(
        app, monkeypatch, ["15 14 13 8 7 6 5", "5 6 7 8 13 14 15", "14 15 13 8 7 6 5"]
    )
    reply = await app.core.handle_text(req("gedas"), "assign")
    assert not reply.is_error, reply.text
    # Three solves, all on snapshots; the last attempt stored what it had.
    assert solves == PREPARE_ATTEMPTS == calls[0]
    assert seen == [True]  # the stale results never reached the write queue
    assert "While it was computed, 1 student changed their rankings" in reply.text
    assert "Run `assign` again to include it" in reply.text
    async with app.db.session() as s:
        runs = (await s.scalars(select(AssignmentRun))).all()
    assert len(runs) == 1
    assert runs[0].summary["changed_while_solving"] == ["1 student changed their rankings"]
    shown = await app.core.handle_text(req("gedas"), "assign show")
    assert "While it was computed, 1 student changed their rankings" in shown.text

    # Run again with nothing changing: no warning, and the report no longer carries one.
    monkeypatch.undo()
    reply = await app.core.handle_text(req("gedas"), "assign")
    assert not reply.is_error, reply.text
    assert "While it was computed" not in reply.text
    async with app.db.session() as s:
        last = (await s.scalars(select(AssignmentRun).order_by(AssignmentRun.id.desc()))).first()
    assert last is not None and "changed_while_solving" not in last.summary
    shown = await app.core.handle_text(req("gedas"), "assign show")
    assert "While it was computed" not in shown.text


async def test_the_repair_button_solves_outside_the_write_queue_too(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Propose a repair" (after `people drop`) runs `assign changes=minimal` as if typed:
    the core's access check, then the solver on a snapshot, never inside the button's
    write transaction."""
    for line in ("assign seed=1", "assign publish"):
        assert not (await app.core.handle_text(req("gedas"), line)).is_error
    dropped = await app.core.handle_text(req("gedas"), "people drop alice")
    button = next(b for b in dropped.buttons if b.label == "Propose a repair")
    finals, calls = overtake_assign(app, monkeypatch, [None])
    refused = await app.core.handle_action(req("maya"), button.custom_id)  # a TA
    assert refused.is_error and calls == [0] and finals == []
    forged = await app.core.handle_action(req("gedas"), button.custom_id + ":x")
    assert forged.is_error and calls == [0]
    reply = await app.core.handle_action(req("gedas"), button.custom_id)
    assert not reply.is_error, reply.text
    assert calls == [1] and len(finals) == 1  # prepared on a snapshot, then stored
    assert "Next to the published assignment" in reply.text, reply.text


def test_what_changed_is_said_in_words() -> None:
    base = Instance(
        students=("1", "2", "3"),
        standard_papers=(5, 6),
        battle_pairs=(),
        standard_prefs={"1": [5, 6], "2": [6, 5], "3": []},
        battle_prefs={},
    )
    assert changes_between(base, base) == []
    now = dataclasses.replace(
        base,
        students=("1", "2", "4"),
        standard_prefs={"1": [6, 5], "2": [5, 6], "4": [5, 6]},
        previous_standard={"1": 5},
        max_presenters=3,
    )
    assert changes_between(base, now) == [
        "2 students changed their rankings",
        "1 student joined the roster",
        "1 student left the roster",
        "the published assignment changed",
        "the papers, partners or assignment rules changed",
    ]
