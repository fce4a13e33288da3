"""Reading a command's attached file, whichever way the platform hands it over: a local
path (the terminal, Slack's downloaded files) or a URL (Discord's CDN), with a size cap.
Used by critiques (a PDF) and GPU jobs (an image or a clip)."""

from __future__ import annotations

from commands.context import Attachment
from commands.errors import InvalidInput

#: The longest download of an attachment given as a URL (Discord attachments).
FETCH_TIMEOUT_S = 30


def megabytes(n: int) -> str:
    return f"{n // (1024 * 1024)} MB"


async def read_bytes(att: Attachment, max_bytes: int, *, too_large: str) -> bytes:
    """The attachment's bytes, read from its path or fetched from its URL, refusing
    (``InvalidInput`` with ``too_large``) a file larger than ``max_bytes``."""
    if att.size is not None and att.size > max_bytes:
        raise InvalidInput(too_large)
    if att.path is not None:
        try:
            if att.path.stat().st_size > max_bytes:
                raise InvalidInput(too_large)
            data = att.path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"Could not read `{att.name}` ({exc.strerror}).") from None
    elif att.url:
        data = await download(att.url, att.name, max_bytes)
    else:
        raise InvalidInput(f"Could not read `{att.name}`: the upload had no file.")
    if len(data) > max_bytes:
        raise InvalidInput(too_large)
    return data


async def download(url: str, name: str, max_bytes: int) -> bytes:
    """Fetch an uploaded file (Discord's CDN), stopping past ``max_bytes`` (at most
    ``max_bytes + 1`` bytes are read, so a caller can tell a file that is too large)."""
    import aiohttp

    try:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            resp.raise_for_status()
            # ``read(n)`` returns what has arrived (at most n bytes), not n bytes: read
            # to the end, stopping as soon as the file is known to be too large.
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(64 * 1024):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    break
            data = b"".join(chunks)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise InvalidInput(
            f"Could not fetch `{name}` from the chat platform ({type(exc).__name__}).",
            hint="Try the upload again.",
        ) from None
    return data
