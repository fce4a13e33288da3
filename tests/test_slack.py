"""The Slack adapter end to end: the production slack-bolt AsyncApp served over real
HTTP on 127.0.0.1, driven by requests signed as Slack signs them, its Web API client
pointed (through ``SLACK_API_URL``) at a local fake, and Socket Mode against the
fake's websocket. Runs on SQLite and on Postgres like the rest of the suite."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

import aiohttp
import pytest
from pydantic import BaseModel, Field
from sqlalchemy import select

from bot.app import App
from bot.settings import Settings, SlackSettings
from bot.slack import SlackBot, run_slack, slack_mode
from bot.slack import blocks as bk
from bot.slack.listeners.commands import unescape
from bot.slack.sender import ChannelPacer
from commands import load_registry
from commands.clock import FixedClock
from commands.context import Context
from commands.core import CommandCore
from commands.parsing import missing_form_options
from commands.reactions import ReactionLog
from commands.registry import Access, LongText, Registry
from commands.replies import (
    Button,
    FileOut,
    Reactions,
    Reply,
    Section,
    Table,
    Tone,
)
from db.models import Course, CourseBinding, Identity, Person, Platform, Ranking, RankKind
from tests.helpers import QUIET_GROUPS, flush_edits, publish_groups
from tests.slack_fakes import (
    FORM,
    JSON,
    FakeSlack,
    Signer,
    block_strings,
    command_body,
    command_payload,
    event_body,
    interaction_body,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T1"
USERS = {"gedas": "UGEDAS", "alice": "UALICE", "bob": "UBOB"}


# ----------------------------------------------------------------------------- test-only commands
class Note(BaseModel):
    paper: int = Field(description="paper id")
    text: Annotated[str, LongText()] = Field(min_length=10, description="your note")


def build_registry(votes: list[tuple[tuple[str, ...], str | None]]) -> Registry:
    """A private registry: every real command, plus a few test-only ones."""
    real = load_registry()
    reg = Registry()
    reg.commands.update(real.commands)
    reg.actions.update(real.actions)

    async def note(ctx: Context, opts: Note) -> Reply:
        return Reply(text=f"noted on #{opts.paper}: {opts.text}", ephemeral=True)

    async def offer(ctx: Context, _: BaseModel) -> Reply:
        form = ctx.registry.get("testnote").form_spec({"paper": "5"})
        return Reply(text="Leave a note?", buttons=[Button("Write a note", form=form)])

    async def poll(ctx: Context, _: BaseModel) -> Reply:
        return Reply(
            title="Battle 1: who wins?",
            text="React to vote.",
            reactions=Reactions("test.vote", ("🅰️", "🅱️"), ("b1",)),
        )

    async def vote(ctx: Context, args: tuple[str, ...], value: str | None) -> Reply:
        votes.append((args, value))
        return Reply(text=f"vote {value} on {args[0]}")

    async def attachments(ctx: Context, _: BaseModel) -> Reply:
        names = [
            f"{a.name}:{a.path.read_bytes().decode() if a.path else '?'}"
            for a in ctx.request.attachments
        ]
        return Reply(text="attached: " + (", ".join(names) or "nothing"), ephemeral=True)

    async def upload(ctx: Context, _: BaseModel) -> Reply:
        return Reply(
            text="Here is a chart.",
            files=[FileOut("chart.png", b"\x89PNG fake", "image/png", "votes per side")],
        )

    reg.command("testnote", "Leave a note", access=Access.MEMBER, form=("text",))(note)
    reg.command("testoffer", "Offer a form", access=Access.MEMBER)(offer)
    reg.command("testpoll", "A poll", access=Access.ANYONE)(poll)
    reg.command("testattach", "What was attached", access=Access.ANYONE)(attachments)
    reg.command("testupload", "A public file", access=Access.ANYONE)(upload)
    reg.action("test.vote", access=Access.MEMBER)(vote)
    return reg


# ----------------------------------------------------------------------------- harness
@dataclasses.dataclass
class Harness:
    bot: SlackBot
    fake: FakeSlack
    url: str
    http: aiohttp.ClientSession
    votes: list[tuple[tuple[str, ...], str | None]]
    signer: Signer = dataclasses.field(default_factory=lambda: Signer(SECRET))

    async def post(self, body: str, content_type: str, **headers: str) -> aiohttp.ClientResponse:
        h = self.signer.headers(body, content_type) | headers
        resp = await self.http.post(self.url, data=body.encode(), headers=h)
        await resp.read()
        return resp

    async def command(self, text: str, *, user: str = "alice", **kw: Any) -> dict[str, str]:
        """``/course <text>``; returns the response_url and trigger_id it carried."""
        ids = {
            "response_url": self.fake.response_url(),
            "trigger_id": f"trig-{time.monotonic_ns()}",
        }
        body = command_body(text, user=USERS.get(user, user), user_name=user, **ids, **kw)
        started = time.monotonic()
        resp = await self.post(body, FORM)
        assert resp.status == 200, await resp.text()
        assert time.monotonic() - started < 3  # acknowledged within Slack's 3 s
        return ids

    async def reply_to(self, ids: dict[str, str]) -> dict[str, Any]:
        return await self.fake.wait_response(lambda r: r["_url"] == ids["response_url"])

    async def interact(self, payload: dict[str, Any]) -> tuple[int, str]:
        resp = await self.post(interaction_body(payload), FORM)
        return resp.status, await resp.text()

    async def event(self, event: dict[str, Any], event_id: str, retry: int = 0) -> int:
        headers = (
            {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
            if retry
            else {}
        )
        resp = await self.post(event_body(event, event_id), JSON, **headers)
        return resp.status


def texts(blocks: list[dict[str, Any]]) -> str:
    """Every text of a list of blocks, joined (to assert on what a user sees)."""
    return "\n".join(block_strings(blocks))


async def bind_workspace(app: App) -> int:
    """Bind the sample course to team T1 and link three Slack accounts."""
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        s.add(CourseBinding(course_id=course.id, platform=Platform.SLACK, external_id=TEAM))
        for handle, slack_id in USERS.items():
            person_id = await s.scalar(
                select(Identity.person_id).where(
                    Identity.platform == Platform.TERMINAL, Identity.user_id == handle
                )
            )
            s.add(
                Identity(
                    course_id=course.id,
                    person_id=person_id,
                    platform=Platform.SLACK,
                    user_id=slack_id,
                    linked_at=app.clock.now(),
                )
            )
        return course.id


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(team_id=TEAM)
    await fake.start()
    yield fake
    await fake.stop()


def slack_settings(settings: Settings, fake: FakeSlack, **extra: Any) -> Settings:
    slack = SlackSettings(
        bot_token="xoxb-test",
        signing_secret=SECRET,
        api_url=fake.api_url,
        _env_file=None,
        **extra,
    )
    return settings.model_copy(update={"slack": slack})


@asynccontextmanager
async def running_slack(app: App, fake: FakeSlack, settings: Settings) -> AsyncIterator[Harness]:
    """The Slack bot over HTTP on the real commands (plus the test votes' command), on the
    app's database and data folder; its own core (``slack.bot.app``)."""
    await bind_workspace(app)
    votes: list[tuple[tuple[str, ...], str | None]] = []
    core = CommandCore(app.db, build_registry(votes), clock=app.clock, data_dir=settings.data_dir)
    bot_app = dataclasses.replace(app, core=core, settings=slack_settings(settings, fake))
    bot = SlackBot(bot_app, post_interval=0.0)
    await bot.start(sweep=False)
    port = await bot.start_http("127.0.0.1", 0)
    async with aiohttp.ClientSession() as http:
        yield Harness(bot, fake, f"http://127.0.0.1:{port}/slack/events", http, votes)
    await bot.stop()
    await core.close()  # its edits and confirmations end before the database goes


@pytest.fixture
async def slack(app: App, fake: FakeSlack, settings: Settings) -> AsyncIterator[Harness]:
    async with running_slack(app, fake, settings) as harness:
        yield harness


# ----------------------------------------------------------------------------- slash commands
async def test_slash_command_private_lookup_shared_in_channel_and_help(slack: Harness) -> None:
    """A lookup answers privately (fifty students asking must not flood the channel);
    its "Share in channel" button posts the same answer publicly."""
    ids = await slack.command("papers battle")
    reply = await slack.reply_to(ids)
    assert reply["response_type"] == "ephemeral"
    shown = texts(reply["blocks"])
    assert "battle papers" in shown and "```" in shown  # a header and a monospace table
    assert reply["blocks"][0]["type"] == "header"
    actions = next(b for b in reply["blocks"] if b["type"] == "actions")
    share = next(e for e in actions["elements"] if e["value"].startswith("share:"))
    assert not slack.fake.of("chat.postMessage")  # nothing public yet
    status, _ = await slack.interact(
        {
            "type": "block_actions",
            "team": {"id": TEAM},
            "user": {"id": "UALICE", "username": "alice", "team_id": TEAM},
            "channel": {"id": "CGENERAL", "name": "general"},
            "container": {"type": "message", "channel_id": "CGENERAL", "is_ephemeral": True},
            "trigger_id": "trig-share-1",
            "response_url": slack.fake.response_url(),
            "actions": [share | {"block_id": actions.get("block_id"), "action_ts": "1"}],
        }
    )
    assert status == 200
    msg = await slack.fake.wait_for("chat.postMessage", lambda a: a["channel"] == "CGENERAL")
    shown = texts(msg["blocks"])
    assert "battle papers" in shown and "(shared by Alice Chen)" in shown
    assert msg["blocks"][0]["type"] == "header"
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in msg["blocks"])

    for text in ("", "help"):  # `/course` alone is help
        ids = await slack.command(text)
        reply = await slack.reply_to(ids)
        assert reply["response_type"] == "ephemeral"
        assert "You are Alice Chen (student)" in texts(reply["blocks"])
        assert "rank standard" in texts(reply["blocks"])


async def test_personal_data_is_ephemeral(slack: Harness) -> None:
    ids = await slack.command("whoami")
    reply = await slack.reply_to(ids)
    assert reply["response_type"] == "ephemeral"
    assert "Alice Chen" in texts(reply["blocks"]) and "slack: UALICE" in texts(reply["blocks"])
    assert not slack.fake.of("chat.postMessage")  # nothing public


async def test_unbound_workspace_and_slack_markup(slack: Harness) -> None:
    ids = await slack.command("papers", team="T999")
    reply = await slack.reply_to(ids)
    assert "is not connected to a course" in reply["text"]
    assert "coursebot course bind" in reply["text"] and "T999" in reply["text"]

    # Slack wraps emails in <mailto:...>; the core sees the plain address. The slash
    # command carries the profile email (users.info: zoe@example.edu in the fake), which
    # Slack vouches for: it is not Zoe's roster email, so nothing is linked.
    line = "register <mailto:zoe.williams@unc.edu|zoe.williams@unc.edu>"
    reply = await slack.reply_to(await slack.command(line, user="UZOE"))
    assert "Your Slack profile email is zoe@example.edu, not zoe.williams@unc.edu" in reply["text"]

    # A message to the bot carries the profile email (users.info; zoe@example.edu in the
    # fake): Slack vouches for it, so it must be on Zoe's roster entry (an alias here).
    async def dm(text: str, n: int) -> str:
        event = {"type": "message", "channel": "DUZOE", "channel_type": "im", "user": "UZOE"}
        seen = len(slack.fake.calls)
        await slack.event(event | {"text": text, "ts": f"1700000200.00000{n}"}, f"EvReg{n}")
        got = await slack.fake.wait_for(
            "chat.postEphemeral", lambda a: a["channel"] == "DUZOE", after=seen
        )
        return texts(got["blocks"])

    out = await dm("register", 1)
    assert "Your Slack profile email zoe@example.edu is not on the roster" in out
    async with slack.bot.app.db.transaction() as s:
        zoe = await s.scalar(select(Person).where(Person.email == "zoe.williams@unc.edu"))
        assert zoe is not None
        zoe.email_aliases = ["zoe@example.edu"]
    assert "Welcome, Zoe Williams!" in await dm("register", 2)
    # ...and `/course register` alone does the same from the slash command.
    reply = await slack.reply_to(await slack.command("register", user="UZOE"))
    assert "already registered as Zoe Williams" in reply["text"] or "Welcome" in reply["text"]


async def test_button_press_pages_through_papers(slack: Harness) -> None:
    msg = await slack.reply_to(await slack.command("papers"))
    assert "(page 1 of 3)" in texts(msg["blocks"])
    actions = next(b for b in msg["blocks"] if b["type"] == "actions")
    button = actions["elements"][0]
    assert button["value"].startswith("papers.page:")
    url = slack.fake.response_url()
    status, _ = await slack.interact(
        {
            "type": "block_actions",
            "team": {"id": TEAM},
            "user": {"id": "UALICE", "username": "alice", "team_id": TEAM},
            "channel": {"id": "CGENERAL", "name": "general"},
            "container": {"type": "message", "channel_id": "CGENERAL", "is_ephemeral": True},
            "trigger_id": "trig-button-1",
            "response_url": url,
            "actions": [button | {"block_id": actions.get("block_id"), "action_ts": "1"}],
        }
    )
    assert status == 200
    reply = await slack.fake.wait_response(lambda r: r["_url"] == url)
    assert "(page 2 of 3)" in texts(reply["blocks"]) and "MViTv2" in texts(reply["blocks"])


# ----------------------------------------------------------------------------- modals
def submission(view: dict[str, Any], values: dict[str, Any], trigger: str) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": TEAM},
        "user": {"id": "UALICE", "username": "alice", "team_id": TEAM},
        "trigger_id": trigger,
        "view": view | {"id": "V1", "hash": "h", "state": {"values": values}},
    }


def selects(papers: list[int]) -> dict[str, Any]:
    return {
        f"rank.{i}": {"paper": {"type": "static_select", "selected_option": {"value": str(p)}}}
        for i, p in enumerate(papers, 1)
    }


async def test_rankings_modal_saves_a_ranking(slack: Harness) -> None:
    await slack.command("rank standard")
    opened = await slack.fake.wait_for("views.open")
    view = opened["view"]
    assert view["callback_id"] == bk.RANK_CALLBACK and len(view["title"]["text"]) <= 24
    inputs = [b for b in view["blocks"] if b["type"] == "input"]
    assert len(inputs) == 7  # one select per rank position
    labels = [o["text"]["text"] for o in inputs[0]["element"]["options"]]
    assert "#5 SlowFast Networks for Video Recognition" in labels
    assert not any(label.startswith("#9 ") for label in labels)  # battle papers are not offered

    # A wrong list is refused inside the modal, and nothing is stored.
    status, body = await slack.interact(submission(view, selects([5, 5, 6, 7, 8, 13, 14]), "t1"))
    assert status == 200
    answer = json.loads(body)
    assert answer["response_action"] == "errors" and "more than once" in answer["errors"]["rank.1"]

    order = [5, 6, 7, 8, 13, 14, 15]
    status, body = await slack.interact(submission(view, selects(order), "t2"))
    assert status == 200 and body == ""  # the modal closes
    note = await slack.fake.wait_for("chat.postEphemeral", lambda a: a["user"] == "UALICE")
    assert "Saved your standard ranking" in texts(note["blocks"])
    async with slack.bot.app.db.session() as s:
        ranking = await s.scalar(select(Ranking).where(Ranking.kind == RankKind.STANDARD))
        assert ranking is not None
        await s.refresh(ranking, ["choices"])
        numbers = [c.paper_id for c in sorted(ranking.choices, key=lambda c: c.rank)]
    assert len(numbers) == 7

    # Next time the modal opens preset to the saved ranking; typed ids work as well.
    n = len(slack.fake.calls)
    await slack.command("rank standard")
    again = await slack.fake.wait_for("views.open", after=n)
    first = next(b for b in again["view"]["blocks"] if b["type"] == "input")
    assert first["element"]["initial_option"]["value"] == "5"
    ids = await slack.command("rank battle 11 12 9")
    assert "Saved your battle ranking" in texts((await slack.reply_to(ids))["blocks"])


async def test_form_button_and_typed_command_open_modals(
    slack: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await slack.command("testoffer")
    msg = await slack.fake.wait_for("chat.postMessage")
    button = next(b for b in msg["blocks"] if b["type"] == "actions")["elements"][0]
    assert button["value"] == "form:testnote:paper=5"
    status, _ = await slack.interact(
        {
            "type": "block_actions",
            "team": {"id": TEAM},
            "user": {"id": "UALICE", "username": "alice", "team_id": TEAM},
            "channel": {"id": "CGENERAL"},
            "container": {"type": "message", "channel_id": "CGENERAL", "is_ephemeral": False},
            "trigger_id": "trig-form",
            "response_url": slack.fake.response_url(),
            "actions": [button],
        }
    )
    assert status == 200
    view = (await slack.fake.wait_for("views.open"))["view"]
    assert view["blocks"][0]["block_id"] == "f.text" and view["blocks"][0]["element"]["multiline"]

    def typed(text: str) -> dict[str, Any]:
        return {"f.text": {"value": {"type": "plain_text_input", "value": text}}}

    status, body = await slack.interact(submission(view, typed("short"), "t3"))
    assert json.loads(body)["errors"]["f.text"].startswith(
        "`text` needs at least 10 visible characters"
    )
    status, body = await slack.interact(submission(view, typed("SlowFast is a neat idea"), "t4"))
    assert body == ""
    note = await slack.fake.wait_for("chat.postEphemeral")
    assert "noted on #5: SlowFast is a neat idea" in texts(note["blocks"])

    # Typing the command without its long text opens the same form as a modal.
    n = len(slack.fake.calls)
    await slack.command("testnote 6")
    view = (await slack.fake.wait_for("views.open", after=n))["view"]
    assert view["callback_id"] == bk.COMMAND_CALLBACK
    # A submission slower than the ack budget: the modal closes, the answer follows.
    monkeypatch.setattr("bot.slack.listeners.interactions.ACK_BUDGET", 0.0)
    status, body = await slack.interact(submission(view, typed('it\'s a "fine" paper'), "t5"))
    assert status == 200 and body == ""
    note = await slack.fake.wait_for(
        "chat.postEphemeral", lambda a: "#6" in texts(a["blocks"]), after=n
    )
    assert 'noted on #6: it\'s a "fine" paper' in texts(note["blocks"])


# ----------------------------------------------------------------------------- reactions, retries
async def recorded_action(slack: Harness, msg: dict[str, Any]) -> str | None:
    """The action a posted message's reactions run, as the bot recorded it."""
    from db.models import MessageRef

    ref = f"{msg['channel']}:{msg['ts']}"
    for _ in range(100):
        async with slack.bot.app.db.session() as s:
            spec = await s.scalar(select(MessageRef.reactions).where(MessageRef.ref == ref))
        if spec:
            return str(spec["action"])
        await asyncio.sleep(0.05)
    return None


def reaction(kind: str, name: str, msg: dict[str, Any], user: str = "UALICE") -> dict[str, Any]:
    return {
        "type": kind,
        "user": user,
        "reaction": name,
        "item_user": "UBOT",
        "item": {"type": "message", "channel": msg["channel"], "ts": msg["ts"]},
        "event_ts": "1700000001.000001",
    }


async def test_reactions_vote_and_retries_never_count_twice(slack: Harness) -> None:
    await slack.command("testpoll")
    msg = await slack.fake.wait_for("chat.postMessage")
    assert await recorded_action(slack, msg) == "test.vote"  # kept with its ref
    await slack.fake.wait_for("reactions.add", lambda a: a["name"] == "b")
    assert [a["name"] for a in slack.fake.of("reactions.add")] == ["a", "b"]

    assert await slack.event(reaction("reaction_added", "a", msg), "Ev1") == 200
    note = await slack.fake.wait_for("chat.postEphemeral")
    assert "vote 🅰️ on b1" in texts(note["blocks"]) and note["user"] == "UALICE"
    assert slack.votes == [(("b1",), "🅰️")]

    # Slack's retry of the same event, and a plain duplicate delivery: neither acts again.
    assert await slack.event(reaction("reaction_added", "a", msg), "Ev1", retry=1) == 200
    assert await slack.event(reaction("reaction_added", "a", msg), "Ev1") == 200
    # The bot's own reactions and other emojis are not votes.
    await slack.event(reaction("reaction_added", "b", msg, user="UBOT"), "Ev2")
    await slack.event(reaction("reaction_added", "eyes", msg), "Ev3")

    # After a restart (a fresh memory) the poll is recognised from its record.
    slack.bot.core.reaction_log = ReactionLog()
    await slack.event(reaction("reaction_removed", "a", msg), "Ev4")
    await slack.fake.wait_for("chat.postEphemeral", lambda a: "vote -🅰️" in texts(a["blocks"]))
    await slack.event(reaction("reaction_added", "b::skin-tone-2", msg, user="UBOB"), "Ev5")
    await slack.fake.wait_for("chat.postEphemeral", lambda a: a["user"] == "UBOB")
    assert slack.votes == [(("b1",), "🅰️"), (("b1",), "-🅰️"), (("b1",), "🅱️")]
    assert slack.fake.of("conversations.history") == []  # never read back from Slack


async def test_unsigned_and_stale_requests_are_rejected(slack: Harness) -> None:
    body = command_body("papers", response_url=slack.fake.response_url())
    resp = await slack.http.post(slack.url, data=body, headers={"Content-Type": FORM})
    assert resp.status == 401
    stale = slack.signer.headers(body, FORM, age=301 + 300)
    resp = await slack.http.post(slack.url, data=body, headers=stale)
    assert resp.status == 401
    forged = Signer("not-the-secret").headers(body, FORM)
    resp = await slack.http.post(slack.url, data=body, headers=forged)
    assert resp.status == 401
    tampered = slack.signer.headers(body, FORM)
    resp = await slack.http.post(slack.url, data=body + "x", headers=tampered)
    assert resp.status == 401
    assert not slack.fake.responses and not slack.fake.of("chat.postMessage")

    # Slack's check of the request URL, signed, is answered with its challenge.
    challenge = json.dumps({"type": "url_verification", "challenge": "c-42", "token": "x"})
    resp = await slack.post(challenge, JSON)
    assert resp.status == 200 and "c-42" in await resp.text()


# ----------------------------------------------------------------------------- files and the outbox
async def test_file_replies_use_files_upload_v2(slack: Harness) -> None:
    await slack.command("testupload")
    done = await slack.fake.wait_for("files.completeUploadExternal")
    assert done["channel_id"] == "CGENERAL"
    assert b"\x89PNG fake" in slack.fake.uploads.values()
    # An image carries words for screen readers (its description as Slack's alt text).
    (url,) = slack.fake.of("files.getUploadURLExternal")
    assert url["alt_txt"] == "votes per side"

    # `assign export` (staff, ephemeral): its CSV/MD/HTML go to the caller's DM.
    n = len(slack.fake.calls)
    ids = await slack.command("assign", user="gedas")
    await slack.reply_to(ids)
    ids = await slack.command("assign export", user="gedas")
    reply = await slack.reply_to(ids)
    assert "assignment" in reply["text"]
    assert "3 files sent to you in a direct message" in texts(reply["blocks"])
    done = await slack.fake.wait_for("files.completeUploadExternal", after=n)
    assert done["channel_id"] == "DUGEDAS"
    titles = [f["title"] for f in json.loads(done["files"])]
    assert titles == [f"comp790-23f-assignment.{x}" for x in ("csv", "md", "html")]
    uploaded = list(slack.fake.uploads.values())
    assert any(data.startswith(b"Date,Paper,Slot,Presenters") for data in uploaded)
    assert any(data.startswith(b"<table>") for data in uploaded)


async def test_outbox_posts_edits_threads_and_dms(slack: Harness) -> None:
    bot, fake = slack.bot, slack.fake
    async with bot.app.db.session() as s:
        course_id = await s.scalar(select(Course.id))
    assert course_id is not None
    ref = await bot.sender.post(
        course_id, "announcements", Reply(text="Battle starts in **5 min**")
    )
    posted = await fake.wait_for("chat.postMessage")
    assert posted["channel"] == "CANNOUNCE" and "*5 min*" in texts(posted["blocks"])
    assert ref == f"CANNOUNCE:{posted['ts']}"
    await bot.sender.edit(course_id, ref, Reply(text="Battle started"))
    update = await fake.wait_for("chat.update")
    assert update["ts"] == posted["ts"] and "Battle started" in texts(update["blocks"])
    reply_ref = await bot.sender.post(course_id, ref, Reply(text="Group 1: alice, bob"))  # a thread
    in_thread = await fake.wait_for("chat.postMessage", lambda a: a.get("thread_ts"))
    assert in_thread["thread_ts"] == posted["ts"] and reply_ref.endswith(f":{posted['ts']}")

    # A breakout group: a message that mentions its members opens the thread, and what
    # thread() returns posts into it (the timer's warning).
    async with bot.app.db.session() as s:
        alice = await s.scalar(select(Person.id).where(Person.email == "alice.chen@unc.edu"))
    assert alice is not None
    where = await bot.sender.thread(
        course_id, "general", "Group 1 · paper #5", Reply(text="Q?"), [alice]
    )
    opened = await fake.wait_for(
        "chat.postMessage", lambda a: "Group 1 · paper" in texts(a["blocks"])
    )
    assert opened["channel"] == "CGENERAL" and "<@UALICE>" in texts(opened["blocks"])
    assert where == f"CGENERAL:{opened['ts']}"
    await bot.sender.post(course_id, where, Reply(text="5 minutes left"))
    warn = await fake.wait_for("chat.postMessage", lambda a: "5 minutes left" in texts(a["blocks"]))
    assert warn["thread_ts"] == opened["ts"]

    # `rankings remind` DMs every student still missing: the linked Slack ones get it.
    ids = await slack.command("rankings remind", user="gedas")
    await slack.reply_to(ids)
    dm = await fake.wait_for("chat.postMessage", lambda a: a["channel"] == "DUALICE")
    assert "ranking" in texts(dm["blocks"]).lower()
    await fake.wait_for("chat.postMessage", lambda a: a["channel"] == "DUBOB")
    assert {a["users"] for a in fake.of("conversations.open")} >= {"UALICE", "UBOB"}

    # A public channel the bot is not in: it joins and posts.
    fake.fail_once["chat.postMessage"] = "not_in_channel"
    await bot.sender.post(course_id, "general", Reply(text="hello"))
    assert fake.of("conversations.join") == [{"channel": "CGENERAL"}]


async def test_a_discussion_opens_a_thread_per_group_on_slack(slack: Harness) -> None:
    """`discussion start` on Slack: one message per breakout group in #discussions that
    mentions its linked members; its thread gets the question and the timer's warning."""
    bot, fake = slack.bot, slack.fake
    fake.channels["discussions"] = "CDISCUSS"
    await bot.bind_channels()  # as a restart does: channels are bound by id at start
    assert isinstance(bot.app.clock, FixedClock)
    for line in ('discussion add 5 "Why so few channels?"', "discussion accept 5"):
        await slack.reply_to(await slack.command(line, user="gedas"))
    await slack.command("discussion start 5 groups=2 minutes=10", user="gedas")
    started = await fake.wait_for("chat.postMessage", lambda a: "2 groups" in texts(a["blocks"]))
    assert started["channel"] == "CGENERAL"  # the summary where the command was typed
    opened = [
        await fake.wait_for(
            "chat.postMessage",
            lambda a, n=n: (
                a["channel"] == "CDISCUSS" and f"Group {n} · paper #5" in texts(a["blocks"])
            ),
        )
        for n in (1, 2)
    ]
    assert all("Why so few channels?" in texts(o["blocks"]) for o in opened)
    mentioned = " ".join(texts(o["blocks"]) for o in opened)
    assert "<@UALICE>" in mentioned and "<@UBOB>" in mentioned  # the linked students
    assert "<@UGEDAS>" not in mentioned  # staff are not in groups

    bot.app.clock.advance(timedelta(minutes=5))
    await bot.sweeper.tick()
    for o in opened:
        warn = await fake.wait_for(
            "chat.postMessage",
            lambda a, ts=o["ts"]: (
                a.get("thread_ts") == ts and "5 minutes left" in texts(a["blocks"])
            ),
        )
        assert warn["channel"] == "CDISCUSS"


async def test_direct_message_with_a_file_attaches_it(slack: Harness) -> None:
    slack.fake.downloads["F9"] = b"my critique"
    event = {
        "type": "message",
        "subtype": "file_share",
        "channel": "DUALICE",
        "channel_type": "im",
        "user": "UALICE",
        "text": "",
        "ts": "1700000100.000001",
        "files": [
            {
                "id": "F9",
                "name": "critique.pdf",
                "size": 11,
                "mimetype": "application/pdf",
                "url_private_download": f"{slack.fake.base}/files/F9",
            }
        ],
    }
    assert await slack.event(event, "EvFile") == 200
    got = await slack.fake.wait_for("chat.postMessage", lambda a: a["channel"] == "DUALICE")
    assert "critique.pdf" in texts(got["blocks"])
    ids = await slack.command("testattach")
    reply = await slack.reply_to(ids)
    assert "attached: critique.pdf:my critique" in reply["text"]

    # A direct message is a command too (its answer in the DM).
    event = {
        "type": "message",
        "channel": "DUALICE",
        "channel_type": "im",
        "user": "UALICE",
        "text": "whoami",
        "ts": "1700000101.000001",
    }
    await slack.event(event, "EvDM")
    eph = await slack.fake.wait_for("chat.postEphemeral", lambda a: a["channel"] == "DUALICE")
    assert "Alice Chen" in texts(eph["blocks"])

    # A command whose form was not typed: no trigger in a DM, so a button opens the modal.
    event = {
        "type": "message",
        "channel": "DUALICE",
        "channel_type": "im",
        "user": "UALICE",
        "text": "testnote 7",
        "ts": "1700000101.000002",
    }
    await slack.event(event, "EvDMForm")
    eph = await slack.fake.wait_for("chat.postEphemeral", lambda a: "form" in a["text"])
    fill = next(b for b in eph["blocks"] if b["type"] == "actions")["elements"][0]
    assert fill["action_id"] == bk.FILL_ACTION and fill["value"] == "testnote 7"
    await slack.interact(
        {
            "type": "block_actions",
            "team": {"id": TEAM},
            "user": {"id": "UALICE", "username": "alice", "team_id": TEAM},
            "channel": {"id": "DUALICE"},
            "container": {"type": "message", "channel_id": "DUALICE", "is_ephemeral": True},
            "trigger_id": "trig-fill",
            "response_url": slack.fake.response_url(),
            "actions": [fill],
        }
    )
    view = (await slack.fake.wait_for("views.open"))["view"]
    assert view["callback_id"] == bk.COMMAND_CALLBACK
    assert json.loads(view["private_metadata"])["line"] == "testnote 7"

    # So is a mention in a channel, answered in the thread it came from.
    mention = {
        "type": "app_mention",
        "user": "UBOB",
        "channel": "CGENERAL",
        "text": "<@UBOT> papers battle",
        "ts": "1700000102.000002",
        "thread_ts": "1700000102.000001",
    }
    await slack.event(mention, "EvMention")
    # A lookup answers the one who asked, privately, in the thread it came from.
    posted = await slack.fake.wait_for(
        "chat.postEphemeral", lambda a: a["channel"] == "CGENERAL" and a["user"] == "UBOB"
    )
    assert posted["thread_ts"] == "1700000102.000001" and "battle papers" in texts(posted["blocks"])


# ----------------------------------------------------------------------------- Socket Mode
async def test_socket_mode_round_trip_through_run_slack(
    app: App, fake: FakeSlack, settings: Settings
) -> None:
    """``run_slack`` with an app token: Socket Mode against the fake's websocket."""
    await bind_workspace(app)
    bot_settings = slack_settings(settings, fake, app_token="xapp-1-test")
    assert slack_mode(bot_settings.slack) == ("socket", None)
    stop = asyncio.Event()
    task = asyncio.create_task(run_slack(bot_settings, stop=stop))
    try:
        url = fake.response_url()
        payload = command_payload("whoami", response_url=url, trigger_id="trig-socket")
        ack = await fake.push(
            {
                "envelope_id": "env-1",
                "type": "slash_commands",
                "payload": payload,
                "accepts_response_payload": True,
            }
        )
        assert ack == {"envelope_id": "env-1"}  # acknowledged at once; the work continues
        reply = await fake.wait_response(lambda r: r["_url"] == url)
        assert "Alice Chen" in texts(reply["blocks"])
        connect = next(c for c in fake.calls if c.method == "apps.connections.open")
        assert connect.token == "xapp-1-test"

        # An event delivered twice (Socket Mode retries carry retry_attempt > 0).
        event = json.loads(
            event_body(
                {
                    "type": "app_mention",
                    "user": "UALICE",
                    "channel": "CGENERAL",
                    "text": "<@UBOT> officehours",
                    "ts": "1700000200.000001",
                },
                "EvSock",
            )
        )
        for attempt in (0, 1):
            ack = await fake.push(
                {
                    "envelope_id": f"env-ev{attempt}",
                    "type": "events_api",
                    "payload": event,
                    "retry_attempt": attempt,
                    "retry_reason": "timeout" if attempt else "",
                }
            )
            assert ack["envelope_id"] == f"env-ev{attempt}"
        await fake.wait_for("chat.postEphemeral", lambda a: a["channel"] == "CGENERAL")
        await asyncio.sleep(0.3)
        assert len(fake.of("chat.postEphemeral")) == 1  # answered once (privately: a lookup)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0


async def test_run_slack_refuses_incomplete_settings(
    settings: Settings, fake: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    no_token = settings.model_copy(update={"slack": SlackSettings(_env_file=None)})
    assert await run_slack(no_token) == 2
    assert "SLACK_BOT_TOKEN" in capsys.readouterr().err
    http_no_secret = settings.model_copy(
        update={"slack": SlackSettings(bot_token="xoxb-1", _env_file=None)}
    )
    assert await run_slack(http_no_secret) == 2
    assert "SLACK_SIGNING_SECRET" in capsys.readouterr().err
    revoked = settings.model_copy(
        update={
            "slack": SlackSettings(
                bot_token="xoxb-revoked", app_token="xapp-1", api_url=fake.api_url, _env_file=None
            )
        }
    )
    assert await run_slack(revoked) == 1
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in capsys.readouterr().err


def test_mode_is_chosen_from_the_tokens() -> None:
    def mode(**kw: Any) -> str | None:
        return slack_mode(SlackSettings(_env_file=None, **kw))[0]

    assert mode() is None
    assert mode(bot_token="xoxb-1") is None  # HTTP needs the signing secret
    assert mode(bot_token="xoxb-1", signing_secret="s") == "http"
    assert mode(bot_token="xoxb-1", app_token="xapp-1") == "socket"
    assert mode(bot_token="xoxb-1", app_token="xoxb-wrong") is None


# ----------------------------------------------------------------------------- rendering (pure)
def test_long_replies_respect_block_kit_limits() -> None:
    rows = [[str(i), "x" * 60] for i in range(400)]
    reply = Reply(
        title="T" * 200,
        text="<script> & **bold** [site](https://example.edu)",
        sections=[Section("Fields", "", [(f"k{i}", "v") for i in range(23)])]
        + [Section(f"Week {i}", "body") for i in range(60)],
        tables=[Table(["#", "Title"], rows)],
        buttons=[Button(f"b{i}", "x", (str(i),)) for i in range(30)],
        tone=Tone.SUCCESS,
    )
    blocks = bk.reply_blocks(reply)
    messages = bk.split_messages(blocks)
    assert len(messages) > 1 and all(len(m) <= 50 for m in messages)
    assert len(blocks[0]["text"]["text"]) <= 150
    body = blocks[1]["text"]["text"]
    assert body.startswith(":white_check_mark: &lt;script&gt; &amp; *bold*")
    assert "<https://example.edu|site>" in body
    for b in blocks:
        assert len(b.get("text", {}).get("text", "")) <= 3000
        assert len(b.get("fields", [])) <= 10
        if b["type"] == "actions":
            assert len(b["elements"]) <= 25
    table_text = "".join(
        b["text"]["text"] for b in blocks if "```" in b.get("text", {}).get("text", "")
    )
    assert table_text.count("x" * 60) == 400  # every row is there, split across blocks
    assert len(bk.fallback_text(reply)) <= 3000


def test_emoji_names_and_text_from_slack() -> None:
    assert bk.emoji_name("🅰️") == "a" and bk.emoji_name("🅱") == "b" and bk.emoji_name("👍") == "+1"
    assert bk.emoji_for("a", ("🅰️", "🅱️")) == "🅰️"
    assert bk.emoji_for("+1::skin-tone-4", ("👍",)) == "👍"
    assert bk.emoji_for("thumbsup", ("👍",)) == "👍"
    assert bk.emoji_for("eyes", ("🅰️",)) is None
    assert (
        unescape("register link <@U123|zoe> <mailto:z@u.edu|z@u.edu>")
        == "register link U123 z@u.edu"
    )
    assert unescape("note “hello” &amp; <#C1|general>") == 'note "hello" & general'


def test_which_typed_commands_open_their_form() -> None:
    reg = build_registry([])
    cmd = reg.get("testnote")
    assert missing_form_options(cmd, []) == ["text"]
    assert missing_form_options(cmd, ["5"]) == ["text"]
    assert missing_form_options(cmd, ["5", "text=hello there"]) == []
    assert missing_form_options(cmd, ["5", "--text", "hi"]) == []
    assert missing_form_options(cmd, ["5", "a long note"]) == []  # typed positionally
    assert missing_form_options(reg.get("papers"), ["battle"]) == []


async def test_posts_are_paced_per_channel() -> None:
    pacer = ChannelPacer(0.2)
    started = time.monotonic()
    times: dict[str, list[float]] = {"C1": [], "C2": []}

    async def post(channel: str) -> None:
        async with pacer.turn(channel):
            times[channel].append(time.monotonic() - started)

    await asyncio.gather(*(post(c) for c in ("C1", "C1", "C1", "C2")))
    assert times["C1"][2] >= 0.39  # three posts in one channel: ~0.2 s apart
    assert times["C2"][0] < 0.1  # another channel does not wait


async def test_a_battle_poll_on_slack_takes_justified_votes(slack: Harness, app: App) -> None:
    """The real battle poll: reactions become pending votes (the justification is asked
    privately), the typed vote with a reason counts, and only the count is shown."""
    from sqlalchemy import select

    from db.models import BattleVote

    await publish_groups(app, QUIET_GROUPS)  # a battle runs once it has sides
    await slack.command("battle open 1", user="gedas")
    poll = await slack.fake.wait_for(
        "chat.postMessage", lambda a: "which paper should be accepted" in texts(a.get("blocks", []))
    )
    assert await recorded_action(slack, poll) == "battle.react"  # kept with its ref
    await slack.fake.wait_for("reactions.add", lambda a: a["name"] == "b")

    assert await slack.event(reaction("reaction_added", "a", poll), "EvB1") == 200
    note = await slack.fake.wait_for(
        "chat.postEphemeral", lambda a: "counts once you say why" in texts(a["blocks"])
    )
    assert note["user"] == "UALICE"
    async with app.db.session() as s:
        vote = await s.scalar(select(BattleVote))
    assert vote is not None and vote.side == "A" and vote.justification is None  # pending

    ids = await slack.command('battle vote 1 A "Temporal shift is free at inference time."')
    assert "counts. You can change" in texts((await slack.reply_to(ids))["blocks"])
    await flush_edits(slack.bot.app)  # poll edits are coalesced, at most one a second
    await slack.fake.wait_for(
        "chat.update",
        lambda a: "Votes so far: 1; 1 with a justification" in texts(a.get("blocks", [])),
    )
    # The retry of the reaction event changes nothing.
    assert await slack.event(reaction("reaction_added", "a", poll), "EvB1", retry=1) == 200
    async with app.db.session() as s:
        votes = list(await s.scalars(select(BattleVote)))
    assert [(v.side, v.justification) for v in votes] == [
        ("A", "Temporal shift is free at inference time.")
    ]
