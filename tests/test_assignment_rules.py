"""The assignment as an instructor runs it (issue #17): the course's rules reach the
solver, every paper is covered on the sample course, students are told why, the
assignment changes after publishing (diff, keep, minimal changes, only the changed are
messaged), a student who leaves frees their seats, partners, and the battle guards.
End to end through the core, on SQLite and on Postgres."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from sqlalchemy import select

from commands.context import Caller, Request, Where
from commands.coursefile import (
    CourseFileError,
    export_course,
    import_course,
    parse_course_file,
)
from commands.rankings import import_rankings, parse_rankings_csv
from commands.replies import Reply, render_text
from db.models import Assignment, BattleTimer, Course, Paper, Person, Platform, Role

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE = EXAMPLES / "comp790-23f.yaml"


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


async def say(app, user: str, line: str) -> Reply:  # type: ignore[no-untyped-def]
    return await app.core.handle_text(req(user), line)


async def rank_everyone(app) -> None:  # type: ignore[no-untyped-def]
    rows = parse_rankings_csv((EXAMPLES / "rankings.csv").read_text(), source="rankings.csv")
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        await import_rankings(s, course, rows, now=app.clock.now())


async def rows(app, *, published: bool) -> dict[str, dict[str, int]]:  # type: ignore[no-untyped-def]
    """name -> {"standard"|"battle": paper number}."""
    async with app.db.session() as s:
        q = (
            select(Person.name, Paper.number, Paper.slot)
            .join(Assignment, Assignment.person_id == Person.id)
            .join(Paper, Paper.id == Assignment.paper_id)
            .where(Assignment.published.is_(published))
        )
        out: dict[str, dict[str, int]] = {}
        for name, number, slot in await s.execute(q):
            out.setdefault(name, {})["battle" if slot.value == "battle" else "standard"] = number
        return out


def dms(out: str) -> list[str]:
    return re.findall(r"DM to ([^·]+?) · coursebot", out)


async def test_sample_course_covers_every_paper_and_says_so(app) -> None:  # type: ignore[no-untyped-def]
    await rank_everyone(app)
    r = await say(app, "gedas", "assign seed=1")
    text = render_text(r)
    assert not r.is_error, text
    assert "Empty papers: none" in text
    proposal = await rows(app, published=False)
    standard = {v["standard"] for v in proposal.values()}
    async with app.db.session() as s:
        papers = {p.number for p in await s.scalars(select(Paper)) if p.slot.value in ("30", "45")}
    assert len(papers) == 18 and standard == papers  # all 18 papers presented
    # 25 students on 18 papers, at most 2 each: 7 pairs and 11 solo talks.
    counts = sorted(sum(1 for v in proposal.values() if v["standard"] == p) for p in papers)
    assert counts.count(2) == 7 and counts.count(1) == 11
    # Published on Aug 25: papers before Sep 1 are short notice, and named.
    shown = render_text(await say(app, "maya", "assign show"))
    assert "Short notice:" in shown
    assert "nobody presents" not in shown
    sched = render_text(await say(app, "maya", "schedule --all"))
    talks = [line for line in sched.splitlines() if "(30)" in line or "(45)" in line]
    assert len(talks) == 18 and not [t for t in talks if "⚠ EMPTY" in t]
    # 25 students fill at most 4 of the 5 battles (3 a side): staff see which one.
    assert sched.count("⚠ not running") == 1
    assert "Battles that do not run: #" in shown


async def test_students_are_told_why_and_staff_can_ask(app) -> None:  # type: ignore[no-untyped-def]
    await rank_everyone(app)
    await say(app, "gedas", "assign seed=1")
    await say(app, "gedas", "assign publish")
    r = await say(app, "alice", "assignment")
    assert "Presentation: #" in r.text
    assert re.search(r"choice|ranking was not submitted|Not one you ranked", r.text)
    # A student whose 1st choice it is hears how many others wanted it too.
    published = await rows(app, published=True)
    firsts = 0
    for user in ("bob", "carol", "deepak", "emily", "farah", "gabriel"):
        t = (await say(app, user, "assignment")).text
        if "Your 1st choice;" in t:
            firsts += 1
            assert re.search(r"(\d+ others? ranked it 1st too|nobody else ranked it 1st)", t)
        else:
            assert "went to" in t or "had room" in t or "Not one you ranked" in t
    assert firsts >= 1
    # Students see counts, never names of others' rankings; staff see names.
    assert "(1st)" not in r.text and "(2nd)" not in r.text
    why = await say(app, "maya", "assign why alice")
    assert not why.is_error and "Alice Chen" in (why.title or "")
    assert (await say(app, "bob", "assign why alice")).is_error
    assert published  # the published assignment exists


async def test_reassign_after_publishing_shows_the_diff_and_tells_only_the_changed(  # type: ignore[no-untyped-def]
    app, transcript
) -> None:
    await rank_everyone(app)
    await say(app, "gedas", "assign seed=1")
    await transcript.say(":as gedas")
    out = await transcript.say("assign publish")
    assert len(dms(out)) == 25
    before = await rows(app, published=True)

    r = await say(app, "gedas", "assign seed=5")
    assert not r.is_error, r.text
    text = render_text(r)
    assert "Next to the published assignment" in text
    proposal = await rows(app, published=False)
    changed = sorted(n for n in before if before[n] != proposal.get(n))
    if changed:
        assert "Changes from the published assignment" in text
        for name in changed:
            assert name in text
    # Students still see the published one.
    assert await rows(app, published=True) == before

    out = await transcript.say("assign publish")
    told = sorted(n.strip() for n in dms(out))
    assert told == changed
    assert await rows(app, published=True) == proposal
    # Nothing needs to move (minimal changes, same rankings): publishing tells nobody.
    await say(app, "gedas", "assign seed=5 changes=minimal")
    out = await transcript.say("assign publish")
    assert dms(out) == [] and "nobody is messaged" in out


async def test_keep_holds_students_and_minimal_changes_moves_few(app) -> None:  # type: ignore[no-untyped-def]
    await rank_everyone(app)
    await say(app, "gedas", "assign seed=1")
    await say(app, "gedas", "assign publish")
    before = await rows(app, published=True)
    r = await say(app, "gedas", "assign keep alice bob")
    assert not r.is_error and "Held in place: Alice Chen, Bob Okafor" in r.text
    await say(app, "gedas", "assign seed=9")
    proposal = await rows(app, published=False)
    assert proposal["Alice Chen"] == before["Alice Chen"]
    assert proposal["Bob Okafor"] == before["Bob Okafor"]
    # Same rankings, minimal changes: nothing needs to move.
    r = await say(app, "gedas", "assign changes=minimal seed=9")
    assert not r.is_error, r.text
    assert await rows(app, published=False) == before
    assert (await say(app, "gedas", "assign keep nobody-here")).is_error


async def test_set_and_swap_on_the_published_assignment_tell_the_students(  # type: ignore[no-untyped-def]
    app, transcript
) -> None:
    await rank_everyone(app)
    await say(app, "gedas", "assign seed=1")
    await say(app, "gedas", "assign publish")
    await transcript.say(":as gedas")
    out = await transcript.say("assign swap alice bob")
    assert sorted(n.strip() for n in dms(out)) == ["Alice Chen", "Bob Okafor"]
    assert "Your presentations changed" in out and "changed: it was #" in out
    published = await rows(app, published=True)
    free = next(
        n
        for n in range(5, 30)
        if sum(1 for v in published.values() if v.get("standard") == n) == 1
        and published["Carol Martinez"]["standard"] != n
    )
    out = await transcript.say(f"assign set carol {free}")
    assert [n.strip() for n in dms(out)] == ["Carol Martinez"]


async def test_drop_frees_seats_and_offers_a_repair(app, transcript) -> None:  # type: ignore[no-untyped-def]
    await rank_everyone(app)
    await say(app, "gedas", "assign seed=1")
    await say(app, "gedas", "assign publish")
    before = await rows(app, published=True)
    assert (await say(app, "gedas", "people drop nobody@nowhere.edu")).is_error
    assert (await say(app, "maya", "people drop alice")).is_error  # instructors only
    r = await say(app, "gedas", "people drop alice")
    assert not r.is_error and "Propose a repair" in [b.label for b in r.buttons]
    async with app.db.session() as s:
        alice = await s.scalar(select(Person).where(Person.name == "Alice Chen"))
        assert alice is not None and alice.role is Role.WITHDRAWN
    assert "Alice Chen" not in await rows(app, published=True)
    r = await app.core.handle_action(req("gedas"), r.buttons[0].custom_id)
    assert not r.is_error, r.text
    proposal = await rows(app, published=False)
    assert "Alice Chen" not in proposal and len(proposal) == 24
    moved = [n for n in proposal if proposal[n] != before[n]]
    assert len(moved) <= 4, moved  # a repair, not a reshuffle
    # Alice's status is refused politely now; restore brings her back.
    r = await say(app, "gedas", "people restore alice")
    assert not r.is_error


async def test_partners_confirmed_by_both_present_together(app) -> None:  # type: ignore[no-untyped-def]
    await rank_everyone(app)
    r = await say(app, "alice", "rank partner bob")
    assert "it counts once they ask for you too" in r.text
    r = await say(app, "bob", "rank partner Alice")
    assert "Confirmed" in r.text
    assert (await say(app, "alice", "rank partner alice")).is_error
    assert (await say(app, "alice", "rank partner gedas")).is_error  # staff
    r = await say(app, "gedas", "assign seed=1")
    proposal = await rows(app, published=False)
    shared = proposal["Alice Chen"]["standard"] == proposal["Bob Okafor"]["standard"]
    text = render_text(r)
    # Together on a paper both ranked, or the report says why not.
    assert shared or "partner" in text.lower()


async def test_battle_timer_and_poll_refuse_a_battle_that_is_not_running(app) -> None:  # type: ignore[no-untyped-def]
    r = await say(app, "gedas", "battle timer 1 a")
    assert r.is_error and "not running" in r.text and "assign" in r.text
    r = await say(app, "gedas", "battle open 1")
    assert r.is_error and "not running" in r.text
    async with app.db.session() as s:
        assert list(await s.scalars(select(BattleTimer))) == []


async def test_contradictory_rules_in_the_course_file_are_named(app) -> None:  # type: ignore[no-untyped-def]
    def problems(rules: dict[str, object]) -> str:
        data = yaml.safe_load(SAMPLE.read_text())
        data["course"]["assignment"] = rules
        try:
            parse_course_file(yaml.safe_dump(data), source="course.yaml")
        except CourseFileError as exc:
            return str(exc)
        raise AssertionError(f"contradictory rules were accepted: {rules}")

    assert "min (3) is more than max (2)" in problems({"presenters": {30: {"min": 3, "max": 2}}})
    text = problems(
        {
            "partners": [
                ["alice.chen@unc.edu", "bob.okafor@unc.edu"],
                ["Alice Chen", "Carol Martinez"],
            ],
            "conflicts": [["alice.chen@unc.edu", "bob.okafor@unc.edu"]],
            "unavailable": {"nobody@unc.edu": ["2023-09-13"]},
        }
    )
    assert "are also partners" in text
    assert "alice.chen@unc.edu is already in partners[0]; one partner each" in text
    assert "'nobody@unc.edu' is not a student" in text
    assert "line " in text  # each problem points at its line


async def test_rules_from_the_course_file_reach_the_solver(app) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(SAMPLE.read_text())
    data["course"]["assignment"] = {
        "presenters": {30: {"min": 1, "max": 1}, 45: {"min": 1, "max": 3}},
        "conflicts": [["alice.chen@unc.edu", "bob.okafor@unc.edu"]],
    }
    cf = parse_course_file(yaml.safe_dump(data), source="course.yaml")
    async with app.db.transaction() as s:
        await import_course(s, cf, now=app.clock.now())
    await rank_everyone(app)
    r = await say(app, "gedas", "assign seed=1")
    assert not r.is_error, r.text
    proposal = await rows(app, published=False)
    async with app.db.session() as s:
        slots = {p.number: p.slot.value for p in await s.scalars(select(Paper))}
    for paper, slot in slots.items():
        n = sum(1 for v in proposal.values() if v.get("standard") == paper)
        if slot == "30":
            assert n <= 1
        elif slot == "45":
            assert 1 <= n <= 3
    a, b = proposal["Alice Chen"], proposal["Bob Okafor"]
    assert a["standard"] != b["standard"] and a["battle"] != b["battle"]
    # The rules round-trip through the course file export.
    async with app.db.session() as s:
        course = await s.scalar(select(Course))
        exported = await export_course(s, course)
    assert exported["course"]["assignment"]["conflicts"] == [
        ["alice.chen@unc.edu", "bob.okafor@unc.edu"]
    ]


async def test_the_solver_does_not_hold_other_commands(app, backend, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`assign` solves on a read snapshot, outside the queue of commands that write: on
    SQLite (one writer) a command typed meanwhile is answered before the solve ends; a
    ranking changed meanwhile makes it solve again, so nothing stale is stored."""
    import asyncio
    import time

    from commands import offload, solver

    await rank_everyone(app)
    real = solver.solve

    solves = []

    def slow(inst):  # type: ignore[no-untyped-def]
        solves.append(inst)
        time.sleep(1.5)  # a class of hundreds takes seconds
        return real(inst)

    monkeypatch.setattr(solver, "solve", slow)
    # A local function cannot be sent to the solver's process: the thread runs it.
    monkeypatch.setattr(offload, "MODE", "thread")
    started = asyncio.get_running_loop().time()
    solving = asyncio.create_task(say(app, "gedas", "assign seed=1"))
    await asyncio.sleep(0.3)
    r = await say(app, "maya", 'announce "Rooms change next week."')
    assert not r.is_error and not solving.done()  # answered while the solver runs
    assert asyncio.get_running_loop().time() - started < 1.5
    r = await say(app, "alice", "rank standard 5 6 7 8 13 14 15")  # changed meanwhile
    assert not r.is_error
    assert not (await solving).is_error
    assert len(await rows(app, published=False)) == 25
    # Solved twice: the snapshot's rankings were stale by the time it was stored.
    assert len(solves) == 2
    alice = next(
        k for k, v in solves[1].standard_prefs.items() if list(v) == [5, 6, 7, 8, 13, 14, 15]
    )
    assert list(solves[0].standard_prefs[alice]) != [5, 6, 7, 8, 13, 14, 15]


async def test_a_keep_that_no_longer_fits_is_named_and_nothing_changes(app) -> None:  # type: ignore[no-untyped-def]
    """Alice is held on her paper, then the course file says she cannot present that
    day: `assign` names her and the rule, and the published assignment stays."""
    await rank_everyone(app)
    await say(app, "gedas", "assign seed=1")
    await say(app, "gedas", "assign publish")
    before = await rows(app, published=True)
    assert not (await say(app, "gedas", "assign keep alice")).is_error
    async with app.db.session() as s:
        paper = await s.scalar(
            select(Paper).where(Paper.number == before["Alice Chen"]["standard"])
        )
        assert paper is not None and paper.class_date is not None
        day = paper.class_date
    data = yaml.safe_load(SAMPLE.read_text())
    data["course"]["assignment"] = {"unavailable": {"alice.chen@unc.edu": [day.isoformat()]}}
    cf = parse_course_file(yaml.safe_dump(data), source="course.yaml")
    async with app.db.transaction() as s:
        await import_course(s, cf, now=app.clock.now())
    r = await say(app, "gedas", "assign seed=2")
    assert r.is_error
    assert "Alice Chen" in r.text and "unavailable" in r.text and "keep" in r.text
    assert "The published assignment, if any, is unchanged." in render_text(r)
    assert await rows(app, published=True) == before
    assert await rows(app, published=False) == {}
