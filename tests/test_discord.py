"""The Discord adapter end to end: the real discord.py client, command tree, views and
gateway parsing, against simcord's simulated Discord (no network, no token), on the
real core and database (SQLite and Postgres)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

import discord
import pytest
import simcord
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import delete, select

from bot.app import App, start_app
from bot.discord import build_layout
from bot.discord.layout import LayoutError
from bot.discord.render import (
    DESCRIPTION_LIMIT,
    FIELD_VALUE_LIMIT,
    MESSAGE_TOTAL_LIMIT,
    render,
    split_text,
)
from bot.discord.router import paper_choices
from bot.settings import Settings
from commands import load_registry
from commands.clock import FixedClock
from commands.context import Context
from commands.core import CommandCore
from commands.outbox import Unreachable
from commands.registry import Access, LongText, Registry
from commands.replies import (
    Button,
    FileOut,
    ReactionFate,
    Reactions,
    Reply,
    Section,
    Table,
    Tone,
)
from db.models import Course, CourseBinding, Paper, Person, Slot
from tests.discord_fakes import GUILD_ID, World, discord_world
from tests.helpers import QUIET_GROUPS, publish_groups

# ------------------------------------------------------------------- test-only commands


class NoteTopic(BaseModel):
    topic: str = Field(description="what the note is about")


class NoteOptions(BaseModel):
    topic: str = Field(description="what the note is about")
    text: Annotated[str, LongText()] = Field(description="your note", min_length=3)


class EssayOptions(BaseModel):
    paper: int = Field(ge=1, description="the paper")
    question: Annotated[str, LongText()] = Field(description="your question for the class")
    answer: Annotated[str, LongText()] = Field(description="your own answer to it")


@dataclass
class Calls:
    """What the test-only handlers saw."""

    notes: list[tuple[str, str]] = field(default_factory=list)
    votes: list[tuple[str, tuple[str, ...], str | None]] = field(default_factory=list)
    files: list[Any] = field(default_factory=list)


def course_registry(calls: Calls) -> Registry:
    """The course's real commands plus a few test-only ones, in a private registry."""
    reg = Registry()
    real = load_registry()
    reg.commands.update(real.commands)
    reg.actions.update(real.actions)

    @reg.command("note ask", "Offer a button that opens a form", access=Access.ANYONE)
    async def note_ask(ctx: Context, opts: NoteTopic) -> Reply:
        form = ctx.registry.get("note add").form_spec({"topic": opts.topic})
        return Reply(text="Want to leave a note?", buttons=[Button("Write a note", form=form)])

    @reg.command("note add", "Leave a note", access=Access.ANYONE, ephemeral=True, form=("text",))
    async def note_add(ctx: Context, opts: NoteOptions) -> Reply:
        calls.notes.append((opts.topic, opts.text))
        return Reply(text=f"Noted on {opts.topic}: {opts.text}", tone=Tone.SUCCESS)

    @reg.command("poll", "A message that takes reactions", access=Access.ANYONE)
    async def poll(ctx: Context, _: BaseModel) -> Reply:
        return Reply(
            title="Poll 7",
            text="Which one?",
            reactions=Reactions("poll.vote", ("🅰️", "🅱️", "🆗"), ("7",)),
        )

    @reg.action("poll.vote", access=Access.MEMBER)
    async def poll_vote(ctx: Context, args: tuple[str, ...], value: str | None) -> Reply:
        calls.votes.append((ctx.caller.user_id, args, value))
        if value == "🆗":
            return Reply(text="🆗 is not a vote.", reaction_fate=ReactionFate.REFUSE)
        if value == "🅱️":
            form = ctx.registry.get("note add").form_spec({"topic": f"poll {args[0]}"})
            return Reply(text="Why 🅱️?", buttons=[Button("Explain", form=form)])
        return Reply(text=f"Vote {value} on poll {args[0]} recorded.")

    @reg.command(
        "upload", "Echo an uploaded file", access=Access.ANYONE, attachment="the file to echo"
    )
    async def upload(ctx: Context, _: BaseModel) -> Reply:
        calls.files.extend(ctx.request.attachments)
        names = ", ".join(f"{a.name} ({a.size} bytes)" for a in ctx.request.attachments)
        return Reply(
            text=f"Got {names or 'nothing'}.",
            files=[FileOut("echo.csv", b"name,size\nx,1\n", "text/csv", "the echo")],
        )

    @reg.command(
        "essay submit",
        "Hand in an essay",
        access=Access.MEMBER,
        form=("question", "answer"),
        attachment="your essay (PDF)",
    )
    async def essay_submit(ctx: Context, opts: EssayOptions) -> Reply:
        calls.files.extend(ctx.request.attachments)
        files = ", ".join(a.name for a in ctx.request.attachments) or "no file"
        return Reply(text=f"Essay on #{opts.paper} ({files}). Q: {opts.question}")

    @reg.command("slow", "Takes twenty minutes", access=Access.ANYONE)
    async def slow(ctx: Context, _: BaseModel) -> Reply:
        await asyncio.sleep(20 * 60)
        return Reply(text="Done at last.")

    return reg


def with_registry(app: App, registry: Registry) -> App:
    app.core = CommandCore(app.db, registry, clock=app.clock, data_dir=app.settings.data_dir)
    return app


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def world(app: App, calls: Calls) -> AsyncIterator[World]:
    async with discord_world(with_registry(app, course_registry(calls))) as w:
        yield w


def text_of(result: Any) -> str:
    """Everything a user reads in an interaction's messages (embeds and content)."""
    messages = [m for m in (result.response, *result.followups) if m is not None]
    return "\n".join(message_text(m) for m in messages)


def answer(result: simcord.InteractionResult) -> simcord.ResponseMessage:
    """The message that answered an interaction (the deferred one, once completed)."""
    assert result.response is not None, result
    return result.response


def message_text(message: Any) -> str:
    parts = [message.content or ""]
    for embed in message.embeds:
        parts += [embed.title or "", embed.description or ""]
        parts += [f"{f.name} {f.value}" for f in embed.fields]
        parts.append(embed.footer.text or "" if embed.footer else "")
    return "\n".join(p for p in parts if p)


def button_labels(message: discord.Message) -> list[str]:
    view = discord.ui.View.from_message(message)
    return [b.label or "" for b in view.children if isinstance(b, discord.ui.Button)]


def callbacks(env: simcord.Env) -> list[int]:
    """The interaction callback types the bot sent (5: deferred, 9: modal...)."""
    return [
        r.json["type"]
        for r in env.http_requests
        if r.method == "POST" and r.path.endswith("/callback") and isinstance(r.json, dict)
    ]


async def course_id(app: App) -> int:
    async with app.db.session() as s:
        cid = await s.scalar(select(Course.id))
    assert cid is not None
    return cid


async def person_id(app: App, email: str) -> int:
    async with app.db.session() as s:
        pid = await s.scalar(select(Person.id).where(Person.email == email))
    assert pid is not None
    return pid


# ------------------------------------------------------------------- the command tree


async def test_every_command_is_a_grouped_app_command_and_staff_ones_are_hidden(
    world: World,
) -> None:
    w = world
    layout = w.bot.layout
    assert {layout.slash(c) for c in w.app.core.registry} >= {
        "/papers",
        "/whoami",
        "/register",
        "/rank standard",
        "/assign run",
        "/assign show",
        "/rankings extend",
        "/admin register link",
        "/note add",
    }
    student = {c.split()[0] for c in w.alice.available_commands(w.general)}
    staff = {c.split()[0] for c in w.gedas.available_commands(w.general)}
    assert {"papers", "whoami", "register", "rank", "note"} <= student
    hidden = {"assign", "rankings", "admin"}
    assert not hidden & student
    assert hidden <= staff
    with pytest.raises(simcord.SetupError, match="not visible to this user"):
        await w.alice.slash(w.general, "rankings status")

    synced = {
        c["name"]: c
        for c in (
            c.to_dict(w.bot.tree) for c in w.bot.tree.get_commands(guild=discord.Object(GUILD_ID))
        )
    }
    assert int(synced["rankings"]["default_member_permissions"]) == (
        discord.Permissions(manage_messages=True).value
    )
    assert synced["papers"]["default_member_permissions"] is None
    papers = {o["name"]: o for o in synced["papers"]["options"]}
    assert [c["value"] for c in papers["kind"]["choices"]][:3] == ["all", "standard", "30"]
    assert papers["page"]["type"] == discord.AppCommandOptionType.integer.value
    assert papers["page"]["min_value"] == 1
    assert "YYYY-MM-DD" in papers["date"]["description"]
    rank = {o["name"]: o for o in synced["rank"]["options"]}
    assert rank["standard"]["options"][0]["autocomplete"] is True
    for command in synced.values():
        assert 0 < len(command["description"]) <= 100


def test_layout_rules_for_mixed_and_bare_groups() -> None:
    reg = Registry()

    async def h(ctx: Context, _: BaseModel) -> Reply:
        return Reply()

    for name, access in [
        ("grades", Access.MEMBER),
        ("grades set", Access.INSTRUCTOR),
        ("gpu run", Access.MEMBER),
        ("gpu limits", Access.STAFF),
        ("project", Access.MEMBER),
        ("project join", Access.MEMBER),
    ]:
        reg.command(name, name, access=access)(h)
    layout = build_layout(reg)
    assert layout.slash("grades") == "/grades"  # its staff sibling moved out
    assert layout.slash("grades set") == "/admin grades set"
    assert layout.slash("gpu limits") == "/admin gpu limits"
    assert layout.slash("project") == "/project run"
    assert layout.roots["admin"].hidden and not layout.roots["project"].hidden

    reg.command("a b c d", "too deep", access=Access.MEMBER)(h)
    with pytest.raises(LayoutError, match="at most three words"):
        build_layout(reg)


# ------------------------------------------------------------------- slash commands


async def test_a_slash_command_with_options_is_deferred_then_answered(world: World) -> None:
    w = world
    result = await w.alice.slash(w.general, "papers", kind="battle")
    assert callbacks(w.env) == [5]  # deferred first (within 3 s), answered after
    # A lookup answers privately; "Share in channel" posts it for everyone.
    assert result.ephemeral
    text = text_of(result)
    assert "10 battle papers" in text and "ViViT: A Video Vision Transformer" in text
    assert "```" in (answer(result).embeds[0].description or "")  # the table, monospace
    assert not w.general.history(viewer=w.bob)
    await w.alice.click(answer(result), label="Share in channel")
    shared = w.general.history(viewer=w.bob)
    assert shared and "(shared by Alice Chen)" in message_text(shared[0])
    assert "10 battle papers" in message_text(shared[0])

    result = await w.alice.slash(w.general, "papers", date="tomorrow")
    assert result.ephemeral  # only the caller sees what was wrong
    assert "`date` must be a date like 2023-08-30" in text_of(result)
    assert all("must be a date" not in message_text(m) for m in w.general.history(viewer=w.bob))


async def test_personal_data_is_ephemeral_and_roles_are_checked_by_the_core(world: World) -> None:
    w = world
    result = await w.alice.slash(w.general, "whoami")
    assert result.ephemeral and callbacks(w.env) == [5]
    assert "Alice Chen" in text_of(result) and "alice.chen@unc.edu" in text_of(result)
    assert all("alice.chen" not in message_text(m) for m in w.general.history())

    # Bob moderates the server (Discord shows him staff commands) but is a student.
    result = await w.bob.slash(w.general, "rankings status")
    assert result.ephemeral
    assert "only for TAs and instructors; you are registered as a student" in text_of(result)
    result = await w.maya.slash(w.general, "rankings status")
    assert "Alice Chen" in text_of(result)

    # Zoe is not linked yet: she asks through /register (Discord gives no email and no
    # mail server is set, so staff approve), the TA approves, and Zoe is told by DM.
    result = await w.zoe.slash(w.general, "register", email="zoe.williams@unc.edu")
    assert result.ephemeral and "waiting for a TA or instructor" in text_of(result)
    result = await w.maya.slash(w.general, "admin register approve", person="zoe")
    assert "Approved" in text_of(result)
    assert "Welcome, Zoe Williams!" in message_text(w.zoe.user.dm_channel.last_message)
    result = await w.zoe.slash(w.general, "whoami")
    assert f"discord: {w.zoe.id}" in text_of(result)


async def test_a_guild_without_a_course_is_told_how_to_bind_it(world: World) -> None:
    w = world
    async with w.app.db.transaction() as s:
        await s.execute(delete(CourseBinding).where(CourseBinding.external_id == str(GUILD_ID)))
    result = await w.alice.slash(w.general, "whoami")
    assert "is not connected to a course yet" in text_of(result)
    assert f"coursebot course bind <course-key> discord {GUILD_ID}" in text_of(result)


async def test_autocomplete_offers_the_courses_battles(world: World) -> None:
    """An option that names a battle (``Complete("battle")``) offers the course's battles
    with their papers, by number, id or a paper's title; the value is what the bot prints
    for the battle (the option is a string: ``4``, ``#4`` or ``B4``)."""
    w = world
    battles = w.channels["battles"]
    choices = await w.alice.autocomplete(battles, "battle withdraw", "battle", "")
    assert [c["value"] for c in choices] == ["1", "2", "3", "4", "5"]
    assert choices[2]["name"] == (
        "Battle 3: #16 Multiscale Vision Transformers vs #17 Video Swin Transformer"
    )
    assert choices[0]["name"].startswith("Battle 1: #9 TSM: Temporal Shift Module")
    assert all(len(c["name"]) <= 100 for c in choices)  # Discord's limit on a choice
    assert choices[0]["name"].endswith("…")
    choices = await w.gedas.autocomplete(battles, "admin battle open", "battle", "vivit")
    assert [c["value"] for c in choices] == ["2"]  # a paper's title
    choices = await w.alice.autocomplete(battles, "battle withdraw", "battle", "#3")
    assert choices[0]["value"] == "3"  # the number first, then titles with a 3 (X3D)
    choices = await w.alice.autocomplete(battles, "battle withdraw", "battle", "clip")
    assert [c["value"] for c in choices] == ["5"]


async def test_autocomplete_offers_paper_titles(world: World) -> None:
    w = world
    choices = await w.gedas.autocomplete(w.general, "assign set", "paper", "slowf")
    assert choices == [{"name": "#5 SlowFast Networks for Video Recognition", "value": 5}]
    choices = await w.alice.autocomplete(w.general, "rank standard", "papers", "13 5")
    names = [c["name"] for c in choices]
    assert names[0].startswith("13 → #5 ") and choices[0]["value"] == "13 5"
    assert all("#13 " not in n for n in names)
    choices = await w.alice.autocomplete(w.general, "rank standard", "papers", "")
    assert len(choices) == 18  # only the standard papers (`Complete("paper:standard")`)
    choices = await w.alice.autocomplete(w.general, "rank battle", "papers", "")
    assert {c["value"] for c in choices} == {
        "9",
        "10",
        "11",
        "12",
        "16",
        "17",
        "19",
        "20",
        "27",
        "28",
    }


def test_paper_choices_rank_numbers_before_titles() -> None:
    papers = [(1, "One"), (12, "Twelve"), (21, "Has 1 in it"), (5, "Five")]
    got = paper_choices(papers, "1", many=False, integer=True)
    assert [c.value for c in got] == [1, 12, 21]  # the number, numbers, then titles
    got = paper_choices(papers, "1 f", many=True, integer=True)
    assert [(c.name, c.value) for c in got] == [("1 → #5 Five", "1 5")]


# ------------------------------------------------------------------- components


async def test_buttons_page_through_the_reading_list(world: World) -> None:
    w = world
    result = await w.alice.slash(w.general, "papers")
    assert "(page 1 of 3)" in text_of(result)
    page2 = await w.alice.click(answer(result), label="Next ▶")
    assert page2.ephemeral and "(page 2 of 3)" in text_of(page2) and "MViTv2" in text_of(page2)
    page3 = await w.alice.click(answer(page2), label="Next ▶")
    assert "(page 3 of 3)" in text_of(page3)


async def test_a_button_opens_a_form_whose_submission_runs_the_command(
    world: World, calls: Calls
) -> None:
    w = world
    result = await w.alice.slash(w.general, "note ask", topic="ablations")
    shown = await w.alice.click(answer(result), label="Write a note")
    assert shown.modal is not None and callbacks(w.env)[-1] == 9  # a modal, at once
    assert shown.modal["custom_id"] == "cb:m:form:note.add:topic=ablations"
    done = await w.alice.submit_modal(shown, {"text": "Table 3 is not convincing."})
    assert done.ephemeral and "Noted on ablations: Table 3 is not convincing." in text_of(done)
    assert calls.notes == [("ablations", "Table 3 is not convincing.")]

    # The same form from the slash command when the long option is left out...
    shown = await w.bob.slash(w.general, "note add", topic="baselines")
    assert shown.modal is not None
    done = await w.bob.submit_modal(shown, {"text": "Missing the I3D baseline."})
    assert "Noted on baselines" in text_of(done)
    # ...and no form when it is given inline; the core's validation still applies.
    done = await w.bob.slash(w.general, "note add", topic="x", text="no")
    assert "`text`" in text_of(done) and done.ephemeral
    assert len(calls.notes) == 2


async def test_rankings_can_be_picked_from_select_menus(world: World) -> None:
    w = world
    async with w.app.db.session() as s:
        standard = list(
            await s.scalars(
                select(Paper.number)
                .where(Paper.slot.in_([Slot.MIN30, Slot.MIN45]))
                .order_by(Paper.number)
            )
        )
    result = await w.alice.slash(w.general, "rank standard")
    picker = result.response
    assert picker is not None and result.ephemeral
    assert "Nothing picked yet" in text_of(result)
    await w.alice.select(picker, [str(standard[0])], custom_id=_select_with(picker, standard[0]))
    await w.alice.click(picker, label="Submit")  # too short: refused, the picker stays
    assert "Rank exactly 7" in message_text(picker.message)
    assert f"1st. #{standard[0]}" in message_text(picker.message)
    for n in standard[1:7]:
        await w.alice.select(picker, [str(n)], custom_id=_select_with(picker, n))
    assert f"7th. #{standard[6]}" in message_text(picker.message)
    await w.alice.click(picker, label="Undo")
    assert "7th." not in message_text(picker.message)
    await w.alice.select(picker, [str(standard[7])], custom_id=_select_with(picker, standard[7]))
    await w.alice.click(picker, label="Submit")
    text = message_text(picker.message)
    assert "ranking" in text.lower() and "Nothing picked" not in text
    shown = await w.alice.slash(w.general, "rank show")
    assert f"#{standard[7]}" in text_of(shown)


def _select_with(message: Any, n: int) -> str:
    return next(
        c["custom_id"]
        for row in message.components
        for c in row["components"]
        if c["type"] == 3 and any(o["value"] == str(n) for o in c["options"])
    )


async def test_reactions_run_the_action_and_answer_privately(world: World, calls: Calls) -> None:
    w = world
    await w.gedas.slash(w.general, "poll")
    poll = w.general.last_message
    assert poll is not None and [str(r.emoji) for r in poll.reactions] == ["🅰️", "🅱️", "🆗"]
    await w.alice.react(poll, "🅰️")
    await w.alice.unreact(poll, "🅰️")
    await w.alice.react(poll, "👍")  # not one the message takes: ignored
    assert calls.votes == [
        (str(w.alice.id), ("7",), "🅰️"),
        (str(w.alice.id), ("7",), "-🅰️"),
    ]
    dms = [message_text(m) for m in w.alice.user.dm_channel.history()]
    assert "Vote 🅰️ on poll 7 recorded." in dms and "Vote -🅰️ on poll 7 recorded." in dms

    # A reaction the action refuses is taken off again, and that removal is not a vote.
    await w.bob.react(poll, "🆗")
    poll = w.general.last_message
    assert poll is not None
    assert {str(r.emoji): r.count for r in poll.reactions}["🆗"] == 1  # only the bot's
    assert calls.votes[-1] == (str(w.bob.id), ("7",), "🆗")

    # An answer with a form button arrives by DM; the form works from there.
    await w.alice.react(poll, "🅱️")
    ask = w.alice.user.dm_channel.last_message
    assert ask is not None and "Why 🅱️?" in message_text(ask)
    shown = await w.alice.user.click(ask, label="Explain")
    done = await w.alice.user.submit_modal(shown, {"text": "B has the better ablations."})
    assert "Noted on poll 7: B has the better ablations." in text_of(done)
    assert calls.notes == [("poll 7", "B has the better ablations.")]

    # Someone not on the roster may not vote (the action is for members).
    await w.zoe.react(poll, "🅱️")
    assert calls.votes[-1][0] != str(w.zoe.id)
    assert "is for registered students" in message_text(w.zoe.user.dm_channel.last_message)


async def test_a_battle_poll_takes_votes_by_reaction_and_button_with_a_justification(
    world: World,
) -> None:
    """The course's own battle poll, end to end (skipped until battles are in the build)."""
    w = world
    if ("battle", "open") not in w.app.core.registry.commands:
        pytest.skip("battles are not in this build")
    from db.models import BattleVote

    battles = w.channels["battles"]
    # A battle is named as printed (`4`, `#4`, `B4`): a string option that autocompletes.
    synced = [
        c.to_dict(w.bot.tree) for c in w.bot.tree.get_commands(guild=discord.Object(GUILD_ID))
    ]
    battle = next(c for c in synced if c["name"] == "battle")
    withdraw = next(o for o in battle["options"] if o["name"] == "withdraw")
    (option,) = withdraw["options"]
    assert option["type"] == discord.AppCommandOptionType.string.value and option["autocomplete"]
    await publish_groups(w.app, QUIET_GROUPS)  # a battle runs once it has sides
    await w.gedas.slash(battles, "admin battle open", battle="1")
    poll = battles.last_message
    assert poll is not None and [str(r.emoji) for r in poll.reactions] == ["🅰️", "🅱️"]
    buttons = button_labels(poll)
    assert len(buttons) == 2

    await w.alice.react(poll, "🅰️")  # a pending vote: the reason is asked for by DM
    ask = w.alice.user.dm_channel.last_message
    assert ask is not None
    (label,) = button_labels(ask)
    shown = await w.alice.user.click(ask, label=label)
    assert shown.modal is not None
    assert shown.modal["custom_id"] == "cb:m:form:battle.vote:battle=1:side=A"
    why = "Their ablations are far more convincing than the other side's."
    done = await w.alice.user.submit_modal(shown, {"justification": why})
    assert answer(done).embeds[0].colour == discord.Colour.green()

    shown = await w.bob.click(poll, label=buttons[1])  # the button on the poll
    done = await w.bob.submit_modal(shown, {"justification": why})
    assert answer(done).embeds[0].colour == discord.Colour.green()
    async with w.app.db.session() as s:
        votes = sorted((v.side, v.justification) for v in await s.scalars(select(BattleVote)))
    assert votes == [("A", why), ("B", why)]
    assert message_text(battles.history()[0]) != message_text(poll)  # the count was edited

    # A secret ballot (the default): the bot took alice's reaction off at once, and
    # withdrawing is a command, not an unreaction.
    poll = battles.history()[0]
    assert {str(r.emoji): r.count for r in poll.reactions} == {"🅰️": 1, "🅱️": 1}
    await w.alice.slash(battles, "battle withdraw", battle="#1")
    async with w.app.db.session() as s:
        assert [v.side for v in await s.scalars(select(BattleVote))] == ["B"]


async def test_files_in_replies_and_an_attachment_option(world: World, calls: Calls) -> None:
    w = world
    pdf = b"%PDF-1.4 three pages of thoughts"
    result = await w.alice.slash(w.general, "upload", file=("critique.pdf", pdf))
    assert f"Got critique.pdf ({len(pdf)} bytes)." in text_of(result)
    (sent,) = calls.files
    assert sent.name == "critique.pdf" and sent.size == len(pdf) and sent.url
    (echo,) = answer(result).attachments
    assert echo.filename == "echo.csv" and echo.description == "the echo"
    assert await echo.read() == b"name,size\nx,1\n"

    # A file with a command that then asks for long text in a form (a critique).
    shown = await w.alice.slash(w.general, "essay submit", paper=5, file=("essay.pdf", pdf))
    assert shown.modal is not None
    fields = [c["components"][0]["custom_id"] for c in shown.modal["components"]]
    assert fields == ["question", "answer"]
    done = await w.alice.submit_modal(shown, {"question": "Why 8x8?", "answer": "Compute."})
    assert "Essay on #5 (essay.pdf). Q: Why 8x8?" in text_of(done)

    # The course's own files: the assignment for the website, privately to the TA.
    await w.gedas.slash(w.general, "assign run", seed=1)
    result = await w.maya.slash(w.general, "assign export")
    assert result.ephemeral
    files = {a.filename: a for a in answer(result).attachments}
    assert set(files) == {f"comp790-23f-assignment.{ext}" for ext in ("csv", "md", "html")}
    assert b"<table" in await files["comp790-23f-assignment.html"].read()


async def test_an_adapter_failure_answers_with_an_error_id(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.discord.router

    def broken(reply: Reply, *, single: bool = False) -> Any:
        raise RuntimeError("rendering broke")

    monkeypatch.setattr(bot.discord.router, "render", broken)
    result = await world.alice.slash(world.general, "whoami")
    assert result.ephemeral and "quote error id" in text_of(result)
    (logged,) = world.failures
    assert "discord adapter error" in logged
    world.failures.clear()


async def test_a_late_result_goes_to_the_channel(world: World) -> None:
    w = world
    result = await w.alice.slash(w.general, "slow")
    assert callbacks(w.env) == [5]  # deferred at once; the work goes on
    await w.env.advance_time(20 * 60 + 1)
    assert "Done at last." in message_text(w.general.last_message)
    assert "Done at last." not in text_of(result)


# ------------------------------------------------------------------- outbox, restart


async def test_outbox_posts_reminders_dms_edits_and_threads(world: World) -> None:
    w = world
    assert isinstance(w.app.clock, FixedClock)
    w.app.clock.advance(timedelta(days=1, hours=14))  # Sun Aug 27, 00:00 EDT
    await w.bot.sweeper.sweep()
    assert "Reminder: **Paper rankings** is due" in message_text(w.announcements.last_message)
    nudges = [message_text(m) for m in w.alice.user.dm_channel.history()]
    assert any("rank" in m.lower() for m in nudges)

    cid = await course_id(w.app)
    ref = await w.bot.outbox.post(cid, "#announcements", Reply(text="Class is moved to SN014."))
    message = w.announcements.last_message
    assert message is not None and ref == f"{w.announcements.id}:{message.id}"
    await w.bot.outbox.edit(cid, ref, Reply(text="Class is moved to SN011.", tone=Tone.WARNING))
    assert "SN011" in message_text(w.announcements.last_message)

    alice = await person_id(w.app, "alice.chen@unc.edu")
    await w.bot.outbox.dm(cid, alice, Reply(text="Your presentation is paper #5."))
    assert "paper #5" in message_text(w.alice.user.dm_channel.last_message)
    zoe = await person_id(w.app, "zoe.williams@unc.edu")
    with pytest.raises(Unreachable, match="no linked Discord account"):
        await w.bot.outbox.dm(cid, zoe, Reply(text="unlinked"))

    where = await w.bot.outbox.thread(
        cid, "general", "Group 1: SlowFast", Reply(text="Discuss!"), [alice]
    )
    (thread,) = w.general.threads
    assert thread.name == "Group 1: SlowFast" and "Discuss!" in message_text(thread.last_message)
    added = [
        r.path for r in w.env.http_requests if r.method == "PUT" and "thread-members" in r.path
    ]
    assert added == [f"/channels/{thread.id}/thread-members/{w.alice.id}"]
    # What thread() returns is where later posts go: into the thread (the timer's warning).
    assert where == str(thread.id)
    await w.bot.outbox.post(cid, where, Reply(text="5 minutes left"))
    assert "5 minutes left" in message_text(thread.last_message)
    assert "5 minutes left" not in message_text(w.general.last_message)


async def test_a_discussion_opens_a_thread_per_group_with_its_members(world: World) -> None:
    """`discussion start` on Discord: one thread per breakout group in #discussions with
    its question, its linked members added; the timer's warning lands in each thread."""
    w = world
    assert isinstance(w.app.clock, FixedClock)
    discussions = w.channels["discussions"]
    for line, opts in [
        ("admin discussion add", {"paper": 5, "text": "Why so few channels in the fast path?"}),
        ("admin discussion accept", {"paper": 5}),
        ("admin discussion start", {"paper": 5, "groups": 2, "minutes": 10}),
    ]:
        done = await w.gedas.slash(w.general, line, **opts)
        assert "error" not in message_text(answer(done)).lower(), message_text(answer(done))
    assert "2 groups" in message_text(answer(done))
    threads = sorted(discussions.threads, key=lambda t: t.name)
    assert [t.name for t in threads] == ["Group 1 · paper #5", "Group 2 · paper #5"]
    for thread in threads:
        assert "Why so few channels in the fast path?" in message_text(thread.last_message)
    added = {
        r.path.rsplit("/", 1)[-1]
        for r in w.env.http_requests
        if r.method == "PUT" and "thread-members" in r.path
    }
    linked = {str(w.alice.id), str(w.bob.id)}  # the linked students (maya and gedas are staff)
    assert added == linked

    w.app.clock.advance(timedelta(minutes=5))
    await w.bot.sweeper.tick()
    for thread in threads:
        assert "5 minutes left" in message_text(thread.last_message)


async def test_buttons_and_reactions_keep_working_after_a_restart(
    world: World, settings: Settings, clock: FixedClock, calls: Calls
) -> None:
    w = world
    listing = await w.alice.slash(w.general, "papers")
    await w.gedas.slash(w.general, "poll")
    poll = w.general.last_message
    assert poll is not None
    old_app = w.app
    await w.restart(with_registry(await start_app(settings, clock=clock), course_registry(calls)))
    await old_app.close()
    syncs = [r for r in w.env.http_requests if r.method == "PUT" and r.path.endswith("/commands")]
    assert len(syncs) == 1  # the commands did not change: no second sync
    page2 = await w.alice.click(answer(listing), label="Next ▶")
    assert "(page 2 of 3)" in text_of(page2)
    await w.alice.react(poll, "🅱️")
    assert calls.votes[-1] == (str(w.alice.id), ("7",), "🅱️")


# ------------------------------------------------------------------- rendering limits


def test_long_replies_are_split_within_discord_limits() -> None:
    rows = [[str(i), f"Paper title number {i} " * 3, "x" * 20] for i in range(400)]
    reply = Reply(
        title="T" * 300,
        text="line\n" * 3000,
        sections=[Section(f"S{i}", "b" * 3000, [("k", "v")]) for i in range(30)],
        tables=[Table(["#", "Title", "Note"], rows)],
        files=[FileOut(f"f{i}.txt", b"x") for i in range(12)],
        buttons=[Button(f"B{i}", "act", (str(i),)) for i in range(30)],
        reactions=Reactions("vote", ("🅰️", "🅱️"), ("1",)),
        tone=Tone.SUCCESS,
    )
    messages = render(reply)
    assert len(messages) > 3
    for m in messages:
        assert len(m.embeds) <= 10 and len(m.files) <= 10
        assert sum(len(e) for e in m.embeds) <= MESSAGE_TOTAL_LIMIT
        for e in m.embeds:
            assert len(e.description or "") <= DESCRIPTION_LIMIT and len(e.fields) <= 25
            assert all(len(f.value or "") <= FIELD_VALUE_LIMIT for f in e.fields)
            assert (e.description or "").count("```") % 2 == 0
    tables = [e.description or "" for m in messages for e in m.embeds]
    tables = [t for t in tables if "```" in t]
    assert len(tables) > 1 and all("#    Title" in t for t in tables)  # header repeated
    assert sum(len(m.files) for m in messages) == 12
    assert len(messages[-1].buttons) == 0 and sum(len(m.buttons) for m in messages) == 25
    with_reactions = [m for m in messages if m.reactions]
    assert len(with_reactions) == 1
    # The footer tells people what to do; what the emojis mean is kept by the bot.
    assert with_reactions[0].embeds[-1].footer.text == "React with 🅰️ 🅱️"
    assert split_text("a" * 10 + "\n" + "b" * 3, 4) == ["aaaa", "aaaa", "aa", "bbb"]


# ------------------------------------------------------------------- the entry point


async def test_run_discord_explains_a_missing_or_rejected_token(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Through real HTTP: a local stand-in for Discord's REST API rejects the token."""
    from aiohttp import web

    from bot.discord import run_discord
    from bot.settings import DiscordSettings

    assert await run_discord(settings) == 2
    assert "DISCORD_TOKEN is not set" in caplog.text

    seen: list[str] = []

    async def users_me(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)

    api = web.Application()
    api.router.add_get("/api/v10/users/@me", users_me)
    runner = web.AppRunner(api)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    try:
        settings.discord = DiscordSettings.model_construct(
            token=SecretStr("not-a-real-token"), guild_id=str(GUILD_ID)
        )
        assert await run_discord(settings) == 1
    finally:
        await runner.cleanup()
    assert seen == ["Bot not-a-real-token"]
    assert "Discord rejected DISCORD_TOKEN" in caplog.text


async def test_a_replayed_reaction_event_counts_once(world: World, calls: Calls) -> None:
    """Discord may deliver a gateway event again (a resumed session replays what it
    thinks was missed): one addition of one reaction runs its action once."""
    w = world
    await w.gedas.slash(w.general, "poll")
    poll = w.general.last_message
    assert poll is not None
    await w.alice.react(poll, "🅰️")
    backend = w.env.backend
    stored = backend.get_message(w.general.id, poll.id)
    backend._emit_reaction("MESSAGE_REACTION_ADD", stored, "🅰️", w.alice.id)  # the replay
    await w.env._settle_internal(dispatch="replay")
    assert calls.votes == [(str(w.alice.id), ("7",), "🅰️")]
    # Taking it off and putting it back are two new events, each counted.
    await w.alice.unreact(poll, "🅰️")
    await w.alice.react(poll, "🅰️")
    assert [v[2] for v in calls.votes] == ["🅰️", "-🅰️", "🅰️"]


async def test_a_reaction_on_a_message_the_bot_does_not_know_is_ignored(
    world: World, calls: Calls
) -> None:
    """Reactions are routed by the bot's own record of the message (``message_refs``):
    on any other message, the bot's included, nothing runs and nothing is said."""
    w = world
    await w.gedas.slash(w.general, "poll")
    poll = w.general.last_message
    assert poll is not None
    async with w.app.db.session() as s:
        from db.models import MessageRef

        rows = (await s.scalars(select(MessageRef))).all()
    assert [(r.ref, r.reactions["emojis"]) for r in rows if r.reactions] == [
        (f"{w.general.id}:{poll.id}", ["🅰️", "🅱️", "🆗"])
    ]
    dms_before = len(w.alice.user.dm_channel.history()) if w.alice.user.dm_channel else 0
    mine = await w.bob.send(w.general, "a message of a person")
    await w.alice.react(mine, "🅰️")
    assert calls.votes == []
    dms_after = len(w.alice.user.dm_channel.history()) if w.alice.user.dm_channel else 0
    assert dms_after == dms_before
