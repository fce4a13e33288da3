"""Due work, registered like commands: each feature declares, next to its commands,
what it posts on its own and when (a battle timer's phases, critique pings, the
discussion call-back, scheduled announcements, deadline reminders).

A provider answers two questions for the courses a scheduler serves:

- ``collect(session, now, scope)``: what is due at ``now`` (recorded as sent in the
  same transaction, returned as outbox items);
- ``next_at(session, now, scope)``: the earliest instant *after* ``now`` at which it
  will have something to post (None: nothing planned).

The scheduler (:mod:`bot.scheduler`) sleeps until the earliest ``next_at`` of all
providers, is woken early when a command changes something, and never imports a
feature: features register here, and :func:`commands.load_registry` imports them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from commands.outbox import Outgoing


@dataclass(frozen=True)
class Scope:
    """Which courses a scheduler serves (None: all) and its deployment options."""

    course_ids: set[int] | None = None
    #: Hours before a deadline at which reminders go out (COURSEBOT_REMINDER_HOURS).
    reminder_hours: tuple[int, ...] = (24,)


Collect = Callable[[AsyncSession, datetime, Scope], Awaitable[list[tuple[int, Outgoing]]]]
NextAt = Callable[[AsyncSession, datetime, Scope], Awaitable[datetime | None]]
#: The features' own form: ``due_x(session, now, *, course_ids=None)``.
DueByCourse = Callable[..., Awaitable[list[tuple[int, Outgoing]]]]
Poll = Callable[[AsyncSession, Scope], Awaitable[bool]]


@dataclass(frozen=True)
class DueWork:
    name: str
    collect: Collect
    next_at: NextAt
    #: For work that other processes cause (GPU workers finishing a job): a cheap read
    #: that says whether something waits; the scheduler polls it quickly while true.
    poll: Poll | None = None


@dataclass
class DueRegistry:
    providers: dict[str, DueWork] = field(default_factory=dict)

    def register(
        self, name: str, collect: Collect, next_at: NextAt, *, poll: Poll | None = None
    ) -> None:
        if name in self.providers:
            raise ValueError(f"due work {name!r} declared twice")
        self.providers[name] = DueWork(name, collect, next_at, poll)

    def register_by_course(self, name: str, due: DueByCourse, next_at: NextAt) -> None:
        """Register a feature's ``due(session, now, *, course_ids)`` as is."""

        async def collect(
            session: AsyncSession, now: datetime, scope: Scope
        ) -> list[tuple[int, Outgoing]]:
            return await due(session, now, course_ids=scope.course_ids)

        self.register(name, collect, next_at)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.providers.values())


#: Every feature's due work (filled when the feature modules are imported).
due_registry = DueRegistry()


def earliest(*instants: datetime | None) -> datetime | None:
    """The earliest of the instants that are not None."""
    found = [t for t in instants if t is not None]
    return min(found) if found else None
