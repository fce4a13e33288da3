"""A gradebook that is right and a calendar that is whole, on SQLite and Postgres:
critiques counted over the graded ones, a missing critique recorded as 0 (audited),
presenters excused from critiquing their paper, Canvas exports by family and given
name, and an .ics with every meeting, break and deadline under UIDs that survive a
re-import."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from icalendar import Calendar
from sqlalchemy import delete, select

from bot.app import App
from commands.calendar import calendar_ics, person_key
from commands.context import Caller, Request, Where
from commands.coursefile import (
    dump_course,
    export_course,
    import_course,
    parse_course_file,
    starter_course_file,
)
from commands.critiques import (
    EXCUSED,
    FAIL,
    NOT_YET,
    PASS,
    PRESENTING,
    SUBMITTED,
    ZERO,
    due_critique_posts,
    tally,
)
from commands.replies import Reply, render_text
from db.models import (
    Assignment,
    AuditEntry,
    Course,
    Critique,
    CritiqueMark,
    Paper,
    Person,
    Platform,
)
from tests.conftest import SAMPLE_NOW

#: #5 SlowFast, Wed Aug 30 2023: critiques due 1 PM EDT (17:00 UTC).
DUE_5 = datetime(2023, 8, 30, 17, 0, tzinfo=UTC)
#: #6 Non-local, Wed Sep 6 2023: critiques due 1 PM EDT.
DUE_6 = datetime(2023, 9, 6, 17, 0, tzinfo=UTC)


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


async def say(app: App, user: str, line: str) -> Reply:
    return await app.core.handle_text(req(user), line)


async def person(app: App, email: str) -> Person:
    async with app.db.session() as s:
        p = await s.scalar(select(Person).where(Person.email == email))
        assert p is not None
        return p


async def add_critiques(app: App, email: str, grades: dict[int, str | None]) -> None:
    """Critiques (already submitted) of the papers numbered in ``grades``."""
    async with app.db.transaction() as s:
        who = await s.scalar(select(Person).where(Person.email == email))
        assert who is not None
        for number, grade in grades.items():
            paper = await s.scalar(select(Paper).where(Paper.number == number))
            assert paper is not None
            s.add(
                Critique(
                    course_id=paper.course_id,
                    paper_id=paper.id,
                    person_id=who.id,
                    submitted_at=datetime(2023, 8, 29, tzinfo=UTC),
                    file="x.pdf",
                    size=10,
                    question="q",
                    answer="a",
                    grade=grade,
                )
            )


async def present(app: App, email: str, number: int) -> None:
    async with app.db.transaction() as s:
        who = await s.scalar(select(Person).where(Person.email == email))
        paper = await s.scalar(select(Paper).where(Paper.number == number))
        assert who is not None and paper is not None
        s.add(
            Assignment(
                course_id=paper.course_id, paper_id=paper.id, person_id=who.id, published=True
            )
        )


def critiques_row(shown: str) -> str:
    return next(line for line in shown.splitlines() if line.startswith("critiques"))


# ---------------------------------------------------------------------- the component
async def test_ungraded_critiques_do_not_count_as_zero(app: App) -> None:
    await add_critiques(app, "alice.chen@unc.edu", {5: "pass"})
    row = critiques_row(render_text(await say(app, "alice", "grades")))
    # The issue: 1 passed of 1 graded used to read 10/100.
    assert "100/100" in row and "counted: 1 graded critique; 9 not due yet" in row
    await add_critiques(app, "bob.okafor@unc.edu", {5: "pass", 6: "pass", 13: "fail", 15: None})
    shown = render_text(await say(app, "gedas", "grades bob"))
    assert "66.67/100" in critiques_row(shown)  # 2 of 3 graded; the ungraded one waits
    assert "counted: 3 graded critiques; 1 not yet" in critiques_row(shown)
    assert "Critiques: counted: 3 graded critiques; 1 not yet graded, 6 not due yet." in shown
    export = await say(app, "gedas", "grade export")
    # The Canvas import: keyed by SIS Login ID (the onyen); the second row is Points Possible.
    reader = list(csv.DictReader(io.StringIO(export.files[0].data.decode())))
    assert reader[0]["Student"] == "Points Possible" and reader[0]["critiques"] == "100"
    rows = {r["SIS Login ID"]: r for r in reader[1:]}
    assert rows["achen"]["critiques"] == "100"
    assert rows["cmartine"]["critiques"] == ""  # nothing graded yet
    assert rows["achen"]["Student"] == "Chen, Alice"


async def test_a_missing_critique_is_recorded_as_zero_and_audited(app: App) -> None:
    await add_critiques(app, "alice.chen@unc.edu", {5: "pass"})
    app.clock.at = DUE_5 - timedelta(minutes=1)  # type: ignore[attr-defined]
    early = await say(app, "maya", "critique grade 5 missing bob")
    assert early.is_error and "not due until" in early.text
    app.clock.at = DUE_5 + timedelta(hours=1)  # type: ignore[attr-defined]
    assert (await say(app, "alice", "critique grade 5 missing bob")).is_error  # staff only
    sent = await say(app, "maya", "critique grade 5 missing alice")
    assert sent.is_error and "Alice Chen submitted a critique" in sent.text
    r = await say(app, "maya", 'critique grade 5 missing bob reason="no file by Friday"')
    assert not r.is_error and "Recorded as missing (0)" in r.text, r.text
    row = critiques_row(render_text(await say(app, "gedas", "grades bob")))
    assert "0/100" in row and "counted: 1 missing past its deadline; 9 not due yet" in row
    status = render_text(await say(app, "bob", "critique status"))
    assert "missing, recorded as 0" in status
    listed = render_text(await say(app, "maya", "critique list 5"))
    assert "Recorded missing (0)" in listed and "Bob Okafor" in listed.split("Recorded")[1]
    async with app.db.session() as s:
        entry = await s.scalar(select(AuditEntry).where(AuditEntry.subject == "Bob Okafor"))
        assert entry is not None and entry.kind == "critique.grade"
        assert entry.before == {"paper": 5, "grade": None}
        assert entry.after == {"paper": 5, "grade": "missing"}
        assert entry.reason == "no file by Friday"

    # A late critique, once graded, wins over the mark.
    await add_critiques(app, "bob.okafor@unc.edu", {5: None})
    assert not (await say(app, "maya", "critique grade 5 pass bob")).is_error
    async with app.db.session() as s:
        assert list(await s.scalars(select(CritiqueMark))) == []
    assert "100/100" in critiques_row(render_text(await say(app, "gedas", "grades bob")))

    # Everyone else who owes one: recorded at once; then cleared for one student.
    r = await say(app, "maya", "critique grade-all 5 missing")
    assert "Recorded 23 missing critiques" in r.text, r.text
    r = await say(app, "maya", "critique grade 5 clear carol")
    assert "Cleared" in r.text
    # Cleared, her critique is still missing past its deadline: it counts 0 (the course's
    # rule, `missing: zero`), as the recorded mark did.
    row = critiques_row(render_text(await say(app, "gedas", "grades carol")))
    assert "0/100" in row and "counted: 1 missing past its deadline; 9 not due yet" in row
    r = await say(app, "maya", 'critique grade 5 excused carol reason="at a conference"')
    assert "Excused" in r.text
    row = critiques_row(render_text(await say(app, "gedas", "grades carol")))
    assert "not recorded" in row and "counted: nothing yet; 9 not due yet, 1 excused" in row


async def test_presenters_are_excused_from_critiquing_their_paper(app: App) -> None:
    await present(app, "alice.chen@unc.edu", 6)
    # The reminder the evening before (6 PM EDT = 22:00 UTC): never to Alice.
    async with app.db.transaction() as s:
        posts = await due_critique_posts(s, datetime(2023, 9, 5, 22, 0, tzinfo=UTC))
    alice = await person(app, "alice.chen@unc.edu")
    dms = [o for _, o in posts if o.person_id is not None and "Non-local" in o.reply.text]
    assert len(dms) == 24 and alice.id not in {o.person_id for o in dms}
    async with app.db.transaction() as s:
        posts = await due_critique_posts(s, DUE_6)
    closed = [o.reply.text for _, o in posts if o.channel]
    assert any("0 of 24 students submitted on time" in t for t in closed), closed

    app.clock.at = DUE_6 + timedelta(hours=1)  # type: ignore[attr-defined]
    listed = render_text(await say(app, "maya", "critique list 6"))
    assert "Alice Chen (presenting)" in listed
    assert "Alice Chen" not in listed.split("Missing")[1].split("Excused")[0]
    assert "0 of 24 students submitted" in listed
    status = render_text(await say(app, "alice", "critique status"))
    assert "excused (presenting)" in status and "0 of 9 submitted (excused from 1)" in status
    refused = await say(app, "maya", "critique grade 6 missing alice")
    assert refused.is_error and "excused from critiquing it" in refused.text
    await add_critiques(app, "alice.chen@unc.edu", {5: "pass"})
    row = critiques_row(render_text(await say(app, "alice", "grades")))
    assert "counted: 1 graded critique; 8 not due yet, 1 excused" in row

    export = await say(app, "maya", "critique export")
    rows = list(csv.DictReader(io.StringIO(export.files[0].data.decode())))
    by_name = {r["Student"]: r for r in rows}
    col6 = next(c for c in rows[0] if c.startswith("Critique #6"))
    col5 = next(c for c in rows[0] if c.startswith("Critique #5"))
    assert by_name["Chen, Alice"][col6] == "EX" and by_name["Chen, Alice"][col5] == "1"
    assert "EX = excused" in export.text


async def test_canvas_exports_use_family_and_given_names(app: App) -> None:
    async with app.db.transaction() as s:
        tomas = await s.scalar(select(Person).where(Person.onyen == "therrera"))
        assert tomas is not None and (tomas.given_name, tomas.family_name) == ("Tomás", "Herrera")
        tomas.family_name = "Herrera García"  # the display name stays "Tomás Herrera"
        jiawen = await s.scalar(select(Person).where(Person.onyen == "jli"))
        assert jiawen is not None
        jiawen.given_name, jiawen.family_name = "Jiawen", "Li"
    export = await say(app, "maya", "critique export")
    read = [r["Student"] for r in csv.DictReader(io.StringIO(export.files[0].data.decode()))]
    assert read[0] == "Points Possible"  # Canvas's second row
    names = read[1:]
    assert "Herrera García, Tomás" in names and "Li, Jiawen" in names
    assert names == sorted(names, key=lambda n: tuple(x.casefold() for x in n.split(", ")))
    assert names.index("Herrera García, Tomás") < names.index("Kowalski, Hannah")
    grades = await say(app, "maya", "grade export")
    students = [r["Student"] for r in csv.DictReader(io.StringIO(grades.files[0].data.decode()))]
    assert students == ["Points Possible", *names]


@given(st.lists(st.sampled_from([PASS, FAIL, ZERO, EXCUSED, PRESENTING, SUBMITTED, NOT_YET])))
def test_a_tally_counts_every_paper_once(states: list[str]) -> None:
    t = tally(states)
    assert t.papers == len(states)
    assert t.graded + t.excused + t.not_yet == t.papers
    assert t.graded == sum(s in (PASS, FAIL, ZERO) for s in states)
    if t.graded:
        assert t.points == 100 * states.count(PASS) / t.graded
    else:
        assert t.points is None  # nothing graded is not zero


# ---------------------------------------------------------------------------- calendar
def events_of(data: bytes) -> dict[str, object]:
    cal = Calendar.from_ical(data)
    return {str(e["UID"]).split("@")[0]: e for e in cal.walk("VEVENT")}


async def test_the_calendar_has_every_meeting_break_and_deadline(app: App) -> None:
    await present(app, "alice.chen@unc.edu", 5)
    r = await say(app, "alice", "deadlines ics")
    events = events_of(r.files[0].data)
    # Every meeting through the last class day, papers or not: the final project days.
    for day in ("20230821", "20231002", "20231030", "20231204", "20231206"):
        assert f"class-{day}" in events, day
    final = events["class-20231206"]
    assert str(final["SUMMARY"]) == "COMP 590/790 Video Recognition: Final project presentations"  # type: ignore[index]
    assert "Final project: presentations" in str(final["DESCRIPTION"])  # type: ignore[index]
    assert "class-20231122" not in events and "class-20230904" not in events
    fall = events["break-20231019"]
    assert str(fall["SUMMARY"]) == "No class: Fall break"  # type: ignore[index]
    assert fall["DTEND"].dt.isoformat() == "2023-10-21"  # type: ignore[index]
    # A paper's day: authors, venue, link and the timed agenda.
    slowfast = str(events["class-20230830"]["DESCRIPTION"])  # type: ignore[index]
    assert "Christoph Feichtenhofer, Haoqi Fan, Jitendra Malik, Kaiming He (ICCV 2019)" in slowfast
    assert "https://arxiv.org/abs/1812.03982" in slowfast
    assert "14:30 #5 SlowFast Networks for Video Recognition (45 min)" in slowfast
    battle = str(events["class-20230913"]["DESCRIPTION"])  # type: ignore[index]
    assert "Paper battle 1 (Efficient video backbones):" in battle and "Ji Lin" in battle
    # Deadlines under stable ids: rankings, critiques, write-ups.
    assert {"rankings", "critique-5", "critique-32", "milestone-final"} <= set(events)
    # Alice's talk at its agenda slot, 2:30-3:15 PM.
    mine = events[f"present-5-{person_key(await person(app, 'alice.chen@unc.edu'))}"]
    assert mine["DTSTART"].dt.strftime("%H:%M") == "14:30"  # type: ignore[index]
    assert mine["DTEND"].dt.strftime("%H:%M") == "15:15"  # type: ignore[index]
    # Office hours every week until the last class day.
    office = events["officehours-tue-1500"]
    assert office["RRULE"]["FREQ"] == ["WEEKLY"]  # type: ignore[index]
    assert str(office["LOCATION"]) == "Sitterson Hall 255"  # type: ignore[index]


async def test_calendar_uids_survive_a_reimport(app: App) -> None:
    await present(app, "alice.chen@unc.edu", 5)
    async with app.db.session() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        alice = await s.scalar(select(Person).where(Person.email == "alice.chen@unc.edu"))
        before = set(events_of(await calendar_ics(s, course, alice)))
        text = dump_course(await export_course(s, course))
    # The course is removed and imported again after another one: every row id changes.
    async with app.db.transaction() as s:
        await s.execute(delete(Course))
    async with app.db.transaction() as s:
        other = starter_course_file("other-course", "Another course")
        await import_course(s, parse_course_file(other), now=SAMPLE_NOW)
        await import_course(s, parse_course_file(text), now=SAMPLE_NOW)
    await present(app, "alice.chen@unc.edu", 5)
    async with app.db.session() as s:
        course = await s.scalar(select(Course).where(Course.key == "comp790-23f"))
        assert course is not None and alice is not None
        again = await s.scalar(
            select(Person).where(Person.email == alice.email, Person.course_id == course.id)
        )
        assert again is not None and again.id != alice.id
        after = set(events_of(await calendar_ics(s, course, again)))
    assert after == before and len(before) > 40
