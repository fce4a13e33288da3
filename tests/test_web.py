"""The course desk over HTTP (aiohttp's test client), on SQLite and Postgres: sign-in from
a chat link, sessions, every page, changes made through the command core, and the
security rules (a reused or expired link, a student on a staff page or action, a missing
CSRF token, another course's ids): refused, nothing changed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import delete, func, select

from bot.app import App
from bot.web import build_web_app
from bot.web.demo import DEMO_NOW, PDF, png, populate
from bot.web.shots import sign_in_link
from commands.clock import FixedClock
from db.models import (
    Assignment,
    AuditEntry,
    Course,
    Critique,
    GpuJob,
    GpuJobFile,
    Identity,
    Paper,
    Person,
    Ranking,
    Role,
    Slot,
    WebLink,
    WebSession,
)

URL = "http://desk.test"
STAFF_PAGES = (
    "/week",
    "/rankings",
    "/assignment",
    "/critiques",
    "/critiques/6",
    "/discussions",
    "/discussions/6",
    "/battles",
    "/battles/1",
    "/grades",
    "/gpu",
    "/audit",
    "/me",
)


@pytest.fixture
async def desk(app: App, clock: FixedClock) -> AsyncIterator[TestClient]:
    clock.at = DEMO_NOW
    await populate(app)
    app.core.config["web_url"] = URL
    async with TestClient(TestServer(build_web_app(app, public_url=URL))) as client:
        yield client


async def sign_in(client: TestClient, app: App, handle: str) -> str:
    """Sign in as a terminal user with a fresh chat link; the session's CSRF token."""
    link = await sign_in_link(app, handle)
    token = link.split("token=")[1]
    page = await client.get(f"/signin?token={token}")
    assert page.status == 200, await page.text()
    done = await client.post("/signin", data={"token": token}, allow_redirects=False)
    assert done.status == 303, await done.text()
    client.session.cookie_jar.update_cookies(done.cookies)
    me = await client.get("/me")
    return csrf_of(await me.text())


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def count(app: App, model: type, *where: object) -> int:
    async with app.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def person(app: App, handle: str) -> Person:
    async with app.db.session() as s:
        found = await s.scalar(select(Person).join(Identity).where(Identity.user_id == handle))
    assert found is not None
    return found


# ------------------------------------------------------------------------ signing in


async def test_a_chat_link_signs_in_once_and_opens_every_staff_page(
    desk: TestClient, app: App
) -> None:
    link = await sign_in_link(app, "gedas")
    assert link.startswith(f"{URL}/signin?token=")
    token = link.split("token=")[1]
    confirm = await desk.get(f"/signin?token={token}")  # a chat app's preview uses nothing
    assert "Sign in as Gedas Bertasius" in await confirm.text()
    done = await desk.post("/signin", data={"token": token}, allow_redirects=False)
    assert done.status == 303
    cookie = done.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    desk.session.cookie_jar.update_cookies(done.cookies)
    for path in STAFF_PAGES:
        page = await desk.get(path)
        html = await page.text()
        assert page.status == 200, (path, html[-800:])
        assert "Something went wrong" not in html, path
        assert page.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    again = await desk.post("/signin", data={"token": token}, allow_redirects=False)
    assert again.status == 400 and "already used" in await again.text()
    assert await count(app, WebSession) == 1


async def test_an_expired_or_made_up_link_is_refused(
    desk: TestClient, app: App, clock: FixedClock
) -> None:
    link = await sign_in_link(app, "maya")
    clock.advance(timedelta(minutes=10, seconds=1))
    token = link.split("token=")[1]
    late = await desk.post("/signin", data={"token": token}, allow_redirects=False)
    assert late.status == 400 and "expired" in await late.text()
    forged = await desk.post("/signin", data={"token": "x" * 43}, allow_redirects=False)
    assert forged.status == 400
    assert await count(app, WebSession) == 0
    assert (await desk.get("/week")).status == 401


async def test_the_command_says_so_when_no_desk_is_served(desk: TestClient, app: App) -> None:
    app.core.config.pop("web_url")
    with pytest.raises(RuntimeError, match="not running"):
        await sign_in_link(app, "gedas")
    assert await count(app, WebLink) == 0


async def test_sign_out_expiry_and_an_unlinked_account_end_the_session(
    desk: TestClient, app: App, clock: FixedClock
) -> None:
    csrf = await sign_in(desk, app, "gedas")
    cookie = desk.session.cookie_jar.filter_cookies(desk.make_url("/"))["coursebot_session"]
    out = await desk.post("/signout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303
    desk.session.cookie_jar.update_cookies({"coursebot_session": cookie.value})  # kept it
    assert (await desk.get("/week")).status == 401

    await sign_in(desk, app, "gedas")
    clock.advance(timedelta(hours=8, seconds=1))
    assert (await desk.get("/week")).status == 401

    await sign_in(desk, app, "maya")
    async with app.db.transaction() as s:  # staff unlink Maya's terminal account
        maya = await s.scalar(select(Identity).where(Identity.user_id == "maya"))
        await s.delete(maya)
    assert (await desk.get("/week")).status == 401


# --------------------------------------------------------------------- who sees what


async def test_a_student_is_refused_staff_pages_and_actions(desk: TestClient, app: App) -> None:
    csrf = await sign_in(desk, app, "alice")
    for path in ("/week", "/assignment", "/critiques/6", "/grades", "/audit"):
        page = await desk.get(path)
        assert page.status == 403, path
        assert (
            "only for TAs and instructors; you are registered as a student" in (await page.text())
            or "only for instructors" in await page.text()
        )
    before = await count(app, Assignment)
    swap = await desk.post(
        "/assignment",
        data={"csrf": csrf, "command": "assign swap", "first": "alice", "second": "bob"},
    )
    assert swap.status == 403
    grade = await desk.post(
        "/critiques/6",
        data={
            "csrf": csrf,
            "command": "critique grade",
            "paper": "6",
            "grade": "pass",
            "students": "bob.okafor@unc.edu",
        },
    )
    assert grade.status == 403
    assert await count(app, AuditEntry, AuditEntry.kind != "grade.set") == 0
    assert await count(app, Assignment) == before
    bob = await person(app, "bob")
    other = await desk.get(f"/critiques/6/pdf/{bob.id}")
    assert other.status == 403 and "only your own" in await other.text()
    alice = await person(app, "alice")
    mine = await desk.get(f"/critiques/6/pdf/{alice.id}")
    assert mine.status == 200 and mine.content_type == "application/pdf"
    assert await mine.read() == PDF
    page = await desk.get("/me")
    html = await page.text()
    assert page.status == 200 and "Your critiques" in html and "Bob Okafor" not in html


async def test_a_change_without_its_csrf_token_is_refused(desk: TestClient, app: App) -> None:
    csrf = await sign_in(desk, app, "gedas")
    bob = await person(app, "bob")
    form = {"command": "critique grade", "paper": "13", "grade": "fail", "students": bob.email}
    for data in (form, {**form, "csrf": "not-the-token-at-all-1234567"}):
        refused = await desk.post("/critiques/13", data=data)
        assert refused.status == 403 and "security token" in await refused.text()
    cross = await desk.post(
        "/critiques/13", data={**form, "csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status == 403
    of_13 = Critique.paper_id.in_(select(Paper.id).where(Paper.number == 13))
    assert await count(app, Critique, Critique.grade.is_not(None), of_13) == 0
    assert await count(app, AuditEntry, AuditEntry.kind == "critique.grade") == 0


async def test_another_courses_ids_are_not_found(desk: TestClient, app: App) -> None:
    async with app.db.transaction() as s:
        other = Course(key="other", name="Other course")
        s.add(other)
        await s.flush()
        stranger = Person(course_id=other.id, name="Stranger", email="s@other.example")
        s.add(stranger)
        s.add(
            Paper(course_id=other.id, number=99, title="Elsewhere", slot=Slot.MIN30, critique=True)
        )
        await s.flush()
        job = GpuJob(
            course_id=other.id,
            person_id=stranger.id,
            demo="cnn",
            channel="",
            created_at=DEMO_NOW,
            state="succeeded",
        )
        s.add(job)
        await s.flush()
        f = GpuJobFile(
            job_id=job.id,
            role="output",
            name="x.png",
            content_type="image/png",
            data=png(),
            created_at=DEMO_NOW,
        )
        s.add(f)
        await s.flush()
        ids = (stranger.id, f.id)
    await sign_in(desk, app, "gedas")
    for path in (
        "/critiques/99",
        "/discussions/99",
        "/battles/99",
        f"/critiques/6/pdf/{ids[0]}",
        f"/files/gpu/{ids[1]}",
        "/critiques/abc",
    ):
        page = await desk.get(path)
        assert page.status == 404, (path, page.status)


# ------------------------------------------------------------- changes via the core


async def test_bulk_grading_runs_the_chat_command_and_says_what_chat_says(
    desk: TestClient, app: App
) -> None:
    csrf = await sign_in(desk, app, "maya")
    page = await desk.get("/critiques/13")
    html = await page.text()
    chosen = re.findall(r'name="students" value="([^"]+)"', html)[:3]
    assert len(chosen) == 3
    data = [("csrf", csrf), ("command", "critique grade"), ("paper", "13"), ("grade", "pass")]
    data += [("students", e) for e in chosen] + [("idem", "same-form-123")]
    done = await desk.post("/critiques/13", data=data)
    text = await done.text()
    assert done.status == 200 and "Graded Pass for #13" in text
    assert await count(app, AuditEntry, AuditEntry.kind == "critique.grade") == 3
    twice = await desk.post("/critiques/13", data=data)  # the same form sent again
    assert "already sent" in await twice.text()
    assert await count(app, AuditEntry, AuditEntry.kind == "critique.grade") == 3
    missing = await desk.post(
        "/critiques/13",
        data={
            "csrf": csrf,
            "command": "critique grade",
            "paper": "13",
            "grade": "pass",
            "students": "zoe.williams@unc.edu",
        },
    )
    assert "No critique of #13" in await missing.text()  # chat's own words
    nothing = await desk.post(
        "/critiques/13",
        data={"csrf": csrf, "command": "critique grade", "paper": "13", "grade": "pass"},
    )
    assert "Refused" in await nothing.text() and "students" in await nothing.text()
    assert await count(app, AuditEntry, AuditEntry.kind == "critique.grade") == 3


async def test_downloads_and_the_students_own_calendar(desk: TestClient, app: App) -> None:
    await sign_in(desk, app, "gedas")
    csv_ = await desk.get("/rankings?csv=0")
    body = await csv_.text()
    assert csv_.content_type == "text/csv"
    assert body.splitlines()[0].startswith("Student,Email,Standard submitted")
    assert len(body.splitlines()) == 1 + await count(app, Person, Person.role == Role.STUDENT)
    grades = await desk.get("/export/critiques")
    assert grades.status == 200 and "attachment" in grades.headers["Content-Disposition"]
    assert (await desk.get("/audit?person=alice")).status == 200

    csrf = await sign_in(desk, app, "alice")
    made = await desk.post("/me/calendar-link", data={"csrf": csrf})
    first = re.search(r"(/cal/[A-Za-z0-9_-]+\.ics)", await made.text())
    assert first
    feed = await desk.get(first.group(1))
    assert feed.status == 200 and b"BEGIN:VCALENDAR" in await feed.read()
    made = await desk.post("/me/calendar-link", data={"csrf": csrf})
    assert (await desk.get(first.group(1))).status == 404  # replaced
    assert (await desk.get("/me/calendar.ics")).status == 200
    image = await desk.get("/files/gpu/1")
    assert image.status == 200 and image.content_type == "image/png"  # Alice's own job


async def test_the_assignment_page_is_never_stale(desk: TestClient, app: App) -> None:
    """The remembered ``assign show`` is answered again after any change: a swap made on
    the web, and a ranking changed elsewhere (here, straight in the database)."""
    csrf = await sign_in(desk, app, "gedas")

    def carol_row(html: str) -> list[str]:
        return [line for line in html.splitlines() if "Carol Martinez (" in line]

    first = await (await desk.get("/assignment")).text()
    swap = await desk.post(
        "/assignment",
        data={
            "csrf": csrf,
            "command": "assign swap",
            "first": "carol.martinez@unc.edu",
            "second": "deepak.raman@unc.edu",
        },
    )
    assert "Swapped: Carol Martinez now has" in await swap.text()
    second = await (await desk.get("/assignment")).text()
    assert carol_row(second) != carol_row(first)
    assert await count(app, AuditEntry, AuditEntry.kind == "assign.swap") == 2
    async with app.db.transaction() as s:
        carol = await s.scalar(select(Person).where(Person.email == "carol.martinez@unc.edu"))
        assert carol is not None
        await s.execute(delete(Ranking).where(Ranking.person_id == carol.id))
    third = await (await desk.get("/assignment")).text()
    assert "Carol Martinez (did not rank)" in third
