"""Reading a command's attached file, whichever way the platform hands it over: a local
path (the terminal, Slack's downloaded files) or a URL (Discord's CDN), with a size cap.
Every command that takes a file reads it through :func:`read_attachment` (critiques and
project write-ups: a PDF; GPU jobs: an image or a clip), so a file comes the same way
from the terminal's ``:attach``, a Discord file option and a Slack file share, and is
refused with the same messages.

Downloads cannot be turned against the bot (docs/files.md):

- a URL is fetched only from the platform's own file hosts, the attachment's
  ``origins`` (Discord's CDN, Slack's file host), over HTTPS; plain HTTP only for a
  local fake on loopback that the settings name (tests). A redirect must stay on those
  origins; a bot token goes only to the origins its caller names;
- the size the platform declares is checked before any request, and the bytes are
  counted as they arrive: the download stops at the cap, so a server that lies about
  the size is caught and nothing past the cap is kept;
- what a file is comes from its first bytes (:func:`sniff`), never from its name or
  its declared type; an empty file is reported as empty;
- a file's name (or a platform's file id) never becomes a path (:func:`safe_name`,
  :func:`path_in`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from commands.context import Attachment, Request
from commands.errors import InvalidInput
from db.models import Platform

if TYPE_CHECKING:
    import aiohttp

#: The longest download of an attachment given as a URL.
FETCH_TIMEOUT_S = 30
#: Redirects followed (each one checked like the first URL).
MAX_REDIRECTS = 3
#: Where each platform serves uploaded files (HTTPS only).
DISCORD_FILE_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
SLACK_FILE_HOSTS = ("files.slack.com",)
MB = 1024 * 1024

#: What a file is, from its first bytes: kind → how a message names it.
KINDS = {
    "pdf": "a PDF",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "webp": "a WebP image",
    "bmp": "a BMP image",
    "tiff": "a TIFF image",
    "mp4": "an MP4 video",
    "mov": "a QuickTime (MOV) video",
    "webm": "a WebM video",
    "mkv": "a Matroska (MKV) video",
    "avi": "an AVI video",
    "zip": "a ZIP archive (a Word or PowerPoint file?)",
    "text": "plain text",
}
IMAGE_KINDS = frozenset({"png", "jpeg", "gif", "webp", "bmp", "tiff"})
CLIP_KINDS = frozenset({"mp4", "mov", "webm", "mkv", "avi"})


def megabytes(n: int) -> str:
    return f"{n // MB} MB"


def human_size(n: int) -> str:
    """``812 bytes``, ``14 KB``, ``3.2 MB``."""
    if n < 1024:
        return f"{n} bytes"
    if n < MB:
        return f"{n // 1024} KB"
    return f"{n / MB:.1f} MB"


# ------------------------------------------------------------------ what a file is
def sniff(data: bytes) -> str | None:
    """The file's kind from its first bytes (magic numbers), or None when unknown."""
    head = data[:64]
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:2] == b"BM" and len(head) >= 18 and head[14] in (12, 40, 52, 56, 64, 108, 124):
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide"):
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: WebM or Matroska (its DocType says which)
        return "webm" if b"webm" in head else "mkv"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head and b"\0" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "text"
    return None


def describe(kind: str | None) -> str:
    return KINDS.get(kind or "", "no file type this bot knows")


def expect_kind(
    name: str, data: bytes, kinds: Iterable[str], what: str, *, hint: str | None = None
) -> str:
    """The file's kind, when it is one of ``kinds`` (judged from its bytes, not its name
    or declared type); else ``InvalidInput``: "`name` is ``what``: its content is …",
    where ``what`` is "not a PDF" or "neither an image nor a video clip"."""
    kind = sniff(data)
    if kind is None or kind not in set(kinds):
        raise InvalidInput(f"`{name}` is {what}: its content is {describe(kind)}.", hint=hint)
    return kind


# ------------------------------------------------------------------ names and paths
def safe_name(name: str) -> str:
    """A file name safe to use in a path: no folders, no NUL or odd characters, no
    leading dot, at most 100 characters ("file" when nothing is left)."""
    base = Path(name.replace("\\", "/").replace("\0", "")).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    if len(base) > 100:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: 100 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else base[:100]
    return base or "file"


def path_in(folder: Path, name: str) -> Path:
    """``folder / safe_name(name)``, checked to lie inside ``folder``."""
    path = folder / safe_name(name)
    if not path.resolve().is_relative_to(folder.resolve()):  # cannot happen: a safe name
        raise InvalidInput(f"`{name}` cannot be stored under that name.")
    return path


# ------------------------------------------------------------------ a command's file
#: How a file goes with a command on each platform (said when none came with one).
HOW_TO_ATTACH = {
    Platform.TERMINAL: "In the terminal, type `:attach FILE` first, then the command.",
    Platform.DISCORD: "On Discord, add the file in the command's `file` option.",
    Platform.SLACK: (
        "On Slack, share the file with the bot in a direct message (or with an @mention), "
        "with the command in the same message or within 30 minutes before it."
    ),
}


def how_to_attach(platform: Platform | None) -> str:
    """How to send a file with a command where the user is (every way, when unknown)."""
    if platform in HOW_TO_ATTACH:
        return HOW_TO_ATTACH[platform]
    return " ".join(HOW_TO_ATTACH.values())


@dataclass(frozen=True)
class FileRule:
    """What a command takes as its one file, and how its refusals read: "Attach
    ``{noun}`` as ``{form}`` to this command.", "Attach ``{one}`` only: ``{noun}``.",
    "`name` is ``{wrong_kind}``: its content is …" (with ``kind_hint``), "`name` is
    larger than …" (with ``size_hint``)."""

    noun: str  # "your critique", "the write-up"
    form: str  # "a PDF"
    one: str  # "one PDF"
    kinds: frozenset[str]
    max_bytes: int
    wrong_kind: str  # "not a PDF", "neither an image nor a video clip"
    kind_hint: str
    size_hint: str


@dataclass(frozen=True)
class Received:
    """A command's file, read and checked: its name (as uploaded; never a path), its
    bytes, its kind (from the bytes) and the type the platform declared."""

    name: str
    data: bytes
    kind: str
    content_type: str | None = None


async def read_attachment(
    request: Request, rule: FileRule, *, required: bool = True
) -> Received | None:
    """The one file sent with a command, whichever way the platform handed it over (a
    local path: the terminal, Slack's downloaded share; a URL: Discord's CDN, fetched
    only from the attachment's ``origins``), checked against ``rule``: at most
    ``max_bytes``, not empty, one of ``kinds`` by its bytes. ``InvalidInput`` (the
    user's message, with what to do) otherwise; None when no file came and none is
    ``required``."""
    attachments = request.attachments
    if not attachments:
        if not required:
            return None
        raise InvalidInput(
            f"Attach {rule.noun} as {rule.form} to this command.",
            hint=how_to_attach(request.platform),
        )
    if len(attachments) > 1:
        names = ", ".join(f"`{a.name}`" for a in attachments)
        raise InvalidInput(
            f"Attach {rule.one} only: {rule.noun} ({len(attachments)} files came: {names}).",
            hint="Send the command again with that one file.",
        )
    att = attachments[0]
    data = await read_bytes(att, rule.max_bytes, hint=rule.size_hint)
    kind = expect_kind(att.name, data, rule.kinds, rule.wrong_kind, hint=rule.kind_hint)
    return Received(att.name, data, kind, att.content_type)


# ------------------------------------------------------------------ reading
async def read_bytes(att: Attachment, max_bytes: int, *, hint: str | None = None) -> bytes:
    """The attachment's bytes, read from its path or fetched from its URL (only from
    the attachment's ``origins``), refusing (``InvalidInput``, with ``hint``) a file
    larger than ``max_bytes`` (the declared size first, then the bytes) or an empty one."""
    if att.size is not None and att.size > max_bytes:
        raise too_large(att.name, max_bytes, att.size, hint)
    if att.path is not None:
        try:
            size = att.path.stat().st_size
            if size > max_bytes:
                raise too_large(att.name, max_bytes, size, hint)
            with att.path.open("rb") as f:
                data = f.read(max_bytes + 1)
        except OSError as exc:
            raise InvalidInput(f"Could not read `{att.name}` ({exc.strerror}).") from None
        if len(data) > max_bytes:
            raise too_large(att.name, max_bytes, None, hint)
    elif att.url:
        data = await download(att.url, att.name, max_bytes, origins=att.origins, hint=hint)
    else:
        raise InvalidInput(f"Could not read `{att.name}`: the upload had no file.")
    if not data:
        raise InvalidInput(f"`{att.name}` is empty (0 bytes).", hint="Attach the file again.")
    return data


def too_large(name: str, limit: int, size: int | None, hint: str | None) -> InvalidInput:
    """The refusal of a file over ``limit``: its size (when known) and the limit."""
    if size is None:
        text = (
            f"`{name}` is larger than {megabytes(limit)}, the limit "
            "(the download was stopped there)."
        )
    else:
        shown = human_size(size)
        if shown == f"{limit / MB:.1f} MB":
            shown = f"{size:,} bytes"
        text = f"`{name}` is larger than {megabytes(limit)}, the limit: it is {shown}."
    return InvalidInput(text, hint=hint)


# ------------------------------------------------------------------ downloading
def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL (default ports left out), else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def file_origins(hosts: Iterable[str], test_url: str | None = None) -> tuple[str, ...]:
    """Where a platform's files may be fetched from: ``https://<host>`` for each of its
    file hosts, plus the origin of ``test_url`` when it is on loopback (a local fake of
    the platform, in tests: ``SLACK_API_URL``, ``DISCORD_CDN_URL``)."""
    found = [f"https://{h}" for h in hosts]
    test = origin(test_url) if test_url else None
    if test is not None and _is_loopback(urlsplit(test).hostname or ""):
        found.append(test)
    return tuple(found)


def check_url(url: str, origins: Iterable[str], name: str, *, redirect: bool = False) -> str:
    """``url`` when it may be fetched: an allowed origin, HTTPS (HTTP only on loopback),
    no user name or password in it; else ``InvalidInput`` (nothing is fetched)."""
    allowed = tuple(origins)
    where = origin(url)
    host = (urlsplit(url).hostname if where else None) or url[:60]
    refused = (
        where is None
        or where not in allowed
        or "@" in urlsplit(url).netloc
        or (where.startswith("http://") and not _is_loopback(urlsplit(url).hostname or ""))
    )
    if refused:
        hosts = ", ".join(urlsplit(o).netloc for o in allowed if o.startswith("https://"))
        how = "redirected to" if redirect else "at"
        raise InvalidInput(
            f"`{name}` was not downloaded: it is {how} `{host}`, which is not the chat "
            f"platform's file host ({hosts or 'none known'}).",
            hint="Upload the file to the chat itself and send the command with it.",
        )
    return url


async def download(
    url: str,
    name: str,
    max_bytes: int,
    *,
    origins: Iterable[str],
    hint: str | None = None,
    declared_size: int | None = None,
    token: str | None = None,
    token_origins: Iterable[str] = (),
    session: aiohttp.ClientSession | None = None,
    timeout_s: float = FETCH_TIMEOUT_S,
) -> bytes:
    """Fetch an uploaded file from one of ``origins``, following at most MAX_REDIRECTS
    redirects that stay on them; refuse (``InvalidInput``) a declared size over
    ``max_bytes`` before any request, and stop reading at ``max_bytes`` (a larger file
    is refused, whatever its headers said). ``token`` goes (``Authorization: Bearer``)
    only to ``token_origins``."""
    import aiohttp

    allowed = tuple(origins)
    with_token = tuple(token_origins)
    current = check_url(url, allowed, name)
    if declared_size is not None and declared_size > max_bytes:
        raise too_large(name, max_bytes, declared_size, hint)
    failed = f"Could not fetch `{name}` from the chat platform"
    own = session is None
    http = session or aiohttp.ClientSession()
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        for _ in range(MAX_REDIRECTS + 1):
            headers = {}
            if token and origin(current) in with_token:
                headers["Authorization"] = f"Bearer {token}"
            async with http.get(
                current, headers=headers, allow_redirects=False, timeout=timeout
            ) as resp:
                if resp.status in (301, 302, 303, 307, 308):
                    location = resp.headers.get("Location", "")
                    current = check_url(urljoin(current, location), allowed, name, redirect=True)
                    continue
                if resp.status != 200:
                    raise InvalidInput(
                        f"{failed} (HTTP {resp.status}).", hint="Try the upload again."
                    )
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise too_large(name, max_bytes, resp.content_length, hint)
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    if size + len(chunk) > max_bytes:  # never keep a byte past the cap
                        raise too_large(name, max_bytes, None, hint)
                    chunks.append(chunk)
                    size += len(chunk)
                return b"".join(chunks)
        raise InvalidInput(f"{failed} (too many redirects).", hint="Try the upload again.")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise InvalidInput(
            f"{failed} ({type(exc).__name__}).", hint="Try the upload again."
        ) from None
    finally:
        if own:
            await http.close()
