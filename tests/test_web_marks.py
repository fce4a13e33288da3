"""The web desk shows each critique as chat counts it (``commands.critiques.standing``):
graded Pass/Fail, submitted or late and waiting, excused (presenting the paper, or by
staff with their reason on hover and read out), missing recorded as 0, missing and
overdue (not counted yet), not due yet; always in words, the colour only repeating
them. And the battle pages name a battle as the bot prints it (`/battles/B1`). On
SQLite and Postgres."""

from __future__ import annotations

import html as htmllib
import re

from aiohttp.test_utils import TestClient
from sqlalchemy import delete, select

from bot.app import App
from bot.settings import SAMPLE_COURSE
from commands.coursefile import import_course, parse_course_file
from commands.replies import render_text
from db.models import Assignment, Critique, Identity, Paper, Person, Platform, Role
from tests.conftest import SAMPLE_NOW
from tests.test_core import req
from tests.test_web import URL, desk, sign_in  # noqa: F401 (desk: a fixture)

REASON = "at a conference in Paris"


def cell(html: str, name: str, column: int) -> str:
    """The ``column``-th cell (0-based, as HTML) of the table row that names ``name``."""
    for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S):
        if f">{name}<" in row or f"<td>{name}</td>" in row:
            cells = re.findall(r"<td[^>]*>.*?</td>", row, flags=re.S)
            return cells[column]
    raise AssertionError(f"no row for {name}")


def words(td: str) -> str:
    """What a cell says, read out (its text, the screen-reader detail included)."""
    return htmllib.unescape(re.sub(r"<[^>]+>", "", td))


def title(td: str) -> str:
    found = re.search(r'title="([^"]*)"', td)
    return htmllib.unescape(found.group(1)) if found else ""


async def setup_6(app: App) -> dict[str, Person]:
    """Four students who sent no critique of #6 (due Sep 6, a week before the demo's
    day): one presents it, three do not; the rows are made so whatever the demo did."""
    async with app.db.transaction() as s:
        paper = await s.scalar(select(Paper).where(Paper.number == 6))
        assert paper is not None
        presenting = set(
            await s.scalars(
                select(Assignment.person_id).where(
                    Assignment.paper_id == paper.id, Assignment.published.is_(True)
                )
            )
        )
        roster = list(
            await s.scalars(select(Person).where(Person.role == Role.STUDENT).order_by(Person.name))
        )
        presenter = next(p for p in roster if p.id in presenting)
        others = [p for p in reversed(roster) if p.id not in presenting][:3]
        chosen = {"presenter": presenter, "excused": others[0], "zero": others[1]}
        chosen["overdue"] = others[2]
        await s.execute(
            delete(Critique).where(
                Critique.paper_id == paper.id,
                Critique.person_id.in_([p.id for p in chosen.values()]),
            )
        )
    return chosen


async def test_excused_and_missing_critiques_show_as_chat_counts_them(
    desk: TestClient,  # noqa: F811
    app: App,
) -> None:
    who = await setup_6(app)
    csrf = await sign_in(desk, app, "gedas")
    # Staff excuse one (with a reason) on the desk, and record one missing in chat.
    done = await desk.post(
        "/critiques/6",
        data={
            "csrf": csrf,
            "command": "critique grade",
            "paper": "6",
            "grade": "excused",
            "students": who["excused"].email,
            "reason": REASON,
        },
    )
    assert "Excused for #6" in await done.text()
    r = await app.core.handle_text(req("gedas"), f"critique grade 6 missing {who['zero'].email}")
    assert not r.is_error, r.text

    page = await desk.get("/critiques/6")
    html = await page.text()
    assert page.status == 200
    # The students who sent nothing, each with what it counts as (Status: column 2).
    presenter = cell(html, who["presenter"].name, 2)
    assert 'class="mark mark-excused"' in presenter
    assert words(presenter).startswith("Excused (presenting). Presents #6")
    assert "not counted" in title(presenter)

    excused = cell(html, who["excused"].name, 2)
    assert words(excused).startswith("Excused. ")
    assert title(excused) == f"Excused by staff: not counted. Reason: {REASON}."
    assert '<span class="sr-only">. Excused by staff' in excused  # read out, not only hover

    zero = cell(html, who["zero"].name, 2)
    assert words(zero).startswith("Missing, recorded as 0. ")
    assert title(zero) == "Recorded as missing by staff: counts as 0."
    assert 'class="mark mark-zero"' in zero

    # Never submitted, past the deadline: 0 under the course's rule (`missing: zero`,
    # the default), said so.
    overdue = cell(html, who["overdue"].name, 2)
    assert words(overdue).startswith("Missing (overdue), counts 0. ")
    assert title(overdue).startswith("Nothing came by the deadline, 2023-09-06 13:00 EDT.")
    assert "Counts as 0" in title(overdue)

    # Submitted ones carry their grade, or wait for one.
    statuses = {
        words(c).split(".")[0]
        for c in re.findall(r'<td class="mark mark-[a-z-]+"[^>]*>.*?</td>', html, flags=re.S)
    }
    assert {"Pass", "Fail"} <= statuses
    assert statuses & {"Submitted, not graded", "Late, not graded"}
    # Counted as `critique list` counts: the excused owe nothing.
    listed = render_text(await app.core.handle_text(req("gedas"), "critique list 6"))
    owing = re.search(r"(\d+) of (\d+) students submitted", listed)
    assert owing is not None
    assert f"{owing.group(1)} of {owing.group(2)} students submitted" in html
    assert f"{who['excused'].name} (excused: {REASON})" in listed
    assert f"{who['presenter'].name} (presenting)" in listed

    # The course's grid: one row per student, one cell per critique paper.
    grid = await (await desk.get("/critiques")).text()
    assert "Each student&#39;s critiques" in grid
    row = next(
        r for r in re.findall(r"<tr>(.*?)</tr>", grid, flags=re.S) if who["excused"].name in r
    )
    marks = [words(c) for c in re.findall(r"<td class=\"mark[^>]*>.*?</td>", row, flags=re.S)]
    assert marks[1].startswith("Excused. ")  # #5, then #6
    assert any(m.startswith("Not due yet. Due 2023-09-20") for m in marks)  # #13

    # What chat says for the same students agrees.
    checked = 0
    for key, said in (
        ("zero", "missing, recorded as 0"),
        ("overdue", "missing (overdue), counts 0"),
        ("excused", f"excused ({REASON})"),
        ("presenter", "excused (presenting)"),
    ):
        status = await _status_of(app, who[key])
        if status is None:  # no terminal account to ask as
            continue
        line = next(x for x in status.splitlines() if x.startswith("#6 "))
        assert line.rstrip().endswith(said), line
        checked += 1
    assert checked >= 2


async def _status_of(app: App, person: Person) -> str | None:
    """``critique status`` as the student would see it, when they have a terminal
    account (not every student of the sample roster registered one)."""
    async with app.db.session() as s:
        user = await s.scalar(
            select(Identity.user_id).where(
                Identity.person_id == person.id, Identity.platform == Platform.TERMINAL
            )
        )
    if user is None:
        return None
    return render_text(await app.core.handle_text(req(user), "critique status"))


async def test_under_missing_blank_an_overdue_critique_is_left_out_and_says_so(
    desk: TestClient,  # noqa: F811
    app: App,
) -> None:
    text = SAMPLE_COURSE.read_text(encoding="utf-8")
    old = '  critique_deadline: "13:00"\n'
    assert old in text
    text = text.replace(old, old + "  critique_rules: {missing: blank}\n")
    async with app.db.transaction() as s:
        await import_course(s, parse_course_file(text), now=SAMPLE_NOW)
    who = await setup_6(app)
    await sign_in(desk, app, "gedas")
    html = await (await desk.get("/critiques/6")).text()
    overdue = cell(html, who["overdue"].name, 2)
    assert words(overdue).startswith("Missing (overdue), not counted. ")
    assert 'class="mark mark-missing"' in overdue
    assert "Left out of the grade" in title(overdue)
    assert "A critique never submitted is left out of the grade." in html  # the rule, said
    status = await _status_of(app, who["overdue"])
    if status is not None:
        line = next(x for x in status.splitlines() if x.startswith("#6 "))
        assert line.rstrip().endswith("missing (overdue), not counted"), line
    index = await (await desk.get("/critiques")).text()
    assert "overdue (not counted)" in index


async def test_a_student_sees_their_own_marks(desk: TestClient, app: App) -> None:  # noqa: F811
    await sign_in(desk, app, "alice")
    html = await (await desk.get("/me")).text()
    assert ">Status</th>" in html and ">Grade</th>" not in html
    found = re.findall(r'<td class="mark mark-([a-z-]+)"', html)
    assert found and set(found) <= {"pass", "fail", "submitted", "late", "zero", "excused"}


async def test_battle_pages_take_the_battle_as_printed(desk: TestClient, app: App) -> None:  # noqa: F811
    text = SAMPLE_COURSE.read_text(encoding="utf-8")
    for n in range(1, 5):
        text = text.replace(f"  - id: {n}\n    a: ", f"  - id: B{n}\n    a: ")
    async with app.db.transaction() as s:
        await import_course(s, parse_course_file(text), now=SAMPLE_NOW)
    await sign_in(desk, app, "gedas")
    listing = await (await desk.get("/battles")).text()
    assert '<a href="/battles/B1">Battle B1</a>' in listing
    assert '<a href="/battles/5">Battle 5</a>' in listing
    for path in ("/battles/B1", "/battles/b1", "/battles/1"):
        page = await desk.get(path)
        assert page.status == 200, path
        assert "<h1>Battle B1</h1>" in await page.text()
    for path in ("/battles/B99", "/battles/X", "/battles/1.5", "/battles/C1"):
        page = await desk.get(path)
        assert page.status == 404, path
    assert "is not a battle of this course" in await (await desk.get("/battles/B99")).text()
