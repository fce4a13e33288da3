"""The instructor's desk: an aiohttp server on the bot's own event loop and database.

:func:`build_web_app` makes the application (used by the tests and the benchmark);
:class:`WebServer` serves it on an address. ``start_app`` starts one when the settings
ask for it (``coursebot run`` and the interactive shell do; see docs/dashboard.md).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

import jinja2
from aiohttp import web

from bot.web.auth import (
    VISITOR,
    Refused,
    Visitor,
    check_csrf,
    link_preview,
    require,
    sign_in,
    sign_out,
    visitor,
)
from bot.web.memo import Memo
from bot.web.view import Page, chat_markup, finalize
from commands.registry import Access

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("coursebot.web")

HERE = Path(__file__).parent
APP_KEY: web.AppKey[App] = web.AppKey("coursebot_app")
URL_KEY = web.AppKey("coursebot_url", str)
JINJA_KEY = web.AppKey("coursebot_jinja", jinja2.Environment)
MEMO_KEY = web.AppKey("coursebot_memo", Memo)

#: Where ``coursebot run`` serves the desk when COURSEBOT_WEB_ADDRESS is not set.
DEFAULT_ADDRESS = "127.0.0.1:8080"

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; frame-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str
    access: Access


NAV = (
    NavItem("/week", "This week", Access.STAFF),
    NavItem("/rankings", "Rankings", Access.STAFF),
    NavItem("/assignment", "Assignment", Access.STAFF),
    NavItem("/critiques", "Critiques", Access.STAFF),
    NavItem("/discussions", "Discussions", Access.STAFF),
    NavItem("/battles", "Battles", Access.STAFF),
    NavItem("/grades", "Gradebook", Access.STAFF),
    NavItem("/gpu", "GPU queue", Access.STAFF),
    NavItem("/audit", "Audit log", Access.INSTRUCTOR),
    NavItem("/me", "My page", Access.MEMBER),
)


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) → (host, port); a clear error otherwise."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(
            f"COURSEBOT_WEB_ADDRESS {address!r} is not host:port, e.g. {DEFAULT_ADDRESS}"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


def _jinja() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        finalize=finalize,  # instants in the course's zone, never a time marker
    )
    ids = itertools.count(1)
    env.globals["new_idem"] = lambda: secrets.token_urlsafe(12)
    env.globals["uid"] = lambda: f"f{next(ids)}"
    env.globals["with_param"] = with_param
    env.filters["chat"] = chat_markup
    return env


def with_param(path: str, query: str, key: str, value: object) -> str:
    """``path?query`` with ``key=value`` set (a CSV or file link keeps the filters)."""
    params = [
        (k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in (key, "csv", "file")
    ]
    params.append((key, str(value)))
    return f"{path}?{urlencode(params)}"


def render(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    v: Visitor | None = None,
    **kw: object,
) -> web.Response:
    env = request.app[JINJA_KEY]
    nav = [n for n in NAV if v is not None and v.allows(n.access)]
    html = env.get_template(template).render(
        visitor=v, nav=nav, path=request.path, query=request.query_string, **kw
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)


def render_page(request: web.Request, v: Visitor, page: Page) -> web.Response:
    return render(request, "page.html", status=page.status, v=v, page=page)


@web.middleware
async def guard(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Security headers on everything; refusals rendered as pages."""
    try:
        response = await handler(request)
    except Refused as exc:
        response = render(
            request,
            "message.html",
            status=exc.status,
            v=request.get(VISITOR),
            title=exc.title,
            message=exc.message,
        )
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.status != 405:
            response = render(
                request,
                "message.html",
                status=exc.status,
                v=request.get(VISITOR),
                title=exc.reason,
                message="There is no such page." if exc.status == 404 else exc.reason,
            )
        else:
            raise
    if response.content_type != "application/pdf":
        # (A PDF keeps none: any policy stops the browser's own PDF viewer.)
        response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if not request.path.startswith("/static/"):  # (a calendar feed sets its own)
        response.headers.setdefault("Cache-Control", "no-store")
    return response


# --------------------------------------------------------------------------- routes


async def home(request: web.Request) -> web.StreamResponse:
    v = await visitor(request)
    if v is None:
        return render(
            request,
            "message.html",
            status=200,
            v=None,
            title="The course desk",
            message="Type `dashboard` in the course's chat: the bot answers you "
            "privately with a link that signs you in here.",
        )
    raise web.HTTPSeeOther("/week" if v.allows(Access.STAFF) else "/me")


async def signin_page(request: web.Request) -> web.StreamResponse:
    token = request.query.get("token", "")
    found = await link_preview(request, token)
    if found is None:
        raise Refused(
            400,
            "Link not valid",
            "This sign-in link was already used, has expired (links work for 10 minutes) "
            "or is not a link the bot made. Type `dashboard` in chat for a new link.",
        )
    person, course = found
    return render(request, "signin.html", v=None, token=token, person=person, course=course)


async def signin_post(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    origin = request.headers.get("Origin")
    if (
        origin
        and origin != f"{request.scheme}://{request.host}"
        and (origin.rstrip("/") != request.app[URL_KEY].rstrip("/"))
    ):
        raise Refused(403, "Refused", "This sign-in came from another site; nothing changed.")
    return await sign_in(request, str(form.get("token", "")))


async def signout_post(request: web.Request) -> web.StreamResponse:
    v = await require(request, Access.ANYONE)
    form = await request.post()
    check_csrf(request, v, str(form.get("csrf", "")) or None)
    return await sign_out(request, v)


async def signed_out(request: web.Request) -> web.StreamResponse:
    return render(
        request,
        "message.html",
        v=None,
        title="Signed out",
        message="You are signed out. Type `dashboard` in chat to sign in again.",
    )


def build_web_app(app: App, *, public_url: str) -> web.Application:
    """The desk's aiohttp application over the bot's :class:`App` (core and database)."""
    from bot.web import calendar, pages, student

    web_app = web.Application(middlewares=[guard], client_max_size=2 * 1024 * 1024)
    web_app[APP_KEY] = app
    web_app[URL_KEY] = public_url.rstrip("/")
    web_app[JINJA_KEY] = _jinja()
    web_app[MEMO_KEY] = Memo()
    r = web_app.router
    r.add_get("/", home)
    r.add_get("/signin", signin_page)
    r.add_post("/signin", signin_post)
    r.add_post("/signout", signout_post)
    r.add_get("/signed-out", signed_out)
    pages.add_routes(r)
    student.add_routes(r)
    calendar.add_routes(r)
    r.add_static("/static/", HERE / "static", append_version=False)
    return web_app


class WebServer:
    """The desk served on ``address`` (``host:port``; port 0 picks a free one)."""

    def __init__(self, app: App, address: str, public_url: str | None = None) -> None:
        self.host, self.port = parse_address(address)
        self.app = app
        self._public = public_url
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        if self._public:
            return self._public.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
        return f"http://{shown}:{self.port}"

    async def start(self) -> str:
        """Serve; the URL people open. The core learns it, so ``dashboard`` links to it."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family)
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])  # port 0: the one the system picked
        self._runner = web.AppRunner(build_web_app(self.app, public_url=self.url), access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self.app.core.config["web_url"] = self.url
        log.info("the course desk is at %s", self.url)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.app.core.config.pop("web_url", None)
