"""What a handler gets: the caller, the course, one DB session, the time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from commands.errors import NotRegistered
from commands.outbox import Outgoing
from commands.replies import Reply
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
    """A file sent with a command: a local path (the terminal, Slack's downloaded
    files) or a URL (Discord's CDN). ``size`` and ``content_type`` are what the platform
    declares (the size is checked before a download; the type is never trusted)."""

    name: str
    path: Path | None = None
    url: str | None = None
    size: int | None = None
    content_type: str | None = None
    #: Where ``url`` may be fetched from (``https://cdn.discordapp.com``, ...; see
    #: ``commands.attachments.file_origins``): none, and a URL is never fetched.
    origins: tuple[str, ...] = ()


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
    outgoing: list[Outgoing] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # deployment options (settings)
    #: What the command's ``prepare`` step computed before its transaction (slow work
    #: such as the assignment solver, done on a read snapshot; see Registry.command).
    prepared: Any = None
    #: False while the core would rather run ``prepare`` again when the data changed
    #: meanwhile (the handler raises :class:`~commands.errors.PreparedStale`); True on
    #: the last try, where the handler keeps what was prepared and says what changed.
    prepared_final: bool = True

    @property
    def caller(self) -> Caller:
        return self.request.caller

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.course.timezone)

    def post(self, channel_key: str, reply: Reply) -> None:
        """Post to a course channel (by its key in the course's ``channels``) after commit."""
        channel = self.course.channels.get(channel_key, channel_key)
        self.outgoing.append(Outgoing(reply, channel=channel))

    def post_remembered(self, channel: str, key: str, reply: Reply) -> None:
        """Post to a channel (a name or id) and remember the message under ``key``."""
        self.outgoing.append(Outgoing(reply, channel=channel, remember=key))

    def edit(self, key: str, reply: Reply) -> None:
        """Edit the message posted earlier under ``key`` (if any) after commit."""
        self.outgoing.append(Outgoing(reply, edit_key=key))

    def dm(self, person_id: int, reply: Reply, *, batch: str | None = None) -> None:
        """Send a private message to a person after commit (``batch``: one of a mass
        send whose delivery is counted, see :class:`commands.replies.Delivery`)."""
        self.outgoing.append(Outgoing(reply, person_id=person_id, batch=batch))

    def dm_account(
        self, platform: Platform, user_id: str, reply: Reply, *, batch: str | None = None
    ) -> None:
        """Send a private message to one chat account (linked or not) after commit
        (``batch``: counted in the reply, see :class:`commands.replies.Delivery`)."""
        self.outgoing.append(Outgoing(reply, account=(platform.value, user_id), batch=batch))

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
