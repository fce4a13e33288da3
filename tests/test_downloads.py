"""Downloads that cannot be turned against the bot (docs/files.md): files come only from
the platform's own file hosts (HTTPS; a local fake only on the configured loopback
origin), redirects included, the token only to Slack's file host; declared sizes are
checked before a request and bytes counted during it; names never become paths; what a
file is comes from its bytes; images are refused by their pixel count before anything
is decoded; and every command that takes a file takes it from Discord, Slack and the
terminal alike. Local fakes on 127.0.0.1 only."""

from __future__ import annotations

import resource
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import commands.critiques  # declares the critique commands
import commands.projects  # noqa: F401  (declares the project commands)
from bot.app import App
from bot.settings import Settings
from commands.attachments import (
    DISCORD_FILE_HOSTS,
    SLACK_FILE_HOSTS,
    download,
    file_origins,
    path_in,
    read_bytes,
    safe_name,
    sniff,
)
from commands.context import Attachment, Caller, Request, Where
from commands.errors import InvalidInput
from db.models import Critique, GpuJob, Platform, ProjectSubmission
from gpu_queue.demos import DemoError
from gpu_queue.demos.images import MAX_PIXELS, open_image
from tests.http_fakes import FileHost, file_host
from tests.slack_fakes import FakeSlack
from tests.test_slack import TEAM, Harness, running_slack, texts

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
MB = 1024 * 1024
DISCORD = file_origins(DISCORD_FILE_HOSTS)


def req(user: str, *atts: Attachment) -> Request:
    return Request(
        Platform.TERMINAL,
        "default",
        Caller(Platform.TERMINAL, user, user),
        Where("general"),
        attachments=atts,
    )


def local(path: Path) -> Attachment:
    return Attachment(path.name, path=path, size=path.stat().st_size)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


async def refused(att: Attachment, max_bytes: int = MB) -> str:
    with pytest.raises(InvalidInput) as exc:
        await read_bytes(att, max_bytes)
    return str(exc.value)


def png(width: int, height: int) -> bytes:
    """A 1-bit grayscale PNG of ``width``×``height`` black pixels, written row by row (a
    20000×20000 one is ~50 KB on disk and 400 megapixels once decoded)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    z = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------- hosts
async def test_only_the_platforms_file_hosts_over_https() -> None:
    for url in (
        "https://evil.example.com/critique.pdf",
        "https://cdn.discordapp.com.evil.example.com/a.pdf",
        "http://cdn.discordapp.com/attachments/1/2/a.pdf",  # not HTTPS
        "https://user:pw@cdn.discordapp.com/attachments/1/2/a.pdf",
        "file:///etc/passwd",
        "ftp://cdn.discordapp.com/a.pdf",
    ):
        text = await refused(Attachment("a.pdf", url=url, origins=DISCORD))
        assert "was not downloaded" in text and "cdn.discordapp.com" in text, (url, text)
    # No origins at all (an adapter that did not say): a URL is never fetched.
    text = await refused(Attachment("a.pdf", url="https://cdn.discordapp.com/a/b/a.pdf"))
    assert "was not downloaded" in text
    # A test origin counts only on loopback.
    assert file_origins(SLACK_FILE_HOSTS, "http://10.0.0.5:3000/api/") == (
        "https://files.slack.com",
    )
    assert file_origins(SLACK_FILE_HOSTS, "https://slack.com/api/") == ("https://files.slack.com",)
    assert file_origins(DISCORD_FILE_HOSTS, "http://localhost:8000/x")[-1] == (
        "http://localhost:8000"
    )


async def test_a_loopback_url_that_is_not_the_configured_test_host_is_refused() -> None:
    async with file_host(FileHost(files={"a.pdf": PDF})) as other:
        configured = file_origins(DISCORD_FILE_HOSTS, "http://127.0.0.1:1/")  # another port
        text = await refused(Attachment("a.pdf", url=f"{other.base}/a.pdf", origins=configured))
        assert "was not downloaded" in text and "127.0.0.1" in text
        assert other.seen == []  # never asked
        # The configured one is fetched.
        ok = file_origins(DISCORD_FILE_HOSTS, other.base)
        assert (
            await read_bytes(Attachment("a.pdf", url=f"{other.base}/a.pdf", origins=ok), MB) == PDF
        )
        assert other.seen == [("/a.pdf", None)]  # and no token goes to Discord's CDN


async def test_redirects_stay_on_the_file_host_and_the_token_goes_nowhere_else() -> None:
    async with file_host(FileHost(files={"b.pdf": PDF})) as away, file_host() as home:
        home.files["ok.pdf"] = PDF
        home.redirects["moved.pdf"] = f"{home.base}/ok.pdf"  # same host: followed
        home.redirects["off.pdf"] = f"{away.base}/b.pdf"  # another host: refused
        origins = (home.base,)
        got = await download(
            f"{home.base}/moved.pdf",
            "m.pdf",
            MB,
            origins=origins,
            token="xoxb-1",
            token_origins=origins,
        )
        assert got == PDF
        assert home.seen == [("/moved.pdf", "Bearer xoxb-1"), ("/ok.pdf", "Bearer xoxb-1")]
        with pytest.raises(InvalidInput, match="redirected to"):
            await download(f"{home.base}/off.pdf", "off.pdf", MB, origins=origins, token="xoxb-1")
        assert away.seen == []
        # Both hosts allowed, the token for one only: the other never sees it.
        got = await download(
            f"{home.base}/off.pdf",
            "off.pdf",
            MB,
            origins=(home.base, away.base),
            token="xoxb-1",
            token_origins=(home.base,),
        )
        assert got == PDF and away.seen == [("/b.pdf", None)]


# ----------------------------------------------------------------------------- sizes
async def test_a_declared_size_over_the_cap_is_refused_before_any_request() -> None:
    async with file_host(FileHost(files={"big.pdf": PDF})) as host:
        att = Attachment("big.pdf", url=f"{host.base}/big.pdf", size=30 * MB, origins=(host.base,))
        text = await refused(att, 20 * MB)
        assert "larger than 20 MB" in text and "30.0 MB" in text
        with pytest.raises(InvalidInput, match="larger than 1 MB"):
            await download(
                f"{host.base}/big.pdf", "big.pdf", MB, origins=(host.base,), declared_size=2 * MB
            )
        assert host.seen == []


async def test_a_server_that_lies_about_the_size_is_stopped_at_the_cap() -> None:
    served = PDF + b"x" * (5 * MB)
    async with file_host(FileHost(files={"lie.pdf": served}, chunked=True)) as host:
        # The platform says 1 KB; the server streams 5 MB with no length: the bytes are
        # counted and the download stops at the cap.
        att = Attachment("lie.pdf", url=f"{host.base}/lie.pdf", size=1024, origins=(host.base,))
        text = await refused(att, MB)
        assert "larger than 1 MB" in text and "stopped" in text
        # With a Content-Length over the cap: refused from the header, body unread.
        host.chunked = False
        text = await refused(att, MB)
        assert "larger than 1 MB" in text and "5.0 MB" in text
        # Under the cap it is read whole.
        assert await read_bytes(att, 6 * MB) == served


async def test_an_empty_file_is_reported_as_empty(app: App, tmp_path: Path) -> None:
    empty = write(tmp_path, "critique.pdf", b"")
    from tests.test_critiques import BEFORE_5, A, Q

    app.clock.at = BEFORE_5  # type: ignore[attr-defined]
    r = await app.core.handle(
        req("alice", local(empty)), "critique submit", {"paper": 5, "question": Q, "answer": A}
    )
    assert r.is_error and "`critique.pdf` is empty" in r.text and "not a PDF" not in r.text
    async with file_host(FileHost(files={"e.pdf": b""})) as host:
        att = Attachment("e.pdf", url=f"{host.base}/e.pdf", origins=(host.base,))
        assert "`e.pdf` is empty" in await refused(att)


# ----------------------------------------------------------------------------- names
def test_names_never_become_paths(tmp_path: Path) -> None:
    for bad in ("../../etc/passwd", "/etc/passwd", "..", ".", "", "a\0b.pdf", "..\\..\\x.pdf"):
        name = safe_name(bad)
        assert "/" not in name and "\\" not in name and "\0" not in name
        assert not name.startswith(".") and name
        assert path_in(tmp_path, bad).parent == tmp_path
    assert safe_name("my report (v2).pdf") == "my_report_v2_.pdf"
    assert len(safe_name("x" * 300 + ".pdf")) <= 100 and safe_name("x" * 300 + ".pdf").endswith(
        ".pdf"
    )


# ----------------------------------------------------------------------------- content
def test_the_kind_comes_from_the_bytes() -> None:
    assert sniff(PDF) == "pdf"
    assert sniff(png(4, 4)) == "png"
    assert sniff(b"\xff\xd8\xff\xe0\0\x10JFIF") == "jpeg"
    assert sniff(b"GIF89a\x01\0\x01\0") == "gif"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert sniff(b"\0\0\0\x20ftypisom\0\0\x02\0") == "mp4"
    assert sniff(b"\0\0\0\x14ftypqt  \0\0\0\0") == "mov"
    assert sniff(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm") == "webm"
    assert sniff(b"PK\x03\x04 a docx") == "zip"
    assert sniff(b"just some notes\n") == "text"
    assert sniff(b"") is None and sniff(b"\0\x01\x02\xff\xfe") is None


async def test_a_pdf_is_judged_by_its_bytes_not_its_name(app: App, tmp_path: Path) -> None:
    from tests.test_critiques import BEFORE_5, A, Q

    app.clock.at = BEFORE_5  # type: ignore[attr-defined]
    opts = {"paper": 5, "question": Q, "answer": A}
    fake = write(tmp_path, "critique.pdf", png(8, 8))
    r = await app.core.handle(req("alice", local(fake)), "critique submit", opts)
    assert r.is_error and "`critique.pdf` is not a PDF: its content is a PNG image" in r.text
    real = write(tmp_path, "critique.txt", PDF)  # the wrong extension, a real PDF
    r = await app.core.handle(req("alice", local(real)), "critique submit", opts)
    assert not r.is_error, r.text
    async with app.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Critique)) == 1


# ----------------------------------------------------------------------------- images
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    from gpu_queue.demos import classify, cnn

    bomb = png(20_000, 20_000)
    assert len(bomb) < 200_000  # a small file...
    path = write(tmp_path, "bomb.png", bomb)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DemoError) as exc, open_image(bomb, "bomb.png"):
        pass
    assert "400 megapixels" in str(exc.value) and "25 megapixels" in str(exc.value)
    # The worker's own checks, before decoding.
    with pytest.raises(DemoError, match="400 megapixels"):
        cnn.load_image(str(path))
    with pytest.raises(classify.BadMedia, match="400 megapixels"):
        classify.inspect_media(path)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 200 * 1024  # ...that was never decoded (400 MB+)
    # Over the limit but under Pillow's own guard: the size is told exactly.
    side = int((MAX_PIXELS * 1.2) ** 0.5)
    with pytest.raises(DemoError, match=f"{side}×{side} pixels"), open_image(png(side, side)):
        pass
    with open_image(png(64, 48), "ok.png") as im:
        assert im.size == (64, 48)


async def test_gpu_inputs_are_checked_before_anything_is_queued(app: App, tmp_path: Path) -> None:
    bomb = write(tmp_path, "bomb.png", png(20_000, 20_000))
    notes = write(tmp_path, "notes.png", b"my lecture notes, not an image\n")
    pdf = write(tmp_path, "clip.mp4", PDF)
    cases = [
        ("gpu run cnn", bomb, "is an image of 400 megapixels; the limit is 25 megapixels"),
        ("gpu run classify", bomb, "400 megapixels"),
        ("gpu run cnn", notes, "`notes.png` is not an image: its content is plain text"),
        (
            "gpu run classify",
            pdf,
            "`clip.mp4` is neither an image nor a video clip: its content is a PDF",
        ),
    ]
    for line, path, message in cases:
        r = await app.core.handle_text(req("alice", local(path)), line)
        assert r.is_error and message in r.text and r.error_id is None, (line, r.text)
    async with app.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(GpuJob)) == 0


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


def shared(file_id: str, name: str, url: str, size: int) -> dict[str, Any]:
    return {"id": file_id, "name": name, "size": size, "url_private_download": url}


async def test_slack_downloads_are_checked_and_never_leave_the_data_folder(
    slack: Harness, tmp_path: Path
) -> None:
    bot, fake = slack.bot, slack.fake
    fake.downloads["F1"] = PDF
    # A `../` id and name: stored inside the files folder, under a clean name.
    att = await bot.files.download(
        shared("../../../F1", "../../evil.pdf", f"{fake.base}/files/F1", 80)
    )
    assert att.path is not None and att.path.parent == bot.files_dir
    assert att.path.name == "F1-evil.pdf" and att.path.read_bytes() == PDF
    assert {p.parent for p in tmp_path.rglob("*.pdf")} <= {bot.files_dir}
    # Another host, or a loopback port that is not SLACK_API_URL's: no request, no file.
    async with file_host(FileHost(files={"x.pdf": PDF})) as other:
        for url in ("https://evil.example.com/x.pdf", f"{other.base}/x.pdf"):
            with pytest.raises(InvalidInput, match="not the chat platform's file host"):
                await bot.files.download(shared("F2", "x.pdf", url, 80))
        assert other.seen == []  # nor the token
    # Over the cap as declared: refused before the request.
    calls = len(fake.calls)
    with pytest.raises(InvalidInput, match="larger than 50 MB"):
        await bot.files.download(shared("F3", "big.pdf", f"{fake.base}/files/F1", 60 * MB))
    assert len(fake.calls) == calls
    assert sorted(p.name for p in bot.files_dir.iterdir()) == ["F1-evil.pdf"]


async def test_a_refused_slack_file_is_explained(slack: Harness) -> None:
    event = {
        "type": "message",
        "subtype": "file_share",
        "channel": "DUALICE",
        "channel_type": "im",
        "user": "UALICE",
        "text": "",
        "ts": "1700000200.000001",
        "files": [shared("F7", "w.pdf", "https://evil.example.com/w.pdf", 80)],
    }
    assert await slack.event(event, "EvRefused") == 200
    got = await slack.fake.wait_for("chat.postEphemeral", lambda a: a["channel"] == "DUALICE")
    assert "`w.pdf` was not downloaded" in texts(got["blocks"])
    assert not slack.bot.files_dir.exists() or not any(slack.bot.files_dir.iterdir())


async def project_of_two(app: App) -> None:
    for user, line in (("alice", "project create Robo"), ("bob", "project join Robo")):
        r = await app.core.handle_text(req(user), line)
        assert not r.is_error, r.text


async def submitted(app: App) -> bytes | None:
    async with app.db.session() as s:
        sub = await s.scalar(select(ProjectSubmission))
    return None if sub is None else (app.settings.data_dir / sub.path).read_bytes()


async def test_project_submit_with_a_slack_file_share(slack: Harness, app: App) -> None:
    await project_of_two(app)
    slack.fake.downloads["F8"] = PDF + b"write-up"
    event = {
        "type": "message",
        "subtype": "file_share",
        "channel": "DUALICE",
        "channel_type": "im",
        "user": "UALICE",
        "text": "project submit proposal",
        "ts": "1700000300.000001",
        "files": [shared("F8", "w.pdf", f"{slack.fake.base}/files/F8", len(PDF) + 8)],
    }
    assert await slack.event(event, "EvSubmit") == 200
    got = await slack.fake.wait_for("chat.postEphemeral", lambda a: a["channel"] == "DUALICE")
    assert "submitted" in texts(got["blocks"]).lower(), texts(got["blocks"])
    assert await submitted(app) == PDF + b"write-up"


# ----------------------------------------------------------------------------- Discord
async def test_project_submit_with_a_discord_attachment(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """simcord's in-memory CDN served over HTTP on loopback, configured as the Discord
    CDN of the test (DISCORD_CDN_URL): the attachment travels as a URL, as on Discord."""
    import simcord.backend.cdn

    from tests.discord_fakes import discord_world

    await project_of_two(app)
    async with discord_world(app) as w, file_host(FileHost(lookup=w.env.backend.cdn.get)) as cdn:
        monkeypatch.setattr(simcord.backend.cdn, "CDN_BASE", cdn.base)
        monkeypatch.setattr(app.settings.discord, "cdn_url", cdn.base)
        result = await w.alice.slash(
            w.general, "project submit", milestone="proposal", file=("w.pdf", PDF + b"discord")
        )
        shown = "\n".join(
            f"{e.title or ''} {e.description or ''}"
            for m in (result.response, *result.followups)
            if m is not None
            for e in m.embeds
        )
        assert "Could not read" not in shown and "submitted" in shown.lower(), shown
        assert [p for p, _ in cdn.seen] and all(p.startswith("/attachments/") for p, _ in cdn.seen)
        assert await submitted(app) == PDF + b"discord"
        # Without the configured CDN, the same upload is refused, clearly.
        monkeypatch.setattr(app.settings.discord, "cdn_url", None)
        result = await w.alice.slash(
            w.general, "project submit", milestone="final", file=("w.pdf", PDF)
        )
        shown = "\n".join(
            f"{e.title or ''} {e.description or ''}"
            for m in (result.response, *result.followups)
            if m is not None
            for e in m.embeds
        )
        assert "`w.pdf` was not downloaded" in shown, shown
