"""Rankings and the presentation assignment, end to end through the core, on SQLite
and on Postgres."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from commands.context import Caller, Request, Where
from commands.coursefile import CourseFileError
from commands.rankings import import_rankings, parse_rankings_csv
from commands.replies import Reply, render_text
from db.models import Assignment, Course, Platform, Ranking, RankingChoice

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


async def say(app, user: str, line: str) -> Reply:  # type: ignore[no-untyped-def]
    return await app.core.handle_text(req(user), line)


async def choices_of(app, email: str) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    from db.models import Paper, Person

    async with app.db.session() as s:
        rows = await s.execute(
            select(Ranking.kind, RankingChoice.rank, Paper.number)
            .join(RankingChoice, RankingChoice.ranking_id == Ranking.id)
            .join(Paper, Paper.id == RankingChoice.paper_id)
            .join(Person, Person.id == Ranking.person_id)
            .where(Person.email == email)
            .order_by(Ranking.kind, RankingChoice.rank)
        )
        out: dict[str, list[int]] = {}
        for kind, _rank, number in rows:
            out.setdefault(kind.value, []).append(number)
        return out


async def test_rank_resubmit_and_show(app) -> None:  # type: ignore[no-untyped-def]
    r = await say(app, "alice", "rank standard 5 6 7 8 13 14 15")
    assert r.tone.value == "success" and "1. #5 SlowFast" in r.text and "in 2 days" in r.text
    r = await say(app, "alice", "rank standard 15 14 13 8 7 6 5")
    assert not r.is_error
    r = await say(app, "alice", "rank battle 9 11 16")
    assert not r.is_error
    assert await choices_of(app, "alice.chen@unc.edu") == {
        "standard": [15, 14, 13, 8, 7, 6, 5],
        "battle": [9, 11, 16],
    }
    shown = render_text(await say(app, "alice", "rank show"))
    assert "1. #15 Omnivore" in shown and "Rankings are open" in shown


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("rank standard 5 5 6 7 8 13 14", "listed more than once: #5"),
        ("rank standard 5 6 7 8 13 14", "you gave 6 distinct papers, not 7"),
        ("rank standard 5 6 7 8 13 14 15 18", "you gave 8 distinct papers, not 7"),
        ("rank standard 5 6 7 8 13 14 9", "battle papers (rank them with `rank battle`): #9"),
        ("rank standard 5 6 7 8 13 14 1", "presented by the instructor: #1"),
        ("rank standard 5 6 7 8 13 14 99", "no such paper: #99"),
        ("rank battle 9 11 5", "not battle papers (rank them with `rank standard`): #5"),
        ("rank standard 5 6 x", "`papers` must be a whole number"),
        ("rank standard", "`papers` is missing"),
    ],
)
async def test_bad_rankings_are_refused_and_the_previous_one_kept(app, line, expected) -> None:  # type: ignore[no-untyped-def]
    await say(app, "alice", "rank standard 5 6 7 8 13 14 15")
    r = await say(app, "alice", line)
    assert r.is_error and expected in r.text, r.text
    assert await choices_of(app, "alice.chen@unc.edu") == {"standard": [5, 6, 7, 8, 13, 14, 15]}


async def test_only_registered_students_rank(app) -> None:  # type: ignore[no-untyped-def]
    r = await say(app, "stranger", "rank standard 5 6 7 8 13 14 15")
    assert r.is_error and "register <your email>" in r.text
    r = await say(app, "maya", "rank standard 5 6 7 8 13 14 15")
    assert r.is_error and "Only students rank papers" in r.text


async def test_deadline_and_extensions(app) -> None:  # type: ignore[no-untyped-def]
    await say(app, "bob", "rank battle 9 11 16")
    app.clock.at = datetime(2023, 8, 28, 4, 0, tzinfo=UTC)  # Mon 12:00 AM EDT: one minute late
    r = await say(app, "bob", "rank battle 11 9 16")
    assert r.is_error and "deadline passed" in r.text and "extension" in r.text
    assert await choices_of(app, "bob.okafor@unc.edu") == {"battle": [9, 11, 16]}
    r = await say(app, "alice", "rankings extend 2023-08-29T12:00 bob")
    assert r.is_error and "only for instructors" in r.text
    r = await say(app, "gedas", "rankings extend 2023-08-27T12:00 bob")
    assert r.is_error and "already in the past" in r.text
    r = await say(app, "gedas", "rankings extend 2023-08-29T12:00 bob")
    assert "Bob Okafor may submit rankings until Tue Aug 29, 2023, 12:00 PM EDT" in render_text(r)
    assert not (await say(app, "bob", "rank battle 11 9 16")).is_error
    assert (await say(app, "carol", "rank battle 11 9 16")).is_error  # only Bob
    r = await say(app, "gedas", "rankings extend 2023-08-30T09:00")
    assert "for everyone" in r.text
    assert not (await say(app, "carol", "rank battle 11 9 16")).is_error


async def test_status_and_reminders_are_staff_only(app, transcript) -> None:  # type: ignore[no-untyped-def]
    await say(app, "alice", "rank standard 5 6 7 8 13 14 15")
    await say(app, "alice", "rank battle 9 11 16")
    r = await say(app, "bob", "rankings status")
    assert r.is_error
    r = await say(app, "maya", "rankings status")
    text = render_text(r)
    assert "1 of 25 students have submitted both rankings" in text
    assert text.index("Bob Okafor") < text.index("Alice Chen")  # missing first
    out = await transcript.say(":as maya")
    out = await transcript.say("rankings remind")
    assert out.count("DM to ") == 24 and "DM to Alice Chen" not in out
    assert "24 students have not submitted" in out
    assert "24 of 24 reminders delivered." in out


def _sample_rows():  # type: ignore[no-untyped-def]
    return parse_rankings_csv((EXAMPLES / "rankings.csv").read_text(), source="rankings.csv")


async def test_import_then_assign_review_edit_publish_export(app, transcript) -> None:  # type: ignore[no-untyped-def]
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        saved = await import_rankings(s, course, _sample_rows(), now=app.clock.now())
    assert saved == 50

    r = await say(app, "alice", "assign")
    assert r.is_error and "only for instructors" in r.text
    r = await say(app, "alice", "assignment")
    assert "not published yet" in r.text

    r = await say(app, "gedas", "assign seed=1")
    text = render_text(r)
    assert "Battles that run: #9 vs #10, #16 vs #17, #19 vs #20, #27 vs #28" in text
    # Every one of the 18 papers is presented (coverage), so someone takes the least
    # wanted ones: the egalitarian optimum leaves one student at their 6th choice.
    assert "Worst rank: 6th (1 student)" in text
    assert "Empty papers: none" in text
    assert "proven optimal" in text and "min-cost flow" in text and "CP-SAT" in text
    assert "vs. random serial dictatorship" in text and "Cost of fairness" in text
    assert [f.name for f in r.files] == ["rank-profile-standard.png", "rank-profile-battle.png"]
    assert r.files[0].data.startswith(b"\x89PNG")
    async with app.db.session() as s:
        n = await s.scalar(select(func.count()).select_from(Assignment))
    assert n == 50  # 25 students x (one standard paper + one battle side)

    # Students cannot see the proposal.
    assert (await say(app, "bob", "assign show")).is_error
    shown = render_text(await say(app, "maya", "assign show"))
    assert "a proposal (not published yet)" in shown
    assert "Alice Chen (2nd)" in shown

    r = await say(app, "gedas", "assign swap alice bob")
    assert "Swapped: Alice Chen now has #25, Bob Okafor now has #32" in r.text
    r = await say(app, "gedas", "assign set alice 1")
    assert r.is_error and "presented by the instructor" in r.text
    r = await say(app, "gedas", "assign set alice 99")
    assert r.is_error and "no paper #99" in r.text
    r = await say(app, "gedas", "assign set alice 14")  # a 30-minute paper with one presenter
    assert "Alice Chen now presents #14 (was #25)" in r.text
    assert "#25's paper now has 0 presenters, fewer than its minimum of 1" in r.text
    r = await say(app, "gedas", "assign swap alice alice")
    assert r.is_error

    await transcript.say(":as gedas")
    out = await transcript.say("assign publish")
    assert out.count("DM to ") == 25 and "#announcements" in out
    assert "25 of 25 private messages delivered." in out
    assert "Presentation assignments are out" in out
    r = await say(app, "alice", "assignment")
    assert "#14 UniFormer" in r.text and "Not one you ranked" in r.text
    r = await say(app, "carol", "assignment")
    assert "Presentation: #7" in r.text and "Your 1st choice" in r.text
    sched = render_text(await say(app, "bob", "schedule week=3"))
    assert (
        "Non-local Neural Networks — " in sched
        and "unassigned" not in sched.split("Non-local")[1].split("\n")[0]
    )

    # Computing again after publishing proposes next to the published assignment.
    r = await say(app, "gedas", "assign")
    assert not r.is_error and "Next to the published assignment" in r.text

    r = await say(app, "maya", "assign export")
    names = [f.name for f in r.files]
    assert names == [
        "comp790-23f-assignment.csv",
        "comp790-23f-assignment.md",
        "comp790-23f-assignment.html",
    ]
    rows = list(csv.reader(io.StringIO(r.files[0].data.decode())))
    assert rows[0] == ["Date", "Paper", "Slot", "Presenters"]
    slowfast = next(row for row in rows if row[1].startswith("#5 "))
    assert slowfast[0] == "Wed Aug 30" and slowfast[3]
    assert b"<table>" in r.files[2].data and b"| Date | Paper |" in r.files[1].data


async def test_rankings_csv_problems_are_reported_with_lines(app) -> None:  # type: ignore[no-untyped-def]
    bad = "student,kind,rank,paper\nalice,standard,1,5\nalice,standard,1,6\nbob,sideways,1,5\nzed,battle,x,9\n"
    with pytest.raises(CourseFileError) as err:
        parse_rankings_csv(bad, source="form.csv")
    text = str(err.value)
    assert "line 3: rank: alice has two standard papers at rank 1" in text
    assert "line 4: kind: must be standard or battle" in text
    assert "line 5: rank/paper: must be whole numbers" in text
    with pytest.raises(CourseFileError, match="missing column"):
        parse_rankings_csv("who,what\n1,2\n")

    await say(app, "alice", "rank standard 5 6 7 8 13 14 15")
    rows = parse_rankings_csv(
        "student,kind,rank,paper\n"
        + "".join(f"alice,standard,{i},{p}\n" for i, p in enumerate([9, 6, 7, 8, 13, 14, 15], 1))
        + "".join(f"nobody@x.edu,battle,{i},{p}\n" for i, p in enumerate([9, 11, 16], 1))
    )
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        with pytest.raises(CourseFileError) as err:
            await import_rankings(s, course, rows, now=app.clock.now())
    text = str(err.value)
    assert "line 2: alice (standard): Your ranking was not saved: battle papers" in text
    assert "line 9: student: Nobody on the roster matches `nobody@x.edu`" in text
    assert await choices_of(app, "alice.chen@unc.edu") == {"standard": [5, 6, 7, 8, 13, 14, 15]}


async def test_a_late_ranking_after_the_deadline_passes_in_time(app) -> None:  # type: ignore[no-untyped-def]
    app.clock.at = datetime(2023, 8, 28, 3, 59, tzinfo=UTC) - timedelta(seconds=1)
    assert not (await say(app, "alice", "rank battle 9 11 16")).is_error
