"""The instructor's desk, from chat (issue #23): ``dashboard`` answers the caller, privately,
a link that signs them in to the web view the bot serves (``bot/web``).

The web acts as the chat account that asked for the link: each page and each change
builds the same :class:`~commands.context.Request` that account's chat commands carry,
so the command core resolves the person through the roster again every time and checks
every command with its own :class:`~commands.registry.Access`. There is no second
permission model, and unlinking the account (or a role change) takes effect at once.

Links and sessions are random secrets of which only a SHA-256 is stored:

- a **sign-in link** works once (used links are kept with ``used_at``) and for
  :data:`LINK_TTL`; using it opens a **session** (a cookie) for :data:`SESSION_TTL`, with
  its own CSRF token, that sign-out ends.

Calendar subscription links are the person's own, not a chat account's:
:mod:`commands.calendar.tokens` (they share :func:`new_token` and :func:`token_hash`).

Services here take plain values and a session, like every feature module; the web
server in ``bot/web`` calls them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from commands.context import Caller, Context, Request, Where
from commands.due import due_registry
from commands.errors import Conflict
from commands.registry import Access, registry
from commands.replies import Reply, Section
from db.models import Platform, WebLink, WebSession

#: How long a sign-in link works (once).
LINK_TTL = timedelta(minutes=10)
#: How long a web session lasts from sign-in.
SESSION_TTL = timedelta(hours=8)
#: Ended and expired links and sessions are forgotten this long after.
KEEP_USED = timedelta(days=1)

NOT_SERVED = (
    "The web desk is not running on this bot, so there is no link to give.",
    "It is served by `coursebot run` and `coursebot shell` on COURSEBOT_WEB_ADDRESS "
    "(default 127.0.0.1:8080); ask whoever runs the bot.",
)


def new_token() -> str:
    """A fresh secret: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets (a CSRF token with the session's)."""
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Account:
    """The chat account a link or session acts as."""

    platform: Platform
    workspace: str
    user_id: str

    @classmethod
    def of(cls, row: WebLink | WebSession) -> Account:
        return cls(row.platform, row.workspace, row.user_id)

    def request(self, *, event_id: str | None = None) -> Request:
        """The request this account's commands carry, asked privately (as in a DM)."""
        return Request(
            platform=self.platform,
            workspace=self.workspace,
            caller=Caller(self.platform, self.user_id, self.user_id),
            where=Where(is_dm=True),
            event_id=event_id,
        )


# --------------------------------------------------------------------------- links


async def issue_link(
    session: AsyncSession,
    *,
    course_id: int,
    person_id: int,
    account: Account,
    now: datetime,
) -> str:
    """A new sign-in link's secret (shown once; only its hash is kept)."""
    token = new_token()
    session.add(
        WebLink(
            token_hash=token_hash(token),
            kind="signin",
            course_id=course_id,
            person_id=person_id,
            platform=account.platform,
            workspace=account.workspace,
            user_id=account.user_id,
            created_at=now,
            expires_at=now + LINK_TTL,
        )
    )
    await session.flush()
    return token


async def redeem_link(session: AsyncSession, token: str, now: datetime) -> WebLink | None:
    """Use a sign-in link: the link, or None when it is unknown, used or expired. One
    conditional UPDATE marks it used, so two requests racing with it cannot both win."""
    digest = token_hash(token)
    result = await session.execute(
        update(WebLink)
        .where(
            WebLink.token_hash == digest,
            WebLink.kind == "signin",
            WebLink.used_at.is_(None),
            WebLink.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if int(getattr(result, "rowcount", 0) or 0) != 1:
        return None
    return await session.scalar(select(WebLink).where(WebLink.token_hash == digest))


# ------------------------------------------------------------------------ sessions


async def open_session(
    session: AsyncSession, link: WebLink, now: datetime
) -> tuple[str, WebSession]:
    """A new session for a redeemed link: the cookie's secret and the row."""
    token = new_token()
    row = WebSession(
        token_hash=token_hash(token),
        csrf=new_token(),
        course_id=link.course_id,
        person_id=link.person_id,
        platform=link.platform,
        workspace=link.workspace,
        user_id=link.user_id,
        created_at=now,
        expires_at=now + SESSION_TTL,
    )
    session.add(row)
    await session.flush()
    return token, row


async def find_session(session: AsyncSession, token: str, now: datetime) -> WebSession | None:
    """The live session of a cookie's secret (not ended, not expired), if any."""
    return await session.scalar(
        select(WebSession).where(
            WebSession.token_hash == token_hash(token),
            WebSession.ended_at.is_(None),
            WebSession.expires_at > now,
        )
    )


async def end_session(session: AsyncSession, session_id: int, now: datetime) -> None:
    await session.execute(
        update(WebSession)
        .where(WebSession.id == session_id, WebSession.ended_at.is_(None))
        .values(ended_at=now)
    )


async def prune(session: AsyncSession, now: datetime) -> None:
    """Forget links and sessions that ended or expired more than a day ago."""
    old = now - KEEP_USED
    await session.execute(
        delete(WebLink).where(
            or_(WebLink.used_at < old, WebLink.expires_at < old),
        )
    )
    await session.execute(
        delete(WebSession).where(or_(WebSession.ended_at < old, WebSession.expires_at < old))
    )


async def _prune(session: AsyncSession, now: datetime, scope: object) -> list:  # type: ignore[type-arg]
    await prune(session, now)
    return []


async def _never(session: AsyncSession, now: datetime, scope: object) -> None:
    return None


due_registry.register("web-sessions", _prune, _never)


# ------------------------------------------------------------------------- command


@registry.command(
    "dashboard",
    "A private link that signs you in to the course's web desk (works once, 10 minutes)",
    access=Access.MEMBER,
    ephemeral=True,
    topic="people",
)
async def dashboard(ctx: Context, _: BaseModel) -> Reply:
    me = ctx.me()
    base = str(ctx.config.get("web_url") or "").rstrip("/")
    if not base:
        raise Conflict(NOT_SERVED[0], hint=NOT_SERVED[1])
    caller = ctx.request.caller
    token = await issue_link(
        ctx.session,
        course_id=ctx.course.id,
        person_id=me.id,
        account=Account(caller.platform, ctx.request.workspace, caller.user_id),
        now=ctx.now,
    )
    what = "the staff desk" if me.is_staff else "your page"
    return Reply(
        title="Your web desk",
        text=f"{base}/signin?token={token}",
        sections=[
            Section(
                "",
                f"Open it within {LINK_TTL.seconds // 60} minutes to see {what} as {me.name}. "
                "It works once; do not share it. Type `dashboard` again for a new one.",
            )
        ],
        ephemeral=True,
    )
