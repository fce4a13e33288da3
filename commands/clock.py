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
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz))
    return dt.astimezone(UTC)
