"""Fewer, better pings (issue #19, point 7), on SQLite and Postgres, on the virtual
clock: one post in announcements per critique deadline (its closing post; no generic
reminder on top), private reminders only to students who still owe a critique (not its
presenters, not the excused, not those who submitted), at the times the course file
gives (`reminders: {critique: [24h, 2h]}`, checked at load), written to the outbox in the
transaction that records them as sent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bot.app import App
from bot.scheduler import ReminderSweeper
from bot.settings import SAMPLE_COURSE
from commands.context import Attachment, Caller, Request, Where
from commands.coursefile import CourseFileError, import_course, parse_course_file
from commands.critiques import due_critique_posts, next_critique_ping
from commands.due import Scope
from commands.outbox import enqueue
from commands.replies import Reply
from commands.timefmt import plain
from db.models import Notification, OutboxMessage, Paper, Person, Platform, Role
from tests.conftest import SAMPLE_NOW
from tests.helpers import publish_groups

#: #5 SlowFast, Wed Aug 30 2023: critiques due 1 PM EDT = 17:00 UTC.
DUE_5 = datetime(2023, 8, 30, 17, 0, tzinfo=UTC)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


class Platform_:
    """The outbox port of a platform that records every post and DM (as the terminal
    shows them: times in the course's zone)."""

    platform = Platform.TERMINAL

    def __init__(self) -> None:
        self.posts: list[tuple[str, str]] = []
        self.dms: list[tuple[int, str]] = []

    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        self.posts.append((channel, plain(reply.text)))
        return f"{channel}:{len(self.posts)}"

    async def edit(self, course_id: int, message_ref: str, reply: Reply) -> None:
        return None

    async def dm(self, course_id: int, person_id: int, reply: Reply) -> str:
        self.dms.append((person_id, plain(reply.text)))
        return f"dm:{len(self.dms)}"

    async def dm_account(self, course_id: int, user_id: str, reply: Reply) -> str:
        return "dm"

    async def thread(
        self, course_id: int, channel: str, name: str, reply: Reply, person_ids: Sequence[int] = ()
    ) -> str:
        return await self.post(course_id, f"{channel} › {name}", reply)


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


def sample_with(*lines: str) -> str:
    """The sample course file with ``lines`` added to its `course:` settings."""
    text = SAMPLE_COURSE.read_text(encoding="utf-8")
    anchor = '  critique_deadline: "13:00"\n'
    assert anchor in text
    return text.replace(anchor, anchor + "".join(f"  {line}\n" for line in lines), 1)


async def reimport(app: App, *lines: str) -> None:
    async with app.db.transaction() as s:
        await import_course(s, parse_course_file(sample_with(*lines)), now=SAMPLE_NOW)


async def ids(app: App) -> dict[str, int]:
    async with app.db.session() as s:
        return {p.name.split()[0].lower(): p.id for p in await s.scalars(select(Person))}


async def student_ids(app: App) -> set[int]:
    async with app.db.session() as s:
        return set(await s.scalars(select(Person.id).where(Person.role == Role.STUDENT)))


async def students(app: App) -> int:
    async with app.db.session() as s:
        n = await s.scalar(
            select(func.count()).select_from(Person).where(Person.role == Role.STUDENT)
        )
        return int(n or 0)


async def run_over(
    app: App, start: datetime, end: datetime, step: timedelta = timedelta(minutes=30)
) -> tuple[Platform_, list[datetime]]:
    """Run the scheduler (every provider) at each step from ``start`` to ``end``; what
    was sent, and the instants passes sent something."""
    fake = Platform_()
    sweeper = ReminderSweeper(app.db, fake, app.clock, hours_before=[24])
    fired = []
    at = start
    while at <= end:
        app.clock.at = at  # type: ignore[attr-defined]
        if await sweeper.run_due():
            fired.append(at)
        at += step
    return fake, fired


def about(text: str, needle: str = "SlowFast") -> bool:
    return needle in text


# ---------------------------------------------------------------- one announcement
async def test_one_announcement_per_critique_deadline_and_no_generic_reminder(app: App) -> None:
    fake, _ = await run_over(app, DUE_5 - timedelta(hours=30), DUE_5 + timedelta(hours=4))
    posts = [(c, t) for c, t in fake.posts if about(t)]
    # Before: a generic "Reminder: Critique + question: #5 … is due" went to announcements
    # 24 hours ahead, on top of the private reminders and the closing post.
    assert len(posts) == 1, posts
    channel, text = posts[0]
    assert channel == "announcements"
    assert text.startswith("🔒 Critiques for **#5 SlowFast Networks for Video Recognition**")
    assert "0 of 25 students submitted on time" in text
    assert not any("Reminder: **Critique" in t for _, t in fake.posts)
    # Each student who owes it: the two private reminders of today's default (6 PM the
    # evening before, noon on the day), nothing else.
    n = await students(app)
    dms = [(p, t) for p, t in fake.dms if about(t)]
    assert len(dms) == 2 * n
    assert {p for p, _ in dms} == await student_ids(app)
    # Run again over the same window (a restart): nothing twice.
    again, _ = await run_over(app, DUE_5 - timedelta(hours=30), DUE_5 + timedelta(hours=4))
    assert [t for _, t in again.posts if about(t)] == []
    assert [t for _, t in again.dms if about(t)] == []


async def test_papers_due_at_one_deadline_share_one_post_and_one_reminder(app: App) -> None:
    async with app.db.transaction() as s:
        await s.execute(update(Paper).where(Paper.number == 6).values(class_date=date(2023, 8, 30)))
    fake, _ = await run_over(app, DUE_5 - timedelta(hours=24), DUE_5 + timedelta(hours=1))
    posts = [t for c, t in fake.posts if c == "announcements" and ("#5" in t or "#6" in t)]
    assert len(posts) == 1
    assert "**#5 SlowFast" in posts[0] and "**#6 Non-local" in posts[0]
    assert "#5: 0 of 25 on time; #6: 0 of 25 on time" in posts[0]
    n = await students(app)
    dms = [t for _, t in fake.dms if "#5" in t or "#6" in t]
    assert len(dms) == 2 * n  # one per reminder and student, naming both papers
    assert "Your critiques of **#5 SlowFast" in dms[0] and "**#6 Non-local" in dms[0]
    assert "critique submit <paper>" in dms[0]


# ------------------------------------------------------------ only those who owe
async def test_reminders_go_only_to_students_who_still_owe_one(app: App, tmp_path: Path) -> None:
    who = await ids(app)
    await publish_groups(app, [("Alice", 5)])  # presents #5: excused from critiquing it
    r = await say(app, "gedas", "critique excuse bob 5 at a conference that week")
    assert not r.is_error and "Excused Bob Okafor" in r.text, r.text
    pdf = tmp_path / "c.pdf"
    pdf.write_bytes(PDF)
    app.clock.at = DUE_5 - timedelta(days=2)  # type: ignore[attr-defined]
    done = await app.core.handle(
        req("carol", pdf), "critique submit", {"paper": 5, "question": "Why?", "answer": "So."}
    )
    assert not done.is_error, done.text
    fake, fired = await run_over(app, DUE_5 - timedelta(hours=30), DUE_5 + timedelta(hours=1))
    dms = [(p, t) for p, t in fake.dms if about(t)]
    n = await students(app)
    assert len(dms) == 2 * (n - 3)
    got = {p for p, _ in dms}
    assert not got & {who["alice"], who["bob"], who["carol"]}
    assert who["deepak"] in got
    # The evening before (6 PM EDT = 22:00 UTC) and at noon EDT (16:00 UTC).
    assert [t.hour for t in fired if t < DUE_5] == [22, 16]
    closing = next(t for c, t in fake.posts if about(t))
    assert "1 of 23 students submitted on time" in closing  # Alice and Bob owe nothing


async def test_a_student_who_submits_between_reminders_gets_no_second_one(
    app: App, tmp_path: Path
) -> None:
    who = await ids(app)
    first, _ = await run_over(app, DUE_5 - timedelta(hours=19), DUE_5 - timedelta(hours=19))
    assert who["deepak"] in {p for p, t in first.dms if about(t)}
    pdf = tmp_path / "c.pdf"
    pdf.write_bytes(PDF)
    app.clock.at = DUE_5 - timedelta(hours=10)  # type: ignore[attr-defined]
    sent = await app.core.handle(
        req("deepak", pdf), "critique submit", {"paper": 5, "question": "Why?", "answer": "So."}
    )
    assert not sent.is_error
    second, _ = await run_over(app, DUE_5 - timedelta(hours=1), DUE_5 - timedelta(hours=1))
    assert len([p for p, t in second.dms if about(t)]) == await students(app) - 1
    assert who["deepak"] not in {p for p, t in second.dms if about(t)}


# --------------------------------------------------------- times from the course file
async def test_reminder_times_come_from_the_course_file(app: App) -> None:
    await reimport(app, "reminders: {critique: [24h, 2h]}")
    async with app.db.session() as s:
        nxt = await next_critique_ping(s, DUE_5 - timedelta(hours=30), Scope())
    assert nxt == DUE_5 - timedelta(hours=24)
    fake, fired = await run_over(
        app, DUE_5 - timedelta(hours=30), DUE_5 + timedelta(hours=1), timedelta(minutes=15)
    )
    slowfast = [t for t in fired if t < DUE_5]
    assert DUE_5 - timedelta(hours=24) in slowfast and DUE_5 - timedelta(hours=2) in slowfast
    dm_texts = [t for _, t in fake.dms if about(t)]
    n = await students(app)
    assert len(dm_texts) == 2 * n
    assert sum("(in 1 day)" in t for t in dm_texts) == n
    assert sum("(in 2 hours)" in t for t in dm_texts) == n
    # No reminders at all: only the closing post.
    await reimport(app, "reminders: {critique: []}")
    due_13 = datetime(2023, 9, 20, 17, 0, tzinfo=UTC)  # #13, Wed Sep 20, 1 PM EDT
    quiet, _ = await run_over(app, due_13 - timedelta(hours=30), due_13 + timedelta(hours=1))
    assert [t for _, t in quiet.dms if "#13" in t] == []
    assert len([t for _, t in quiet.posts if "#13" in t]) == 1


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("-2h", "must be a positive time before the deadline, like 24h or 2h (not -2h)"),
        ("0h", "must be more than zero (not 0h)"),
        ("-5", "must be a positive time before the deadline, like 24h or 2h (not -5)"),
        ("5", "needs a unit (`5h`)"),
        ("soon", "must be a length of time like 24h, 90m, 2d or 1d12h, not 'soon'"),
        ('"14:00"', "14:00 is not before the critique deadline (13:00)"),
        ("[24h, 24h]", "'24h' is listed twice"),
    ],
)
def test_reminder_offsets_are_checked_at_load_with_their_line(entry: str, message: str) -> None:
    # The entry on a line of its own (a list of one per line), or the whole list.
    mine = f"reminders: {{critique: {entry}}}" if entry.startswith("[") else f"- {entry}"
    if entry.startswith("["):
        text = sample_with(mine)
    else:
        text = sample_with("reminders:", "  critique:", "    - 24h", f"    {mine}")
    with pytest.raises(CourseFileError) as err:
        parse_course_file(text, source="course.yaml")
    problems = err.value.problems
    assert len(problems) == 1, problems
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.strip() == mine)
    assert problems[0].line == line, (problems[0], line)
    assert "course.reminders.critique" in problems[0].loc
    assert message in problems[0].message, problems[0].message
    assert f"line {line}: course.reminders.critique" in str(err.value)


def test_the_default_reminders_are_todays() -> None:
    cf = parse_course_file(SAMPLE_COURSE.read_text(encoding="utf-8"))
    assert cf.course.reminders.critique == ["18:00 the day before", "12:00"]
    cf = parse_course_file(
        sample_with('reminders: {critique: [24H, "9:00 2 days before", 1d 12h]}')
    )
    assert cf.course.reminders.critique == ["24h", "09:00 2 days before", "1d12h"]


# ------------------------------------------------------------- the outbox, atomically
async def test_the_outbox_rows_and_their_record_are_one_transaction(app: App) -> None:
    at = datetime(2023, 8, 29, 22, 0, tzinfo=UTC)  # 6 PM EDT, the evening before #5

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with app.db.transaction() as s:
            due = await due_critique_posts(s, at)
            assert due
            for cid, item in due:
                enqueue(s, cid, [item], at)
            await s.flush()
            raise Boom  # the pass fails after writing both: neither stays
    async with app.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Notification)) == 0
        assert await s.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    # The next pass sends them, once: each DM is an outbox row, recorded as sent.
    fake, _ = await run_over(app, at, at)
    n = await students(app)
    assert len([t for _, t in fake.dms if about(t)]) == n
    async with app.db.session() as s:
        rows = list(
            await s.scalars(select(OutboxMessage).where(OutboxMessage.person_id.is_not(None)))
        )
        keys = list(await s.scalars(select(Notification.key)))
    assert len([r for r in rows if about(str(r.reply))]) == n
    assert any(k.endswith(":remind-1d1800") for k in keys)
