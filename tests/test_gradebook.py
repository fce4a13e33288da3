"""A gradebook that is right (issue #19, point 3), through the command core on SQLite
and Postgres, on the virtual clock: running grades count only what is graded or past its
deadline and say which; the course file's critique rules (a missing one, late ones with a
penalty and a cut-off, presenters); excusing with a reason; project grades per group and
milestone with individual adjustments; participation suggested from the bot's records
and stored once confirmed; Canvas gradebook imports; bad input changes nothing."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.app import App
from bot.settings import SAMPLE_COURSE
from commands.context import Attachment, Caller, Request, Where
from commands.coursefile import CourseFileError, import_course, parse_course_file
from commands.replies import Reply, render_text
from commands.timefmt import plain
from db.models import (
    AuditEntry,
    Battle,
    BattlePoll,
    BattleVote,
    Critique,
    CritiqueMark,
    Discussion,
    DiscussionCheckin,
    DiscussionGroup,
    GradeAdjustment,
    GradeEntry,
    Paper,
    Person,
    Platform,
    ProjectGrade,
    Role,
)
from tests.conftest import SAMPLE_NOW
from tests.helpers import publish_groups

#: Critique deadlines (1 PM on the class day): #5 Aug 30 (EDT), #30 Nov 20 (EST).
DUE = {
    5: datetime(2023, 8, 30, 17, 0, tzinfo=UTC),
    6: datetime(2023, 9, 6, 17, 0, tzinfo=UTC),
    22: datetime(2023, 10, 23, 17, 0, tzinfo=UTC),
    30: datetime(2023, 11, 20, 18, 0, tzinfo=UTC),
}
#: The evening of Tue Nov 21: #5 … #30 are past their deadlines, #32 (Nov 29) is not.
NOV_21 = datetime(2023, 11, 21, 23, 0, tzinfo=UTC)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def req(user: str, *files: Path) -> Request:
    return Request(
        Platform.TERMINAL,
        "default",
        Caller(Platform.TERMINAL, user, user),
        Where("general"),
        attachments=tuple(Attachment(f.name, path=f, size=f.stat().st_size) for f in files),
    )


async def say(app: App, user: str, line: str) -> Reply:
    return await app.core.handle_text(req(user), line)


def at(app: App, when: datetime) -> None:
    app.clock.at = when  # type: ignore[attr-defined]


async def reimport(app: App, *lines: str) -> None:
    """Import the sample course again with ``lines`` added to its settings."""
    text = SAMPLE_COURSE.read_text(encoding="utf-8")
    anchor = '  critique_deadline: "13:00"\n'
    text = text.replace(anchor, anchor + "".join(f"  {x}\n" for x in lines), 1)
    async with app.db.transaction() as s:
        await import_course(s, parse_course_file(text), now=SAMPLE_NOW)


async def critiques(app: App, email: str, done: dict[int, tuple[str | None, timedelta]]) -> None:
    """Submitted critiques: paper -> (grade, when relative to its deadline)."""
    async with app.db.transaction() as s:
        who = await s.scalar(select(Person).where(Person.email == email))
        assert who is not None
        for number, (grade, offset) in done.items():
            paper = await s.scalar(select(Paper).where(Paper.number == number))
            assert paper is not None and paper.class_date is not None
            due = datetime.combine(paper.class_date, datetime.min.time(), tzinfo=UTC)
            due = DUE.get(number, due + timedelta(hours=17))
            s.add(
                Critique(
                    course_id=paper.course_id,
                    paper_id=paper.id,
                    person_id=who.id,
                    submitted_at=due + offset,
                    file="x.pdf",
                    size=10,
                    question="q",
                    answer="a",
                    grade=grade,
                )
            )


EARLY = timedelta(hours=-3)

#: Alice by Nov 21: six graded (one fail, #22 a day late), #25 and #29 waiting for a
#: grade, #30 never sent (past its deadline), #32 not due yet.
ALICE = {
    5: ("pass", EARLY),
    6: ("pass", EARLY),
    13: ("pass", EARLY),
    15: ("fail", EARLY),
    21: ("pass", EARLY),
    22: ("pass", timedelta(hours=20)),
    25: (None, EARLY),
    29: (None, EARLY),
}


def row_of(shown: str, component: str) -> str:
    return next(line for line in shown.splitlines() if line.startswith(component))


async def snapshot(app: App) -> dict[str, list[Any]]:
    """Every row a grading command may change."""
    out: dict[str, list[Any]] = {}
    async with app.db.session() as s:
        for model in (GradeEntry, ProjectGrade, GradeAdjustment, CritiqueMark, AuditEntry):
            rows = await s.scalars(select(model).order_by(model.id))
            out[model.__tablename__] = [
                {c.name: getattr(r, c.name) for c in model.__table__.columns} for r in rows
            ]
        out["critiques"] = list(await s.scalars(select(Critique.grade).order_by(Critique.id)))
    return out


def canvas(reply: Reply) -> list[list[str]]:
    return list(csv.reader(io.StringIO(reply.files[0].data.decode())))


# ------------------------------------------------------------------ what counts
async def test_running_grades_count_only_what_is_graded_or_past_due(app: App) -> None:
    await critiques(app, "alice.chen@unc.edu", ALICE)
    at(app, NOV_21)
    shown = render_text(await say(app, "alice", "grades"))
    # 5 passes of 7 counted: 6 graded and #30, missing past its deadline (0).
    assert "71.43/100" in row_of(shown, "critiques")
    said = (
        "Critiques: counted: 6 graded critiques and 1 missing past its deadline; "
        "2 not yet graded, 1 not due yet."
    )
    assert said in shown
    assert "Only what is graded, or past its deadline, counts." in shown
    status = render_text(await say(app, "alice", "critique status"))
    assert "missing (overdue), counts 0" in status
    assert "A critique never submitted counts as 0 once its deadline has passed." in status

    # Before #30's deadline it was not counted: a day earlier, 5 of 6.
    at(app, DUE[30] - timedelta(days=1))
    earlier = render_text(await say(app, "alice", "grades"))
    assert "83.33/100" in row_of(earlier, "critiques")
    assert "counted: 6 graded critiques; 2 not yet graded, 2 not due yet" in earlier

    # The course leaves a missing one blank: #30 does not count.
    await reimport(app, "critique_rules: {missing: blank}")
    at(app, NOV_21)
    blank = render_text(await say(app, "alice", "grades"))
    assert "83.33/100" in row_of(blank, "critiques")
    assert "2 not yet graded, 1 not due yet, 1 missing, not counted" in blank
    export = canvas(await say(app, "maya", "critique export"))
    col = export[0].index(
        "Critique #30: InternVideo: General Video Foundation Models via Generative and Discriminative Learning"
    )
    alice = next(r for r in export if r[0] == "Chen, Alice")
    assert alice[col] == ""  # blank, as the rule says


async def test_late_critiques_lose_the_penalty_and_stop_at_the_cutoff(
    app: App, tmp_path: Path
) -> None:
    await reimport(
        app,
        "critique_rules: {late_penalty: 0.5, late_penalty_per_day: 0.1, late_cutoff: 48h}",
    )
    await critiques(app, "alice.chen@unc.edu", ALICE)
    at(app, NOV_21)
    shown = render_text(await say(app, "alice", "grades"))
    # #22 was a day late: its pass counts 1 - 0.5 - 0.1 = 0.4; (4 + 0.4) of 7.
    assert "62.86/100" in row_of(shown, "critiques")
    assert "6 graded critiques (1 late, with the late penalty)" in shown
    export = canvas(await say(app, "maya", "critique export"))
    col = export[0].index(
        "Critique #22: ActionFormer: Localizing Moments of Actions with Transformers"
    )
    assert next(r for r in export if r[0] == "Chen, Alice")[col] == "0.4"
    status = render_text(await say(app, "alice", "critique status"))
    assert "up to 48h after the deadline, losing 50% + 10% a day of their points" in status

    # Submitting: within the cut-off it is taken and marked late; after it, refused.
    pdf = tmp_path / "late.pdf"
    pdf.write_bytes(PDF)
    opts = {"paper": 5, "question": "Why?", "answer": "Because."}
    at(app, DUE[5] + timedelta(hours=47))
    r = await app.core.handle(req("bob", pdf), "critique submit", opts)
    assert not r.is_error and "It is late" in r.text, r.text
    at(app, DUE[5] + timedelta(hours=49))
    before = await snapshot(app)
    r = await app.core.handle(req("carol", pdf), "critique submit", opts)
    said = plain(r.text)
    assert r.is_error and "late ones were accepted until Fri Sep 1, 2023, 1:00 PM EDT" in said
    assert await snapshot(app) == before

    # A course that takes no late critiques refuses them at once.
    await reimport(app, "critique_rules: {accept_late: false}")
    at(app, DUE[6] + timedelta(minutes=5))
    r = await app.core.handle(req("carol", pdf), "critique submit", {**opts, "paper": 6})
    assert r.is_error and "late ones are not accepted in this course" in r.text
    assert await snapshot(app) == before


def test_the_critique_rules_are_checked_at_load() -> None:
    text = SAMPLE_COURSE.read_text(encoding="utf-8")
    anchor = '  critique_deadline: "13:00"\n'
    bad = (
        "  critique_rules: {missing: never, late_penalty: 1.5, late_cutoff: -2h}\n"
        "  reminders: {critique: [24h]}\n"
    )
    with pytest.raises(CourseFileError) as err:
        parse_course_file(text.replace(anchor, anchor + bad, 1), source="c.yaml")
    shown = str(err.value)
    line = text.splitlines().index(anchor.rstrip("\n")) + 2
    assert f"line {line}: course.critique_rules.missing: must be one of zero, blank" in shown
    assert "course.critique_rules.late_penalty: input should be less than or equal to 1" in shown
    assert "course.critique_rules.late_cutoff: must be a positive length of time" in shown
    refused = "  critique_rules: {accept_late: false, late_penalty: 0.5}\n"
    with pytest.raises(CourseFileError) as err:
        parse_course_file(text.replace(anchor, anchor + refused, 1), source="c.yaml")
    assert "late_penalty applies to late critiques, but accept_late is false" in str(err.value)


async def test_presenters_owe_a_critique_when_the_course_says_so(app: App) -> None:
    await publish_groups(app, [("Alice", 6)])
    at(app, DUE[6] + timedelta(hours=1))
    listed = render_text(await say(app, "maya", "critique list 6"))
    assert "Alice Chen (presenting)" in listed
    await reimport(app, "critique_rules: {presenters_excused: false}")
    listed = render_text(await say(app, "maya", "critique list 6"))
    assert "(presenting)" not in listed
    assert "Alice Chen" in listed.split("Missing (overdue: counted 0)")[1]


# ------------------------------------------------------------------------ excusing
async def test_the_instructor_excuses_a_student_with_a_reason(app: App) -> None:
    at(app, DUE[5] - timedelta(days=2))  # before the deadline: a known absence
    r = await say(app, "gedas", "critique excuse bob 5 at a conference that week")
    assert not r.is_error and r.ephemeral
    assert "Excused Bob Okafor from the critique of #5" in r.text
    async with app.db.session() as s:
        mark = await s.scalar(select(CritiqueMark))
        assert mark is not None and (mark.mark, mark.reason) == (
            "excused",
            "at a conference that week",
        )
        entry = await s.scalar(select(AuditEntry).where(AuditEntry.kind == "critique.grade"))
        assert entry is not None and entry.subject == "Bob Okafor"
        assert entry.reason == "at a conference that week"
    at(app, DUE[5] + timedelta(hours=1))
    status = render_text(await say(app, "bob", "critique status"))
    assert "excused (at a conference that week)" in status
    assert "counted: nothing yet; 9 not due yet, 1 excused" in render_text(
        await say(app, "gedas", "grades bob")
    )
    listed = render_text(await say(app, "maya", "critique list 5"))
    assert "Bob Okafor (excused: at a conference that week)" in listed
    assert "Canvas" in (await say(app, "maya", "critique export")).text


async def test_bad_input_is_refused_privately_and_changes_nothing(app: App) -> None:
    async with app.db.transaction() as s:
        await s.execute(
            update(Person).where(Person.email == "zoe.williams@unc.edu").values(role=Role.WITHDRAWN)
        )
    r = await say(app, "alice", "project create Robo")
    assert not r.is_error
    await say(app, "bob", "project join Robo")
    await say(app, "gedas", "grade project Robo proposal 80")
    await critiques(app, "carol.martinez@unc.edu", {5: (None, EARLY)})
    at(app, DUE[5] + timedelta(hours=1))
    before = await snapshot(app)
    cases = [
        ("grade set alice homework 50", "`homework` is not a grading component"),
        ("grade set alice project -5", "outside 0-100"),
        ("grade set alice project 100.5", "outside 0-100"),
        ("grade set zoe project 90", "withdrew from the course"),
        ("grade set gedas project 90", "is not a student"),
        ("critique excuse zoe 5 family emergency", "Zoe Williams withdrew from the course"),
        ("critique excuse gedas 5 family emergency", "is not a student"),
        ("critique excuse nobody 5 family emergency", "Nobody on the roster"),
        ("critique excuse carol 5 family emergency", "Carol Martinez submitted a critique"),
        ("critique excuse bob 9 family emergency", "takes no critique"),
        ("critique excuse bob 5", "`reason` is missing"),
        ("grade set nobody project 90", "Nobody on the roster"),
        (
            'critique grade 5 excused zoe reason="family emergency"',
            "Zoe Williams withdrew from the course, so is not enrolled; nothing was recorded",
        ),
        ('critique grade 5 excused gedas reason="away"', "is not a student; nothing was recorded"),
        ('critique grade 5 excused nobody reason="away"', "Nobody on the roster"),
        ("critique grade 5 pass zoe", "withdrew from the course, so is not enrolled"),
        ("grade project Robo demo 90", "There is no milestone `demo`"),
        ("grade project Robo proposal 101", "outside 0-100"),
        ("grade project Robo proposal -1", "outside 0-100"),
        ("grade project Nope proposal 90", "no project called `Nope`"),
        ("grade adjust bob demo +5 helped", "There is no milestone `demo`"),
        ("grade adjust bob proposal +25 carried the demo", "would make Bob Okafor's"),
        ("grade adjust bob proposal -81 missed it", "would make Bob Okafor's"),
        ("grade adjust bob proposal lots carried it", "not a change of points"),
        ("grade adjust bob final +5 carried it", "has no grade for Final project yet"),
        ("grade adjust zoe proposal +5 helped", "withdrew from the course"),
        ("grade adjust carol proposal +5 helped", "has no grade for Project proposal"),
        ("grade adjust bob proposal +5", "`reason` is missing"),
        ("grade participation confirm", "Name a student, or `all`"),
        ("grade participation confirm zoe", "withdrew from the course"),
        ("grade participation confirm bob", "nothing to suggest for Bob Okafor yet"),
    ]
    for line, why in cases:
        r = await say(app, "gedas", line)
        assert r.is_error and why in r.text, (line, r.text)
        assert r.ephemeral, line
        assert await snapshot(app) == before, line
    # Students cannot record anything.
    for line in ("grade project Robo proposal 100", "grade adjust alice proposal +5 me"):
        r = await say(app, "alice", line)
        assert r.is_error and "TAs and instructors" in r.text
    assert await snapshot(app) == before


# -------------------------------------------------------------------- project grades
async def test_project_grades_per_group_and_milestone_with_adjustments(app: App) -> None:
    for who, line in (
        ("alice", "project create Robo"),
        ("bob", "project join Robo"),
        ("carol", "project join Robo"),
        ("deepak", 'project create "Video QA"'),
        ("emily", 'project join "video qa"'),
    ):
        assert not (await say(app, who, line)).is_error, line
    r = await say(app, "gedas", "grade project Robo proposal 88")
    assert not r.is_error and r.ephemeral
    assert "Robo · Project proposal: 88/100 for Alice Chen, Bob Okafor, Carol Martinez" in r.text
    assert not (await say(app, "maya", 'grade project "Video QA" proposal 75')).is_error
    r = await say(app, "maya", "grade adjust bob proposal -5 missed the presentation")
    assert not r.is_error and "88 -5 = 83/100 (missed the presentation)" in r.text, r.text

    # Each member sees the group's grade and their own adjustment, with why.
    alice = render_text(await say(app, "alice", "grades"))
    assert "88/100" in row_of(alice, "project") and "1 of 3 milestones graded" in alice
    bob = render_text(await say(app, "bob", "grades"))
    assert "83/100" in row_of(bob, "project")
    proposal = row_of(bob, "Project proposal")
    assert "88 (Robo)" in proposal and "-5 (missed the presentation)" in proposal
    assert "83/100" in proposal
    assert "75/100" in row_of(render_text(await say(app, "emily", "grades")), "project")

    # A later member does not inherit a grade given before they joined.
    assert not (await say(app, "farah", "project join Video QA")).is_error
    farah = render_text(await say(app, "gedas", "grades farah"))
    assert "not recorded" in row_of(farah, "project")
    # The next milestone: weighted 10 and 10, Alice (88 + 92) / 2 = 90.
    r = await say(app, "gedas", 'grade project robo milestone 92 reason="after the demo"')
    assert not r.is_error, r.text
    alice = render_text(await say(app, "alice", "grades"))
    assert "90/100" in row_of(alice, "project") and "2 of 3 milestones graded" in alice
    # A regrade replaces it, says what it was, and keeps Bob's adjustment.
    r = await say(app, "gedas", "grade project Robo proposal 90")
    assert "(was 88)" in r.text and "Bob Okafor: 85 (-5)" in r.text
    # A grade set by hand still wins over the milestones.
    await say(app, "gedas", "grade set carol project 70")
    assert "70/100" in row_of(render_text(await say(app, "gedas", "grades carol")), "project")
    # An adjustment of 0 removes it.
    r = await say(app, "gedas", "grade adjust bob proposal 0 presented after all")
    assert "Removed Bob Okafor's adjustment" in r.text

    async with app.db.session() as s:
        kinds = [
            (e.kind, e.subject)
            for e in await s.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if e.kind in ("grade.project", "grade.adjust")
        ]
        changed = await s.scalar(
            select(AuditEntry).where(AuditEntry.kind == "grade.adjust").order_by(AuditEntry.id)
        )
    # One entry per member for each group grade, one per adjustment.
    assert kinds.count(("grade.project", "Alice Chen")) == 3
    assert kinds.count(("grade.project", "Emily Nguyen")) == 1
    assert kinds.count(("grade.adjust", "Bob Okafor")) == 2
    assert changed is not None and changed.reason == "missed the presentation"
    assert changed.before == {"milestone": "proposal", "adjustment": None}
    assert changed.after == {"milestone": "proposal", "adjustment": -5}
    audit = render_text(await say(app, "gedas", "audit bob"))
    assert "grade.adjust" in audit and "grade.project" in audit

    # The export carries the project component (Canvas column "project", out of 100).
    rows = canvas(await say(app, "gedas", "grade export"))
    col = rows[0].index("project")
    by_login = {r[3]: r for r in rows[2:]}
    assert by_login["achen"][col] == "91" and by_login["bokafor"][col] == "91"


# ---------------------------------------------------------------------- participation
async def evidence(app: App) -> None:
    """Two discussions held (Bob checked in at both, Carol was put in a group at one,
    Deepak at none) and battle 1's poll closed (Bob voted with a justification, Carol
    without one; Emily presents in it)."""
    at_ = SAMPLE_NOW
    await publish_groups(app, [("Emily", 10)])
    async with app.db.transaction() as s:
        people = {p.name.split()[0]: p.id for p in await s.scalars(select(Person))}
        papers = {p.number: p for p in await s.scalars(select(Paper))}
        course = papers[5].course_id
        held = []
        for n in (5, 6):
            d = Discussion(course_id=course, paper_id=papers[n].id, state="ended", started_at=at_)
            s.add(d)
            await s.flush()
            held.append(d)
            s.add(DiscussionCheckin(discussion_id=d.id, person_id=people["Bob"], at=at_))
        s.add(
            DiscussionGroup(
                discussion_id=held[1].id, number=1, question="q", members=[people["Carol"]]
            )
        )
        battle = await s.scalar(select(Battle).where(Battle.number == 1))
        assert battle is not None
        poll = BattlePoll(
            course_id=course, battle_id=battle.id, channel="battles", opened_at=at_, closed_at=at_
        )
        s.add(poll)
        await s.flush()
        s.add(
            BattleVote(
                poll_id=poll.id,
                person_id=people["Bob"],
                side="A",
                justification="clearer ablations and a fairer baseline",
                updated_at=at_,
            )
        )
        s.add(BattleVote(poll_id=poll.id, person_id=people["Carol"], side="B", updated_at=at_))


async def test_participation_is_suggested_and_stored_once_confirmed(app: App) -> None:
    await evidence(app)
    shown = await say(app, "gedas", "grade participation")
    assert not shown.is_error and shown.ephemeral
    text = render_text(shown)
    assert "Nothing is stored until you confirm" in text
    rows = {r[0]: r for r in shown.tables[0].rows}
    assert rows["Bob Okafor"][1:4] == ["2/2", "1/1", "100"]
    assert rows["Carol Martinez"][1:4] == ["1/2", "0/1", "33.3"]
    assert rows["Deepak Raman"][1:4] == ["0/2", "0/1", "0"]
    assert rows["Emily Nguyen"][1:4] == ["0/2", "0/0", "0"]  # she presents: no vote owed
    assert rows["Bob Okafor"][4] == "—"
    async with app.db.session() as s:
        assert list(await s.scalars(select(GradeEntry))) == []

    assert (await say(app, "bob", "grade participation")).is_error  # staff only
    r = await say(app, "gedas", "grade participation confirm bob")
    assert not r.is_error and "Stored 1 participation grade: Bob Okafor 100." in r.text
    one = await say(app, "gedas", "grade participation bob")  # the action left out: show
    assert [row[4] for row in one.tables[0].rows] == ["100"]
    r = await say(app, "gedas", "grade participation confirm all")
    assert "Stored 24 participation grades" in r.text and "1 already had" in r.text
    assert "participation  10%     33.3/100" in render_text(await say(app, "carol", "grades"))
    async with app.db.session() as s:
        stored = {
            e.person_id: e.points
            for e in await s.scalars(
                select(GradeEntry).where(GradeEntry.component == "participation")
            )
        }
        entry = await s.scalar(
            select(AuditEntry).where(
                AuditEntry.subject == "Carol Martinez", AuditEntry.kind == "grade.set"
            )
        )
    assert len(stored) == 25 and sorted(set(stored.values())) == [0.0, 33.3, 100.0]
    assert entry is not None and entry.after == {"component": "participation", "points": 33.3}
    assert "1/2 discussions attended, 0/1 battle votes with a justification" in (entry.reason or "")


# ------------------------------------------------------------------------- Canvas
async def test_canvas_imports_name_what_is_missing(app: App) -> None:
    async with app.db.transaction() as s:
        await s.execute(
            update(Person)
            .where(Person.email == "alice.chen@unc.edu")
            .values(canvas_id="482001", section="COMP 790 001")
        )
        await s.execute(
            update(Person)
            .where(Person.email == "bob.okafor@unc.edu")
            .values(canvas_id="482002", section="COMP 590 001")
        )
        await s.execute(
            update(Person)
            .where(Person.email == "zoe.williams@unc.edu")
            .values(sis_id=None, onyen=None)
        )
    await critiques(app, "alice.chen@unc.edu", {5: ("pass", EARLY)})
    for command in ("grade export", "critique export"):
        r = await say(app, "maya", command)
        assert not r.is_error and r.ephemeral
        rows = canvas(r)
        assert rows[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
        assert rows[1][0] == "Points Possible" and rows[1][1:5] == ["", "", "", ""]
        by_name = {row[0]: row for row in rows[2:]}
        assert by_name["Chen, Alice"][1:5] == ["482001", "730418265", "achen", "COMP 790 001"]
        assert by_name["Okafor, Bob"][4] == "COMP 590 001"
        assert by_name["Williams, Zoe"][1:5] == ["", "", "", ""]  # still importable by name
        assert len(rows) == 2 + 25
        assert "23 students have no Canvas id: matched by SIS login" in r.text, r.text
        assert "1 of them has no SIS id or login either (Zoe Williams)" in r.text
    grades = canvas(await say(app, "maya", "grade export"))
    assert grades[0][5:] == [
        "participation",
        "critiques",
        "presentations",
        "project",
        "Current Score",
        "Final Score",
    ]
    assert grades[1][5:] == ["100", "100", "100", "100", "(read only)", "(read only)"]
    alice = next(row for row in grades if row[0] == "Chen, Alice")
    assert alice[6] == "100" and alice[9:] == ["100", "20"]
