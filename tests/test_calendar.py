"""Calendars that stay current (issue #19 point 4), on SQLite and Postgres: every session
(project days and sessions without papers too), every deadline with its alarms, one's
own talks and nobody else's; UIDs that survive a re-import and an edit (which raises
SEQUENCE instead); a personal subscription feed served over real HTTP, with ETag and
Last-Modified, that a revoked or unknown token cannot reach; ``coursebot calendar
export --person``; and migration 0021, which moves the desk's calendar links over."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from icalendar import Calendar
from sqlalchemy import create_engine, delete, func, select, text
from sqlalchemy.engine import make_url

from bot.app import App
from bot.settings import SAMPLE_COURSE
from bot.web import start_web
from commands.calendar import ALARMS, build_calendar, person_key
from commands.context import Caller, Request, Where
from commands.coursefile import import_course, parse_course_file
from commands.dashboard import new_token, token_hash
from commands.logistics import course_calendar, course_deadlines
from commands.replies import Reply, render_text
from db.migrate import alembic_config, upgrade
from db.models import (
    Assignment,
    AuditEntry,
    Base,
    CalendarToken,
    CalendarVersion,
    Course,
    OutboxMessage,
    Paper,
    Person,
    Platform,
)
from tests.conftest import PG_ADMIN_URL, SAMPLE_NOW, throwaway_pg_database
from tests.test_cli import SAMPLE, coursebot

NY = ZoneInfo("America/New_York")
ALICE, BOB = "alice.chen@unc.edu", "bob.okafor@unc.edu"


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


async def say(app: App, user: str, line: str) -> Reply:
    return await app.core.handle_text(req(user), line)


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


async def person(app: App, email: str) -> Person:
    async with app.db.session() as s:
        p = await s.scalar(select(Person).where(Person.email == email))
        assert p is not None
        return p


def check_structure(data: bytes) -> None:
    """RFC 5545's form, checked by hand: CRLF lines of at most 75 octets, balanced
    BEGIN/END, folded lines starting with a space; and it parses with ``icalendar``."""
    assert data.endswith(b"\r\n")
    lines = data[:-2].split(b"\r\n")
    assert all(b"\n" not in line and b"\r" not in line for line in lines)
    assert max(len(line) for line in lines) <= 75
    stack: list[bytes] = []
    for line in lines:
        if line.startswith(b"BEGIN:"):
            stack.append(line[6:])
        elif line.startswith(b"END:"):
            assert stack.pop() == line[4:]
    assert stack == []
    Calendar.from_ical(data)


def events_of(data: bytes) -> dict[str, object]:
    check_structure(data)
    cal = Calendar.from_ical(data)
    return {str(e["UID"]).split("@")[0]: e for e in cal.walk("VEVENT")}


def seq(ev: object) -> int:
    return int(ev["SEQUENCE"])  # type: ignore[index]


def stamp(ev: object) -> datetime:
    return ev["LAST-MODIFIED"].dt  # type: ignore[index, no-any-return]


# ------------------------------------------------------------------------ what it holds
async def test_every_session_every_deadline_with_alarms_and_the_paper_links(app: App) -> None:
    r = await say(app, "alice", "deadlines ics")
    assert r.files[0].mime == "text/calendar" and "`calendar link`" in render_text(r)
    events = events_of(r.files[0].data)
    async with app.db.session() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        meetings = (await course_calendar(s, course)).meetings
        deadlines = await course_deadlines(s, course)
    # Every class meeting, papers or not: the first lecture and the six project days.
    assert {f"class-{m.day:%Y%m%d}" for m in meetings} <= set(events)
    for day in ("20230821", "20231002", "20231004", "20231030", "20231101", "20231204"):
        assert f"class-{day}" in events, day
    assert "Project proposal presentations" in str(events["class-20231004"]["SUMMARY"])  # type: ignore[index]
    # Every deadline, each with its alarms a day and an hour before.
    assert len(deadlines) > 10
    for item in deadlines:
        ev = events[item.uid]
        assert ev["DTSTART"].dt == item.due  # type: ignore[index]
        assert ev["TRANSP"] == "TRANSPARENT"  # type: ignore[index]
        triggers = [a["TRIGGER"].dt for a in ev.walk("VALARM")]  # type: ignore[attr-defined]
        assert triggers == [-t for t in ALARMS] == [-timedelta(days=1), -timedelta(hours=1)]
    # A critique is due at 1 PM on class day, with the paper's link.
    crit = events["critique-5"]
    assert crit["DTSTART"].dt.astimezone(NY).strftime("%Y-%m-%d %H:%M") == "2023-08-30 13:00"  # type: ignore[index]
    assert str(crit["URL"]) == "https://arxiv.org/abs/1812.03982"  # type: ignore[index]
    assert "SlowFast" in str(crit["DESCRIPTION"])  # type: ignore[index]
    # Project write-ups and rankings; one across the DST change is due 11:59 PM EST.
    assert {"rankings", "milestone-proposal", "milestone-milestone", "milestone-final"} <= set(
        events
    )
    late = events["milestone-milestone"]["DTSTART"].dt  # type: ignore[index]
    assert late.astimezone(UTC) == datetime(2023, 11, 6, 4, 59, tzinfo=UTC)
    # A day with one paper links it; versions are there from the first download.
    assert str(events["class-20230830"]["URL"]) == "https://arxiv.org/abs/1812.03982"  # type: ignore[index]
    assert all(seq(ev) == 0 and "DTSTAMP" in ev for ev in events.values())  # type: ignore[operator]
    assert b"DTSTART;TZID=America/New_York:20231106T143000" in r.files[0].data
    assert b"BEGIN:VTIMEZONE" in r.files[0].data


async def test_a_students_calendar_has_her_talks_and_nobody_elses(app: App) -> None:
    await present(app, ALICE, 5)
    await present(app, ALICE, 9)  # side A of battle 1
    await present(app, BOB, 6)
    alice, bob = await person(app, ALICE), await person(app, BOB)
    mine = events_of((await say(app, "alice", "deadlines ics")).files[0].data)
    talk = mine[f"present-5-{person_key(alice)}"]
    assert talk["DTSTART"].dt.strftime("%H:%M") == "14:30"  # type: ignore[index]
    assert str(talk["URL"]) == "https://arxiv.org/abs/1812.03982"  # type: ignore[index]
    assert f"battle-1-{person_key(alice)}" in mine
    assert not [uid for uid in mine if person_key(bob) in uid]
    assert "Presented by Bob Okafor" in str(mine["class-20230906"]["DESCRIPTION"])  # type: ignore[index]
    theirs = events_of((await say(app, "bob", "deadlines ics")).files[0].data)
    assert f"present-6-{person_key(bob)}" in theirs
    assert not [uid for uid in theirs if person_key(alice) in uid]
    # What they share is the same event, word for word.
    assert mine["class-20230906"].to_ical() == theirs["class-20230906"].to_ical()  # type: ignore[attr-defined]


# -------------------------------------------------------------------- stable, versioned
async def reimport(app: App, text_: str, now: datetime) -> None:
    async with app.db.transaction() as s:
        await import_course(s, parse_course_file(text_), now=now)


async def served(app: App, email: str | None, now: datetime) -> dict[str, object]:
    """The calendar as the feed serves it at ``now`` (recording its versions)."""
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course).where(Course.key == "comp790-23f"))
        assert course is not None
        who = None
        if email:
            who = await s.scalar(
                select(Person).where(Person.email == email, Person.course_id == course.id)
            )
        cal = await build_calendar(s, course, who, now, record=True)
        assert not cal.pending
    return events_of(cal.data)


async def test_uids_survive_a_reimport_and_an_edit_raises_the_sequence(app: App) -> None:
    await present(app, ALICE, 6)
    sample = SAMPLE_COURSE.read_text(encoding="utf-8")
    t0, t1, t2, t3 = (SAMPLE_NOW + timedelta(days=d) for d in range(4))
    first = await served(app, ALICE, t0)
    alice = await person(app, ALICE)
    talk = f"present-6-{person_key(alice)}"
    assert talk in first and seq(first[talk]) == 0

    # The same file again: the same calendar, byte for byte (no new versions).
    await reimport(app, sample, t1)
    again = await served(app, ALICE, t1)
    assert {u: e.to_ical() for u, e in again.items()} == {u: e.to_ical() for u, e in first.items()}  # type: ignore[attr-defined]

    # Paper 6 moves a week and a half: its events keep their UIDs with a higher SEQUENCE.
    moved = sample.replace(
        "    date: 2023-09-06\n    slot: 45", "    date: 2023-09-18\n    slot: 45"
    )
    assert moved != sample
    await reimport(app, moved, t2)
    after = await served(app, ALICE, t2)
    for uid in ("critique-6", talk, "class-20230906", "class-20230918"):
        assert seq(after[uid]) == seq(first[uid]) + 1, uid
        assert stamp(after[uid]) == t2 and after[uid]["DTSTAMP"].dt == t2  # type: ignore[index]
    assert after["critique-6"]["DTSTART"].dt.date().isoformat() == "2023-09-18"  # type: ignore[index]
    assert after[talk]["DTSTART"].dt.date().isoformat() == "2023-09-18"  # type: ignore[index]
    untouched = after["class-20231204"]
    assert seq(untouched) == 0 and stamp(untouched) == t0
    assert set(after) == set(first)

    # Deleted and imported again (every row id changes): the same UIDs, and no
    # sequence goes back (versions are kept by course key and UID).
    async with app.db.transaction() as s:
        await s.execute(delete(Course))
    await reimport(app, moved, t3)
    await present(app, ALICE, 6)
    fresh = await served(app, ALICE, t3)
    assert set(fresh) == set(after)
    assert all(seq(fresh[u]) >= seq(after[u]) for u in fresh)
    assert {u: e.to_ical() for u, e in fresh.items()} == {u: e.to_ical() for u, e in after.items()}  # type: ignore[attr-defined]


async def test_a_download_only_reads_and_shows_a_change_as_the_next_version(app: App) -> None:
    first = await served(app, None, SAMPLE_NOW)
    async with app.db.transaction() as s:
        paper = await s.scalar(select(Paper).where(Paper.number == 5))
        assert paper is not None
        paper.url = "https://example.org/slowfast"
    async with app.db.session() as s:
        rows = await s.scalar(select(func.count()).select_from(CalendarVersion))
    r = await say(app, "gedas", "deadlines ics")
    events = events_of(r.files[0].data)
    assert seq(events["critique-5"]) == seq(first["critique-5"]) + 1
    assert str(events["critique-5"]["URL"]) == "https://example.org/slowfast"  # type: ignore[index]
    assert seq(events["class-20231204"]) == 0
    async with app.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(CalendarVersion)) == rows


# ----------------------------------------------------------------------- the feed, HTTP
@pytest.fixture
async def served_app(app: App) -> AsyncIterator[App]:
    """The app with its desk served on a free port of 127.0.0.1 (as ``coursebot run``)."""
    app.web = await start_web(app, "127.0.0.1:0")
    assert app.web is not None
    yield app


def url_in(reply: Reply) -> str:
    found = re.search(r"http://127\.0\.0\.1:\d+/cal/[A-Za-z0-9_-]{43}\.ics", render_text(reply))
    assert found, render_text(reply)
    return found.group(0)


async def counts(app: App) -> dict[str, int]:
    async with app.db.session() as s:
        return {
            name: int(await s.scalar(select(func.count()).select_from(table)) or 0)
            for name, table in Base.metadata.tables.items()
        }


async def test_the_feed_over_http_with_etag_and_revocation(served_app: App) -> None:
    app = served_app
    await present(app, ALICE, 5)
    await present(app, BOB, 6)
    link = await say(app, "alice", "calendar link")
    assert link.ephemeral and not link.is_error
    url = url_in(link)
    alice, bob = await person(app, ALICE), await person(app, BOB)
    async with app.db.session() as s:  # only the hash is stored
        row = await s.scalar(select(CalendarToken))
        assert row is not None and row.token_hash == token_hash(url.rsplit("/", 1)[1][:-4])
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/calendar; charset=utf-8"
            assert r.headers["Cache-Control"] == "private, no-cache"
            etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
            body = await r.read()
        events = events_of(body)
        assert f"present-5-{person_key(alice)}" in events
        assert not [u for u in events if person_key(bob) in u]
        before = await counts(app)
        # Polled again: the same bytes; with the ETag (or the date), 304 and no body.
        async with http.get(url) as r:
            assert r.headers["ETag"] == etag and await r.read() == body
        async with http.get(url, headers={"If-None-Match": etag}) as r:
            assert r.status == 304 and await r.read() == b"" and r.headers["ETag"] == etag
        async with http.get(url, headers={"If-None-Match": f'W/{etag}, "other"'}) as r:
            assert r.status == 304
        async with http.get(url, headers={"If-Modified-Since": modified}) as r:
            assert r.status == 304
        async with http.get(url, headers={"If-None-Match": '"stale"'}) as r:
            assert r.status == 200
        assert await counts(app) == before  # polls that change nothing write nothing

        # A change: a new ETag, and the event updated in place (its next version).
        async with app.db.transaction() as s:
            paper = await s.scalar(select(Paper).where(Paper.number == 5))
            assert paper is not None
            paper.title = "SlowFast Networks (revised)"
        app.clock.at = SAMPLE_NOW + timedelta(hours=1)  # type: ignore[attr-defined]
        async with http.get(url, headers={"If-None-Match": etag}) as r:
            assert r.status == 200 and r.headers["ETag"] != etag
            changed = events_of(await r.read())
        talk = changed[f"present-5-{person_key(alice)}"]
        assert seq(talk) == 1 and "(revised)" in str(talk["SUMMARY"])  # type: ignore[index]

        # Unknown, malformed, revoked: 404, a short plain text, nothing stored changes.
        before = await counts(app)
        wrong = url.rsplit("/", 1)[0] + f"/{new_token()}.ics"
        for bad in (wrong, wrong.replace(".ics", "x.ics"), url.replace("/cal/", "/cal/%2e")):
            async with http.get(bad) as r:
                assert r.status == 404 and r.content_type == "text/plain"
                assert await r.text() == "Not found.\n"
        assert await counts(app) == before
        out = await say(app, "alice", "calendar revoke")
        assert "is off" in render_text(out)
        async with http.get(url) as r:
            assert r.status == 404 and await r.text() == "Not found.\n"
        before = await counts(app)
        async with http.get(url, headers={"If-None-Match": etag}) as r:
            assert r.status == 404
        assert await counts(app) == before

        # A new link ends the old; staff can turn anyone's off, and she is told.
        first = url_in(await say(app, "alice", "calendar link"))
        second = url_in(await say(app, "alice", "calendar link"))
        async with http.get(first) as r:
            assert r.status == 404
        async with http.get(second) as r:
            assert r.status == 200
        refused = await say(app, "bob", "calendar revoke alice.chen@unc.edu")
        assert refused.is_error and "your own" in render_text(refused)
        done = await say(app, "gedas", "calendar revoke alice.chen@unc.edu")
        assert "Turned off Alice Chen's calendar link" in render_text(done)
        async with http.get(second) as r:
            assert r.status == 404
        assert "no calendar link" in render_text(await say(app, "gedas", "calendar revoke alice"))
    async with app.db.session() as s:
        entry = await s.scalar(select(AuditEntry).where(AuditEntry.kind == "calendar.revoke"))
        assert entry is not None and entry.subject == "Alice Chen"
        told = list(await s.scalars(select(OutboxMessage)))
        assert any(
            "calendar subscription link was turned off" in str(m.reply) and m.person_id == alice.id
            for m in told
        )


async def test_calendar_link_needs_the_desk_and_a_roster_entry(app: App) -> None:
    r = await say(app, "alice", "calendar link")
    assert r.is_error and "web desk is not running" in render_text(r)
    app.core.config["web_url"] = "https://desk.example.edu/"
    r = await say(app, "alice", "calendar link")
    assert re.search(r"https://desk\.example\.edu/cal/[A-Za-z0-9_-]{43}\.ics", r.text)
    assert "Google Calendar" in render_text(r) and "calendar revoke" in render_text(r)
    assert (await say(app, "nobody", "calendar link")).is_error


# --------------------------------------------------------------------------------- CLI
def test_the_command_line_exports_the_course_or_one_persons_calendar(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    data = tmp_path / "data"
    assert coursebot("course", "import", SAMPLE, database_url=db, data_dir=data).returncode == 0
    course = tmp_path / "course.ics"
    r = coursebot("calendar", "export", "-o", str(course), database_url=db, data_dir=data)
    assert r.returncode == 0, r.stderr
    r = coursebot(
        "calendar", "export", "--person", ALICE, "-o", str(tmp_path / "a.ics"),
        database_url=db, data_dir=data,
    )  # fmt: skip
    assert r.returncode == 0 and "Alice Chen's calendar" in r.stdout, r.stderr
    everyone, hers = events_of(course.read_bytes()), events_of((tmp_path / "a.ics").read_bytes())
    assert set(everyone) == set(hers)  # nothing of hers is published yet
    assert all(seq(e) == 0 for e in hers.values())
    r = coursebot("calendar", "export", "--person", "zz-nobody", database_url=db, data_dir=data)
    assert r.returncode == 1 and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- migration
@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
        return
    with throwaway_pg_database("coursebot_cal") as name:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)


def _sync(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


OURS = ("calendar_tokens", "calendar_versions")


def test_0021_moves_the_desks_calendar_links_and_matches_the_models(fresh_url: str) -> None:
    upgrade(fresh_url, "0020")
    live, replaced = new_token(), new_token()
    engine = create_engine(_sync(fresh_url))
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO courses (id, key, name, term, timezone, class_days, "
                    "critique_deadline, standard_choices, battle_choices, max_presenters, "
                    "battle_group_min, battle_group_max, battle_rules, gpu_rules, grading, "
                    "channels, no_class) VALUES (1, 'c', 'C', '', 'UTC', '[]', '13:00:00', "
                    "7, 3, 2, 3, 4, '{}', '{}', '{}', '{}', '[]')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO people (id, course_id, name, email, role) "
                    "VALUES (1, 1, 'A', 'a@x.edu', 'student')"
                )
            )
            for token, used in ((live, None), (replaced, "2023-08-01 00:00:00+00:00")):
                conn.execute(
                    text(
                        "INSERT INTO web_links (token_hash, kind, course_id, person_id, "
                        "platform, workspace, user_id, created_at, used_at) VALUES "
                        "(:h, 'calendar', 1, 1, 'terminal', 'default', 'a', "
                        "'2023-08-01 00:00:00+00:00', :used)"
                    ),
                    {"h": token_hash(token), "used": used},
                )
        upgrade(fresh_url)
        with engine.connect() as conn:
            moved = conn.execute(text("SELECT token_hash, revoked_at FROM calendar_tokens")).all()
            assert [tuple(r) for r in moved] == [(token_hash(live), None)]
            still = conn.execute(text("SELECT count(*) FROM web_links WHERE used_at IS NULL"))
            assert still.scalar() == 0
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert [d for d in diff if any(t in repr(d) for t in OURS)] == []
        command.downgrade(alembic_config(fresh_url), "0020")
        with engine.connect() as conn:
            back = conn.execute(text("SELECT token_hash FROM web_links WHERE used_at IS NULL"))
            assert [r[0] for r in back] == [token_hash(live)]
    finally:
        engine.dispose()
    upgrade(fresh_url)
