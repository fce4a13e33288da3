"""Human-friendly dates and times in the course's zone."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo


def fmt_day(d: date) -> str:
    return f"{d:%a} {d:%b} {d.day}"


def fmt_day_year(d: date) -> str:
    return f"{d:%a} {d:%b} {d.day}, {d.year}"


def fmt_time(t: time) -> str:
    return datetime.combine(date(2000, 1, 1), t).strftime("%I:%M %p").lstrip("0")


def fmt_instant(instant: datetime, tz: ZoneInfo) -> str:
    """``Sun Aug 27, 2023, 11:59 PM EDT``: the zone abbreviation follows DST."""
    local = instant.astimezone(tz)
    return f"{fmt_day_year(local.date())}, {fmt_time(local.time())} {local.tzname()}"


def relative(instant: datetime, now: datetime) -> str:
    seconds = (instant - now).total_seconds()
    future = seconds >= 0
    s = abs(seconds)
    if s < 60:
        return "now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size:
            n = int(s // size)
            text = f"{n} {unit}{'s' * (n != 1)}"
            return f"in {text}" if future else f"{text} ago"
    return "now"
