"""End to end through the terminal adapter: the sample course walked by several users."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from commands.registry import LongText
from db.models import Identity, Person
from tests.conftest import Transcript


async def test_walk_the_sample_course_as_several_users(transcript: Transcript) -> None:
    t = transcript
    out = await t.say("help")
    assert "You are Gedas Bertasius (instructor)" in out
    assert "register list" in out  # staff see the roster commands

    out = await t.say(":as alice")
    out = await t.say("help")
    assert "You are Alice Chen (student)" in out
    assert "register list" not in out  # students do not
    out = await t.say("help discussion")  # a family of commands: the ones she may run
    assert "discussion group" in out and "discussion start" not in out
    assert "are for staff" in out and "✗" not in out

    out = await t.say("papers critique")
    assert "10 critique papers" in out
    assert "SlowFast Networks for Video Recognition" in out

    out = await t.say("schedule week=2")
    assert "Wed Aug 30: #5 (45) SlowFast Networks for Video Recognition" in out
    assert "critique due 1:00 PM" in out

    out = await t.say("deadlines")
    # Friday Aug 25 2023, 10 AM in New York: rankings are due Sunday night, EDT.
    first = next(line for line in out.splitlines() if "Paper rankings" in line)
    assert "Sun Aug 27, 2023, 11:59 PM EDT" in first and "Paper rankings" in first
    assert "in 2 days" in first
    assert "Sun Nov 5, 2023, 11:59 PM EST" in out  # after the DST change

    # Zoe is on the roster but not linked yet.
    await t.say(":as zoe")
    out = await t.say("grading")
    assert "Critiques: 10 papers, Pass/Fail, 2% each" in out
    out = await t.say("register list")
    assert "is for registered TAs and instructors" in out and "register <your email>" in out
    # The terminal gives no verified email and the sample sends no mail: staff approve.
    out = await t.say("register zoe.williams@unc.edu")
    assert "waiting for a TA or instructor to approve it" in out
    await t.say(":as maya")
    out = await t.say("register pending")
    assert "Zoe Williams" in out and "terminal zoe" in out and "[1] Approve Zoe" in out
    listing = re.match(r"\[(\d+)\]", out)
    assert listing is not None
    out = await t.say(f":click {listing.group(1)} 1")  # the Approve button
    assert "Approved: terminal `zoe`" in out
    assert "Welcome, Zoe Williams!" in out  # her DM, to the account that asked
    await t.say(":as zoe")
    out = await t.say("whoami")
    assert "Zoe Williams" in out and "terminal: zoe" in out

    # The TA sees who is still missing.
    await t.say(":as maya")
    out = await t.say("register list --unlinked")
    assert "Ibrahim Diallo" in out and "Zoe Williams" not in out
    assert "25 of 27 people have linked an account" in out

    async with t.shell.app.db.session() as s:
        n = await s.scalar(select(func.count()).select_from(Identity))
        zoe = await s.scalar(select(Person).where(Person.email == "zoe.williams@unc.edu"))
    assert n == 25 and zoe is not None


async def test_buttons_page_through_the_reading_list(transcript: Transcript) -> None:
    t = transcript
    out = await t.say("papers")
    assert "(page 1 of 3)" in out
    number = re.search(r"^\[(\d+)\]", out, re.M)
    assert number is not None
    out = await t.say(f":click {number.group(1)} 1")
    assert "(page 2 of 3)" in out
    assert "MViTv2" in out  # paper 18 is on the second page
    out = await t.say(f":click {number.group(1)} Previous")
    assert "has no button `Previous`" in out


async def test_bad_input_is_explained_and_changes_nothing(transcript: Transcript) -> None:
    t = transcript
    before = await _snapshot(t)
    await t.say(":as alice")
    cases = {
        "foo": "Unknown command `foo`",
        "registr x": "Did you mean `register`?",
        "papers kind=foo": "`kind` must be one of all, standard",
        "papers date=tomorrow": "`date` must be a date like 2023-08-30",
        "papers 1 2 3 4": "got more than it takes: `4`",
        "register approve zoe": "only for TAs and instructors",
        "register link zoe x": "only for TAs and instructors",
        "register nobody@unc.edu": "already linked to Alice Chen",
        "schedule week=99": "Week 99 has nothing scheduled",
        'papers "unclosed': "Check your quotes",
        ":click 999 1": "no message [999]",
        ":nope": "unknown shell command",
    }
    for line, expected in cases.items():
        out = await t.say(line)
        assert expected in out, (line, out)
    assert t.shell.errors == len(cases)
    await t.say(":as nobody")
    out = await t.say("register nobody@unc.edu")
    assert "No one with the email nobody@unc.edu is on the roster" in out
    out = await t.say("register not-an-email")
    assert "is not an email address" in out
    out = await t.say("register")
    assert "a TA or instructor confirms who you are" in out
    assert await _snapshot(t) == before


async def _snapshot(t: Transcript) -> dict:  # type: ignore[type-arg]
    from commands.coursefile import export_course
    from db.models import Course

    async with t.shell.app.db.session() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        return await export_course(s, course)


async def test_unexpected_errors_get_a_quotable_id(transcript: Transcript, caplog) -> None:  # type: ignore[no-untyped-def]
    from commands.registry import Access

    registry = transcript.shell.app.core.registry

    async def boom(ctx, opts):  # type: ignore[no-untyped-def]
        raise RuntimeError("kaboom")

    registry.command("explode", "test only", access=Access.ANYONE)(boom)
    try:
        out = await transcript.say("explode")
    finally:
        del registry.commands[("explode",)]
    match = re.search(r"error id `([0-9a-f]{8})`", out)
    assert match, out
    assert match.group(1) in caplog.text and "kaboom" in caplog.text


class Note(BaseModel):
    paper: int = Field(description="paper id")
    text: Annotated[str, LongText()] = Field(min_length=10, description="your note")


async def test_a_button_that_opens_a_form_runs_its_command(transcript: Transcript) -> None:
    """Forms fill a command's options (a modal on Discord and Slack); in the terminal the
    fields follow `:click`. The submission goes through the same validation."""
    from commands.registry import Access
    from commands.replies import Button, Reply

    registry = transcript.shell.app.core.registry

    async def note(ctx, opts: Note) -> Reply:  # type: ignore[no-untyped-def]
        return Reply(text=f"noted on #{opts.paper}: {opts.text}")

    async def offer(ctx, opts) -> Reply:  # type: ignore[no-untyped-def]
        form = ctx.registry.get("testnote").form_spec({"paper": "5"})
        return Reply(text="Leave a note?", buttons=[Button("Write a note", form=form)])

    registry.command("testnote", "Leave a note", access=Access.MEMBER, form=("text",))(note)
    registry.command("testoffer", "Offer a form", access=Access.MEMBER)(offer)
    try:
        spec = registry.get("testnote").form_spec({"paper": "5"})
        assert spec.fields[0].long and spec.custom_id == "form:testnote:paper=5"
        await transcript.say(":as alice")
        out = await transcript.say("testoffer")
        assert "[1] Write a note (form: text)" in out
        number = out.split("]")[0].lstrip("[")
        out = await transcript.say(f":click {number} 1 too short")
        assert "`text` needs at least 10 visible characters" in out
        out = await transcript.say(f":click {number} 1 text='SlowFast is a neat idea'")
        assert "noted on #5: SlowFast is a neat idea" in out
        out = await transcript.say(f":click {number} 1 this one is long enough")
        assert "noted on #5: this one is long enough" in out
    finally:
        del registry.commands[("testnote",)]
        del registry.commands[("testoffer",)]
