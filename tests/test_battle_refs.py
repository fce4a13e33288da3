"""A battle is named the way the bot prints it, in every command, button, reaction and
form (issue #19): its number (`1`, `#1`) or its id in the course file (`B1`, any case),
through one reader (``read_battle_ref``) and one lookup (``resolve_battle``). Posted
polls keep working: their buttons and reactions carry the number, as they always did.
Refs that name no battle are refused privately, saying which battles there are, and
change nothing. On SQLite and Postgres."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.settings import SAMPLE_COURSE
from commands import load_registry
from commands.battles import (
    battle_choices,
    load_battle,
    poll_reply,
    read_battle_ref,
    rules,
)
from commands.context import Caller, Request, Where
from commands.coursefile import import_course, parse_course_file
from commands.errors import InvalidInput, NotFound
from commands.parsing import describe_option
from commands.replies import Reply, render_text
from commands.text import MAX_ID
from db.models import (
    AuditEntry,
    BattlePoll,
    BattleTimer,
    BattleVote,
    Course,
    OutboxMessage,
    Platform,
)
from tests.conftest import SAMPLE_NOW
from tests.helpers import QUIET_GROUPS, publish_groups

BATTLE_DAY = datetime(2023, 9, 13, 18, 30, tzinfo=UTC)  # battle 1's class, 2:30 PM EDT
A, B = "🅰️", "🅱️"
WHY = {
    "alice": "Temporal shift is free at inference time.",
    "hannah": "X3D scales to every compute budget we tried.",
    "carol": "Shift modules are elegant and cheap to add.",
    "deepak": "The expansion search is principled and thorough.",
    "jiawen": "Fast and simple beats big and slow every time.",
}


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


async def say(app: App, user: str, line: str) -> Reply:
    return await app.core.handle_text(req(user), line)


async def with_battle_ids(app: App) -> None:
    """The sample course with its battles' ids written `B1` … `B4` in the course file
    (battle 5 keeps its plain number: a course may mix them)."""
    text = SAMPLE_COURSE.read_text(encoding="utf-8")
    for n in range(1, 5):
        assert f"  - id: {n}\n    a: " in text
        text = text.replace(f"  - id: {n}\n    a: ", f"  - id: B{n}\n    a: ")
    async with app.db.transaction() as s:
        await import_course(s, parse_course_file(text), now=SAMPLE_NOW)


async def votes(app: App) -> dict[str, str]:
    """Counted votes: voter's person id → side."""
    async with app.db.session() as s:
        rows = await s.execute(
            select(BattleVote.person_id, BattleVote.side).where(
                BattleVote.justification.is_not(None)
            )
        )
        return {str(pid): side for pid, side in rows}


async def stored(app: App) -> dict[str, int]:
    """How many rows every table a battle command writes holds."""
    out = {}
    async with app.db.session() as s:
        for model in (BattlePoll, BattleVote, BattleTimer, AuditEntry, OutboxMessage):
            out[model.__name__] = int(await s.scalar(select(func.count()).select_from(model)) or 0)
    return out


# ---------------------------------------------------------------------- the reader


@pytest.mark.parametrize(
    ("typed", "read"),
    [("4", 4), ("#4", 4), (" 4 ", 4), ("0004", 4), (4, 4), (4.0, 4), ("B4", "B4"),
     ("b4", "b4"), (" B4 ", "B4"), ("Battle_4", "Battle_4"), (str(MAX_ID), MAX_ID)],
)  # fmt: skip
def test_a_battle_is_its_number_or_its_id(typed: object, read: int | str) -> None:
    assert read_battle_ref(typed) == read


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("", "`battle` is empty: give a battle's number or id, like 4 or B4"),
        ("   ", "`battle` is empty"),
        ("X", "must be a whole number written with the digits 0-9 only, or a battle's id"),
        ("1.5", "(you gave `1.5`)"),
        ("-1", "(you gave `-1`)"),
        ("#B4", "(you gave `#B4`)"),
        ("４", "digits 0-9"),
        ("B4\u202e", "(you gave `B4\\u202E`)"),
        ("0", "`battle` is out of range: it must be from 1 to 2,147,483,647"),
        ("#0", "out of range"),
        (str(MAX_ID + 1), "out of range"),
        ("9" * 400, "out of range"),
        (2**63, "out of range"),
        ("B" + "4" * 40, "a battle id has at most 32"),
        (True, "`battle` must be"),
        (None, "`battle` must be a battle's number or id"),
        (1.5, "(you gave `1.5`)"),
    ],
)
def test_anything_else_is_refused_naming_it(typed: object, said: str) -> None:
    with pytest.raises(InvalidInput) as info:
        read_battle_ref(typed)
    assert said in str(info.value)
    assert "\u202e" not in str(info.value)


def test_every_option_that_names_a_battle_is_read_by_the_one_reader() -> None:
    """Each command's ``battle`` option is a :data:`BattleRef`: read by
    ``read_battle_ref``, text on every platform (a Discord string option that
    autocompletes), shown as such in help, and never the rest of a typed line."""
    reg = load_registry()
    named = [(cmd, spec) for cmd in reg for spec in cmd.specs if spec.name == "battle"]
    assert {cmd.name for cmd, _ in named} >= {
        "battle show",
        "battle timer",
        "battle open",
        "battle vote",
        "battle withdraw",
        "battle status",
        "battle close",
        "battle export",
    }
    for cmd, spec in named:
        assert spec.ref is not None and spec.ref.read is read_battle_ref, cmd.name
        assert spec.type is str and spec.complete == "battle" and not spec.is_text, cmd.name
        assert cmd.rest is not spec, cmd.name
        assert describe_option(spec) == "the battle: its number or its id (4, B4)", cmd.name


# -------------------------------------------------------------- every command, B1


async def test_every_battle_command_takes_b1_b1_lowercase_1_and_hash_1(app: App) -> None:
    app.clock.at = BATTLE_DAY  # type: ignore[attr-defined]
    await with_battle_ids(app)
    await publish_groups(app, QUIET_GROUPS)

    for ref in ("B1", "b1", "1", "#1"):
        shown = await say(app, "alice", f"battle show {ref}")
        assert not shown.is_error and shown.title == "Battle B1", (ref, shown.text)
        assert "#9 TSM" in render_text(shown) and "the poll is not open yet" in render_text(shown)
    assert (await say(app, "alice", "battle show 2")).title == "Battle B2"
    assert (await say(app, "alice", "battle show #5")).title == "Battle 5"

    r = await say(app, "maya", "talk timer 9")  # a battle paper: its battle, by name
    assert r.is_error and "#9 is a battle paper: battle B1 is timed phase by phase" in r.text
    assert "`battle timer B1 <a | b | reasons | rebuttal>`" in r.text
    r = await say(app, "maya", "battle timer b1 a")
    assert r.text.startswith("⏱ Battle B1, side A presents"), r.text
    r = await say(app, "maya", "battle timer #1 stop")
    assert r.text.startswith("⏹ Battle B1, side A presents: stopped"), r.text
    r = await say(app, "maya", "battle timer B1 stop")
    assert r.is_error and "No timer is running for battle B1" in r.text

    r = await say(app, "gedas", "battle open b1")
    assert not r.is_error and r.text.startswith("The poll for battle B1 is open"), r.text
    r = await say(app, "gedas", "battle open 1")
    assert r.is_error and "The poll for battle B1 is already open" in r.text

    # Votes: typed with each form of the name, then through a reaction and its form.
    for who, ref, side in (("alice", "B1", "A"), ("hannah", "b1", "B"), ("jiawen", "1", "A")):
        r = await say(app, who, f'battle vote {ref} {side} "{WHY[who]}"')
        assert not r.is_error and "counts" in r.text, (ref, r.text)
    r = await say(app, "jiawen", "battle withdraw #1")
    assert "Your vote in battle B1 was withdrawn" in r.text
    r = await say(app, "jiawen", "battle withdraw b1")
    assert r.is_error and "no vote in battle B1" in r.text

    pending = await app.core.handle_action(req("carol"), "battle.react:1", A)
    assert "You picked" in pending.text
    form = pending.buttons[0].form
    assert form is not None and form.custom_id == "form:battle.vote:battle=1:side=A"
    r = await app.core.handle_form(req("carol"), form.custom_id, {"justification": WHY["carol"]})
    assert not r.is_error and "counts" in r.text
    # A form id of a poll posted before ids were names: the plain number still works.
    r = await app.core.handle_form(
        req("deepak"), "form:battle.vote:battle=1:side=B", {"justification": WHY["deepak"]}
    )
    assert not r.is_error and "counts" in r.text
    assert sorted((await votes(app)).values()) == ["A", "A", "B", "B"]

    status = await say(app, "maya", "battle status B1")
    assert status.title == "Battle B1: voting progress" and "4 of 19" in status.text
    assert (await say(app, "maya", "battle export b1")).is_error  # sealed while open

    r = await say(app, "gedas", "battle close b1")
    assert not r.is_error and "It's a tie, 2–2." in r.text
    r = await say(app, "gedas", "battle close #1")
    assert r.is_error and "The poll for battle B1 is already closed" in r.text
    r = await app.core.handle_action(req("alice"), "battle.react:1", B)  # an old reaction
    assert "closed" in r.text

    export = await say(app, "maya", "battle export B1")
    assert export.files[0].name == "battle-B1-votes.csv"
    rows = list(csv.DictReader(io.StringIO(export.files[0].data.decode())))
    assert len(rows) == 4
    assert "closed, a tie: A 2, B 2" in render_text(await say(app, "alice", "battle show b1"))

    # Typed options (Discord, the web desk) read the same way.
    r = await app.core.handle(req("alice"), "battle show", {"battle": "b1"})
    assert r.title == "Battle B1"
    r = await app.core.handle(req("alice"), "battle show", {"battle": 1})
    assert r.title == "Battle B1"


async def test_posted_polls_carry_the_number_and_say_the_name(app: App) -> None:
    """New polls' buttons and reactions carry the number (as every poll already posted
    does), so nothing a message holds depends on the course file's id."""
    await with_battle_ids(app)
    async with app.db.session() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        view = await load_battle(s, course, "b1")
        poll = poll_reply(view, {"A": 0, "B": 0}, 0, rules_=rules(course))
    assert poll.title == "Battle B1: which paper should be accepted?"
    assert poll.reactions is not None and poll.reactions.args == ("1",)
    forms = [b.form for b in poll.buttons if b.form is not None]
    assert [f.custom_id for f in forms] == [
        "form:battle.vote:battle=1:side=A",
        "form:battle.vote:battle=1:side=B",
    ]
    assert "`battle withdraw B1`" in poll.text


async def test_suggestions_name_each_battle_as_printed(app: App) -> None:
    await with_battle_ids(app)
    async with app.db.session() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        every = await battle_choices(s, course.id, "")
        assert [value for _, value in every] == ["B1", "B2", "B3", "B4", "5"]
        assert every[0][0].startswith("Battle B1: #9 TSM") and " vs #10 X3D" in every[0][0]
        assert all(len(label) <= 100 for label, _ in every)  # Discord's limit
        assert [v for _, v in await battle_choices(s, course.id, "b2")] == ["B2"]
        assert [v for _, v in await battle_choices(s, course.id, "3")] == ["B3", "B1"]  # X3D
        assert [v for _, v in await battle_choices(s, course.id, "vivit")] == ["B2"]
        assert await battle_choices(s, course.id, "B9") == []
        with pytest.raises(NotFound, match="Its battles: B1, B2, B3, B4, 5 "):
            await load_battle(s, course, "C1")


# ------------------------------------------------------------------ bad names


BAD = [
    ("alice", "battle show B99", "`B99` is not a battle of this course"),
    ("alice", "battle show X", "or a battle's id like `B4` (you gave `X`)"),
    ("alice", 'battle show ""', "`battle` is empty"),
    ("gedas", "battle open B99", "`B99` is not a battle of this course"),
    ("gedas", "battle open X minutes=10", "(you gave `X`)"),
    ("gedas", 'battle open ""', "`battle` is empty"),
    ("gedas", "battle open C1", "`C1` is not a battle of this course"),
    ("maya", "battle timer B99 a", "`B99` is not a battle of this course"),
    ("maya", "battle timer X a", "(you gave `X`)"),
    ("alice", f'battle vote B99 A "{WHY["alice"]}"', "`B99` is not a battle of this course"),
    ("alice", f'battle vote X A "{WHY["alice"]}"', "(you gave `X`)"),
    ("alice", f'battle vote "" A "{WHY["alice"]}"', "`battle` is empty"),
    ("alice", "battle withdraw 99", "`99` is not a battle of this course"),
    ("gedas", "battle close B99", "`B99` is not a battle of this course"),
    ("gedas", "battle close 1.5", "(you gave `1.5`)"),
    ("maya", "battle status B0", "`B0` is not a battle of this course"),
    ("maya", "battle status B5", "`B5` is not a battle of this course"),  # its id is 5
    ("maya", "battle export -1", "(you gave `-1`)"),
]


@pytest.mark.parametrize(("who", "line", "said"), BAD, ids=[line for _, line, _ in BAD])
async def test_a_name_that_is_no_battle_is_refused_privately_and_changes_nothing(
    app: App, who: str, line: str, said: str
) -> None:
    app.clock.at = BATTLE_DAY  # type: ignore[attr-defined]
    await with_battle_ids(app)
    await publish_groups(app, QUIET_GROUPS)
    assert not (await say(app, "gedas", "battle open B1")).is_error  # votes have a poll
    before = await stored(app)
    r = await say(app, who, line)
    assert r.is_error and r.ephemeral and r.error_id is None, r.text
    assert said in r.text, r.text
    if "not a battle" in said:
        assert "Its battles: B1, B2, B3, B4, 5 (by number or id)" in r.text
    assert await stored(app) == before


async def test_typed_options_and_crafted_ids_that_name_no_battle(app: App) -> None:
    await with_battle_ids(app)
    before = await stored(app)
    for value in ("B99", "", "X", 0, 2**63, True):
        r = await app.core.handle(req("gedas"), "battle open", {"battle": value})
        assert r.is_error and r.ephemeral and r.error_id is None, (value, r.text)
    for custom_id in ("battle.react:B99", "battle.react:X", "battle.react:", "battle.react:0"):
        r = await app.core.handle_action(req("alice"), custom_id, A)
        assert r.is_error and r.error_id is None, (custom_id, r.text)
    r = await app.core.handle_form(
        req("alice"), "form:battle.vote:battle=B99:side=A", {"justification": WHY["alice"]}
    )
    assert r.is_error and "`B99` is not a battle of this course" in r.text
    assert await stored(app) == before


# ------------------------------------------------ help, agendas and `battle show`


async def test_help_and_agendas_name_a_battle_by_its_id_and_show_gives_its_format(
    app: App,
) -> None:
    """`help`, `agenda`, `schedule` and `agenda timer` name a battle by its id in the
    course file, even where the agenda names it by number; `battle show` gives its theme,
    its start time and its format, phase by phase."""
    from tests.test_help import headings, help_for

    text = SAMPLE_COURSE.read_text(encoding="utf-8")
    for n in range(1, 5):
        text = text.replace(f"  - id: {n}\n    a: ", f"  - id: B{n}\n    a: ")
    b2 = "    b: 12      # ViViT\n    date: 2023-09-18\n"
    assert b2 in text
    text = text.replace(
        b2,
        b2 + '    start: "15:00"\n    theme: Attention across space and time\n'
        "    phases: [{key: all, title: both sides at once, minutes: 40}]\n",
    )
    sessions = "  - date: 2023-10-02\n    title: Project proposal presentations\n"
    assert sessions in text
    text = text.replace(
        sessions,
        "  - date: 2023-09-18\n    agenda:\n      - {battle: 2, minutes: 60}\n" + sessions,
    )
    async with app.db.transaction() as s:
        await import_course(s, parse_course_file(text), now=SAMPLE_NOW)

    assert "Today is a battle day: battle B2" in headings(
        await help_for(app, "alice", datetime(2023, 9, 18, 13, 0, tzinfo=UTC))
    )
    assert "Today is a battle day: battle B1" in headings(await help_for(app, "alice", BATTLE_DAY))

    agenda = render_text(await say(app, "alice", "agenda 2023-09-18"))
    assert "2:30 PM–3:30 PM Battle B2 (battle, 60 min)" in agenda, agenda
    week = render_text(await say(app, "alice", "schedule week=5"))
    assert "Agenda: 1. 2:30 PM–3:30 PM Battle B2 (battle, 60 min)" in week, week
    r = await say(app, "maya", "agenda timer 1 date=2023-09-18")
    assert r.is_error and r.ephemeral and "Item 1 is battle B2" in r.text, r.text
    assert "`battle timer B2 <all>`" in r.text

    shown = render_text(await say(app, "alice", "battle show b2"))
    assert "Theme: Attention across space and time" in shown, shown
    assert "Date: Mon Sep 18, starts at 3:00 PM" in shown
    assert "Format: both sides at once, 40 min (`all`); 40 min in all" in shown
    shown = render_text(await say(app, "alice", "battle show 1"))
    assert "Theme: Efficient video backbones" in shown and "Date: Wed Sep 13\n" in shown
    assert (
        "Format: side A presents, 20 min (`a`) → side B presents, 20 min (`b`) → "
        "3 reasons, 5 min (`reasons`) → rebuttal, 5 min (`rebuttal`); 50 min in all"
    ) in shown
    shown = render_text(await say(app, "alice", "battle show 5"))
    assert "Theme" not in shown and "starts at" not in shown
