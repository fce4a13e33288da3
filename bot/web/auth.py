"""Who is visiting: the session cookie, the person behind it, and what they may see.

A session acts as the chat account that asked for the sign-in link
(:class:`commands.dashboard.Account`). On every request that account is resolved through
the roster by the command core's own :meth:`CommandCore.resolve`, and pages are checked
with the same :class:`~commands.registry.Access` levels as commands: a role change or an
unlinked account takes effect at the next click, and nothing here is a second permission
model. State-changing requests carry the session's CSRF token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from commands.core import CommandCore
from commands.dashboard import (
    SESSION_TTL,
    Account,
    end_session,
    find_session,
    open_session,
    redeem_link,
    same_secret,
    token_hash,
)
from commands.errors import CourseBotError
from commands.registry import Access
from db.models import Course, Person, WebLink

if TYPE_CHECKING:
    from bot.app import App

COOKIE = "coursebot_session"
#: Forms carry it as ``csrf``; htmx and scripts as this header.
CSRF_HEADER = "X-CSRF-Token"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,100}$")

NEW_LINK = "Type `dashboard` in chat for a new link."


class Refused(Exception):
    """A request the desk refuses: rendered as a page with this status and message."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


@dataclass
class Visitor:
    """A signed-in person, as the roster has them now."""

    session_id: int
    csrf: str
    account: Account
    course: Course
    person: Person

    def allows(self, access: Access) -> bool:
        return access.allows(self.person)


#: The visitor of a request, once looked up.
VISITOR: web.RequestKey[Visitor | None] = web.RequestKey("visitor", object)  # type: ignore[arg-type]


def app_of(request: web.Request) -> App:
    from bot.web.server import APP_KEY

    return request.app[APP_KEY]


def secure_cookies(request: web.Request) -> bool:
    """Cookies are Secure when the desk is reached over HTTPS (directly, or behind a proxy
    whose public URL, COURSEBOT_WEB_URL, is https)."""
    from bot.web.server import URL_KEY

    return request.secure or str(request.app[URL_KEY]).startswith("https://")


async def visitor(request: web.Request) -> Visitor | None:
    """The signed-in visitor, or None (no cookie, or a session that ended or expired, or
    an account no longer linked to the person who signed in)."""
    if VISITOR in request:
        return request[VISITOR]
    found: Visitor | None = None
    row = None
    token = request.cookies.get(COOKIE, "")
    if _TOKEN.match(token):
        app = app_of(request)
        now = app.clock.now()
        async with app.db.session() as session:
            row = await find_session(session, token, now)
            if row is not None:
                account = Account.of(row)
                try:
                    course, person = await CommandCore.resolve(session, account.request())
                except CourseBotError:  # the course's space is no longer bound
                    course, person = None, None
                if (
                    course is not None
                    and person is not None
                    and person.id == row.person_id
                    and course.id == row.course_id
                ):
                    found = Visitor(row.id, row.csrf, account, course, person)
        if row is not None and found is None:  # the account was unlinked: end the session
            async with app.db.transaction() as session:
                await end_session(session, row.id, now)
    request[VISITOR] = found
    return found


async def require(request: web.Request, access: Access) -> Visitor:
    """The visitor, if signed in and allowed ``access``; else a refusal worded as the
    command core words it for commands."""
    v = await visitor(request)
    if v is None:
        raise Refused(
            401,
            "Please sign in",
            "You are not signed in, or your session ended. " + NEW_LINK,
        )
    if not v.allows(access):
        raise Refused(
            403,
            "Not for you",
            f"This page is only for {access.label}; you are registered as a {v.person.role.value}.",
        )
    return v


def check_csrf(request: web.Request, v: Visitor, form_token: str | None) -> None:
    """A state-changing request must carry the session's CSRF token (a form field or
    the header) and, when the browser says where it comes from, come from here."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin != f"{request.scheme}://{request.host}":
        from bot.web.server import URL_KEY

        if origin.rstrip("/") != str(request.app[URL_KEY]).rstrip("/"):
            raise Refused(403, "Refused", "This request came from another site; nothing changed.")
    token = form_token or request.headers.get(CSRF_HEADER, "")
    if not token or not same_secret(token, v.csrf):
        raise Refused(
            403,
            "Form out of date",
            "This form's security token is missing or wrong, so nothing was changed. "
            "Reload the page and try again.",
        )


# ------------------------------------------------------------------------- sign-in


async def link_preview(request: web.Request, token: str) -> tuple[Person, Course] | None:
    """Whose a sign-in link is, without using it (the page asks to confirm: chat apps
    open links to preview them, which must not use them up)."""
    from sqlalchemy import select

    if not _TOKEN.match(token):
        return None
    app = app_of(request)
    async with app.db.session() as session:
        link = await session.scalar(
            select(WebLink).where(
                WebLink.token_hash == token_hash(token),
                WebLink.kind == "signin",
                WebLink.used_at.is_(None),
                WebLink.expires_at > app.clock.now(),
            )
        )
        if link is None:
            return None
        person = await session.get(Person, link.person_id)
        course = await session.get(Course, link.course_id)
    return (person, course) if person and course else None


async def sign_in(request: web.Request, token: str) -> web.Response:
    """Use a sign-in link (once): open a session and set its cookie."""
    if not _TOKEN.match(token):
        raise _bad_link()
    app = app_of(request)
    now = app.clock.now()
    async with app.db.transaction() as session:
        link = await redeem_link(session, token, now)
        if link is None:
            raise _bad_link()
        cookie, _ = await open_session(session, link, now)
    response = web.Response(status=303, headers={"Location": "/"})
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(request),
        path="/",
    )
    return response


async def sign_out(request: web.Request, v: Visitor) -> web.Response:
    app = app_of(request)
    async with app.db.transaction() as session:
        await end_session(session, v.session_id, app.clock.now())
    response = web.Response(status=303, headers={"Location": "/signed-out"})
    response.del_cookie(COOKIE, path="/")
    return response


def _bad_link() -> Refused:
    return Refused(
        400,
        "Link not valid",
        "This sign-in link was already used, has expired (links work for 10 minutes) or "
        "is not a link the bot made. " + NEW_LINK,
    )
