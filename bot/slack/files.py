"""Files students share with the bot (a critique PDF in a DM, a file with a mention):
downloaded from Slack's file host into the data folder and attached to the command they
come with, or to the sender's next command within 30 minutes."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from commands.attachments import SLACK_FILE_HOSTS, download, file_origins, path_in, safe_name
from commands.context import Attachment, Request
from commands.errors import InvalidInput

log = logging.getLogger("coursebot.slack")

#: Files a user shares with the bot wait this long for the command they belong to.
PENDING_TTL = 30 * 60
#: Largest file the bot downloads from Slack for a command.
MAX_DOWNLOAD = 50 * 1024 * 1024


class SharedFiles:
    """Downloads and the files waiting for their command, per (team, user)."""

    def __init__(self, directory: Path, api_url: str, token: str | None) -> None:
        self.dir = directory
        self.api_url = api_url
        self.token = token
        self._pending: dict[tuple[str, str], tuple[float, list[Attachment]]] = {}
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def download(self, file: dict[str, Any]) -> Attachment:
        """Fetch a file shared with the bot into the data folder, as a command attachment:
        only from Slack's file host (the token goes nowhere else), its declared size
        checked first and its bytes counted (``commands.attachments.download``), stored
        under a name made of its id and name, never a path they choose.
        ``InvalidInput`` (the user's message) when it is refused."""
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        name = str(file.get("name") or file.get("title") or file.get("id") or "file")
        if file.get("mode") == "tombstone" or file.get("is_deleted"):
            raise InvalidInput(
                "A file shared with this message was deleted from Slack before the bot "
                "could fetch it.",
                hint="Share it again (in this DM, with the command or within 30 minutes "
                "before it).",
            )
        if not url:
            raise InvalidInput(
                f"`{name}` could not be downloaded: Slack gave no address for it.",
                hint="Share it again; if it keeps failing, send it as a PDF upload from "
                "your computer rather than a link or a file from another app.",
            )
        origins = file_origins(SLACK_FILE_HOSTS, self.api_url)
        if self._http is None:
            self._http = aiohttp.ClientSession()
        data = await download(
            url,
            name,
            MAX_DOWNLOAD,
            origins=origins,
            hint="Share a smaller file.",
            declared_size=int(file.get("size") or 0) or None,
            token=self.token,
            token_origins=origins,
            session=self._http,
            timeout_s=120,
        )
        file_id = re.sub(r"[^A-Za-z0-9]+", "", str(file.get("id") or ""))[:40] or "F"
        path = path_in(self.dir, f"{file_id}-{safe_name(name)}")
        self.dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return Attachment(name, path=path, size=len(data), content_type=file.get("mimetype"))

    async def download_all(self, files: list[dict[str, Any]]) -> tuple[list[Attachment], str]:
        """The files of a message that could be fetched, and why the others were not."""
        got: list[Attachment] = []
        refused: list[str] = []
        for f in files:
            try:
                got.append(await self.download(f))
            except InvalidInput as exc:
                log.info("not taking Slack file %s: %s", f.get("id"), exc)
                refused.append(str(exc))
        return got, " ".join(refused)

    def keep(self, team: str, user: str, files: list[Attachment]) -> None:
        """Files that wait for the user's next command."""
        now = time.monotonic()
        for key in [k for k, (exp, _) in self._pending.items() if exp < now]:
            del self._pending[key]
        _, before = self._pending.get((team, user), (0.0, []))
        known = {a.path for a in before}
        fresh = [f for f in files if f.path not in known]  # a duplicate delivery adds nothing
        self._pending[(team, user)] = (now + PENDING_TTL, [*before, *fresh])

    def with_pending(self, request: Request) -> Request:
        """The request with the files this user shared with the bot before it."""
        key = (request.workspace, request.caller.user_id)
        expires, files = self._pending.pop(key, (0.0, []))
        if not files or expires < time.monotonic():
            return request
        return replace(request, attachments=(*request.attachments, *files))
