"""Projects, grades, announcements and the course calendar, on SQLite and Postgres."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from icalendar import Calendar
from sqlalchemy import func, select

import commands.projects  # noqa: F401  (registers its commands until load_registry does)
from commands.calendar import calendar_ics, person_key
from commands.context import Attachment, Caller, Request, Where
from commands.grades import due_announcements
from commands.replies import Reply, render_text
from db.models import (
    Announcement,
    Assignment,
    Course,
    GradeEntry,
    LookingForGroup,
    Paper,
    Person,
    Platform,
    Project,
    ProjectMember,
    ProjectSubmission,
)


def req(user: str, attachments: tuple[Attachment, ...] = ()) -> Request:
    return Request(
        Platform.TERMINAL,
        "default",
        Caller(Platform.TERMINAL, user, user),
        Where("general"),
        attachments=attachments,
    )


async def say(app, user: str, line: str, *files: Path) -> Reply:  # type: ignore[no-untyped-def]
    atts = tuple(Attachment(f.name, path=f, size=f.stat().st_size) for f in files)
    return await app.core.handle_text(req(user, atts), line)


def text(r: Reply) -> str:
    return render_text(r)


async def members(app) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        rows = await s.execute(
            select(Project.name, Person.name)
            .join(ProjectMember, ProjectMember.project_id == Project.id)
            .join(Person, Person.id == ProjectMember.person_id)
            .order_by(Project.name, Person.name)
        )
        out: dict[str, list[str]] = {}
        for project, person in rows:
            out.setdefault(project, []).append(person.split()[0])
        return out


async def test_groups_of_two_or_three(app) -> None:  # type: ignore[no-untyped-def]
    r = await say(app, "alice", "project create Robo")
    assert not r.is_error, r.text
    for who in ("bob", "carol"):
        assert not (await say(app, who, "project join robo")).is_error
    r = await say(app, "deepak", "project join Robo")
    assert r.is_error and "full" in r.text and "at most 3" in r.text
    r = await say(app, "deepak", "project create Solo")
    assert not r.is_error
    r = await say(app, "alice", "project join Solo")
    assert r.is_error and "already in project `Robo`" in r.text
    r = await say(app, "alice", "project create Another")
    assert r.is_error and "one group only" in r.text
    r = await say(app, "emily", "project join Nope")
    assert r.is_error and "no project called `Nope`" in r.text
    r = await say(app, "emily", "project create robo")
    assert r.is_error and "exists already" in r.text
    assert await members(app) == {"Robo": ["Alice", "Bob", "Carol"], "Solo": ["Deepak"]}

    listing = text(await say(app, "emily", "project list"))
    assert "solo: needs approval" in listing and "full" in listing
    # Staff commands are refused to students; staff do not join groups.
    r = await say(app, "deepak", "project approve Solo")
    assert r.is_error
    r = await say(app, "gedas", "project join Solo")
    assert r.is_error and "for students" in r.text
    r = await say(app, "gedas", "project approve Robo")
    assert r.is_error and "3 members" in r.text
    assert not (await say(app, "gedas", "project approve Solo")).is_error
    assert "solo (approved)" in text(await say(app, "emily", "project list"))

    r = await say(app, "carol", "project leave")
    assert not r.is_error and "Alice Chen, Bob Okafor" in r.text
    assert not (await say(app, "carol", "project join Solo")).is_error
    async with app.db.session() as s:
        solo = await s.scalar(select(Project).where(Project.name == "Solo"))
        assert solo is not None and solo.solo_approved is True
    # The last member leaving removes an empty project with nothing submitted.
    await say(app, "carol", "project leave")
    async with app.db.session() as s:
        solo = await s.scalar(select(Project).where(Project.name == "Solo"))
        assert solo is not None and solo.solo_approved is False  # back to one: re-approve
    await say(app, "deepak", "project leave")
    assert "Solo" not in await members(app)
    r = await say(app, "deepak", "project leave")
    assert r.is_error and "not in any project" in r.text


async def test_lfg_board(app) -> None:  # type: ignore[no-untyped-def]
    r = await say(app, "emily", 'project lfg "video QA, long videos"')
    assert not r.is_error and "video QA, long videos" in text(r)
    await say(app, "farah", 'project lfg "action detection"')
    board = text(await say(app, "bob", "project lfg"))
    assert "Emily Nguyen" in board and "action detection" in board and "2 looking" in board
    await say(app, "farah", 'project lfg "temporal grounding"')  # replaces, no duplicate
    await say(app, "emily", "project create QA")  # joining a group takes you off the board
    board = text(await say(app, "bob", "project lfg"))
    assert "1 looking" in board and "temporal grounding" in board and "Emily" not in board
    r = await say(app, "emily", 'project lfg "more"')
    assert r.is_error and "already in project" in r.text
    await say(app, "farah", "project lfg --clear")
    async with app.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(LookingForGroup)) == 0


async def test_undergraduate_instances(app) -> None:  # type: ignore[no-untyped-def]
    await say(app, "alice", "project create UG track=undergraduate")
    await say(app, "bob", "project join UG")
    await say(app, "carol", "project create Grad")
    r = await say(app, "carol", 'project instance add "cooking" success "works"')
    assert r.is_error and "graduate track" in r.text
    for i in range(3):
        r = await say(app, "alice", f'project instance add "Cooking videos" success "clip {i}"')
        assert not r.is_error, r.text
    r = await say(app, "bob", 'project instance add "cooking VIDEOS" success "a fourth"')
    assert r.is_error and "already has 3 success" in r.text
    r = await say(app, "bob", 'project instance add "cooking videos" failure "fails at night"')
    assert "Progress: 4/30" in r.text
    for app_name in ("sports", "surgery", "traffic", "lectures"):
        assert not (await say(app, "bob", f'project instance add {app_name} failure "x"')).is_error
    r = await say(app, "bob", 'project instance add sixth success "x"')
    assert r.is_error and "already has 5 applications" in r.text
    shown = text(await say(app, "alice", "project instances"))
    assert "Progress: 8/30 instances (5/5 applications)" in shown
    assert "Cooking videos: 3/3 success, 1/3 failure" in shown
    staff = text(await say(app, "gedas", "project instances UG"))
    assert "Progress: 8/30" in staff
    r = await say(app, "carol", "project instances UG")
    assert r.is_error and "your own group" in r.text


async def test_milestone_submissions(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pdf = tmp_path / "proposal.pdf"
    pdf.write_bytes(b"%PDF-1.7\n" + b"x" * 2048)
    notpdf = tmp_path / "proposal.docx"
    notpdf.write_bytes(b"PK\x03\x04 not a pdf")

    r = await say(app, "gabriel", "project submit proposal", pdf)
    assert r.is_error and "not in any project group" in r.text
    await say(app, "alice", "project create Robo")
    r = await say(app, "alice", "project submit proposal", pdf)
    assert r.is_error and "approval for a solo project" in r.text
    await say(app, "bob", "project join Robo")
    r = await say(app, "alice", "project submit proposal")
    assert r.is_error and "Attach the write-up" in r.text
    r = await say(app, "alice", "project submit proposal", notpdf)
    assert r.is_error and "not a PDF" in r.text
    r = await say(app, "alice", "project submit nosuch", pdf)
    assert r.is_error and "no milestone `nosuch`" in r.text and "`proposal`" in r.text
    async with app.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(ProjectSubmission)) == 0

    r = await say(app, "alice", "project submit proposal", pdf)
    assert not r.is_error and "LATE" not in r.text
    async with app.db.session() as s:
        sub = await s.scalar(select(ProjectSubmission))
        assert sub is not None and not sub.late
        stored = app.settings.data_dir / sub.path
        assert stored.read_bytes() == pdf.read_bytes()

    # After the write-up's due date (Sun Oct 8, 11:59 PM EDT) a submission is late.
    app.clock.at = datetime(2023, 10, 9, 4, 30, tzinfo=UTC)
    r = await say(app, "bob", "project submit proposal", pdf)
    assert "LATE" in r.text
    await say(app, "carol", "project create Other")
    await say(app, "deepak", "project join Other")
    r = await say(app, "carol", "project submissions proposal")
    assert r.is_error  # staff only
    shown = text(await say(app, "gedas", "project submissions proposal"))
    assert "1/2 groups submitted" in shown and "late" in shown and "Bob Okafor" in shown
    assert "not submitted" in shown


async def test_grades_and_export(app) -> None:  # type: ignore[no-untyped-def]
    r = await say(app, "gedas", "grade set alice.chen@unc.edu presentations 92")
    assert not r.is_error, r.text
    await say(app, "maya", "grade set alice project 80.5")
    await say(app, "gedas", "grade set bob participation 100")
    for bad, why in [
        ("grade set alice project 101", "outside 0-100"),
        ("grade set alice project -1", "outside 0-100"),
        ("grade set alice homework 50", "not a grading component"),
        ("grade set nobody project 50", "Nobody on the roster"),
    ]:
        r = await say(app, "gedas", bad)
        assert r.is_error and why in r.text, (bad, r.text)
    assert (await say(app, "alice", "grade set alice project 100")).is_error
    assert (await say(app, "alice", "grade export")).is_error
    async with app.db.session() as s:
        pts = dict((await s.execute(select(GradeEntry.component, GradeEntry.points))).all())
        assert pts == {"presentations": 92.0, "project": 80.5, "participation": 100.0}

    mine = text(await say(app, "alice", "grades"))
    assert "presentations  30%" in mine and "92/100" in mine and "27.6%" in mine
    assert "So far: 59.8% of the 70% graded" in mine
    assert (await say(app, "alice", "grades bob")).is_error

    export = await say(app, "gedas", "grade export")
    # Canvas's import: students by SIS Login ID, the weighted total in its read-only
    # "Final Score" column (the import skips it).
    reader = list(csv.DictReader(io.StringIO(export.files[0].data.decode())))
    assert reader[0]["Final Score"] == "(read only)"
    rows = {r["SIS Login ID"]: r for r in reader[1:]}
    assert rows["achen"]["presentations"] == "92"
    assert rows["achen"]["project"] == "80.5"
    assert rows["achen"]["critiques"] == ""
    assert rows["achen"]["Final Score"] == "59.8"
    assert rows["bokafor"]["Final Score"] == "10"
    assert "Bertasius, Gedas" not in {r["Student"] for r in reader}


async def test_announce_now_and_scheduled(app, transcript) -> None:  # type: ignore[no-untyped-def]
    out = await transcript.say('announce "No class on Monday (Labor Day)."')
    assert "#announcements · coursebot (posted)" in out and "Labor Day" in out
    r = await say(app, "alice", 'announce "hi"')
    assert r.is_error
    r = await say(app, "gedas", 'announce "too late" at 2023-08-01T09:00')
    assert r.is_error and "in the past" in r.text
    r = await say(app, "gedas", 'announce "bad" at tomorrow')
    assert r.is_error and "not a time" in r.text
    r = await say(app, "gedas", 'announce "Rankings close tonight." at 2023-08-27T09:00')
    assert not r.is_error and "Sun Aug 27, 2023, 9:00 AM EDT" in r.text
    # The same command twice schedules it once.
    r = await say(app, "gedas", 'announce "Rankings close tonight." at 2023-08-27T09:00')
    assert not r.is_error and "already scheduled" in r.text and "nothing new" in r.text
    await say(app, "gedas", 'announce "Cancelled one." at=2023-08-27T10:00')
    listed = text(await say(app, "maya", "announce list"))
    assert "scheduled" in listed and "posted" in listed
    async with app.db.session() as s:
        ids = list(await s.scalars(select(Announcement.id).order_by(Announcement.id)))
    assert not (await say(app, "gedas", f"announce cancel {ids[2]}")).is_error
    r = await say(app, "gedas", f"announce cancel {ids[0]}")
    assert r.is_error and "already posted" in r.text
    assert (await say(app, "gedas", "announce cancel 999")).is_error

    async def tick(at: datetime) -> list[str]:
        async with app.db.transaction() as s:
            return [f"{o.channel}: {o.reply.text}" for _, o in await due_announcements(s, at)]

    due = datetime(2023, 8, 27, 13, 0, tzinfo=UTC)  # 9:00 AM EDT
    assert await tick(due - timedelta(seconds=1)) == []
    assert await tick(due) == ["announcements: Rankings close tonight.\n— Gedas Bertasius"]
    assert await tick(due + timedelta(seconds=1)) == []  # once only
    assert await tick(due + timedelta(hours=2)) == []  # the cancelled one never goes out
    async with app.db.session() as s:
        assert await s.scalar(select(func.count()).where(Announcement.sent_at.is_not(None))) == 2
        assert await due_announcements(s, due, course_ids={999}) == []


async def test_calendar_ics_keeps_local_time_across_dst(app) -> None:  # type: ignore[no-untyped-def]
    async with app.db.transaction() as s:
        alice = await s.scalar(select(Person).where(Person.email == "alice.chen@unc.edu"))
        paper9 = await s.scalar(select(Paper).where(Paper.number == 9))
        assert alice is not None and paper9 is not None
        s.add(Assignment(course_id=1, paper_id=paper9.id, person_id=alice.id, published=True))
    r = await say(app, "alice", "deadlines ics")
    assert r.ephemeral and r.files[0].name == "comp790-23f.ics"
    assert r.files[0].mime == "text/calendar"
    cal = Calendar.from_ical(r.files[0].data)
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["America/New_York"]
    events = {str(e["UID"]).split("@")[0]: e for e in cal.walk("VEVENT")}

    # Classes on Mon Oct 30 (EDT) and Mon Nov 6 (EST): 2:30 PM local both times.
    before, after = events["class-20231030"], events["class-20231106"]
    for ev in (before, after):
        assert ev["DTSTART"].params["TZID"] == "America/New_York"
        assert ev["DTSTART"].dt.strftime("%H:%M") == "14:30"
    assert before["DTSTART"].dt.astimezone(UTC).hour == 18
    assert after["DTSTART"].dt.astimezone(UTC).hour == 19
    assert b"DTSTART;TZID=America/New_York:20231106T143000" in r.files[0].data
    # No class on Labor Day or the Wednesday before Thanksgiving; the first class is there.
    assert "class-20230904" not in events and "class-20231122" not in events
    assert "class-20230823" in events
    # Deadlines: the proposal write-up at 11:59 PM EDT.
    proposal = [e for e in events.values() if "Project proposal write-up" in str(e["SUMMARY"])]
    assert proposal and proposal[0]["DTSTART"].dt.strftime("%Y-%m-%d %H:%M") == "2023-10-08 23:59"
    # Alice presents paper 9, side A of battle 1 on Wed Sep 13.
    battle = events[f"battle-1-{person_key(alice)}"]  # stable across re-imports
    assert "paper battle 1 (side A)" in str(battle["SUMMARY"])
    assert battle["DTSTART"].dt.strftime("%Y-%m-%d %H:%M") == "2023-09-13 14:30"

    # Without a person (an unregistered caller) there are no personal events.
    async with app.db.session() as s:
        course = await s.get(Course, 1)
        assert course is not None
        anon = Calendar.from_ical(await calendar_ics(s, course, None))
    assert not [e for e in anon.walk("VEVENT") if str(e["UID"]).startswith("battle-")]
    assert len(anon.walk("VEVENT")) == len(events) - 1


async def test_critiques_component_from_pass_fail(app) -> None:  # type: ignore[no-untyped-def]
    from db.models import Critique

    async with app.db.transaction() as s:
        alice = await s.scalar(select(Person).where(Person.email == "alice.chen@unc.edu"))
        papers = list(await s.scalars(select(Paper).where(Paper.critique.is_(True))))
        assert alice is not None and len(papers) == 10
        for paper, grade in zip(papers, ["pass", "pass", "pass", "fail", None], strict=False):
            s.add(
                Critique(
                    course_id=1,
                    paper_id=paper.id,
                    person_id=alice.id,
                    submitted_at=datetime(2023, 9, 1, tzinfo=UTC),
                    file="x.pdf",
                    size=10,
                    question="q",
                    answer="a",
                    grade=grade,
                )
            )
    mine = text(await say(app, "alice", "grades"))
    # 3 passes of 4 graded critiques (one not graded yet does not count as zero).
    assert "critiques      20%     75/100" in mine and "So far: 15% of the 20% graded" in mine
    await say(app, "gedas", "grade set alice critiques 50")  # a recorded grade wins
    assert "50/100" in text(await say(app, "alice", "grades"))


async def test_shell_scenario_with_attachment(transcript, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pdf = tmp_path / "final.pdf"
    pdf.write_bytes(b"%PDF-1.4\nfinal report\n")
    assert "Name a student" in await transcript.say("grades")
    await transcript.say(":as alice")
    await transcript.say('project create "Video QA"')
    await transcript.say(":as bob")
    assert "You joined `Video QA`: Alice Chen, Bob Okafor." in await transcript.say(
        'project join "video qa"'
    )
    await transcript.say(f":attach {pdf}")
    out = await transcript.say("project submit final")
    assert "Submitted `Video QA`'s Final project write-up" in out
    await transcript.say(":as gedas")
    out = await transcript.say("project submissions final")
    assert "1/1 groups submitted" in out and "Bob Okafor" in out and "on time" in out
