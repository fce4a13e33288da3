"""Discussions end to end on SQLite and Postgres: the submitted questions, the proposed
and compiled list, breakout groups in threads mixed by pair history, the timer's
warning and call-back (across a restart, never twice) and the summary."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import combinations

from sqlalchemy import select, update

from bot.app import start_app
from bot.shell import Shell
from commands.context import Caller, Request, Where
from commands.discussions import due_discussion_posts
from commands.replies import Reply, render_text
from db.models import (
    Course,
    Critique,
    Discussion,
    DiscussionGroup,
    DiscussionQuestion,
    Paper,
    Person,
    Platform,
    Role,
)

#: The class of paper #5 (SlowFast): Wed 2023-08-30; the discussion starts 3:30 PM EDT.
START = datetime(2023, 8, 30, 19, 30, tzinfo=UTC)

QUESTIONS = [
    "Why does the fast pathway need so few channels?",
    "Why can the fast pathway use so few channels compared to the slow one?",
    "Is the low channel capacity of the fast pathway enough to model motion?",
    "How do the lateral connections fuse the slow and fast pathways?",
    "Would the lateral connections work if they went from slow to fast instead?",
    "What happens without lateral connections between the two pathways?",
    "Could optical flow replace the fast pathway?",
    "Is the fast pathway just learning something like optical flow?",
    "How does SlowFast compare with two-stream networks that use optical flow?",
    "How expensive is SlowFast in FLOPs compared to I3D?",
    "Is the computational cost of SlowFast lower than 3D CNNs of similar accuracy?",
    "Would SlowFast generalise to egocentric video datasets like EPIC-Kitchens?",
    "Does the model transfer to datasets other than Kinetics?",
    "Is the biological analogy to retinal P-cells and M-cells convincing?",
    "Does the magnocellular/parvocellular analogy actually motivate the design?",
    "How should we choose the speed ratio alpha between the pathways?",
    "What if the temporal stride ratio alpha is much larger than 8?",
    "Could the architecture handle audio as a third pathway?",
]


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


async def say(app, user: str, line: str) -> Reply:  # type: ignore[no-untyped-def]
    return await app.core.handle_text(req(user), line)


async def seed_questions(app, paper: int, questions: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """Critique rows with these questions, one per student (as `critique submit` leaves)."""
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        p = await s.scalar(select(Paper).where(Paper.number == paper))
        students = list(
            await s.scalars(select(Person).where(Person.role == Role.STUDENT).order_by(Person.id))
        )
        for person, q in zip(students, questions, strict=False):
            s.add(
                Critique(
                    course_id=course.id,
                    paper_id=p.id,
                    person_id=person.id,
                    submitted_at=START - timedelta(days=1),
                    file=f"critiques/x/{person.id}.pdf",
                    size=100,
                    question=q,
                    answer="An answer.",
                )
            )
        return [p.name for p in students[: len(questions)]]


async def groups(app, paper: int) -> list[list[int]]:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        rows = await s.scalars(
            select(DiscussionGroup)
            .join(Discussion)
            .join(Paper, Paper.id == Discussion.paper_id)
            .where(Paper.number == paper)
            .order_by(DiscussionGroup.number)
        )
        return [list(g.members) for g in rows]


async def test_questions_are_listed_proposed_and_compiled(app) -> None:  # type: ignore[no-untyped-def]
    app.clock.at = START - timedelta(hours=2)
    authors = await seed_questions(app, 5, QUESTIONS)

    # Students never see the others' questions (they are part of their critiques).
    r = await say(app, "alice", "discussion questions 5")
    assert r.is_error and "only for TAs and instructors" in r.text

    r = await say(app, "gedas", "discussion questions 5")
    text = render_text(r)
    assert not r.is_error, text
    for name, q in zip(authors, QUESTIONS, strict=True):  # every question, with its author
        assert name in text and q in text
    async with app.db.session() as s:
        proposed = list(
            await s.scalars(select(DiscussionQuestion).order_by(DiscussionQuestion.position))
        )
    assert 6 <= len(proposed) <= 8
    texts = [q.text for q in proposed]
    assert len(set(texts)) == len(texts) and all(t in QUESTIONS for t in texts)
    # Paraphrases are grouped: the two "few channels" questions never both survive.
    assert not {QUESTIONS[0], QUESTIONS[1]} <= set(texts)
    assert sum(len(q.sources) for q in proposed) == len(QUESTIONS)
    assert "proposed, not yet accepted" in text
    assert [b.label for b in r.buttons] == ["Accept these", "Propose again"]

    # Asking again shows the same list (it is stored, not recomputed).
    again = render_text(await say(app, "gedas", "discussion questions 5"))
    assert all(t in again for t in texts)

    # Start refuses until the list is accepted.
    r = await say(app, "gedas", "discussion start 5")
    assert r.is_error and "not accepted" in r.text and "discussion accept 5" in render_text(r)

    # Edit, add, remove, accept.
    r = await say(app, "gedas", 'discussion edit 5 1 "Why so few channels in the fast path?"')
    assert not r.is_error and "1. Why so few channels in the fast path?" in r.text
    r = await say(app, "gedas", 'discussion add 5 "Would SlowFast work on audio spectrograms?"')
    assert not r.is_error and f"{len(texts) + 1}. Would SlowFast work on audio" in r.text
    r = await say(app, "gedas", "discussion remove 5 2")
    assert not r.is_error
    async with app.db.session() as s:
        now = [
            q.text
            for q in await s.scalars(
                select(DiscussionQuestion).order_by(DiscussionQuestion.position)
            )
        ]
    assert now[0] == "Why so few channels in the fast path?"
    assert texts[1] not in now and now[-1] == "Would SlowFast work on audio spectrograms?"
    assert len(now) == len(texts)
    r = await say(app, "gedas", "discussion accept 5")
    assert not r.is_error and "(accepted)" in (r.title or "")

    # Bad input: a clear message each; nothing stored changes.
    for line, expect in [
        ('discussion add 5 ""', "The question is empty"),
        ('discussion edit 5 99 "x"', "There is no question 99"),
        ("discussion remove 5 0", "number"),
        ("discussion questions 1", "has no in-class discussion"),
        ("discussion questions 99", "There is no paper #99"),
        ("discussion end", "No discussion is running"),
    ]:
        r = await say(app, "gedas", line)
        assert r.is_error and expect in r.text, (line, r.text)
    async with app.db.session() as s:
        after = [
            q.text
            for q in await s.scalars(
                select(DiscussionQuestion).order_by(DiscussionQuestion.position)
            )
        ]
    assert after == now


async def test_groups_threads_timer_restart_and_summary(settings, clock, tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock.at = START - timedelta(minutes=10)
    app = await start_app(settings, clock=clock)
    lines: list[str] = []
    shell = Shell(app, workspace="default", speaker="gedas", files_dir=tmp_path, out=lines.append)
    try:
        await seed_questions(app, 5, QUESTIONS)
        assert not (await say(app, "gedas", "discussion questions 5")).is_error
        assert not (await say(app, "gedas", "discussion accept 5")).is_error

        # Check-in: the groups are made of those who pressed "I'm here".
        r = await say(app, "gedas", "discussion checkin 5")
        (button,) = r.buttons
        here = [
            "alice",
            "bob",
            "carol",
            "deepak",
            "emily",
            "farah",
            "gabriel",
            "hannah",
            "jiawen",
            "kwame",
            "laura",
            "mateo",
            "nadia",
            "omar",
            "priya",
            "quinn",
        ]
        for user in here:
            done = await app.core.handle_action(req(user), button.custom_id)
            assert not done.is_error, done.text
        twice = await app.core.handle_action(req("alice"), button.custom_id)
        assert not twice.is_error
        staff = await app.core.handle_action(req("maya"), button.custom_id)
        assert staff.is_error and "Only students" in staff.text

        # More groups than students: a clear refusal, nothing started.
        r = await say(app, "gedas", "discussion start 5 groups=40")
        assert r.is_error and "40" in r.text
        clock.at = START
        del lines[:]
        await shell.handle_line("discussion start 5 groups=4 minutes=30 absent=quinn")
        out = "\n".join(lines)
        assert (
            "15 students (the students who checked in, less 1 absent) in 4 groups of 3–4" in out
        ), out
        made = await groups(app, 5)
        assert sorted(len(g) for g in made) == [3, 4, 4, 4]
        async with app.db.session() as s:
            ids = {p.name.split()[0].lower(): p.id for p in await s.scalars(select(Person))}
        assert sorted(m for g in made for m in g) == sorted(ids[u] for u in here if u != "quinn")
        # One thread per group, with its question and members.
        assert out.count("(thread opened for") == 4
        assert "#discussions › Group 1 · paper #5" in out and "Your question:" in out

        # Five minutes before the end: a warning in every thread; at the end, the call-back.
        del lines[:]
        clock.at = START + timedelta(minutes=24, seconds=59)
        assert await shell.sweeper.tick() == 0
        clock.at = START + timedelta(minutes=25)
        assert await shell.sweeper.tick() == 4
        assert "\n".join(lines).count("5 minutes left") == 4
        assert "#discussions › Group 3 · paper #5" in "\n".join(lines)
        assert await shell.sweeper.tick() == 0  # never twice
    finally:
        await app.close()

    # A restart during the session: the call-back still goes out, once.
    clock.at = START + timedelta(minutes=31)
    app = await start_app(settings, clock=clock)
    lines2: list[str] = []
    shell = Shell(app, workspace="default", speaker="gedas", files_dir=tmp_path, out=lines2.append)
    try:
        assert await shell.sweeper.tick() == 5  # 4 threads + the main channel
        text = "\n".join(lines2)
        assert text.count("Time's up! Come back to the main room") == 4
        assert "time's up for all 4 groups" in text
        assert await shell.sweeper.tick() == 0

        # A student sees their own group; the summary at the end.
        r = await say(app, "bob", "discussion group")
        assert "Your group: group" in (r.title or "") and "Bob" in r.text
        del lines2[:]
        await shell.handle_line("discussion end")
        text = "\n".join(lines2)
        assert "Discussion of #5 SlowFast Networks for Video Recognition: summary" in text
        assert "15 students in 4 groups met for 31 minutes" in text
        assert text.count("The discussion has ended") == 4
        r = await say(app, "gedas", "discussion start 5")
        assert r.is_error and "already held" in r.text
    finally:
        await app.close()


async def test_later_groups_mix_people_who_met_least(app) -> None:  # type: ignore[no-untyped-def]
    """Over the course's discussions, pairs repeat as little as the plan allows: the
    groups are made from the pair history of the earlier discussions."""
    async with app.db.transaction() as s:
        papers = [
            p.number
            for p in await s.scalars(
                select(Paper)
                .where(Paper.discussion.is_(True))
                .order_by(Paper.class_date, Paper.number)
            )
        ][:4]
        # A course with four discussions (the sample has more: repeats are forced then).
        await s.execute(
            update(Paper)
            .where(Paper.number.not_in(papers))
            .values(discussion=False, critique=False)
        )
        n_students = len(list(await s.scalars(select(Person).where(Person.role == Role.STUDENT))))
    assert len(papers) == 4 and n_students == 25
    for i, number in enumerate(papers[:4]):
        app.clock.at = START + timedelta(days=7 * i)
        for line in (
            f'discussion add {number} "What is the main idea?"',
            f"discussion accept {number}",
        ):
            r = await say(app, "gedas", line)
            assert not r.is_error, r.text
        r = await say(app, "gedas", f"discussion start {number} groups=5 minutes=20")
        assert not r.is_error, r.text
        assert "There are more groups than questions" in r.text
        held = f"{i} earlier discussion{'s' * (i != 1)}"
        assert f"groups are mixed by the history of {held}" in r.text
        app.clock.at += timedelta(minutes=20)
        assert not (await say(app, "gedas", f"discussion end {number}")).is_error
    pairs: Counter[tuple[int, int]] = Counter()
    for number in papers[:4]:
        made = await groups(app, number)
        assert sorted(m for g in made for m in g).__len__() == n_students
        for g in made:
            pairs.update(combinations(sorted(g), 2))
    # 25 students in 5 groups of 5, 4 sessions: 200 pair-meetings for 300 pairs, so no
    # pair need meet twice (the bound is 0; random groups: ≈ 45 repeated meetings in
    # expectation). Planned one session at a time, the bot gets within a few (4 here).
    repeats = sum(c - 1 for c in pairs.values())
    assert max(pairs.values()) <= 2 and repeats <= 6, (repeats, max(pairs.values()))


async def test_timer_skips_a_stale_warning_and_a_call_back_past_grace(app, caplog) -> None:  # type: ignore[no-untyped-def]
    app.clock.at = START
    for line in ('discussion add 5 "Q?"', "discussion accept 5", "discussion start 5 groups=2"):
        assert not (await say(app, "gedas", line)).is_error
    async with app.db.transaction() as s:  # the bot was down from the start until 2 h later
        due = await due_discussion_posts(s, START + timedelta(hours=2))
    assert due == []
    skipped = [r.getMessage() for r in caplog.records if "missed by" in r.getMessage()]
    assert len(skipped) == 2 and "warning" in skipped[0] and "call-back" in skipped[1]
    async with app.db.transaction() as s:
        assert await due_discussion_posts(s, START + timedelta(hours=3)) == []


async def test_groups_and_questions_are_planned_outside_the_write_queue(  # type: ignore[no-untyped-def]
    app, monkeypatch
) -> None:
    """Clustering the questions (`discussion questions`, `discussion propose` and its
    button) and planning the groups (`discussion start`) run in the core's ``prepare``
    step, on a snapshot outside the writers' queue; the write only stores the result.
    A student who checks in while the groups are planned is not lost: the write sees
    that attendance changed and plans again, with her."""
    import dataclasses

    from commands import discussions

    calls: list[tuple[str, int]] = []
    real_groups, real_cluster = discussions._groups, discussions._cluster

    async def counted_groups(start):  # type: ignore[no-untyped-def]
        calls.append(("groups", len(start.present)))
        return await real_groups(start)

    async def counted_cluster(ctx, d, submitted, count):  # type: ignore[no-untyped-def]
        calls.append(("cluster", len(submitted)))
        return await real_cluster(ctx, d, submitted, count)

    monkeypatch.setattr(discussions, "_groups", counted_groups)
    monkeypatch.setattr(discussions, "_cluster", counted_cluster)
    app.clock.at = START - timedelta(hours=2)
    await seed_questions(app, 5, QUESTIONS)

    r = await say(app, "gedas", "discussion questions 5")
    assert not r.is_error and "Proposed" in r.text, r.text
    assert calls == [("cluster", len(QUESTIONS))]  # once, on the snapshot; stored as is
    r = await say(app, "gedas", "discussion questions 5")  # a second look proposes nothing
    assert calls == [("cluster", len(QUESTIONS))]
    again = next(b for b in r.buttons if b.label == "Propose again")
    r = await app.core.handle_action(req("gedas"), again.custom_id)
    assert not r.is_error and "Proposed" in r.text, r.text
    assert calls[-1] == ("cluster", len(QUESTIONS)) and len(calls) == 2
    forged = await app.core.handle_action(req("gedas"), "discussion.propose:5 count=1")
    assert forged.is_error and len(calls) == 2  # a crafted argument is not a command
    assert (await app.core.handle_action(req("alice"), again.custom_id)).is_error  # staff only
    assert not (await say(app, "gedas", "discussion accept 5")).is_error

    cmd = app.core.registry.get("discussion start")
    plan = cmd.prepare
    assert plan is not None

    async def overtaken(ctx, opts):  # type: ignore[no-untyped-def]
        planned = await plan(ctx, opts)
        here = await app.core.handle_action(req("alice"), "discussion.here:5")
        assert not here.is_error, here.text  # alice checks in while the groups are planned
        return planned

    monkeypatch.setitem(
        app.core.registry.commands, cmd.path, dataclasses.replace(cmd, prepare=overtaken)
    )
    calls.clear()
    app.clock.at = START
    r = await say(app, "gedas", "discussion start 5")
    assert not r.is_error, r.text
    # Planned for the whole roster on the snapshot, then again in the write for who is
    # here now (only alice checked in): the groups hold what the write saw.
    assert calls == [("groups", 25), ("groups", 1)]
    assert "1 student (the students who checked in) in 1 group of 1" in r.text, r.text
    async with app.db.session() as s:
        alice = await s.scalar(select(Person).where(Person.name == "Alice Chen"))
    assert alice is not None and await groups(app, 5) == [[alice.id]]
