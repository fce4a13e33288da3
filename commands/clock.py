"""Time sources. Handlers never call ``datetime.now()`` themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ShiftedClock:
    """Real time, shifted so that it read ``start`` when it was created.

    Lets a demo or a test live in the sample course's semester (2023) while time
    still moves, so scheduled posts fire as they would.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ShiftedClock needs an aware datetime")
        self._delta = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._delta

    def advance(self, delta: timedelta) -> None:
        self._delta += delta


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


def parse_instant(text: str, tz: str = "UTC") -> datetime:
    """An ISO date-time; without an offset it is read in ``tz``."""
    dt = datetime.fromisoformat(text)
    return localize(dt, ZoneInfo(tz)).astimezone(UTC)


def localize(local: datetime, tz: ZoneInfo) -> datetime:
    """A wall-clock time in ``tz`` as an aware instant; refused (InvalidInput) when the
    clocks skip it (a DST gap) or show it twice (the repeated hour, unless the time
    carries its offset: ``2023-11-05T01:30-05:00``)."""
    from commands.errors import InvalidInput

    if local.tzinfo is not None:
        return local
    first, second = local.replace(tzinfo=tz, fold=0), local.replace(tzinfo=tz, fold=1)
    shown = local.strftime("%Y-%m-%d %H:%M")
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != local:
        before = (first - timedelta(hours=3)).astimezone(tz)
        after = (first + timedelta(hours=3)).astimezone(tz)
        raise InvalidInput(
            f"{shown} does not exist in {tz.key}: the clocks skip that hour "
            f"({before.tzname()} → {after.tzname()}, daylight saving time).",
            hint="Give a time outside the gap, e.g. one hour later.",
        )
    if first.utcoffset() != second.utcoffset():
        iso = local.strftime("%Y-%m-%dT%H:%M")
        a, b = first.strftime("%z"), second.strftime("%z")
        raise InvalidInput(
            f"{shown} happens twice in {tz.key} (the clocks go back an hour).",
            hint=f"Add the offset: {iso}{a[:3]}:{a[3:]} ({first.tzname()}, the first) or "
            f"{iso}{b[:3]}:{b[3:]} ({second.tzname()}, the second).",
        )
    return first
