"""The calendar subscription feed: ``GET /cal/<token>.ics`` serves the calendar of the
person whose link it is (``calendar link``), to calendar apps that poll it.

- an unknown or revoked token (or its person left the course) is a 404 with a short
  plain text that says nothing more, and nothing stored changes;
- the feed records the versions it serves (SEQUENCE, LAST-MODIFIED), only when
  something changed since the last poll, so the next poll gets the same bytes;
- ``ETag`` (a hash of the bytes) and ``Last-Modified``: ``If-None-Match`` (or, without
  it, ``If-Modified-Since``) answers 304 with no body.

``/calendar/<token>.ics`` (the desk's links before migration 0021) is the same feed.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from commands.calendar import CalendarFile, build_calendar, subscriber

log = logging.getLogger("coursebot.web")

CACHE = "private, no-cache"  # a cache may keep it, and asks each time whether it changed


def _not_found() -> web.Response:
    return web.Response(status=404, text="Not found.\n", content_type="text/plain")


async def _calendar(request: web.Request, token: str) -> CalendarFile | None:
    from bot.web.server import APP_KEY

    app = request.app[APP_KEY]
    now = app.clock.now()
    async with app.db.read() as s:
        found = await subscriber(s, token)
        if found is None:
            return None
        cal = await build_calendar(s, *found, now)
    if not cal.pending:
        return cal
    # Something changed since the last poll: record the versions served (once).
    for attempt in (1, 2):
        try:
            async with app.db.transaction() as s:
                found = await subscriber(s, token)
                if found is None:
                    return None
                return await build_calendar(s, *found, now, record=True)
        except IntegrityError:  # another poll recorded the same versions first
            if attempt == 2:
                raise
            log.info("calendar versions recorded by a concurrent request; again")
    raise AssertionError("unreachable")


def _matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


async def feed(request: web.Request) -> web.StreamResponse:
    cal = await _calendar(request, request.match_info["token"])
    if cal is None:
        return _not_found()
    etag = f'"{hashlib.sha256(cal.data).hexdigest()[:32]}"'
    modified = cal.modified.astimezone(UTC).replace(microsecond=0)
    headers = {
        "ETag": etag,
        "Last-Modified": modified.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Cache-Control": CACHE,
    }
    inm = request.headers.get("If-None-Match")
    since = request.if_modified_since
    if (inm is not None and _matches(inm, etag)) or (
        inm is None and since is not None and modified <= since.astimezone(UTC)
    ):
        return web.Response(status=304, headers=headers)
    headers["Content-Disposition"] = f'inline; filename="{cal.name}"'
    return web.Response(
        body=cal.data, headers=headers, content_type="text/calendar", charset="utf-8"
    )


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/cal/{token}.ics", feed)
    r.add_get("/calendar/{token}.ics", feed)  # the desk's links before 0021


__all__ = ["add_routes"]
