"""The course calendar as iCalendar (RFC 5545), made with the ``icalendar`` library
(line folding at 75 octets, escaping, CRLF).

Times carry the course's TZID with its VTIMEZONE, so a class keeps its local time
across DST; DTSTAMP, LAST-MODIFIED and SEQUENCE come from the event's recorded version
(:mod:`commands.calendar.versions`), so the same data gives the same bytes (an ETag
that holds) and a change updates the event subscribers already have.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, Event, vRecur
from sqlalchemy.ext.asyncio import AsyncSession

from commands.calendar.events import CalEvent, calendar_events, person_key
from commands.calendar.versions import versions
from db.models import Course, Person

#: How often a subscribed calendar app should look again (where it listens).
REFRESH = "PT1H"


@dataclass(frozen=True)
class CalendarFile:
    name: str
    data: bytes
    #: When anything in it last changed (the feed's Last-Modified).
    modified: datetime
    #: Some versions in it are not recorded yet (a read-only download).
    pending: bool = False


def domain(course: Course) -> str:
    """The right-hand side of the course's UIDs: ``class-20230830@comp790-23f.coursebot``."""
    return f"{course.key}.coursebot"


def _ahead(before: timedelta) -> str:
    hours = int(before.total_seconds() // 3600)
    if hours and hours % 24 == 0:
        days = hours // 24
        return f"{days} day{'s' * (days != 1)}"
    if hours:
        return f"{hours} hour{'s' * (hours != 1)}"
    return f"{int(before.total_seconds() // 60)} minutes"


def vevent(ev: CalEvent, tz: ZoneInfo, dom: str) -> Event:
    """The VEVENT of an event, without its version (DTSTAMP, LAST-MODIFIED, SEQUENCE)."""
    e = Event()
    e.add("uid", f"{ev.uid}@{dom}")
    e.add("summary", ev.summary)
    if isinstance(ev.start, datetime):
        e.add("dtstart", ev.start.astimezone(tz))
        if isinstance(ev.end, datetime) and ev.end > ev.start:
            e.add("dtend", ev.end.astimezone(tz))
        # (no DTEND: a deadline is an instant; RFC 5545 3.6.1)
    else:  # whole days: DTEND is the day after the last
        last = ev.end if isinstance(ev.end, date) else ev.start
        e.add("dtstart", ev.start)
        e.add("dtend", last + timedelta(days=1))
    if ev.weekly_until is not None:
        e.add("rrule", vRecur(freq="weekly", until=ev.weekly_until.astimezone(UTC)))
    if ev.description:
        e.add("description", ev.description)
    if ev.location:
        e.add("location", ev.location)
    if ev.url:
        e.add("url", ev.url)
    if ev.category:
        e.add("categories", [ev.category])
    e.add("transp", "TRANSPARENT" if ev.free else "OPAQUE")
    for before in ev.alarms:
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", f"{ev.summary} (in {_ahead(before)})")
        alarm.add("trigger", -before)
        e.add_component(alarm)
    return e


def _when(ev: CalEvent, tz: ZoneInfo) -> datetime:
    if isinstance(ev.start, datetime):
        return ev.start.astimezone(UTC)
    return datetime.combine(ev.start, time(0), tzinfo=tz).astimezone(UTC)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def build_calendar(
    session: AsyncSession,
    course: Course,
    person: Person | None,
    now: datetime,
    *,
    record: bool = False,
) -> CalendarFile:
    """The course calendar, with ``person``'s own events (None: course-wide). With
    ``record`` the versions it serves are written (in the caller's transaction)."""
    tz = ZoneInfo(course.timezone)
    dom = domain(course)
    now = now.astimezone(UTC).replace(microsecond=0)  # as iCalendar and HTTP dates say it
    events = sorted(
        await calendar_events(session, course, person), key=lambda e: (_when(e, tz), e.uid)
    )
    seen: set[str] = set()
    parts: list[tuple[str, Event]] = []
    for ev in events:
        if ev.uid in seen:  # one UID, one event (a course file cannot make two)
            continue
        seen.add(ev.uid)
        parts.append((ev.uid, vevent(ev, tz, dom)))
    prints = {uid: _digest(e.to_ical()) for uid, e in parts}
    # The calendar as a whole changes when an event leaves it too (a talk reassigned):
    # one more version, over its list of events, dates the feed's Last-Modified.
    whole = f"calendar-{person_key(person)}" if person is not None else "calendar"
    prints[whole] = _digest("\n".join([course.name, course.timezone, *sorted(seen)]).encode())
    known = await versions(session, course.key, prints, now, record=record)

    cal = Calendar()
    cal.add("prodid", "-//coursebot//course calendar//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", course.name)
    cal.add("x-wr-timezone", course.timezone)
    cal.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", REFRESH)
    for uid, e in parts:
        v = known[uid]
        stamp = v.modified.astimezone(UTC)
        e.add("dtstamp", stamp)
        e.add("last-modified", stamp)
        e.add("sequence", v.sequence)
        cal.add_component(e)
    if events:  # the zone's rules over the course's span (and a year either side)
        first, last = _when(events[0], tz).date(), _when(events[-1], tz).date()
        cal.add_missing_timezones(
            first_date=first - timedelta(days=366), last_date=last + timedelta(days=366)
        )
    return CalendarFile(
        f"{course.key}.ics",
        cal.to_ical(),
        max(v.modified for v in known.values()),
        any(v.pending for v in known.values()),
    )
