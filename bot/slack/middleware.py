"""Global middleware of the Slack app, run on every request before its listener.

- :class:`BotAuth`: the bot's own identity (``auth.test``, asked once per process and
  kept), which bolt's authorization reads on every request instead of asking again.
- ``attach`` (:func:`install`): puts the adapter (``context["coursebot"]``) and who is speaking
  (``context["who"]``, a :class:`Who` read the same way from a slash command, an
  interaction or an event) in the request's context; :class:`Profiles` fetches a
  caller's display name and profile email (``users.info``) when a listener needs them.
- :class:`Bindings`: whether the workspace is bound to a course
  (``context["course_id"]``; an unbound one is logged once, and the core answers it).
- :class:`RetryFilter`: Slack's retry (``X-Slack-Retry-Num`` > 0; Socket Mode's
  ``retry_attempt``) of an event this process already handled is answered 200 and
  dropped; other duplicates are caught by the core on the stored event id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext, AsyncBoltRequest
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.slack.sender import slack_error
from commands.context import Caller
from db.models import CourseBinding, Platform
from db.session import Database

if TYPE_CHECKING:
    from bot.slack.bot import SlackBot

log = logging.getLogger("coursebot.slack")

Next = Callable[[], Awaitable[Any]]


# ---------------------------------------------------------------------- the bot itself
class BotAuth:
    """``auth.test``, once per process: the bot's user id and its team. Every start,
    every Socket Mode reconnection and every request (bolt's ``authorize``) reads the
    kept answer."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.answer: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def test(self) -> dict[str, Any]:
        """The kept answer (asked now if it never was; a refusal raises and is not kept)."""
        async with self._lock:  # requests arriving together ask once
            if self.answer is None:
                self.answer = dict((await self.client.auth_test()).data)  # type: ignore[arg-type]
        return self.answer

    @property
    def user_id(self) -> str | None:
        return (self.answer or {}).get("user_id")

    @property
    def team_id(self) -> str | None:
        return (self.answer or {}).get("team_id")

    async def team(self) -> str | None:
        return (await self.test()).get("team_id")

    async def authorize(self) -> AuthorizeResult:
        """bolt's authorization of a request: the bot token and who the bot is."""
        answer = await self.test()
        return AuthorizeResult(
            enterprise_id=answer.get("enterprise_id"),
            team_id=answer.get("team_id"),
            team=answer.get("team"),
            url=answer.get("url"),
            bot_id=answer.get("bot_id"),
            bot_user_id=answer.get("user_id"),
            bot_token=self.client.token,
        )


# ---------------------------------------------------------------------- who is speaking
@dataclass(frozen=True)
class Who:
    """The caller as the payload names them: team, user id, the name it gives."""

    team: str
    user: str
    name: str = ""

    def caller(self, profile: Profile | None = None) -> Caller:
        """The core's caller; the profile adds the email Slack vouches for (and a name
        where the payload gives none)."""
        name = self.name or (profile.name if profile else "")
        return Caller(Platform.SLACK, self.user, name, profile.email if profile else None)


def who_of(body: dict[str, Any]) -> Who:
    """Who sent a slash command (or its inbox entry), an interaction, or an event."""
    if "user_id" in body:  # a slash command
        return Who(str(body.get("team_id") or ""), str(body["user_id"]), body.get("user_name", ""))
    user = body.get("user")
    if isinstance(user, dict):  # buttons, modal submissions
        team = (body.get("team") or {}).get("id") or user.get("team_id") or ""
        return Who(
            str(team), str(user.get("id") or ""), user.get("username") or user.get("name") or ""
        )
    event = body.get("event") or {}
    team = body.get("team_id") or event.get("team") or ""
    return Who(str(team), str(event.get("user") or ""))


@dataclass
class Profile:
    name: str = ""
    email: str | None = None
    fetched: float = field(default_factory=time.monotonic)


class Profiles:
    """Display names and profile emails (``users.info``), kept an hour."""

    def __init__(self, client: AsyncWebClient, ttl: float = 3600.0) -> None:
        self.client = client
        self.ttl = ttl
        self._cache: dict[str, Profile] = {}

    async def get(self, user: str) -> Profile:
        cached = self._cache.get(user)
        if cached is not None and time.monotonic() - cached.fetched < self.ttl:
            return cached
        profile = Profile()
        try:
            info = (await self.client.users_info(user=user)).get("user") or {}
            p = info.get("profile") or {}
            profile = Profile(
                name=p.get("display_name") or info.get("real_name") or info.get("name") or "",
                email=p.get("email"),
            )
        except SlackApiError as exc:
            log.info("users.info %s failed: %s", user, slack_error(exc))
        self._cache[user] = profile
        return profile


# ---------------------------------------------------------------------- the course
class Bindings:
    """Which course a workspace is bound to. A bound team is kept; an unbound one is
    asked again next time (an instructor may bind it meanwhile) and logged once."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._bound: dict[str, int] = {}
        self._warned: set[str] = set()

    async def course_of(self, team: str) -> int | None:
        if team in self._bound:
            return self._bound[team]
        async with self.db.session() as session:
            found = await session.scalar(
                select(CourseBinding.course_id).where(
                    CourseBinding.platform == Platform.SLACK, CourseBinding.external_id == team
                )
            )
        if found is not None:
            self._bound[team] = found
        elif team not in self._warned:
            self._warned.add(team)
            log.warning(
                "Slack team %s is not bound to any course; run "
                "`coursebot course bind <course-key> slack %s`",
                team,
                team,
            )
        return found


# ---------------------------------------------------------------------- retries
class RecentIds:
    """A bounded set of ids (oldest forgotten first)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> None:
        self._ids[key] = None
        self._ids.move_to_end(key)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._ids


def retry_num(request: AsyncBoltRequest) -> int:
    raw = request.headers.get("x-slack-retry-num", ["0"])
    try:
        return int(raw[0] if raw else 0)
    except ValueError:
        return 0


class RetryFilter:
    """Drops Slack's retry of an event already handled here; a listener calls
    :meth:`done` once it has handled one."""

    def __init__(self, size: int = 10_000) -> None:
        self.handled = RecentIds(size)

    def done(self, body: dict[str, Any]) -> None:
        if body.get("event_id"):
            self.handled.add(str(body["event_id"]))

    def is_handled_retry(self, body: dict[str, Any], request: AsyncBoltRequest) -> bool:
        event_id = body.get("event_id")
        if event_id and retry_num(request) > 0 and event_id in self.handled:
            log.info("Slack retry %s of event %s ignored", retry_num(request), event_id)
            return True
        return False


def install(app: AsyncApp, bot: SlackBot) -> None:
    """The adapter's global middleware, in order (after bolt's own: signature check,
    authorization, the bot's own events ignored). Plain functions, as bolt injects
    their arguments by name."""

    async def attach(body: dict[str, Any], context: AsyncBoltContext, next: Next) -> None:
        """Every listener gets the adapter and who is speaking."""
        context["coursebot"] = bot
        context["who"] = who_of(body)
        await next()

    async def drop_handled_retries(
        body: dict[str, Any], request: AsyncBoltRequest, next: Next
    ) -> BoltResponse | None:
        if bot.retries.is_handled_retry(body, request):
            return BoltResponse(status=200, body="")
        await next()
        return None

    async def course_binding(context: AsyncBoltContext, next: Next) -> None:
        who: Who | None = context.get("who")
        team = who.team if who else ""
        context["course_id"] = await bot.bindings.course_of(team) if team else None
        await next()

    app.middleware(attach)
    app.middleware(drop_handled_retries)
    app.middleware(course_binding)
