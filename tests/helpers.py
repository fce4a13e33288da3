"""Small course set-ups that several test modules share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import select

from bot.app import App
from db.models import Assignment, Paper, Person

#: Battle 1 (#9 TSM vs #10 X3D) of the sample course: who sits on which side.
BATTLE_1_GROUPS = [
    ("Bob", 9),
    ("Carol", 9),
    ("Deepak", 9),
    ("Emily", 10),
    ("Farah", 10),
    ("Gabriel", 10),
]

#: Battle 1's sides taken by students no test votes with (for tests about voting).
QUIET_GROUPS = [
    ("Quinn", 9),
    ("Ravi", 9),
    ("Sofia", 9),
    ("Uma", 10),
    ("Victor", 10),
    ("Wei", 10),
]


async def publish_groups(app: App, groups: list[tuple[str, int]] = BATTLE_1_GROUPS) -> None:
    """Publish battle sides by hand (first names -> battle paper), so that the battle
    runs: ``battle timer`` and ``battle open`` refuse a battle without presenters."""
    async with app.db.transaction() as s:
        people = {p.name.split()[0]: p for p in await s.scalars(select(Person))}
        papers = {p.number: p for p in await s.scalars(select(Paper))}
        for name, number in groups:
            s.add(
                Assignment(
                    course_id=papers[number].course_id,
                    paper_id=papers[number].id,
                    person_id=people[name].id,
                    published=True,
                )
            )


async def flush_edits(app: App) -> None:
    """Let coalesced edits (a poll's count) go out: they wait up to a second after the
    previous edit of the same message, and the tests' clock stands still."""
    from datetime import timedelta

    from commands.clock import FixedClock

    await app.core.settle()
    if isinstance(app.clock, FixedClock):
        app.clock.advance(timedelta(seconds=1))
    if app.core.dispatcher is not None:
        await app.core.dispatcher.deliver()


async def running_battle(app: App) -> int:
    """The number of a battle that runs in the published assignment (both sides have
    presenters): which battles run is the solver's choice."""
    from db.models import Battle

    async with app.db.session() as s:
        seated = set(
            await s.scalars(select(Assignment.paper_id).where(Assignment.published.is_(True)))
        )
        for b in await s.scalars(select(Battle).order_by(Battle.number)):
            if b.paper_a_id in seated and b.paper_b_id in seated:
                return b.number
    raise AssertionError("no battle runs in the published assignment")


async def until(done: Callable[[], bool], what: str, within: float = 60.0) -> None:
    """Wait (polling) until ``done()``; the bound is generous: it only catches a hang."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done():
        assert loop.time() < deadline, f"still waiting after {within:.0f} s: {what}"
        await asyncio.sleep(0.02)
