"""Introductions (issue #19 point 6): `intro` collects a student's degree, year and two
answers and updates them; staff see the class at a glance (`intros`, `intros export`);
other students see only the name and a short "excites me" on the project board. Bad
input is explained privately and changes nothing. On SQLite and Postgres."""

from __future__ import annotations

import csv
import io

from sqlalchemy import func, select

from commands.replies import Reply, render_text
from db.models import Degree, Introduction, Person
from tests.conftest import Transcript
from tests.test_core import req

EXCITES = "robots that learn from watching video"
WHY = "my thesis needs video models"


async def say(app, who: str, line: str) -> Reply:  # type: ignore[no-untyped-def]
    return await app.core.handle_text(req(who), line)


async def form(app, who: str, reply: Reply, **values: str) -> Reply:  # type: ignore[no-untyped-def]
    """Submit the form of the reply's first button, as a modal would."""
    button = next(b for b in reply.buttons if b.form is not None)
    assert button.form is not None
    return await app.core.handle_form(req(who), button.form.custom_id, values)


async def stored(app, email: str) -> tuple[Person, Introduction | None]:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        person = await s.scalar(select(Person).where(Person.email == email))
        assert person is not None
        intro = await s.scalar(select(Introduction).where(Introduction.person_id == person.id))
        return person, intro


async def test_introduce_then_update(app) -> None:  # type: ignore[no-untyped-def]
    # Nothing yet: `intro` says so and offers the form (the roster knows her degree).
    r = await say(app, "alice", "intro")
    assert not r.is_error and r.ephemeral
    assert "not introduced yourself yet" in r.text
    assert "Your interests are shown on the project board" in r.text
    fields = [f.name for f in r.buttons[0].form.fields]  # type: ignore[union-attr]
    assert fields == ["excites", "why"]
    assert all(f.long and f.max_length == 1000 for f in r.buttons[0].form.fields)  # type: ignore[union-attr]

    # The form, as Discord and Slack submit it: degree and year ride along.
    r = await form(app, "alice", r, excites=EXCITES, why=WHY)
    assert not r.is_error, r.text
    assert "your introduction is saved" in r.text
    assert "Your interests are shown on the project board" in r.text
    shown = render_text(r)
    assert EXCITES in shown and WHY in shown and "PhD, year 2" in shown
    person, intro = await stored(app, "alice.chen@unc.edu")
    assert intro is not None and (intro.excites, intro.why) == (EXCITES, WHY)
    assert person.degree is Degree.PHD and person.year == 2

    # Again: an update of what is given; the rest stays.
    r = await say(app, "alice", 'intro degree=ms year=3 why="the battles"')
    assert not r.is_error and "updated" in r.text, r.text
    person, intro2 = await stored(app, "alice.chen@unc.edu")
    assert person.degree is Degree.MS and person.year == 3
    assert intro2 is not None and (intro2.excites, intro2.why) == (EXCITES, "the battles")
    assert intro2.id == intro.id  # one introduction per student
    r = await say(app, "alice", 'intro name="Ali"')
    assert "goes by Ali" in render_text(r)

    # `intro` alone shows her own, with a button to edit the answers.
    r = await say(app, "alice", "intro")
    text = render_text(r)
    assert "the battles" in text and "MS, year 3" in text and r.buttons
    assert r.buttons[0].form is not None
    assert dict(r.buttons[0].form.fixed) == {"degree": "MS", "year": "3"}


async def test_typed_in_one_line_in_the_terminal(app) -> None:  # type: ignore[no-untyped-def]
    r = await say(app, "bob", f'intro degree=PhD year=1 excites="{EXCITES}" why="{WHY}"')
    assert not r.is_error and "saved" in r.text, r.text
    person, intro = await stored(app, "bob.okafor@unc.edu")
    assert person.degree is Degree.PHD and person.year == 1 and intro is not None


async def test_degree_and_year_first_then_the_form(app) -> None:  # type: ignore[no-untyped-def]
    # Degree and year without the answers: the form asks for them; nothing is stored.
    r = await say(app, "carol", "intro degree=BS year=4")
    assert not r.is_error and "Nothing is saved" in r.text
    person, intro = await stored(app, "carol.martinez@unc.edu")
    assert intro is None and person.degree is Degree.PHD and person.year == 3
    r = await form(app, "carol", r, excites=EXCITES, why=WHY)
    assert not r.is_error, r.text
    person, intro = await stored(app, "carol.martinez@unc.edu")
    assert intro is not None and person.degree is Degree.BS and person.year == 4


async def test_bad_input_is_explained_and_changes_nothing(app) -> None:  # type: ignore[no-untyped-def]
    await say(app, "deepak", f'intro excites="{EXCITES}" why="{WHY}"')
    before = await stored(app, "deepak.raman@unc.edu")
    cases = {
        f'intro degree=MBA excites="{EXCITES}"': ["`degree` must be one of BA, BS, MS, PhD", "MBA"],
        "intro year=0": ["`year` is out of range", "from 1 to 10"],
        "intro year=11": ["`year` is out of range", "from 1 to 10"],
        "intro year=two": ["`year` must be a whole number"],
        'intro excites=""': ["What excites you in computer vision and AI", "is empty"],
        'intro why="   "': ["Why you are taking this course", "is empty"],
        f'intro excites="{"x" * 1001}"': ["`excites` is 1,001 characters long", "limit is 1,000"],
        f'intro why="{"y" * 5000}"': ["limit is 1,000"],
        'intro name=""': ["name you go by is empty"],
    }
    for line, words in cases.items():
        r = await say(app, "deepak", line)
        assert r.is_error and r.ephemeral, (line, r.text)
        for w in words:
            assert w in r.text, (line, r.text)
    after = await stored(app, "deepak.raman@unc.edu")
    assert (after[0].degree, after[0].year) == (before[0].degree, before[0].year)
    assert after[1] is not None and before[1] is not None
    assert (after[1].excites, after[1].why, after[1].updated_at) == (
        before[1].excites,
        before[1].why,
        before[1].updated_at,
    )

    # A first introduction needs both answers: one alone is refused, naming the other.
    r = await say(app, "emily", f'intro excites="{EXCITES}"')
    assert r.is_error and "`why=`" in r.text and "Nothing was saved" in r.text
    assert (await stored(app, "emily.nguyen@unc.edu"))[1] is None
    # A form submitted with an empty answer (a modal's optional box left blank).
    r = await app.core.handle_form(
        req("emily"), "form:intro:degree=BS:year=4", {"excites": EXCITES, "why": ""}
    )
    assert r.is_error and "Why you are taking this course" in r.text
    assert (await stored(app, "emily.nguyen@unc.edu"))[1] is None


async def test_staff_see_the_class_students_do_not(app) -> None:  # type: ignore[no-untyped-def]
    await say(app, "alice", f'intro excites="{EXCITES}" why="{WHY}"')
    await say(app, "bob", 'intro excites="3D scenes, NeRFs and gaussians" why="curious"')
    # Staff: the class at a glance.
    r = await say(app, "maya", "intros")
    assert not r.is_error and r.ephemeral
    text = render_text(r)
    async with app.db.session() as s:
        students = await s.scalar(
            select(func.count()).select_from(Person).where(Person.role == "student")
        )
    assert f"2 of {students} students introduced themselves; {students - 2} have not" in text
    assert "Alice Chen" in text and "robots that learn" in text
    assert "Carol Martinez" in r.sections[0].body  # not introduced yet
    r = await say(app, "gedas", "intros alice")
    assert EXCITES in render_text(r) and WHY in render_text(r)
    r = await say(app, "gedas", "intros export")
    assert not r.is_error and r.files[0].name.endswith("intros.csv")
    rows = list(csv.DictReader(io.StringIO(r.files[0].data.decode())))
    assert len(rows) == students
    alice = next(row for row in rows if row["name"] == "Alice Chen")
    assert alice["excites"] == EXCITES and alice["why"] == WHY and alice["degree"] == "PhD"
    assert next(row for row in rows if row["name"] == "Carol Martinez")["excites"] == ""

    # Students: not the class table, not the export, and staff do not introduce themselves.
    for line in ("intros", "intros export", "intros bob"):
        r = await say(app, "carol", line)
        assert r.is_error and "TAs and instructors" in r.text, (line, r.text)
    r = await say(app, "maya", f'intro excites="{EXCITES}" why="{WHY}"')
    assert r.is_error and "for students" in r.text


async def test_the_project_board_shows_what_excites_each_poster(app) -> None:  # type: ignore[no-untyped-def]
    long = "long-horizon robot manipulation " * 10
    await say(app, "alice", f'intro excites="{long}" why="{WHY}"')
    r = await say(app, "alice", 'project lfg "manipulation from video"')
    assert "`intro` adds" not in r.text
    r = await say(app, "bob", 'project lfg "video QA"')
    assert "`intro` adds what excites you" in r.text  # Bob has no introduction
    board = await say(app, "carol", "project lfg")
    table = board.tables[0]
    assert table.columns == ["Student", "Interests", "Excited about", "Posted"]
    rows = {row[0]: row for row in table.rows}
    excited = rows["Alice Chen"][2]
    assert excited.startswith("long-horizon robot manipulation") and excited.endswith("…")
    assert len(excited) <= 61
    assert rows["Bob Okafor"][2] == "-"
    # Other students see the name and interests only: not why she takes the course.
    assert WHY not in render_text(board)


async def test_a_reimport_keeps_what_students_said(app) -> None:  # type: ignore[no-untyped-def]
    from bot.app import import_course_file
    from bot.settings import SAMPLE_COURSE

    await say(app, "alice", f'intro degree=MS year=4 excites="{EXCITES}" why="{WHY}"')
    await import_course_file(app.db, SAMPLE_COURSE, app.clock)
    person, _ = await stored(app, "alice.chen@unc.edu")
    assert person.degree is Degree.MS and person.year == 4  # the file says PhD, 2
    bob, _ = await stored(app, "bob.okafor@unc.edu")
    assert bob.degree is Degree.MS and bob.year == 1  # no introduction: the file's


async def test_through_the_terminal_shell(transcript: Transcript) -> None:
    t = transcript
    await t.say(":as hannah")
    out = await t.say("intro")
    assert "not introduced yourself yet" in out and "Introduce yourself" in out
    out = await t.say(f'intro degree=BS year=3 excites="{EXCITES}" why="{WHY}"')
    assert "your introduction is saved" in out and EXCITES in out
    out = await t.say("intro year=12")
    assert "`year` is out of range" in out
    await t.say(":as gedas")
    out = await t.say("intros")
    assert "Hannah Kowalski" in out and "1 of" in out
