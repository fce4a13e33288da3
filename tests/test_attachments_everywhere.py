"""Every command that takes a file takes it from every surface (issue #20, point 6):
``critique submit``, ``project submit`` and ``gpu run cnn``, each with a Discord
attachment (real discord.py against simcord, the file served by a local fake of
Discord's CDN), a Slack file share (the production Bolt app over HTTP, its Web API and
file host faked on 127.0.0.1) and the terminal's ``:attach``. The file is stored and the
reply says so.

Bad input on each surface (no file, a download that fails, a file of the wrong type or
too big) is answered privately with what was wrong and what to do, and nothing stored
changes: the rows of critiques, project submissions and GPU jobs and their files, and
the files on disk, are compared before and after."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import App
from bot.settings import Settings
from commands.context import Caller, Request, Where
from db.models import Critique, GpuJob, GpuJobFile, Platform, ProjectSubmission
from tests.conftest import Transcript
from tests.discord_fakes import World, discord_world
from tests.http_fakes import FileHost, file_host
from tests.slack_fakes import FakeSlack
from tests.test_critiques import BEFORE_5, A, Q
from tests.test_discord import message_text
from tests.test_gpu_queue import png
from tests.test_slack import TEAM, Harness, running_slack, texts

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
MB = 1024 * 1024
#: What the fake Discord CDN answers 404 for (an attachment that expired or was deleted).
EXPIRED = "expired-"


# ----------------------------------------------------------------------------- the commands
@dataclass(frozen=True)
class Command:
    """One file-taking command: how each surface sends it and what its success says."""

    key: str
    line: str  # typed: the terminal, a Slack message or slash command
    slash: str  # Discord
    options: dict[str, Any]  # Discord, besides the file
    filename: str
    said: str  # in the reply when the file was taken

    def data(self, tag: bytes) -> bytes:
        return (png(shade=tag[0] % 200) if self.key == "gpu" else PDF) + b"%" + tag

    async def prepare(self, app: App) -> None:
        if self.key == "critique":
            app.clock.at = BEFORE_5  # type: ignore[attr-defined]
        elif self.key == "project":
            for user, line in (("alice", "project create Robo"), ("bob", "project join Robo")):
                r = await app.core.handle_text(terminal(user), line)
                assert not r.is_error, r.text


COMMANDS = {
    "critique": Command(
        "critique",
        f'critique submit 5 "{Q}" "{A}"',
        "critique submit",
        {"paper": 5, "question": Q, "answer": A},
        "critique.pdf",
        "Your critique of #5 SlowFast Networks for Video Recognition was received",
    ),
    "project": Command(
        "project",
        "project submit proposal",
        "project submit",
        {"milestone": "proposal"},
        "w.pdf",
        "Submitted `Robo`'s Project proposal write-up",
    ),
    "gpu": Command(
        "gpu",
        "gpu run cnn",
        "gpu run",
        {"demo": "cnn"},
        "frame.png",
        "(cnn, on `frame.png`) is queued at position 1",
    ),
}


def terminal(user: str) -> Request:
    return Request(Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where())


# ----------------------------------------------------------------------------- what is stored
async def snapshot(app: App) -> dict[str, Any]:
    """Every row a file-taking command writes, and every file it keeps on disk."""
    out: dict[str, Any] = {}
    async with app.db.session() as s:
        for model in (Critique, ProjectSubmission, GpuJob, GpuJobFile):
            cols = [c.key for c in model.__table__.columns]
            rows = await s.scalars(select(model).order_by(model.id))
            out[model.__tablename__] = [tuple(getattr(r, c) for c in cols) for r in rows]
    root = app.settings.data_dir
    out["files"] = {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in ("critiques", "projects")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }
    return out


async def kept(app: App, key: str) -> list[bytes]:
    """The files stored by ``key``'s command (what a student submitted)."""
    root = app.settings.data_dir
    async with app.db.session() as s:
        if key == "critique":
            return [(root / c.file).read_bytes() for c in await s.scalars(select(Critique))]
        if key == "project":
            subs = await s.scalars(select(ProjectSubmission))
            return [(root / p.path).read_bytes() for p in subs]
        files = await s.scalars(select(GpuJobFile).where(GpuJobFile.role == "input"))
        return [f.data for f in files]


# ----------------------------------------------------------------------------- the terminal
async def test_terminal_attach_each_command(
    app: App, transcript: Transcript, tmp_path: Path
) -> None:
    await transcript.say(":as alice")
    for cmd in COMMANDS.values():
        await cmd.prepare(app)
        data = cmd.data(b"terminal " + cmd.key.encode())
        path = tmp_path / cmd.filename
        path.write_bytes(data)
        assert "attached" in await transcript.say(f":attach {path}")
        out = await transcript.say(cmd.line)
        assert cmd.said in out, out
        assert await kept(app, cmd.key) == [data], cmd.key


async def test_terminal_bad_files_are_refused_privately_and_change_nothing(
    app: App, transcript: Transcript, tmp_path: Path
) -> None:
    critique, project, gpu = COMMANDS.values()
    for cmd in (critique, project):
        await cmd.prepare(app)
    await transcript.say(":as alice")
    good = tmp_path / "good.pdf"
    good.write_bytes(PDF)
    for cmd in (critique, project):
        await transcript.say(f":attach {good}")
        assert cmd.said in await transcript.say(cmd.line)
    before = await snapshot(app)
    huge = tmp_path / "huge.pdf"
    with huge.open("wb") as f:  # sparse: 20 MB + 1 byte
        f.write(PDF)
        f.truncate(20 * MB + 1)
    picture = tmp_path / "critique.pdf"
    picture.write_bytes(png())
    notes = tmp_path / "frame.png"
    notes.write_text("my notes, not an image\n")
    cases = [
        (None, project.line, ["Attach the write-up as a PDF", ":attach FILE"]),
        (picture, critique.line, ["`critique.pdf` is not a PDF: its content is a PNG image",
                                  "Export or print your critique to PDF"]),
        (huge, project.line, ["`huge.pdf` is larger than 20 MB, the limit", "compress"]),
        (notes, gpu.line, ["`frame.png` is not an image: its content is plain text",
                           "`gpu run cnn` takes an image"]),
    ]  # fmt: skip
    for path, line, expected in cases:
        if path is not None:
            await transcript.say(f":attach {path}")
        out = await transcript.say(line)
        assert "✗" in out and "only you can see this" in out, out
        for words in expected:
            assert words in out, (words, out)
    assert await snapshot(app) == before


# ----------------------------------------------------------------------------- Discord
@contextlib.asynccontextmanager
async def discord_with_cdn(app: App, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    """The simulated guild, its attachments served over HTTP on loopback by a fake of
    Discord's CDN (DISCORD_CDN_URL); a file named ``expired-…`` answers 404."""
    import simcord.backend.cdn

    async with discord_world(app) as w:

        def lookup(url: str) -> bytes | None:
            return None if EXPIRED in url else w.env.backend.cdn.get(url)

        async with file_host(FileHost(lookup=lookup)) as cdn:
            monkeypatch.setattr(simcord.backend.cdn, "CDN_BASE", cdn.base)
            monkeypatch.setattr(app.settings.discord, "cdn_url", cdn.base)
            yield w
            assert cdn.seen and all(p.startswith("/attachments/") for p, _ in cdn.seen)


def discord_said(result: Any) -> list[tuple[bool, str]]:
    """(private?, text) of each message that answered an interaction."""
    return [
        (m.flags.ephemeral, message_text(m))
        for m in (result.response, *result.followups)
        if m is not None
    ]


@pytest.mark.parametrize("key", list(COMMANDS))
async def test_discord_attachment(app: App, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    cmd = COMMANDS[key]
    await cmd.prepare(app)
    data = cmd.data(b"discord " + key.encode())
    async with discord_with_cdn(app, monkeypatch) as w:
        result = await w.alice.slash(w.general, cmd.slash, **cmd.options, file=(cmd.filename, data))
        said = "\n".join(text for _, text in discord_said(result))
        assert cmd.said in said, said
        assert await kept(app, key) == [data]


async def test_discord_bad_files_are_refused_privately_and_change_nothing(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    critique, project, gpu = COMMANDS.values()
    for cmd in (critique, project):
        await cmd.prepare(app)
    async with discord_with_cdn(app, monkeypatch) as w:
        for cmd in (critique, project):
            result = await w.alice.slash(w.general, cmd.slash, **cmd.options, file=("a.pdf", PDF))
            assert cmd.said in "\n".join(t for _, t in discord_said(result))
        before = await snapshot(app)
        cases = [
            (project, None, ["Attach the write-up as a PDF", "the command's `file` option"]),
            (project, (f"{EXPIRED}w.pdf", PDF + b"gone"),
             [f"Could not fetch `{EXPIRED}w.pdf` from the chat platform (HTTP 404)",
              "Try the upload again"]),
            (gpu, ("frame.png", PDF), ["`frame.png` is not an image: its content is a PDF",
                                       "`gpu run cnn` takes an image"]),
            (critique, ("big.pdf", PDF + b"\0" * (20 * MB)),
             ["`big.pdf` is larger than 20 MB, the limit", "Make the PDF smaller"]),
        ]  # fmt: skip
        for cmd, file, expected in cases:
            extra = {"file": file} if file else {}
            result = await w.alice.slash(w.general, cmd.slash, **cmd.options, **extra)
            said = discord_said(result)
            shown = [text for private, text in said if expected[0] in text]
            assert shown, said
            assert all(private for private, text in said if expected[0] in text), said
            for words in expected:
                assert words in shown[0], (words, shown[0])
            assert not [text for private, text in said if not private and text.strip("…")]
        assert await snapshot(app) == before


# ----------------------------------------------------------------------------- Slack
@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(team_id=TEAM)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def slack(app: App, fake: FakeSlack, settings: Settings) -> AsyncIterator[Harness]:
    """The Slack bot on the real commands (the app's database and data folder)."""
    async with running_slack(app, fake, settings) as harness:
        yield harness


_events = iter(range(1, 1_000_000))


def shared_file(fake: FakeSlack, file_id: str, name: str, data: bytes | None) -> dict[str, Any]:
    """A file as a ``file_share`` message carries it; its bytes on the fake's file host
    (None: not there any more, the host answers 404)."""
    if data is not None:
        fake.downloads[file_id] = data
    return {
        "id": file_id,
        "name": name,
        "size": len(data or b"x"),
        "mimetype": "application/octet-stream",
        "url_private_download": f"{fake.base}/files/{file_id}",
    }


async def share_in_dm(slack: Harness, text: str, files: list[dict[str, Any]]) -> int:
    """Alice shares ``files`` with the bot in a DM, ``text`` (a command, or nothing) with
    them; the index of the fake's calls from which the bot's answers follow."""
    n = next(_events)
    after = len(slack.fake.calls)
    event = {
        "type": "message",
        "subtype": "file_share",
        "channel": "DUALICE",
        "channel_type": "im",
        "user": "UALICE",
        "text": text,
        "ts": f"1700000{n:03d}.000001",
        "files": files,
    }
    assert await slack.event(event, f"EvShare{n}") == 200
    return after


def call_text(args: dict[str, Any]) -> str:
    blocks = args.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return f"{args.get('text') or ''}\n{texts(blocks)}"


async def said_in_dm(
    slack: Harness, needle: str, *, after: int, within: float = 10.0
) -> tuple[str, str]:
    """(method, text) of the bot's first message in Alice's DM that contains ``needle``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        for c in slack.fake.calls[after:]:
            if (
                c.method in ("chat.postMessage", "chat.postEphemeral")
                and c.args.get("channel") == "DUALICE"
                and needle in call_text(c.args)
            ):
                return c.method, call_text(c.args)
        if loop.time() > end:
            seen = [call_text(c.args) for c in slack.fake.calls[after:]]
            raise AssertionError(f"{needle!r} never said in the DM: {seen}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("key", list(COMMANDS))
async def test_slack_file_share_with_the_command(slack: Harness, app: App, key: str) -> None:
    cmd = COMMANDS[key]
    await cmd.prepare(app)
    data = cmd.data(b"slack " + key.encode())
    after = await share_in_dm(slack, cmd.line, [shared_file(slack.fake, "F1", cmd.filename, data)])
    await said_in_dm(slack, cmd.said, after=after)
    assert await kept(app, key) == [data]


@pytest.mark.parametrize("key", list(COMMANDS))
async def test_slack_file_then_the_slash_command(slack: Harness, app: App, key: str) -> None:
    """The file shared first (in a DM), the command typed afterwards as ``/course …``."""
    cmd = COMMANDS[key]
    await cmd.prepare(app)
    data = cmd.data(b"slash " + key.encode())
    after = await share_in_dm(slack, "", [shared_file(slack.fake, "F2", cmd.filename, data)])
    await said_in_dm(slack, f"Got `{cmd.filename}`", after=after)
    reply = await slack.reply_to(await slack.command(cmd.line))
    assert cmd.said in call_text(reply), reply
    assert await kept(app, key) == [data]


async def test_slack_bad_files_are_refused_privately_and_change_nothing(
    slack: Harness, app: App
) -> None:
    critique, project, gpu = COMMANDS.values()
    for cmd in (critique, project):
        await cmd.prepare(app)
        after = await share_in_dm(slack, cmd.line, [shared_file(slack.fake, "F0", "a.pdf", PDF)])
        await said_in_dm(slack, cmd.said, after=after)
    before = await snapshot(app)
    f = slack.fake
    cases: list[tuple[Command, list[dict[str, Any]], list[list[str]]]] = [
        # A file share whose files list is empty: the command has no file.
        (project, [], [["Attach the write-up as a PDF", "On Slack, share the file"]]),
        # The file is gone from Slack's file host (404): said, and the command has none.
        (project, [shared_file(f, "F404", "w.pdf", None)],
         [["Could not fetch `w.pdf` from the chat platform (HTTP 404)", "Try the upload again"],
          ["Attach the write-up as a PDF", "On Slack, share the file"]]),
        (critique, [shared_file(f, "F5", "critique.pdf", png())],
         [["`critique.pdf` is not a PDF: its content is a PNG image",
           "Export or print your critique to PDF"]]),
        (gpu, [shared_file(f, "F6", "frame.png", png() + b"\0" * (10 * MB))],
         [["`frame.png` is larger than 10 MB, the limit", "Send a smaller image"]]),
    ]  # fmt: skip
    for cmd, files, messages in cases:
        after = await share_in_dm(slack, cmd.line, files)
        for expected in messages:
            method, text = await said_in_dm(slack, expected[0], after=after)
            assert method == "chat.postEphemeral", (method, text)
            for words in expected:
                assert words in text, (words, text)
    assert await snapshot(app) == before


async def test_slack_a_deleted_file_is_named_with_what_to_do(slack: Harness, app: App) -> None:
    """A file deleted before the bot fetched it comes as a tombstone (no name, no URL)."""
    cmd = COMMANDS["project"]
    await cmd.prepare(app)
    before = await snapshot(app)
    after = await share_in_dm(slack, cmd.line, [{"id": "F7", "mode": "tombstone"}])
    method, text = await said_in_dm(slack, "deleted", after=after, within=3)
    assert method == "chat.postEphemeral" and "share it again" in text.lower(), text
    assert await snapshot(app) == before
