"""The course calendar (issue #19 point 4): every session, deadline and one's own
talks, as an iCalendar file (``deadlines ics``, ``coursebot calendar export``) and as a
personal subscription feed that stays current (``calendar link``, served by the web
desk at ``/cal/<token>.ics``).

:mod:`~commands.calendar.events` gathers the events (stable UIDs),
:mod:`~commands.calendar.versions` keeps what was served of each (SEQUENCE,
LAST-MODIFIED), :mod:`~commands.calendar.ics` writes iCalendar,
:mod:`~commands.calendar.tokens` keeps the subscription links (hashes only) and
:mod:`~commands.calendar.commands` declares the commands.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from commands.calendar import commands  # noqa: F401  (declare commands)
from commands.calendar.events import ALARMS, CalEvent, calendar_events, person_key
from commands.calendar.ics import CalendarFile, build_calendar, domain
from commands.calendar.tokens import issue_token, live_since, revoke_tokens, subscriber
from db.models import Course, Person


async def calendar_ics(
    session: AsyncSession, course: Course, person: Person | None, now: datetime | None = None
) -> bytes:
    """The calendar's bytes as a read would serve them (see :func:`build_calendar`)."""
    cal = await build_calendar(session, course, person, now or datetime.now(UTC))
    return cal.data


__all__ = [
    "ALARMS",
    "CalEvent",
    "CalendarFile",
    "build_calendar",
    "calendar_events",
    "calendar_ics",
    "domain",
    "issue_token",
    "live_since",
    "person_key",
    "revoke_tokens",
    "subscriber",
]
