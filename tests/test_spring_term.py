"""A second course, quite unlike the sample, through a scripted term (issue #19 point 8):
examples/cs8850-27s.yaml is a spring seminar in Chicago (Tue/Thu 09:30, 52 students,
string battle ids, a spring break, project days without papers, timed agendas, office
hours), and the US clocks go forward on Sun 2027-03-14, mid-term.

One term on a virtual clock, through the command core and the terminal adapter (whose
outbox prints every post and DM): everyone ranks, the instructor assigns and publishes,
critiques come in around the 1 PM deadline before and after the DST change, reminders
reach only the students who still owe one, battle B1 is opened, voted and closed, grades
are shown, and the calendar has every meeting at 09:30 local on both sides of the DST
change."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import select

from bot.app import App, start_app
from bot.settings import Settings
from bot.shell import Shell
from commands.clock import FixedClock
from commands.context import Attachment, Caller, Request, Where
from commands.replies import Reply, render_text
from db.models import Assignment, Battle, Course, Paper, Person, Platform, Role, Slot

ROOT = Path(__file__).resolve().parent.parent
SPRING = ROOT / "examples" / "cs8850-27s.yaml"
CHICAGO = ZoneInfo("America/Chicago")
WORKSPACE = "robots"  # the course file's terminal binding
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
#: The Monday before the first class, 10 AM in Chicago.
START = datetime(2027, 1, 11, 10, 0, tzinfo=CHICAGO)
DST_SUNDAY = date(2027, 3, 14)


def local(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=CHICAGO)


class Term:
    """The app, its virtual clock and a terminal shell whose output is collected."""

    def __init__(self, app: App, shell: Shell, lines: list[str], tmp: Path) -> None:
        self.app, self.shell, self.lines, self.tmp = app, shell, lines, tmp
        self.pdf = tmp / "critique.pdf"
        self.pdf.write_bytes(PDF)

    @property
    def clock(self) -> FixedClock:
        assert isinstance(self.app.clock, FixedClock)
        return self.app.clock

    def request(self, who: str, *, attach: bool = False, where: str = "general") -> Request:
        files = (Attachment(self.pdf.name, path=self.pdf, size=len(PDF)),) if attach else ()
        return Request(
            Platform.TERMINAL,
            WORKSPACE,
            Caller(Platform.TERMINAL, who, who),
            Where(where),
            attachments=files,
        )

    async def say(
        self, who: str, line: str, *, attach: bool = False, where: str = "general"
    ) -> Reply:
        reply = await self.app.core.handle_text(self.request(who, attach=attach, where=where), line)
        await self.app.core.settle()
        return reply

    async def ok(
        self, who: str, line: str, *, attach: bool = False, where: str = "general"
    ) -> Reply:
        reply = await self.say(who, line, attach=attach, where=where)
        assert not reply.is_error, f"{who}: {line} → {reply.text}"
        return reply

    async def until(self, when: datetime) -> str:
        """Advance the clock to ``when``, every due post going out at its own instant;
        what the terminal printed meanwhile."""
        start = len(self.lines)
        await self.shell.advance(when - self.clock.now(), say=False)
        assert self.clock.now() == when
        return "\n".join(self.lines[start:])


@pytest.fixture
async def term(db_url: str, tmp_path: Path) -> AsyncIterator[Term]:
    settings = Settings(
        database_url=db_url,
        COURSEBOT_DATA_DIR=tmp_path / "data",
        COURSEBOT_COURSE_FILE=SPRING,
        _env_file=None,
    )
    app = await start_app(settings, clock=FixedClock(START.astimezone(UTC)))
    lines: list[str] = []
    shell = Shell(
        app,
        workspace=WORKSPACE,
        speaker="elena",
        files_dir=tmp_path / "files",
        out=lines.append,
    )
    shell.zone = "America/Chicago"
    try:
        yield Term(app, shell, lines, tmp_path)
    finally:
        await app.close()


def dms(out: str) -> list[str]:
    """Who got a private message in a stretch of terminal output."""
    return re.findall(r"DM to ([^·]+?) · coursebot", out)


async def test_a_spring_term(term: Term) -> None:
    t = term
    async with t.app.db.session() as s:
        course = await s.scalar(select(Course))
        assert course is not None and course.timezone == "America/Chicago"
        students = list(
            await s.scalars(select(Person).where(Person.role == Role.STUDENT).order_by(Person.name))
        )
        papers = list(await s.scalars(select(Paper).order_by(Paper.number)))
        battles = {b.label: b for b in await s.scalars(select(Battle))}
    assert len(students) >= 50
    assert all(p.given_name and p.family_name for p in students)
    handle = {p.id: p.email.split(".")[0] for p in students}
    standard = [p.number for p in papers if p.slot in (Slot.MIN30, Slot.MIN45)]
    battle_papers = [p.number for p in papers if p.slot is Slot.BATTLE]
    assert set(battles) == {"B1", "B2", "B3", "B4"}

    # -- rankings: every student, through the core ----------------------------------
    rng = random.Random(8850)
    for p in students:
        who = handle[p.id]
        await t.ok(who, "rank standard " + " ".join(map(str, rng.sample(standard, 6))))
        await t.ok(who, "rank battle " + " ".join(map(str, rng.sample(battle_papers, 4))))
    status = render_text(await t.ok("tobias", "rankings status"))
    assert f"{len(students)} of {len(students)} students have submitted both rankings" in status

    # -- the assignment ---------------------------------------------------------------
    out = await t.until(local(date(2027, 1, 18), 9))
    assert "Reminder: **Paper rankings** is due Sun Jan 17, 2027, 11:59 PM CST" in out
    assert not dms(out)  # everyone ranked: nobody is nudged
    r = await t.ok("elena", "assign seed=1")
    proposal = render_text(r)
    assert "Empty papers: none" in proposal and "Battles that do not run: none" in proposal
    assert "Partners Aisha Bello and Arjun Mehta present paper" in proposal
    start = len(t.lines)
    r = await t.ok("elena", "assign publish")
    assert sorted(dms("\n".join(t.lines[start:]))) == sorted(p.name for p in students)
    async with t.app.db.session() as s:
        seats = list(
            await s.execute(
                select(Paper.number, Assignment.person_id)
                .join(Assignment, Assignment.paper_id == Paper.id)
                .where(Assignment.published.is_(True))
            )
        )
    presenters: dict[int, set[int]] = {}
    for number, pid in seats:
        presenters.setdefault(number, set()).add(pid)

    async def critique_day(paper: int, day: date) -> None:
        """The evening before: some submit, the 6 PM reminder reaches only those who
        still owe one; on the day, one critique at 12:59 (on time), one at 13:01 (late)."""
        await t.until(local(day - timedelta(days=1), 17))
        assert presenters.get(paper)  # its presenters owe no critique of it
        owing = [p for p in students if p.id not in presenters[paper]]
        early, rest = owing[::3], [p for p in owing if p not in owing[::3]]
        for p in early:
            r = await t.ok(handle[p.id], f'critique submit {paper} "Why?" "Because."', attach=True)
            assert "It is late" not in r.text
        out = await t.until(local(day - timedelta(days=1), 18, 1))
        assert sorted(dms(out)) == sorted(p.name for p in rest), out
        assert "Critique reminder" in out
        on_time, late = rest[0], rest[1]
        out = await t.until(local(day, 12, 59))  # the noon reminder: the same students
        assert sorted(dms(out)) == sorted(p.name for p in rest), out
        r = await t.ok(handle[on_time.id], f'critique submit {paper} "Q?" "A."', attach=True)
        assert "It is late" not in r.text and "You can replace it until" in r.text, r.text
        out = await t.until(local(day, 13, 1))
        assert "submitted on time" in out and f": {len(early) + 1} of {len(owing)} " in out, out
        r = await t.ok(handle[late.id], f'critique submit {paper} "Q?" "A."', attach=True)
        assert "It is late" in r.text, r.text
        due = local(day, 13)
        assert f"1:00 PM {due.tzname()}" in r.text  # CST before the change, CDT after
        listing = render_text(await t.ok("tobias", f"critique list {paper}"))
        row = {line.split("  ")[0]: line for line in listing.splitlines()}
        assert "on time" in row[on_time.name] and "late" in row[late.name].replace("on time", "")

    # -- battle B1 on Tue Feb 2, 09:45 (its own start time) ------------------------------
    await t.until(local(date(2027, 2, 2), 9, 45))
    b1 = battles["B1"].number
    r = await t.ok("elena", "battle timer B1 a", where="battles")
    assert "Battle B1, side A presents" in r.text and "15:00 starts now" in r.text
    # Every battle command takes the id the course file gives (`B1`, any case) or the
    # number; the poll is typed in #battles, so it is posted there ("here").
    r = await t.ok("elena", "battle open b1", where="battles")
    assert "The poll for battle B1 is open here." in r.text, r.text
    on_stage = presenters[33] | presenters[34]
    assert 10 <= len(on_stage) <= 14  # 5-7 a side
    audience = [p for p in students if p.id not in on_stage]
    why = "The multimodal action heads handle demonstrations far better."
    for i, p in enumerate(audience[:20]):
        ref = ("B1", "b1", str(b1), f"#{b1}")[i % 4]
        await t.ok(handle[p.id], f'battle vote {ref} {"B" if i % 5 == 0 else "A"} "{why}"')
    r = await t.say(handle[min(on_stage)], f'battle vote {b1} A "{why}"')
    assert r.is_error and "you do not vote" in r.text
    r = await t.say(handle[audience[20].id], f'battle vote {b1} B "too short"')
    assert "25" in r.text  # a justification under battle_rules.justification_min
    start = len(t.lines)
    r = await t.ok("elena", "battle close B1")
    posted = "\n".join(t.lines[start:])
    assert "#battles · coursebot (posted)" in posted
    assert "The winner is 🅰️ #33 Behavior Transformers" in posted and "16–4" in posted
    assert f"20 of {len(audience)} eligible students voted" in posted

    # Before the DST change: Tue Feb 9 (CST, UTC-6).
    await critique_day(13, date(2027, 2, 9))
    # After it, and after spring break: Tue Mar 23 (CDT, UTC-5).
    await critique_day(27, date(2027, 3, 23))

    # Battle B3 has its own format (a cross-examination phase).
    await t.until(local(date(2027, 3, 25), 10, 0))
    r = await t.ok("tobias", "battle timer B3 cross", where="battles")
    assert "Battle B3, cross-examination" in r.text and "10:00 starts now" in r.text

    # -- grades ---------------------------------------------------------------------------
    me = audience[0]
    await t.ok("tobias", f"critique grade 13 pass {handle[me.id]}")
    await t.ok("elena", f"grade set {me.email} presentations 92")
    await t.ok("elena", f"grade set {me.email} participation 100")
    grades = render_text(await t.ok(handle[me.id], "grades"))
    assert f"Grades: {me.name}" in grades
    rows = {line.split()[0]: line for line in grades.splitlines() if line and line[0].islower()}
    assert "15%" in rows["participation"] and "100/100" in rows["participation"]
    assert "25%" in rows["presentations"] and "92/100" in rows["presentations"]
    # Nine critiques in the term so far: #13 passed; #3, #7, #11, #15, #19 and #21 were
    # never submitted and count as 0 (the default policy); #27 waits for its grade and
    # #29 is not due: 1/7 counts.
    assert "14.29/100" in rows["critiques"]
    assert (
        "Critiques: counted: 1 graded critique and 6 missing past their deadline; "
        "1 not yet graded, 1 not due yet." in grades
    )
    assert "35%" in rows["project"] and "not recorded" in rows["project"]
    assert (await t.say(handle[audience[1].id], f"grades {me.email}")).is_error

    # -- the calendar: every meeting, at 09:30 local on both sides of the DST change -----
    r = await t.ok(handle[me.id], "deadlines ics")
    cal = Calendar.from_ical(r.files[0].data)
    events = {str(e["uid"]).split("@")[0]: e for e in cal.walk("VEVENT")}
    classes = {uid: e for uid, e in events.items() if uid.startswith("class-")}
    expected = set()
    day = date(2027, 1, 12)
    while day <= date(2027, 5, 4):
        off = date(2027, 3, 15) <= day <= date(2027, 3, 19) or day == date(2027, 4, 1)
        if day.weekday() in (1, 3) and not off:  # Tue, Thu
            expected.add(f"class-{day:%Y%m%d}")
        day += timedelta(days=1)
    assert set(classes) == expected
    for uid, e in classes.items():
        start, end = e["dtstart"].dt, e["dtend"].dt
        assert (start.hour, start.minute, end.hour, end.minute) == (9, 30, 10, 45), uid
        assert str(e["dtstart"].params["TZID"]) == "America/Chicago"
        utc = start.astimezone(UTC)
        assert (utc.hour, utc.minute) == ((15, 30) if start.date() < DST_SUNDAY else (14, 30))
    for day, title in (
        ("20270225", "Project proposals"),
        ("20270408", "Project milestone check-ins"),
        ("20270415", "Project work session"),
        ("20270422", "Project clinic"),
        ("20270429", "Final presentations, day 1"),
        ("20270504", "Final presentations, day 2"),
        ("20270311", "Guest lecture"),
    ):
        assert title in str(classes[f"class-{day}"]["summary"]), day
    assert "Engineering Hall 1001" in str(classes["class-20270311"]["location"])
    spring = events["break-20270315"]
    assert str(spring["summary"]) == "No class: Spring break"
    assert (spring["dtstart"].dt, spring["dtend"].dt) == (date(2027, 3, 15), date(2027, 3, 20))
    due = events["critique-27"]["dtstart"].dt
    assert due.astimezone(UTC) == datetime(2027, 3, 23, 18, 0, tzinfo=UTC)  # 1 PM CDT
    due = events["critique-13"]["dtstart"].dt
    assert due.astimezone(UTC) == datetime(2027, 2, 9, 19, 0, tzinfo=UTC)  # 1 PM CST
    hours = [e for uid, e in events.items() if uid.startswith("officehours-")]
    assert len(hours) == 3 and all("FREQ=WEEKLY" in e["rrule"].to_ical().decode() for e in hours)
    mine = [e for uid, e in events.items() if uid.startswith(("present-", "battle-"))]
    assert mine  # her own presentation and battle side
