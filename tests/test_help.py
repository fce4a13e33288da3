"""`help` shows each caller what they can run, and first what the course calls for now
(rankings open, a critique day, a battle day, the assignment, project write-ups, grades),
on the sample course's calendar."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from commands.people import STUDENT_ONLY
from commands.registry import Access
from commands.replies import Reply
from commands.timefmt import plain
from tests.test_core import req

NY = ZoneInfo("America/New_York")
#: Words of a refusal that is about who the caller is, not about the course's state.
ROLE_REFUSALS = ("only for", "Only students", "for students", "not registered", "are staff")


def listed(reply: Reply) -> list[str]:
    """The command names a help reply lists, in order."""
    names = []
    for section in reply.sections:
        for line in section.body.splitlines():
            usage = re.match(r"`([^`]+)`", line)
            assert usage, line
            words = [w for w in usage.group(1).split() if re.fullmatch(r"[a-z][a-z-]*", w)]
            names.append(" ".join(words))
    return names


def headings(reply: Reply) -> list[str]:
    """Section headings as the terminal shows them (instants in the course's zone)."""
    return [plain(s.heading) for s in reply.sections]


async def help_for(app, who: str, at: datetime | None = None) -> Reply:  # type: ignore[no-untyped-def]
    if at is not None:
        app.clock.at = at
    reply = await app.core.handle_text(req(who), "help")
    assert not reply.is_error, reply.text
    return reply


def _resolve(app, names: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """Usage words can include choice words (`kind=all|standard`): keep the command."""
    reg = app.core.registry
    out = []
    for name in names:
        words = name.split()
        for n in range(len(words), 0, -1):
            if tuple(words[:n]) in reg.commands:
                out.append(" ".join(words[:n]))
                break
        else:
            raise AssertionError(f"help lists `{name}`, which is no command")
    return out


@pytest.mark.parametrize("who", ["gedas", "maya"])
async def test_staff_are_not_offered_student_commands(app, who: str) -> None:  # type: ignore[no-untyped-def]
    names = _resolve(app, listed(await help_for(app, who)))
    assert not set(names) & STUDENT_ONLY
    assert "rankings status" in names and "critique list" in names
    if who == "maya":  # a TA: no instructor-only command either
        reg = app.core.registry
        assert all(reg.get(n).access is not Access.INSTRUCTOR for n in names)
        assert "assign publish" not in names
    else:
        assert "assign publish" in names and "audit" in names


async def test_a_student_sees_student_commands_and_no_staff_ones(app) -> None:  # type: ignore[no-untyped-def]
    names = _resolve(app, listed(await help_for(app, "alice")))
    reg = app.core.registry
    assert all(reg.get(n).access <= Access.MEMBER for n in names)
    assert {"rank standard", "critique submit", "battle vote", "project create"} <= set(names)


async def test_a_stranger_sees_what_anyone_may_run(app) -> None:  # type: ignore[no-untyped-def]
    reply = await help_for(app, "stranger")
    names = _resolve(app, listed(reply))
    reg = app.core.registry
    assert all(reg.get(n).access is Access.ANYONE for n in names)
    assert "register" in names and "You are not registered yet." in reply.text


@pytest.mark.parametrize("who", ["alice", "maya", "gedas", "stranger"])
async def test_nothing_help_lists_is_refused_for_the_callers_role(app, who: str) -> None:  # type: ignore[no-untyped-def]
    """Each listed command, run by that caller (its first example, else bare), is never
    refused for who they are (it may still need state: an open poll, a group)."""
    reg = app.core.registry
    problems = []
    for name in dict.fromkeys(_resolve(app, listed(await help_for(app, who)))):
        cmd = reg.get(name)
        if cmd.attachment or name in ("dashboard", "register"):
            continue  # needs a file; a sign-in link; registering would change the caller
        line = cmd.examples[0] if cmd.examples else name
        reply = await app.core.handle_text(req(who), line)
        if reply.is_error and any(w in reply.text for w in ROLE_REFUSALS):
            problems.append(f"{who}: `{line}` → {reply.text}")
    assert not problems, "\n".join(problems)


async def test_student_only_commands_are_what_their_handlers_say(app) -> None:  # type: ignore[no-untyped-def]
    """STUDENT_ONLY names commands any roster member may call (Access.MEMBER) that are
    for students only; those that refuse staff outright say so."""
    reg = app.core.registry
    for name in STUDENT_ONLY:
        assert reg.get(name).access is Access.MEMBER, name
    for line in (
        "rank standard 5 6 7 8 13 14 15",
        "rank battle 9 10 11",
        "rank partner alice",
        "critique status",
        "project create Robo",
        "project join Robo",
        "project lfg video",
    ):
        reply = await app.core.handle_text(req("gedas"), line)
        assert reply.is_error and "students" in reply.text, (line, reply.text)


async def test_before_rankings_close_ranking_comes_first(app) -> None:  # type: ignore[no-untyped-def]
    student = await help_for(app, "alice")  # Fri Aug 25, 2023: the deadline is Sunday night
    first = headings(student)[0]
    assert first == "Before rankings close (Sun Aug 27, 2023, 11:59 PM EDT, in 2 days)"
    assert listed(student)[:2] == ["rank standard", "rank battle"]
    assert "What the course calls for now comes first." in student.text
    staff = await help_for(app, "gedas")
    assert headings(staff)[0] == first
    first_staff = _resolve(app, listed(staff))
    assert first_staff[:4] == ["papers", "rankings status", "rankings remind", "rankings extend"]
    # The next critique day (Wed Aug 30) is within the week: it comes next.
    assert headings(student)[1].startswith("Wed Aug 30 is a critique day: #5 SlowFast")
    assert "(critiques due 1:00 PM, in 5 days)" in headings(student)[1]


async def test_on_a_critique_day(app) -> None:  # type: ignore[no-untyped-def]
    at = datetime(2023, 8, 30, 10, 0, tzinfo=NY)
    student = await help_for(app, "alice", at)
    assert headings(student)[0] == (
        "Today is a critique day: #5 SlowFast Networks for Video Recognition "
        "(critiques due 1:00 PM, in 3 hours)"
    )
    assert listed(student)[:2] == ["critique submit", "critique status"]
    staff = await help_for(app, "maya", at)
    # Today's class first; the assignment nobody published yet right after it.
    assert headings(staff)[1] == "Rankings are closed: compute and publish the assignment"
    names = _resolve(app, listed(Reply(sections=staff.sections[:1])))
    assert names[:3] == ["critique file", "critique list", "critique grade"]
    assert "discussion start" in names


async def test_on_a_battle_day(app) -> None:  # type: ignore[no-untyped-def]
    at = datetime(2023, 9, 13, 9, 0, tzinfo=NY)  # battle 1: TSM vs X3D
    student = await help_for(app, "alice", at)
    assert headings(student)[0] == "Today is a battle day: battle 1"
    assert _resolve(app, listed(student))[:3] == ["battle show", "battle vote", "battle withdraw"]
    staff = _resolve(app, listed(await help_for(app, "gedas", at)))
    assert staff[:5] == [
        "battle show",
        "battle timer",
        "battle open",
        "battle status",
        "battle close",
    ]


async def test_after_rankings_close_the_instructor_is_offered_the_assignment(app) -> None:  # type: ignore[no-untyped-def]
    at = datetime(2023, 8, 28, 9, 0, tzinfo=NY)
    staff = await help_for(app, "gedas", at)
    assert headings(staff)[0] == "Rankings are closed: compute and publish the assignment"
    assert _resolve(app, listed(staff))[:2] == ["assign", "assign show"]
    student = await help_for(app, "alice", at)
    assert "Rankings are closed" not in " ".join(headings(student))


async def test_project_write_ups_and_the_end_of_term(app) -> None:  # type: ignore[no-untyped-def]
    at = datetime(2023, 12, 4, 9, 0, tzinfo=NY)  # the final write-up is due Dec 10
    student = await help_for(app, "alice", at)
    assert any(
        h.startswith("Final project write-up due (Sun Dec 10, 2023, 11:59 PM EST, in 6 days")
        for h in headings(student)
    )
    assert "classes are over" not in " ".join(headings(student))  # presentations Dec 4, 6
    after = await help_for(app, "gedas", datetime(2023, 12, 11, 9, 0, tzinfo=NY))
    assert headings(after)[0] == "The term's classes are over: grades"
    assert _resolve(app, listed(after))[:3] == ["grades", "grading", "grade set"]


async def test_help_for_one_command_and_a_family_still_work(app) -> None:  # type: ignore[no-untyped-def]
    reply = await app.core.handle_text(req("gedas"), "help rank standard")
    assert "Who may run it: students." in reply.text
    reply = await app.core.handle_text(req("gedas"), "help rank")
    assert not reply.is_error and reply.text.endswith(
        "are not for you: `help` lists what you can run."
    )
    reply = await app.core.handle_text(req("alice"), "help discussion")
    assert listed(reply) == ["discussion group"] and "more are for staff" in reply.text
    reply = await app.core.handle_text(req("maya"), "help rankings")
    assert "rankings extend" not in " ".join(listed(reply))
    assert "(1 more is for instructors.)" in reply.text
    reply = await app.core.handle_text(req("gedas"), "help battle")
    assert "battle vote" not in " ".join(listed(reply)) and "more are for students" in reply.text
    reply = await app.core.handle_text(req("alice"), "help battle")
    assert _resolve(app, listed(reply)) == ["battle show", "battle vote", "battle withdraw"]
