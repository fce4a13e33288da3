"""Pages as routes, and every change made on the web run through the command core.

A page is an async builder ``(PageContext) -> Page`` with the :class:`Access` it needs
and the commands (and chat buttons) its forms may run. A POST runs one of them with
:meth:`CommandCore.handle` (or :meth:`~CommandCore.handle_action` for a button) as the
signed-in person's chat account: validated, audited and announced exactly as in chat,
and its reply, refusals included, is shown on the page in the words chat would use.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiDictProxy

from bot.web.auth import Refused, Visitor, app_of, check_csrf, require
from bot.web.view import Page, reply_blocks
from commands.errors import CourseBotError
from commands.registry import Access
from commands.replies import Reply

_IDEM = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

DUPLICATE = "This form was already sent; it was not run twice."


@dataclass
class PageContext:
    """What a page builder gets: the request, the visitor, and the command runner."""

    request: web.Request
    visitor: Visitor

    @property
    def app(self):  # type: ignore[no-untyped-def]
        return app_of(self.request)

    @property
    def db(self):  # type: ignore[no-untyped-def]
        return self.app.db

    def param(self, name: str) -> str:
        return self.request.match_info.get(name, "")

    def number(self, name: str) -> int:
        """A number from the URL (a paper, a battle); anything else is not found."""
        raw = self.param(name)
        if not raw.isdigit() or len(raw) > 9:
            raise Refused(404, "Not found", f"There is no such page (`{raw[:40]}`).")
        return int(raw)

    async def run(self, name: str, options: dict[str, Any] | None = None) -> Reply:
        """Run a command as the visitor (a read, when a page shows a command's answer)."""
        return await self.app.core.handle(self.visitor.account.request(), name, options or {})

    async def run_assignment_read(self, name: str, *, per_person: bool) -> Reply:
        """A slow assignment read (``assign show``, ``assignment``), answered again only
        when what it reads changed (:mod:`bot.web.memo`); the command's own access rule
        decides first, so a memo never answers someone the command would refuse."""
        from bot.web.memo import assignment_fingerprint
        from bot.web.server import MEMO_KEY

        v = self.visitor
        if not self.app.core.registry.get(name).access.allows(v.person):
            return await self.run(name)
        today = self.app.clock.now().astimezone(ZoneInfo(v.course.timezone)).date()
        async with self.db.session() as s:
            fingerprint = await assignment_fingerprint(s, v.course, today)
        memo = self.request.app[MEMO_KEY]
        key = (v.course.id, name, v.person.id if per_person else None, fingerprint)
        reply = memo.get(key)
        if reply is None:
            reply = await self.run(name)
            memo.put(key, reply)
        return reply


Builder = Callable[[PageContext], Awaitable[Page]]


def _options(core: Any, name: str, form: MultiDictProxy[Any]) -> dict[str, Any]:
    """A command's options from a submitted form: blank fields are left out (the
    command's defaults apply), list options take every checked or repeated value."""
    try:
        cmd = core.registry.get(name)
    except KeyError:
        raise Refused(400, "Unknown command", f"Unknown command `{name[:40]}`.") from None
    out: dict[str, Any] = {}
    for spec in cmd.specs:
        if spec.many:
            values = [str(v).strip() for v in form.getall(spec.name, []) if str(v).strip()]
            if values:
                out[spec.name] = values
        elif spec.is_flag:
            if form.get(spec.name):
                out[spec.name] = True
        else:
            value = str(form.get(spec.name, "")).strip()
            if value:
                out[spec.name] = value
    return out


async def perform(
    request: web.Request, v: Visitor, commands: frozenset[str], actions: frozenset[str]
) -> Reply:
    """Run the command (or press the button) a POSTed form names, if this page offers it."""
    form = await request.post()
    check_csrf(request, v, str(form.get("csrf", "")) or None)
    app = app_of(request)
    idem = str(form.get("idem", ""))
    event_id = f"web:{idem}" if _IDEM.match(idem) else None
    req = v.account.request(event_id=event_id)
    command = str(form.get("command", ""))
    action = str(form.get("action", ""))
    if command:
        if command not in commands:
            raise Refused(400, "Not here", f"This page does not run `{command[:40]}`.")
        reply = await app.core.handle(req, command, _options(app.core, command, form))
    elif action:
        if action.split(":", 1)[0] not in actions:
            raise Refused(400, "Not here", "This page has no such button.")
        reply = await app.core.handle_action(req, action)
    else:
        raise Refused(400, "Nothing to do", "The form named no command.")
    if reply.duplicate:
        return Reply(text=DUPLICATE)
    return reply


def page_route(
    builder: Builder,
    access: Access,
    *,
    commands: Iterable[str] = (),
    actions: Iterable[str] = (),
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A route that shows a page (GET) and runs its forms (POST)."""
    allowed = frozenset(commands)
    buttons = frozenset(actions)

    async def handler(request: web.Request) -> web.StreamResponse:
        from bot.web.server import render_page

        v = await require(request, access)
        result = None
        if request.method == "POST":
            result = await perform(request, v, allowed, buttons)
        ctx = PageContext(request, v)
        try:
            page = await builder(ctx)
        except CourseBotError as err:  # a paper or battle that is not there
            raise Refused(404, "Not found", str(err)) from None
        if result is not None:
            page.result, _ = reply_blocks(result, files_as_tables=False)
            for f in result.files:
                page.files.setdefault(f.name, f)
        if request.method == "GET":
            download = _download(request, page)
            if download is not None:
                return download
        return render_page(request, v, page)

    return handler


def _download(request: web.Request, page: Page) -> web.Response | None:
    """``?csv=N``: the page's table N as CSV; ``?file=NAME``: a file a reply carried."""
    if "csv" in request.query:
        raw = request.query["csv"]
        tables = page.tables
        if not raw.isdigit() or int(raw) >= len(tables):
            raise Refused(404, "Not found", "There is no such table on this page.")
        name = re.sub(r"[^a-z0-9]+", "-", page.title.lower()).strip("-") or "table"
        return _attachment(tables[int(raw)].csv().encode(), f"{name}-{raw}.csv", "text/csv")
    if "file" in request.query:
        f = page.files.get(request.query["file"])
        if f is None:
            raise Refused(404, "Not found", "There is no such file on this page.")
        return _attachment(f.data, f.name, f.mime)
    return None


def _attachment(data: bytes, name: str, mime: str, *, inline: bool = False) -> web.Response:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:100] or "download"
    how = "inline" if inline else "attachment"
    charset = "utf-8" if mime.startswith("text/") else None
    headers = {"Content-Disposition": f'{how}; filename="{safe}"'}
    if mime != "application/pdf":
        # A user's file is shown as what it says it is, never run as this site's page
        # (a PDF is opened by the browser's PDF viewer, which a sandbox would stop).
        headers["Content-Security-Policy"] = "sandbox"
    return web.Response(body=data, content_type=mime, charset=charset, headers=headers)


def file_response(data: bytes, name: str, mime: str, *, inline: bool = False) -> web.Response:
    return _attachment(data, name, mime, inline=inline)
