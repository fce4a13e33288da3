"""Critiques on SQLite and Postgres: PDF submissions through the shell and the core,
late marking, deadline pings (DST, restarts, no duplicates), grading, the Canvas
export and privacy."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

import commands.critiques  # noqa: F401  (declares the critique commands)
from bot.app import start_app
from bot.settings import Settings
from commands.clock import FixedClock
from commands.context import Attachment, Caller, Request, Where
from commands.critiques import MAX_BYTES, critique_pings, due_critique_posts
from commands.replies import Reply, render_text
from db.models import Course, Critique, Paper, Person, Platform
from tests.http_fakes import file_server

#: Paper #5 (SlowFast) is on Wed 2023-08-30: critiques due 1 PM EDT = 17:00 UTC.
DUE_5 = datetime(2023, 8, 30, 17, 0, tzinfo=UTC)
BEFORE_5 = DUE_5 - timedelta(days=1)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
Q = "Why does the fast pathway need so few channels?"
A = "Motion is low-level; it needs temporal resolution, not semantic capacity."


def req(user: str, *files: Path) -> Request:
    return Request(
        Platform.TERMINAL,
        "default",
        Caller(Platform.TERMINAL, user, user),
        Where("general"),
        attachments=tuple(Attachment(f.name, path=f, size=f.stat().st_size) for f in files),
    )


async def say(app, user: str, line: str, *files: Path) -> Reply:  # type: ignore[no-untyped-def]
    return await app.core.handle_text(req(user, *files), line)


async def submit(app, user: str, paper: int, *files: Path) -> Reply:  # type: ignore[no-untyped-def]
    return await app.core.handle(
        req(user, *files), "critique submit", {"paper": paper, "question": Q, "answer": A}
    )


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def rows(app) -> list[tuple[int, int, str | None]]:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        found = await s.execute(
            select(Person.email, Paper.number, Critique.grade, Critique.submitted_at)
            .join(Person, Person.id == Critique.person_id)
            .join(Paper, Paper.id == Critique.paper_id)
            .order_by(Person.email, Paper.number)
        )
        return [tuple(r) for r in found]  # type: ignore[misc]


def stored(settings: Settings) -> dict[str, bytes]:
    root = settings.data_dir / "critiques"
    return {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}


async def test_submit_replace_late_and_bad_input(app, transcript, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app.clock.at = BEFORE_5
    good = write(tmp_path, "alice-slowfast.pdf", PDF + b"first")
    await transcript.say(":as alice")
    await transcript.say(f":attach {good}")
    out = await transcript.say(f'critique submit 5 "{Q}" "{A}"')
    assert "only you can see this" in out
    assert "Your critique of #5 SlowFast Networks for Video Recognition was received" in out
    assert "replace it until Wed Aug 30, 2023, 1:00 PM EDT" in out
    files = stored(settings)
    assert list(files.values()) == [PDF + b"first"]
    (name,) = files
    alice_path = settings.data_dir / "critiques" / "comp790-23f" / name
    assert name.startswith("5-") and name.endswith(".pdf")

    # A resubmission before the deadline replaces file and row (through the core, as
    # Discord and Slack hand it over: an Attachment with a local path).
    app.clock.at = DUE_5 - timedelta(minutes=1)
    second = write(tmp_path, "v2.pdf", PDF + b"second")
    r = await submit(app, "alice", 5, second)
    assert not r.is_error and "was replaced" in r.text, r.text
    assert alice_path.read_bytes() == PDF + b"second"
    assert [(e, n, g) for e, n, g, _ in await rows(app)] == [("alice.chen@unc.edu", 5, None)]

    # After the deadline: accepted and marked late.
    app.clock.at = DUE_5 + timedelta(seconds=1)
    r = await submit(app, "bob", 5, write(tmp_path, "bob.pdf", PDF))
    assert not r.is_error and "It is late" in r.text and "1:00 PM EDT" in r.text
    status = render_text(await say(app, "bob", "critique status"))
    assert "late, Aug 30 1:00 PM EDT" in status and "missing" in status
    status = render_text(await say(app, "alice", "critique status"))
    assert "on time, Aug 30 12:59 PM EDT" in status and "1 of 10 submitted" in status
    app.clock.at = datetime(2023, 9, 7, tzinfo=UTC)
    assert "missing (overdue)" in render_text(await say(app, "alice", "critique status"))
    app.clock.at = DUE_5 + timedelta(seconds=1)

    # Bad input: a clear message each, and nothing stored changes.
    before_rows, before_files = await rows(app), stored(settings)
    fake = write(tmp_path, "essay.pdf", b"This is plain text pretending to be a PDF.\n")
    big = tmp_path / "big.pdf"
    with big.open("wb") as f:  # sparse: fast to make, 21 MB to the checks
        f.write(PDF)
        f.truncate(MAX_BYTES + 1024 * 1024)
    cases = [
        ("carol", 5, (fake,), "`essay.pdf` is not a PDF"),
        ("carol", 5, (big,), "`big.pdf` is larger than 20 MB"),
        ("carol", 5, (), "Attach your critique as a PDF"),
        ("carol", 5, (good, second), "Attach one PDF only"),
        ("carol", 1, (good,), "Paper #1 Two-Stream"),
        ("carol", 99, (good,), "There is no paper #99"),
        ("zoe", 5, (good,), "register"),
        ("gedas", 5, (good,), "Only students submit critiques"),
        ("maya", 5, (good,), "Only students submit critiques"),
    ]
    for user, paper, files_, message in cases:
        r = await submit(app, user, paper, *files_)
        assert r.is_error and message in r.text, (user, paper, r.text)
    r = await submit(app, "carol", 1, good)
    assert "takes no critique" in r.text and "`papers critique`" in r.text
    r = await app.core.handle(
        req("carol", good), "critique submit", {"paper": 5, "question": "  ", "answer": A}
    )
    assert r.is_error and "question is empty" in r.text
    # Through the shell: no :attach → the same refusal.
    await transcript.say(":as carol")
    out = await transcript.say(f'critique submit 5 "{Q}" "{A}"')
    assert "Attach your critique as a PDF" in out and ":attach FILE" in out
    assert await rows(app) == before_rows and stored(settings) == before_files

    # A graded critique can no longer be replaced.
    await say(app, "maya", "critique grade 5 pass alice")
    r = await submit(app, "alice", 5, good)
    assert r.is_error and "already graded" in r.text
    assert alice_path.read_bytes() == PDF + b"second"


async def test_list_grade_export_and_privacy(app, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app.clock.at = BEFORE_5
    pdf = write(tmp_path, "c.pdf", PDF)
    for user in ("alice", "bob", "carol"):
        assert not (await submit(app, user, 5, pdf)).is_error
    app.clock.at = DUE_5 + timedelta(hours=1)
    assert not (await submit(app, "deepak", 5, pdf)).is_error  # late
    async with app.db.transaction() as s:
        await s.execute(
            update(Person).where(Person.email == "alice.chen@unc.edu").values(canvas_id="482001")
        )

    listing = render_text(await say(app, "maya", "critique list 5"))
    assert "4 of" in listing and "Deepak Raman" in listing and "late" in listing
    assert "Missing" in listing and "Emily" in listing and "Alice Chen" in listing

    # Privacy: students cannot list, grade, export or fetch someone else's file.
    for line in ("critique list 5", "critique grade 5 pass bob", "critique export"):
        r = await say(app, "alice", line)
        assert r.is_error and "TAs and instructors" in r.text, r.text
    r = await say(app, "alice", "critique file 5 bob")
    assert r.is_error and "only your own" in r.text
    r = await say(app, "zoe", "critique status")
    assert r.is_error and "register" in r.text
    mine = await say(app, "alice", "critique file 5")
    assert mine.ephemeral and mine.files[0].data == PDF and mine.files[0].mime == "application/pdf"
    assert Q in render_text(mine)
    theirs = await say(app, "gedas", "critique file 5 bob.okafor@unc.edu")
    assert theirs.ephemeral and theirs.files[0].data == PDF and "Bob Okafor" in theirs.title

    # Grading: all or nothing; a missing submission is named and nothing changes.
    r = await say(app, "maya", "critique grade 5 pass achen emily")
    assert r.is_error and "No critique of #5" in r.text and "Emily" in r.text
    assert all(g is None for _, _, g, _ in await rows(app))
    r = await say(app, "maya", "critique grade 5 fail bob")
    assert not r.is_error and "Graded Fail" in r.text and "Bob Okafor" in r.text
    r = await say(app, "gedas", "critique grade-all 5 pass")
    assert "Graded 2 on-time critiques" in r.text and "1 late critique still needs" in r.text
    r = await say(app, "gedas", "critique grade-all 5 pass")
    assert r.is_error and "No on-time critique" in r.text
    r = await say(app, "gedas", "critique grade 5 maybe bob")
    assert r.is_error
    r = await say(app, "gedas", "critique grade 5 pass gedas")
    assert r.is_error and "not a student" in r.text
    await say(app, "gedas", "critique grade 5 pass deepak")
    assert "Pass" in render_text(await say(app, "alice", "critique status"))
    assert "Fail" in render_text(await say(app, "bob", "critique status"))

    export = await say(app, "maya", "critique export")
    assert export.ephemeral and export.files[0].name == "comp790-23f-critiques.csv"
    table = list(csv.reader(io.StringIO(export.files[0].data.decode())))
    header = table[0]
    assert header[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert header[5] == "Critique #5: SlowFast Networks for Video Recognition"
    assert len(header) == 5 + 10
    by_name = {r[0]: r for r in table[1:]}
    assert by_name["Chen, Alice"][1:4] == ["482001", "730418265", "achen"]
    assert by_name["Chen, Alice"][5] == "1" and by_name["Okafor, Bob"][5] == "0"
    assert by_name["Raman, Deepak"][5] == "1" and by_name["Martinez, Carol"][5] == "1"
    assert all(v == "" for v in by_name["Chen, Alice"][6:])
    # Canvas's "Points Possible" row comes second; a pass is 1 point.
    assert table[1][:5] == ["Points Possible", "", "", "", ""] and table[1][5:] == ["1"] * 10
    names = [r[0] for r in table[2:]]
    assert names == sorted(names, key=str.lower) and "Bertasius, Gedas" not in names


async def test_pings_dst_restart_and_moved_date(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FixedClock(datetime(2023, 11, 5, 22, 59, tzinfo=UTC))
    app = await start_app(settings, clock=clock)
    posts: list[tuple[str, str]] = []

    async def tick() -> None:
        async with app.db.transaction() as s:
            for _, o in await due_critique_posts(s, clock.now()):
                posts.append((o.channel or f"dm:{o.person_id}", o.reply.text))

    try:
        async with app.db.session() as s:
            course = await s.scalar(select(Course))
            videobert = await s.scalar(select(Paper).where(Paper.number == 25))
            slowfast = await s.scalar(select(Paper).where(Paper.number == 5))
            assert course is not None and videobert is not None and slowfast is not None
            # DST: 1 PM is 18:00 UTC in November (EST), 17:00 UTC in August (EDT).
            assert [p.at.astimezone(UTC).hour for p in critique_pings(course, videobert)] == [
                23,
                17,
                18,
            ]
            assert [p.at.astimezone(UTC).hour for p in critique_pings(course, slowfast)] == [
                22,
                16,
                17,
            ]
            students = await s.scalar(
                select(func.count()).select_from(Person).where(Person.role == "student")
            )
        # #25 VideoBERT, Mon 2023-11-06, after the DST change: 1 PM EST = 18:00 UTC;
        # the evening before, 6 PM EST = 23:00 UTC.
        assert not (await submit(app, "alice", 25, write(tmp_path, "a.pdf", PDF))).is_error
        await tick()
        assert posts == []
        clock.at = datetime(2023, 11, 5, 23, 0, tzinfo=UTC)
        await tick()
        await tick()  # never twice
        dms = [t for c, t in posts if c.startswith("dm:")]
        assert len(dms) == len(posts) == students - 1  # everyone but Alice
        assert "VideoBERT" in dms[0] and "Mon Nov 6, 2023, 1:00 PM EST" in dms[0]
        assert "critique submit 25" in dms[0]
    finally:
        await app.close()

    # The bot is down over noon; it restarts at 1:30 PM EST: the noon reminder is past
    # its deadline (skipped), the 1 PM "closed" post goes out once, within the grace.
    posts.clear()
    clock.at = datetime(2023, 11, 6, 18, 30, tzinfo=UTC)
    app = await start_app(settings, clock=clock)
    try:
        caplog.clear()
        await tick()
        await tick()
        skipped = [
            r.getMessage() for r in caplog.records if "missed while the bot" in r.getMessage()
        ]
        assert len(skipped) == 1 and "remind+0d1200" in skipped[0], skipped  # noon EST
        assert posts == [
            (
                "announcements",
                "🔒 Critiques for **#25 VideoBERT: A Joint Model for Video and Language "
                f"Representation Learning** are closed: 1 of {students} students submitted on "
                "time. Late critiques are still accepted and marked late.",
            )
        ]
        # Long after, a missed closing post of another paper is skipped, not sent late.
        posts.clear()
        clock.at = datetime(2023, 11, 15, 21, 0, tzinfo=UTC)  # #29 MERLOT closed at 18:00
        caplog.clear()
        await tick()
        assert not any("MERLOT" in t for _, t in posts)
        assert any(
            "closed" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records
        )

        # The instructor moves #28 to a later date: the pings move with the deadline.
        async with app.db.transaction() as s:
            await s.execute(
                update(Paper)
                .where(Paper.title.like("MERLOT%"))
                .values(class_date=datetime(2023, 11, 16).date())
            )
        posts.clear()
        clock.at = datetime(2023, 11, 16, 17, 0, tzinfo=UTC)  # noon EST on the new day
        await tick()
        await tick()
        assert len(posts) == students and all("MERLOT" in t for _, t in posts)
        assert "Thu Nov 16, 2023, 1:00 PM EST" in posts[0][1]
    finally:
        await app.close()


async def test_upload_by_url(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An attachment given as a URL (as Discord hands it over) is fetched (with the size cap); a failed
    download is a clear error and stores nothing."""
    async with file_server({"ok.pdf": PDF + b"via url"}) as base:
        app.clock.at = BEFORE_5

        def by_url(name: str) -> Request:
            att = Attachment(name, url=f"{base}/{name}", origins=(base,))
            return Request(
                Platform.TERMINAL,
                "default",
                Caller(Platform.TERMINAL, "alice", "alice"),
                Where("general"),
                attachments=(att,),
            )

        opts = {"paper": 5, "question": Q, "answer": A}
        r = await app.core.handle(by_url("gone.pdf"), "critique submit", opts)
        assert r.is_error and "Could not fetch `gone.pdf`" in r.text
        assert await rows(app) == []
        r = await app.core.handle(by_url("ok.pdf"), "critique submit", opts)
        assert not r.is_error, r.text
        mine = await say(app, "alice", "critique file 5")
        assert mine.files[0].data == PDF + b"via url"
