"""Counts in the bot's sentences agree with their nouns and verbs: "1 job waiting",
"2 jobs waiting", "1 student has not submitted", "2 students have not submitted";
never a lazy "job(s)". End to end through the core, on SQLite and on Postgres."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from commands.coursefile import CourseFileError
from commands.rankings import import_rankings, parse_rankings_csv
from commands.replies import Reply
from db.models import Course
from tests.test_privacy import req

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: Paper #5 (SlowFast) is on Wed 2023-08-30: critiques due 1 PM EDT = 17:00 UTC.
DUE_5 = datetime(2023, 8, 30, 17, 0, tzinfo=UTC)
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


async def say(app, user: str, line: str) -> Reply:  # type: ignore[no-untyped-def]
    return await app.core.handle_text(req(user), line)


async def test_gpu_queue_and_limits_count_jobs_and_workers(app) -> None:  # type: ignore[no-untyped-def]
    assert not (await say(app, "alice", "gpu run conv2d")).is_error
    r = await say(app, "alice", "gpu status")
    assert "1 job waiting;" in r.text and "0 GPU workers serving" in r.text, r.text
    assert not (await say(app, "bob", "gpu run conv2d")).is_error
    r = await say(app, "alice", "gpu status")
    assert "2 jobs waiting;" in r.text, r.text

    r = await say(app, "gedas", "gpu limit 1 bob")
    assert "Bob Okafor may now have 1 job waiting." in r.text, r.text
    r = await say(app, "gedas", "gpu limit 2")
    assert "Every student may now have 2 jobs waiting." in r.text, r.text


async def test_rankings_remind_agrees_with_how_many_are_missing(app) -> None:  # type: ignore[no-untyped-def]
    skip = ("bob.okafor@unc.edu", "carol.martinez@unc.edu")
    text = "".join(
        line
        for line in (EXAMPLES / "rankings.csv").read_text().splitlines(keepends=True)
        if not line.startswith(skip)
    )
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        await import_rankings(s, course, parse_rankings_csv(text), now=app.clock.now())

    r = await say(app, "gedas", "rankings remind")
    assert "2 students have not submitted: " in r.text, r.text
    assert not (await say(app, "bob", "rank standard 5 6 7 8 13 14 15")).is_error
    assert not (await say(app, "bob", "rank battle 9 11 16")).is_error
    r = await say(app, "gedas", "rankings remind")
    assert r.text == "1 student has not submitted: Carol Martinez.", r.text


def test_rankings_csv_names_its_missing_column_or_columns() -> None:
    with pytest.raises(CourseFileError) as one:
        parse_rankings_csv("student,kind,rank\n")
    assert "missing column paper;" in str(one.value)
    with pytest.raises(CourseFileError) as two:
        parse_rankings_csv("student,kind\n")
    assert "missing columns rank, paper;" in str(two.value)


async def test_critique_grade_all_counts_on_time_and_late(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pdf = tmp_path / "c.pdf"
    pdf.write_bytes(PDF)

    async def submit(user: str) -> Reply:
        return await app.core.handle(
            req(user, pdf),
            "critique submit",
            {"paper": 5, "question": "Why so few channels?", "answer": "Motion is low-level."},
        )

    app.clock.at = DUE_5 - timedelta(days=1)
    assert not (await submit("alice")).is_error
    app.clock.at = DUE_5 + timedelta(hours=1)
    for user in ("bob", "deepak"):  # late
        assert not (await submit(user)).is_error
    r = await say(app, "gedas", "critique grade-all 5 pass")
    assert "Graded 1 on-time critique of " in r.text, r.text
    assert r.text.endswith(" 2 late critiques still need a grade."), r.text


def test_no_lazy_plural_is_left_in_what_the_bot_says() -> None:
    """No string the bot says (docstrings aside) reads "student(s)" and the like."""
    files = sorted(p for part in ("commands", "gpu_queue") for p in (ROOT / part).rglob("*.py"))
    assert len(files) > 40
    found = []
    for path in files:
        name = path.relative_to(ROOT)
        tree = ast.parse(path.read_text())
        docs = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        logged = {  # log lines are for operators, not what the bot says
            id(arg)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("log", "logger", "logging")
            for arg in node.args
        }
        for node in ast.walk(tree):
            if id(node) in logged:
                continue
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docs
                and "(s)" in node.value
            ):
                found.append(f"{name}:{node.lineno}: {node.value!r}")
    assert found == []
