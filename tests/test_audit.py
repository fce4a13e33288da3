"""The audit log on SQLite and Postgres: every staff action that changes someone
else's record leaves one entry (who, when, what, before → after, the reason) in the
command's own transaction; a refused command leaves none; instructors read and export
it with ``audit``, nobody else can, and no command removes entries."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select

from commands.audit import CSV_COLUMNS, change_text, record
from commands.context import Attachment, Caller, Context, Request, Where
from commands.core import CommandCore
from commands.errors import InvalidInput
from commands.registry import Access, Registry
from commands.replies import Reply, Section, render_text
from db.models import Assignment, AuditEntry, Course, Paper, Platform, Slot
from tests.helpers import running_battle

#: Paper #5 (SlowFast) takes critiques; they are due Wed 2023-08-30 1 PM EDT.
BEFORE_5 = datetime(2023, 8, 29, 17, 0, tzinfo=UTC)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


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


async def ok(app, user: str, line: str, *files: Path) -> Reply:  # type: ignore[no-untyped-def]
    reply = await say(app, user, line, *files)
    assert not reply.is_error, (line, reply.text)
    return reply


async def entries(app, kind: str | None = None) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        q = select(AuditEntry).order_by(AuditEntry.id)
        if kind:
            q = q.where(AuditEntry.kind == kind)
        return list(await s.scalars(q))


async def count(app) -> int:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def one(rows: list[AuditEntry]) -> AuditEntry:
    assert len(rows) == 1, [(r.kind, r.subject, r.summary) for r in rows]
    return rows[0]


async def test_grades_critiques_extensions_and_announcements_are_recorded(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    await ok(app, "maya", "grade set alice presentations 80")
    await ok(app, "gedas", 'grade set alice presentations 92 reason="regraded after the appeal"')
    first, second = await entries(app, "grade.set")
    assert (first.actor, first.subject, first.before, first.after, first.reason) == (
        "Maya Johnson",
        "Alice Chen",
        {"component": "presentations", "points": None},
        {"component": "presentations", "points": 80.0},
        None,
    )
    assert second.actor == "Gedas Bertasius" and second.reason == "regraded after the appeal"
    assert second.before["points"] == 80.0 and second.after["points"] == 92.0
    assert second.at == app.clock.now() and second.subject_id is not None

    # Critiques: one entry per student graded, by `critique grade` and `grade-all`.
    app.clock.at = BEFORE_5
    pdf = tmp_path / "c.pdf"
    pdf.write_bytes(PDF)
    for who in ("alice", "bob", "carol"):
        r = await app.core.handle(
            req(who, pdf), "critique submit", {"paper": 5, "question": "Why?", "answer": "So."}
        )
        assert not r.is_error, r.text
    await ok(app, "maya", "critique grade 5 fail bob reason=plagiarised")
    await ok(app, "maya", "critique grade 5 pass bob")
    await ok(app, "maya", "critique grade-all 5 pass")
    rows = await entries(app, "critique.grade")
    changes = [(e.subject, e.before["grade"], e.after["grade"]) for e in rows]
    assert changes[:2] == [("Bob Okafor", None, "fail"), ("Bob Okafor", "fail", "pass")]
    assert sorted(changes[2:]) == [("Alice Chen", None, "pass"), ("Carol Martinez", None, "pass")]
    assert rows[0].reason == "plagiarised" and rows[0].after["paper"] == 5

    # Deadline extensions, for one student and for everyone.
    await ok(app, "gedas", 'rankings extend 2023-09-01T12:00 bob reason="was ill"')
    await ok(app, "gedas", "rankings extend 2023-09-01T12:00 bob")
    await ok(app, "gedas", "rankings extend 2023-09-03T23:59")
    one_, again, everyone = await entries(app, "rankings.extend")
    assert one_.subject == "Bob Okafor" and one_.reason == "was ill"
    assert one_.before == {"extension": None}
    assert one_.after == {"extension": "2023-09-01T12:00-04:00"}
    assert again.before == again.after
    assert everyone.subject == "" and everyone.subject_id is None
    assert everyone.before == {"deadline": "2023-08-27T23:59-04:00"}
    assert everyone.after == {"deadline": "2023-09-03T23:59-04:00"}

    # Announcements: scheduled, cancelled (with a reason), posted now.
    r = await ok(app, "maya", 'announce "Quiz moved." at 2023-09-02T09:00')
    await ok(app, "maya", 'announce cancel 1 reason="wrong day"')
    await ok(app, "maya", 'announce "No class Monday."')
    kinds = [(e.kind, e.reason) for e in await entries(app) if e.kind.startswith("announce")]
    assert kinds == [
        ("announce.schedule", None),
        ("announce.cancel", "wrong day"),
        ("announce.post", None),
    ]


async def test_assignment_battles_gpu_and_projects_are_recorded(app) -> None:  # type: ignore[no-untyped-def]
    await ok(app, "gedas", "assign")
    assert await count(app) == 0  # a proposal changes nobody's record
    r = await ok(app, "gedas", 'assign swap alice bob reason="Alice is away that week"')
    alice, bob = await entries(app, "assign.swap")
    assert (alice.subject, bob.subject) == ("Alice Chen", "Bob Okafor")
    assert (
        alice.before["paper"] == bob.after["paper"] and alice.after["paper"] == bob.before["paper"]
    )
    assert alice.reason == bob.reason == "Alice is away that week"
    assert f"#{alice.after['paper']}" in r.text

    free = await _paper_with_a_free_seat(app, but=alice.after["paper"])
    await ok(app, "gedas", f"assign set alice {free}")
    (moved,) = await entries(app, "assign.set")
    assert moved.before == {"kind": "standard", "paper": alice.after["paper"], "published": False}
    assert moved.after == {"kind": "standard", "paper": free, "published": False}

    await ok(app, "gedas", "assign publish reason=final")
    published = one(await entries(app, "assign.publish"))
    assert published.subject_id is None and published.reason == "final"
    assert published.before == {"assignment": None}
    assert published.after["assignment"]["Alice Chen"]["standard"] == free
    assert len(published.after["assignment"]) == 25

    n = await running_battle(app)
    await ok(app, "maya", f"battle open {n} minutes=10")
    await ok(app, "maya", f"battle close {n}")
    opened, closed = await entries(app, "battle.open") + await entries(app, "battle.close")
    assert opened.after["poll"] == "open" and opened.after["closes_at"].startswith(
        "2023-08-25T10:10"
    )
    assert closed.before["poll"] == "open" and closed.after["poll"] == "closed"

    await ok(app, "gedas", "gpu limit 2")
    await ok(app, "gedas", 'gpu limit 0 bob reason="filled the queue"')
    await ok(app, "gedas", "gpu pause")
    await ok(app, "gedas", "gpu resume")
    limits = await entries(app, "gpu.limits")
    assert [(e.subject, e.before, e.after) for e in limits] == [
        ("", {"queued_cap": None}, {"queued_cap": 2}),
        ("Bob Okafor", {"queued_cap": None}, {"queued_cap": 0}),
    ]
    assert limits[1].reason == "filled the queue"
    assert (await entries(app, "gpu.pause"))[0].after == {"paused": True}
    assert (await entries(app, "gpu.resume"))[0].before == {"paused": True}

    r = await ok(app, "alice", "gpu run conv2d")
    job = int(r.text.split("#")[1].split()[0])
    r = await ok(app, "carol", "gpu run conv2d")
    own = int(r.text.split("#")[1].split()[0])
    await ok(app, "carol", f"gpu cancel {own}")  # one's own job: not a staff action
    await ok(app, "maya", f"gpu cancel {job} reason=stuck")
    cancel = one(await entries(app, "gpu.cancel"))
    assert (cancel.subject, cancel.actor, cancel.reason) == ("Alice Chen", "Maya Johnson", "stuck")
    assert cancel.before == {"job": job, "state": "queued"}
    assert cancel.after == {"job": job, "state": "cancelled"}

    await ok(app, "alice", "project create Robo")
    await ok(app, "gedas", "project approve Robo reason=part-time")
    approve = one(await entries(app, "project.approve"))
    assert approve.subject == "Alice Chen" and approve.reason == "part-time"
    assert approve.before["solo_approved"] is False and approve.after["solo_approved"] is True


async def _paper_with_a_free_seat(app, *, but: int) -> int:  # type: ignore[no-untyped-def]
    """A 30/45-min paper the proposal gives fewer presenters than a paper takes."""
    async with app.db.session() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        taken = dict(
            (
                await s.execute(
                    select(Paper.number, func.count(Assignment.id))
                    .outerjoin(Assignment, Assignment.paper_id == Paper.id)
                    .where(Paper.slot.in_((Slot.MIN30, Slot.MIN45)))
                    .group_by(Paper.number)
                )
            ).all()
        )
    return min(n for n, k in taken.items() if k < course.max_presenters and n != but)


async def test_a_refused_command_leaves_no_entry(app) -> None:  # type: ignore[no-untyped-def]
    refused = [
        ("gedas", "grade set alice nosuch 50"),
        ("gedas", "grade set alice presentations 150"),
        ("gedas", "grade set maya presentations 50"),  # not a student
        ("gedas", "grade set nobody-at-all presentations 50"),
        ("alice", "grade set bob presentations 50"),  # a student
        ("gedas", "critique grade 5 pass bob"),  # nothing submitted
        ("gedas", "rankings extend 2020-01-01T00:00 bob"),
        ("gedas", "assign swap alice bob"),  # no assignment yet
        ("gedas", "assign publish"),
        ("maya", "battle close 1"),  # never opened
        ("maya", "gpu limit 2"),  # instructors only
        ("gedas", "project approve Nope"),
        ("gedas", "announce cancel 9"),
        ("gedas", f"grade set alice presentations 90 reason={'x' * 501}"),
    ]
    for user, line in refused:
        r = await say(app, user, line)
        assert r.is_error, line
    assert await count(app) == 0


class ProbeOptions(BaseModel):
    fail: bool = False


async def test_an_entry_is_written_with_the_change_or_not_at_all(app) -> None:  # type: ignore[no-untyped-def]
    """A handler that records and then fails: the whole transaction is rolled back."""
    reg = Registry()

    @reg.command("probe", "records, then maybe fails", access=Access.STAFF)
    async def probe(ctx: Context, opts: ProbeOptions) -> Reply:
        record(ctx, "probe.change", summary="probe", before={"x": 1}, after={"x": 2})
        if opts.fail:
            raise InvalidInput("refused after recording")
        return Reply("done")

    core = CommandCore(app.db, reg, clock=app.clock)
    assert (await core.handle_text(req("gedas"), "probe --fail")).is_error
    assert await count(app) == 0
    assert not (await core.handle_text(req("gedas"), "probe")).is_error
    assert [e.kind for e in await entries(app)] == ["probe.change"]


def kind_of(section: Section) -> str:
    return section.heading.split(" · ")[1]


def whose(section: Section) -> str:
    return section.heading.split(" · ")[2]


async def _fill(app) -> None:  # type: ignore[no-untyped-def]
    await ok(app, "gedas", "grade set alice presentations 80")
    app.clock.advance(timedelta(minutes=1))
    await ok(app, "maya", 'grade set bob presentations 70 reason="late slides"')
    app.clock.advance(timedelta(minutes=1))
    await ok(app, "gedas", "gpu limit 0 bob")
    app.clock.advance(timedelta(minutes=1))
    await ok(app, "gedas", "rankings extend 2023-09-01T12:00 alice")


async def test_audit_lists_newest_first_and_filters(app) -> None:  # type: ignore[no-untyped-def]
    r = await ok(app, "gedas", "audit")
    assert "No entries" in r.text and r.ephemeral
    await _fill(app)
    r = await ok(app, "gedas", "audit")
    assert r.ephemeral and "Entries 1-4 of 4" in r.text
    assert [kind_of(sec) for sec in r.sections] == [
        "rankings.extend",
        "gpu.limits",
        "grade.set",
        "grade.set",
    ]
    # Times in the course's zone, whose record, what, who, before → after, the reason.
    oldest = r.sections[3]
    assert oldest.heading == "2023-08-25 10:00 EDT · grade.set · Alice Chen"
    assert oldest.body == "presentations: 80/100"
    assert oldest.fields == [("By", "Gedas Bertasius"), ("Change", "points: — → 80")]
    assert dict(r.sections[2].fields) == {
        "By": "Maya Johnson",
        "Change": "points: — → 70",
        "Reason": "late slides",
    }
    assert "Bob Okafor" in r.sections[2].heading
    text = render_text(r)
    assert "-- 2023-08-25 10:03 EDT · rankings.extend · Alice Chen --" in text

    r = await ok(app, "gedas", "audit bob")
    assert [kind_of(sec) for sec in r.sections] == ["gpu.limits", "grade.set"]
    assert "about or by Bob Okafor" in r.text
    r = await ok(app, "gedas", "audit maya")  # by the TA
    assert [whose(sec) for sec in r.sections] == ["Bob Okafor"]
    r = await ok(app, "gedas", "audit kind=grade")
    assert [whose(sec) for sec in r.sections] == ["Bob Okafor", "Alice Chen"]
    r = await ok(app, "gedas", "audit grade")  # a word that names nobody but a kind
    assert len(r.sections) == 2 and "kind `grade…`" in r.text
    r = await ok(app, "gedas", "audit alice kind=rankings")
    assert [kind_of(sec) for sec in r.sections] == ["rankings.extend"]
    r = await ok(app, "gedas", "audit kind=%")  # no wildcards
    assert "No entries" in r.text
    r = await say(app, "gedas", "audit zzzz")
    assert r.is_error and "Nobody on the roster matches" in r.text


async def test_audit_pages(app) -> None:  # type: ignore[no-untyped-def]
    for points in range(20):
        await ok(app, "gedas", f"grade set alice presentations {points}")
    r = await ok(app, "gedas", "audit")
    assert "Entries 1-15 of 20" in r.text and "(page 1 of 2)" in r.text
    assert dict(r.sections[0].fields)["Change"] == "points: 18 → 19"
    (older,) = r.buttons
    page2 = await app.core.handle_action(req("gedas"), older.custom_id)
    assert "Entries 16-20 of 20" in page2.text and len(page2.sections) == 5
    assert [b.label for b in page2.buttons] == ["◀ Newer"]
    r = await ok(app, "gedas", "audit page=2")
    assert r.sections == page2.sections
    assert (await say(app, "gedas", "audit page=3")).is_error
    denied = await app.core.handle_action(req("maya"), older.custom_id)
    assert denied.is_error and "only for instructors" in denied.text


async def test_audit_export_is_a_csv_of_every_entry(app) -> None:  # type: ignore[no-untyped-def]
    await _fill(app)
    r = await ok(app, "gedas", "audit export")
    (f,) = r.files
    assert f.name == "comp790-23f-audit.csv" and f.mime == "text/csv" and r.ephemeral
    rows = list(csv.DictReader(io.StringIO(f.data.decode())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row["kind"] for row in rows] == [
        "rankings.extend",
        "gpu.limits",
        "grade.set",
        "grade.set",
    ]
    bob = rows[2]
    assert bob["actor"] == "Maya Johnson" and bob["subject"] == "Bob Okafor"
    assert bob["at"] == "2023-08-25T10:01:00-04:00" and bob["at_utc"] == "2023-08-25T14:01:00+00:00"
    assert bob["before"] == '{"component": "presentations", "points": null}'
    assert bob["after"] == '{"component": "presentations", "points": 70.0}'
    assert bob["reason"] == "late slides"
    r = await ok(app, "gedas", "audit export bob kind=grade")
    rows = list(csv.DictReader(io.StringIO(r.files[0].data.decode())))
    assert [row["kind"] for row in rows] == ["grade.set"] and "1 filtered" in r.text


async def test_only_instructors_read_the_log_and_nothing_removes_it(app) -> None:  # type: ignore[no-untyped-def]
    await _fill(app)
    for user in ("alice", "maya", "zoe"):
        for line in ("audit", "audit export", "audit alice"):
            r = await say(app, user, line)
            assert r.is_error and "instructors" in r.text, (user, line, r.text)
            assert "Alice Chen" not in render_text(r) and not r.files
    r = await say(app, "alice", "audit")
    assert "`audit` is only for instructors; you are registered as a student" in r.text
    # No command deletes from the log (the registry has no such command).
    names = [c.name for c in app.core.registry if c.path[0] == "audit"]
    assert names == ["audit", "audit export"]
    assert await count(app) == 4


def test_change_text() -> None:
    before: dict[str, Any] = {"component": "x", "points": None}
    after: dict[str, Any] = {"component": "x", "points": 80}
    assert change_text(before, after) == "points: — → 80"
    assert change_text({}, {"paused": True}) == "paused: — → True"
    assert change_text({"a": [1]}, {"a": {"b": 2}}) == 'a: [1] → {"b":2}'
    assert change_text({"a": 1}, {"a": 1}) == ""
