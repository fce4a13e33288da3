"""What a handler gets: the caller, the course, one DB session, the time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from commands.errors import NotRegistered
from db.models import Course, Person, Platform

if TYPE_CHECKING:
    from commands.registry import Registry


@dataclass(frozen=True)
class Caller:
    """Who is speaking, as the platform knows them."""

    platform: Platform
    user_id: str
    display_name: str = ""
    email: str | None = None  # when the platform tells us (Slack profiles do)


@dataclass(frozen=True)
class Where:
    """Where the message came from: a channel (or thread) or a direct message."""

    channel: str | None = None
    is_dm: bool = False
    thread: str | None = None


@dataclass(frozen=True)
class Attachment:
    """A file sent with a command (a local path in the terminal)."""

    name: str
    path: Path | None = None
    url: str | None = None
    size: int | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Request:
    """One incoming command, action or reaction, as an adapter hands it to the core."""

    platform: Platform
    workspace: str  # the binding's external id: guild id, Slack team id, shell session
    caller: Caller
    where: Where = field(default_factory=Where)
    attachments: tuple[Attachment, ...] = ()
    event_id: str | None = None


@dataclass
class Context:
    session: AsyncSession
    course: Course
    person: Person | None
    request: Request
    now: datetime
    registry: Registry
    data_dir: Path

    @property
    def caller(self) -> Caller:
        return self.request.caller

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.course.timezone)

    def me(self) -> Person:
        """The caller's roster entry, or a friendly refusal if not linked."""
        if self.person is None:
            raise NotRegistered(
                "You are not registered in this course yet.",
                hint="Type `register <your email>` to link your account to the roster.",
            )
        return self.person

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz)

    def today(self) -> date:
        return self.now.astimezone(self.tz).date()

    def at_local(self, day: date, t: time) -> datetime:
        return datetime.combine(day, t, tzinfo=self.tz)
