"""The course file: one YAML document describes a course (settings, papers, battle
pairs, milestones, deadlines, people). Validated with pydantic; every problem is
reported with its location (``papers[12].slot: must be one of 30, 45, battle,
instructor``) and the file's line. Importing again updates, never duplicates.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.errors import Conflict, InvalidInput
from db.models import (
    Battle,
    Course,
    CourseBinding,
    Deadline,
    Degree,
    Identity,
    Introduction,
    Milestone,
    Paper,
    Person,
    Platform,
    Role,
    Slot,
)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = date  # an alias, for fields named `date`
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _local_datetime(v: Any) -> Any:
    """YAML reads ``2023-08-27T23:59`` as text: accept it, and real datetimes."""
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.strip().replace(" ", "T", 1))
        except ValueError:
            raise ValueError(f"must be a date and time like 2023-08-27T23:59, not {v!r}") from None
    if isinstance(v, date) and not isinstance(v, datetime):
        return datetime.combine(v, time(23, 59))
    return v


def _hhmm(v: Any) -> Any:
    if isinstance(v, int):  # YAML 1.1 reads 13:00 unquoted as 780 (sexagesimal)
        return time(v // 60, v % 60)
    return v


def _slot(v: Any) -> Any:
    return str(v) if isinstance(v, int) else v


LocalDateTime = Annotated[datetime, BeforeValidator(_local_datetime)]
ClockTime = Annotated[time, BeforeValidator(_hhmm)]


class _Strict(BaseModel):
    # Every field is documented by the string under it (docs/course-file.md is made
    # from these, `coursebot course docs`).
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, use_attribute_docstrings=True
    )


class RankingRules(_Strict):
    """How students rank the papers they would like to present."""

    standard_choices: int = Field(7, ge=1, le=25)
    """How many distinct 30/45-minute papers each student ranks, best first."""
    battle_choices: int = Field(3, ge=1, le=10)
    """How many battle papers each student ranks (5 leaves almost nobody without one of
    theirs)."""
    max_presenters: int = Field(2, ge=1, le=4)  # per 30/45-min paper (pairs when needed)
    """The most students on one 30/45-minute paper, used when there are more students than
    papers (2: pairs)."""
    battle_group: tuple[int, int] = (3, 4)  # students per side of a battle, min and max
    """Students per side of a battle, `[min, max]`; a battle runs with at least `min` a
    side, or not at all."""

    @field_validator("battle_group")
    @classmethod
    def _group(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1]:
            raise ValueError(f"must be [min, max] with 1 <= min <= max, not {list(v)}")
        return v


class PresenterLimits(_Strict):
    """How many students present one standard paper of a slot kind."""

    min: int = Field(1, ge=0, le=6)
    """At least this many presenters (whenever there are students enough)."""
    max: int = Field(2, ge=1, le=6)
    """At most this many presenters."""

    @model_validator(mode="after")
    def _order(self) -> PresenterLimits:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max})")
        return self


def _pair(v: Any) -> Any:
    """``[a, b]`` is short for ``{students: [a, b]}``."""
    return {"students": v} if isinstance(v, list) else v


class PartnerEntry(_Strict):
    """Two students who present one standard paper together (optionally a given one)."""

    students: tuple[str, str]
    """The two students (email, onyen or name); `[a, b]` alone is short for this entry."""
    paper: int | None = Field(None, ge=1)
    """The paper they present, if it is decided already."""


class AssignmentRules(_Strict):
    """The rules the assignment solver enforces (docs/assignment.md).

    People are named by roster email (or onyen, or name); the import stores emails."""

    # presenters per standard paper, by slot ("30" / "45"); missing: min 1, max
    # ranking.max_presenters
    presenters: dict[Annotated[Literal["30", "45"], BeforeValidator(_slot)], PresenterLimits] = (
        Field(default_factory=dict)
    )
    """Presenters per standard paper, by slot (`"30"`, `"45"`); a slot left out: min 1, max
    `ranking.max_presenters`."""
    # every student-presented paper gets its minimum whenever there are students enough
    coverage: bool = True
    """Every student-presented paper gets its minimum whenever there are students enough."""
    # nobody gets a paper fewer than this many days after publishing, unless no one else
    # can take it (then they are named); 0 turns the rule off
    min_notice_days: int = Field(7, ge=0, le=120)
    """Nobody gets a paper fewer than this many days after publishing, unless no one else
    can take it (then they are named); 0 turns the rule off."""
    # among equally fair assignments, prefer even workloads (a solo 45 is the most work)
    balance: bool = True
    """Among equally fair assignments, prefer even workloads (a solo 45 is the most work)."""
    # students who ranked nothing are spread over papers and battle sides
    spread_nonrankers: bool = True
    """Students who ranked nothing are spread over papers and battle sides."""
    partners: list[Annotated[PartnerEntry, BeforeValidator(_pair)]] = Field(default_factory=list)
    """Students who present a standard paper together."""
    # pairs who must not present together (same paper, same battle side)
    conflicts: list[tuple[str, str]] = Field(default_factory=list)
    """Pairs who must not present together (same paper, same battle side)."""
    # student -> class days they cannot present
    unavailable: dict[str, list[date]] = Field(default_factory=dict)
    """Student → class days they cannot present."""


#: Phase keys a battle's format cannot use (they are words of `battle timer`).
RESERVED_PHASES = frozenset({"stop"})


class PhaseEntry(_Strict):
    """One timed phase of a paper battle (`battle timer <battle> <key>`)."""

    key: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,15}$")
    """What staff type to start it: `battle timer 1 <key>` (lowercase, at most 16
    characters)."""
    title: str = Field(min_length=1, max_length=80)
    """How the timer's posts name it ("side A presents")."""
    minutes: int = Field(ge=1, le=120)
    """How long it lasts."""
    side: Literal["A", "B"] | None = None
    """The side that presents in it: its paper and presenters are named when it starts."""

    @field_validator("minutes", mode="wrap")
    @classmethod
    def _minutes(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> int:
        try:
            return handler(v)
        except ValidationError as exc:
            if {e["type"] for e in exc.errors()} <= {"greater_than_equal", "less_than_equal"}:
                raise ValueError(f"a phase lasts from 1 to 120 minutes (you gave {v})") from None
            raise

    @field_validator("key")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_PHASES:
            raise ValueError(f"{v!r} is a word of `battle timer`; name the phase otherwise")
        return v


def _unique_phases(phases: list[PhaseEntry] | None) -> list[PhaseEntry] | None:
    if phases is not None:
        if not phases:
            raise ValueError("a battle needs at least one phase")
        keys = Counter(p.key for p in phases)
        twice = [k for k, n in keys.items() if n > 1]
        if twice:
            raise ValueError(f"phase {twice[0]!r} is listed twice")
    return phases


class BattleRules(_Strict):
    """Paper-battle timing and voting rules."""

    present_minutes: int = Field(20, ge=1, le=120)  # each side's presentation
    """Each side's presentation, in the default format."""
    reasons_minutes: int = Field(5, ge=1, le=60)  # "3 reasons why ours is better"
    """"3 reasons why ours is better", in the default format."""
    rebuttal_minutes: int = Field(5, ge=1, le=60)
    """The rebuttal, in the default format."""
    warnings: list[int] = Field(default_factory=lambda: [5, 1])  # minutes before the end
    """Minutes before the end of a phase at which the timer warns."""
    overrun_every_seconds: int = Field(30, ge=5, le=600)  # "+0:30, +1:00, ..." while over
    """How often the overrun is counted once time is up ("+0:30, +1:00, …")."""
    justification_min: int = Field(20, ge=1, le=2000)  # characters a vote's reason needs
    """Characters a vote's justification needs for the vote to count."""
    # secret: nobody (staff included) sees sides or reasons before the poll closes, and
    # Discord reactions are removed as soon as they are recorded; open: reactions stay
    # and the poll shows live counts per side (reasons are still read only after close).
    ballot: Literal["secret", "open"] = "secret"
    """`secret`: nobody, staff included, sees sides or reasons before the poll closes
    (Discord reactions are removed once recorded); `open`: reactions stay and the poll
    shows live counts per side (reasons are still read only after it closes)."""
    phases: list[PhaseEntry] | None = None
    """The format of every battle, in order (a battle may have its own); unset: side A and
    side B present (`present_minutes` each), then 3 reasons, then the rebuttal."""

    @field_validator("phases")
    @classmethod
    def _phases(cls, v: list[PhaseEntry] | None) -> list[PhaseEntry] | None:
        return _unique_phases(v)

    def phase_list(self) -> list[PhaseEntry]:
        """The phases in order: ``phases``, or the default format from the minutes."""
        if self.phases:
            return list(self.phases)
        return [
            PhaseEntry(key="a", title="side A presents", minutes=self.present_minutes, side="A"),
            PhaseEntry(key="b", title="side B presents", minutes=self.present_minutes, side="B"),
            PhaseEntry(key="reasons", title="3 reasons", minutes=self.reasons_minutes),
            PhaseEntry(key="rebuttal", title="rebuttal", minutes=self.rebuttal_minutes),
        ]


class TalkRules(_Strict):
    """The strict timer of talks and agenda items (`talk timer`, `agenda timer`)."""

    warnings: list[int] = Field(default_factory=lambda: [5, 1])
    """Minutes before the end at which the timer warns."""
    overrun_every_seconds: int = Field(60, ge=5, le=600)
    """How often the overrun is counted once time is up."""


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
_CLOCK_BEFORE = re.compile(
    r"^(\d{1,2}):(\d{2})(?:\s+(?:the\s+day\s+before|(\d+)\s+days?\s+before))?$"
)


def duration_of(text: str) -> timedelta:
    """The length of a checked duration (``24h``, ``90m``, ``2d``, ``1d12h``)."""
    m = _DURATION.fullmatch(text)
    assert m is not None and any(m.groups()), text
    d, h, mins = (int(x or 0) for x in m.groups())
    return timedelta(days=d, hours=h, minutes=mins)


def _duration(v: Any) -> Any:
    """A positive length of time: ``24h``, ``90m``, ``2d``, ``1d12h`` (kept as written,
    lowercase and without spaces)."""
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise ValueError("must be a length of time like 24h, 90m or 2d")
    if isinstance(v, int | float):
        if v <= 0:
            raise ValueError(f"must be a positive length of time like 24h (not {v})")
        raise ValueError(f"needs a unit: `{v}h` (hours), `{v}m` (minutes) or `{v}d` (days)")
    text = v.strip().lower().replace(" ", "")
    if text.startswith("-"):
        raise ValueError(f"must be a positive length of time like 24h (not {v})")
    m = _DURATION.fullmatch(text)
    if not text or m is None or not any(m.groups()):
        raise ValueError(f"must be a length of time like 24h, 90m, 2d or 1d12h, not {v!r}")
    if duration_of(text) <= timedelta(0):
        raise ValueError(f"must be more than zero (not {v})")
    return text


def _reminder_at(v: Any) -> Any:
    """A reminder's time: a length of time before the deadline (``24h``), or a local
    clock time on the day (``"12:00"``) or days before (``"18:00 the day before"``)."""
    if isinstance(v, str) and ":" in v:
        m = _CLOCK_BEFORE.fullmatch(" ".join(v.strip().lower().split()))
        if m is None:
            raise ValueError(
                f'must be a time before the deadline (24h, 2h) or a clock time ("12:00", '
                f'"18:00 the day before"), not {v!r}'
            )
        hour, minute = int(m.group(1)), int(m.group(2))
        if hour > 23 or minute > 59:
            raise ValueError(f"{v!r} is not a time of day")
        days = 1 if m.group(3) is None and "before" in v else int(m.group(3) or 0)
        when = f"{hour:02d}:{minute:02d}"
        if days == 1:
            return f"{when} the day before"
        return f"{when} {days} days before" if days else when
    number = isinstance(v, int | float) and not isinstance(v, bool)
    if number and v > 0:
        raise ValueError(
            f'needs a unit (`{v}h`), or, for a clock time, quotes ("18:00"; YAML reads 18:00 '
            "as a number)"
        )
    if (number and v <= 0) or (isinstance(v, str) and v.strip().startswith("-")):
        raise ValueError(
            f"must be a positive time before the deadline, like 24h or 2h (not {v}); a "
            "reminder comes before the deadline"
        )
    return _duration(v)


Duration = Annotated[str, BeforeValidator(_duration)]
ReminderAt = Annotated[str, BeforeValidator(_reminder_at)]


def reminder_instant(spec: str, due: datetime) -> datetime:
    """When a reminder (a checked :data:`ReminderAt`) goes out for a deadline ``due``
    (aware, in the course's zone): that long before it (elapsed time, whatever the DST),
    or at that local time."""
    m = _CLOCK_BEFORE.fullmatch(spec)
    if m is None:
        return (due.astimezone(UTC) - duration_of(spec)).astimezone(due.tzinfo)
    days = 1 if m.group(3) is None and "before" in spec else int(m.group(3) or 0)
    day = due.date() - timedelta(days=days)
    return datetime.combine(day, time(int(m.group(1)), int(m.group(2))), tzinfo=due.tzinfo)


class CritiqueRules(_Strict):
    """How critiques count in the grade (`grades`, `critique export`). Only what is graded
    or past its deadline counts: a critique waiting for a grade, or not due yet, is left
    out, never counted as 0."""

    missing: Literal["zero", "blank"] = "zero"
    """A critique never submitted, once its deadline has passed: `zero` counts it as 0;
    `blank` leaves it out of the grade (staff can still record one as 0 with `critique
    grade <paper> missing <student>`)."""
    accept_late: bool = True
    """Critiques submitted after the deadline are accepted and marked late; `false`
    refuses them."""
    late_penalty: float = Field(0, ge=0, le=1)
    """The share of its points a late critique loses (`0.5`: a late pass counts half)."""
    late_penalty_per_day: float = Field(0, ge=0, le=1)
    """Also lost per started day late (`0.1`: 10% a day), on top of `late_penalty`; a
    critique never counts below 0."""
    late_cutoff: Duration | None = None
    """How long after the deadline late critiques are still accepted (`48h`, `7d`); unset:
    any time."""
    presenters_excused: bool = True
    """Students presenting a paper are excused from critiquing it: not reminded, never
    missing, not counted. `false`: they owe one like everyone."""

    @model_validator(mode="after")
    def _late(self) -> CritiqueRules:
        if not self.accept_late:
            set_ = [
                k
                for k in ("late_penalty", "late_penalty_per_day", "late_cutoff")
                if getattr(self, k)
            ]
            if set_:
                raise ValueError(
                    f"{set_[0]} applies to late critiques, but accept_late is false (they are "
                    "refused)"
                )
        return self

    def penalty(self, late_by: timedelta) -> float:
        """The share of its points a critique submitted ``late_by`` after the deadline
        loses (0 on time)."""
        if late_by <= timedelta(0):
            return 0.0
        days = -(-late_by // timedelta(days=1))  # started days
        return min(1.0, self.late_penalty + self.late_penalty_per_day * days)

    @property
    def cutoff(self) -> timedelta | None:
        """How long after the deadline late critiques are accepted (None: any time)."""
        return duration_of(self.late_cutoff) if self.late_cutoff else None


class ReminderRules(_Strict):
    """When the bot reminds students privately of what they still owe."""

    critique: list[ReminderAt] = Field(default_factory=lambda: ["18:00 the day before", "12:00"])
    """When each student who still owes a critique gets a private reminder: a time before
    the deadline (`24h`, `2h`, `90m`, `2d`), or a local clock time on the day
    (`"12:00"`) or before it (`"18:00 the day before"`, `"18:00 2 days before"`). Presenters
    of the paper, the excused and those who submitted get none; the one public post is the
    closing one, at the deadline. `[]`: no reminders."""

    @field_validator("critique")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        twice = [k for k, n in Counter(v).items() if n > 1]
        if twice:
            raise ValueError(f"{twice[0]!r} is listed twice")
        return v


class Bindings(_Strict):
    """Where the course lives on each platform (`coursebot course bind` does the same)."""

    terminal: str | None = None
    """A terminal shell session's name (`default` for `coursebot shell`)."""
    discord: str | None = None  # guild id
    """The Discord guild (server) id."""
    slack: str | None = None  # workspace (team) id
    """The Slack workspace (team) id, `T0123ABCD`."""


class BreakEntry(_Strict):
    """Days without class, with the reason shown in `schedule` ("Spring break")."""

    model_config = ConfigDict(populate_by_name=True)

    start: Day = Field(alias="from")
    """The first day of the break."""
    end: Day | None = Field(None, alias="to")
    """The last day of the break (included); unset: a one-day break."""
    reason: str = Field(min_length=1, max_length=100)
    """Why there is no class ("Spring break", "Thanksgiving")."""

    @model_validator(mode="after")
    def _order(self) -> BreakEntry:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"`to` ({self.end}) is before `from` ({self.start})")
        return self

    @property
    def last(self) -> date:
        return self.end or self.start

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.last


class OfficeHoursSlot(_Strict):
    """A weekly office-hours slot."""

    day: Weekday
    """The weekday (`mon` … `sun`)."""
    start: ClockTime
    """When it starts, local time (`"15:00"`)."""
    end: ClockTime | None = None
    """When it ends, local time."""
    place: str | None = Field(None, max_length=200)
    """A room ("SN 255")."""
    link: str | None = Field(None, max_length=500)
    """A meeting or booking link."""
    host: str | None = Field(None, max_length=100)
    """Who holds it ("Maya Johnson (TA)"); unset: the instructor."""

    @model_validator(mode="after")
    def _where(self) -> OfficeHoursSlot:
        if not self.place and not self.link:
            raise ValueError("give a place or a link")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end:%H:%M}) is not after start ({self.start:%H:%M})")
        return self


class CourseSettings(_Strict):
    """The course itself: names, times, rules and where it lives."""

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")
    """The course's key, unique in the database (`comp790-23f`); importing again updates the
    course with this key."""
    name: str = Field(min_length=1)
    """The course's name, as students see it."""
    term: str = ""
    """The term ("Fall 2023")."""
    timezone: str = "America/New_York"
    """The IANA timezone every local date and time of the file is read in."""
    class_days: list[Weekday] = Field(default_factory=list)
    """The weekly pattern: the weekdays class meets (`[mon, wed]`)."""
    class_start: ClockTime | None = None
    """When class starts, local time (`"14:30"`; quote it: YAML reads 14:30 as a number)."""
    class_end: ClockTime | None = None
    """When class ends, local time."""
    first_day: Day | None = None
    """The first class day; with `last_day` every class meeting is known (`schedule`, the
    calendar), papers or not."""
    last_day: Day | None = None
    """The last class day."""
    critique_deadline: ClockTime = time(13, 0)
    """Critiques are due at this local time on the paper's class day."""
    critique_rules: CritiqueRules = Field(default_factory=CritiqueRules)
    """How critiques count: a missing one, late ones, presenters."""
    reminders: ReminderRules = Field(default_factory=ReminderRules)
    """When students who still owe something are reminded privately (`{critique: [24h,
    2h]}`)."""
    ranking_deadline: LocalDateTime | None = None
    """When paper rankings are due (local date and time)."""
    ranking: RankingRules = Field(default_factory=RankingRules)
    """How students rank papers."""
    assignment: AssignmentRules = Field(default_factory=AssignmentRules)
    """The rules of the presentation assignment."""
    battle_rules: BattleRules = Field(default_factory=BattleRules)
    """Paper-battle timing, format and voting."""
    talk_rules: TalkRules = Field(default_factory=TalkRules)
    """The timer of talks and agenda items."""
    website: str | None = None
    """The course website."""
    office_hours: str | None = None
    """A sign-up link for office hours (Calendly, …)."""
    office_hours_note: str | None = None
    """A line about office hours ("By appointment")."""
    office_hours_slots: list[OfficeHoursSlot] = Field(default_factory=list)
    """Weekly office-hours slots (day, time, place or link)."""
    grading: dict[str, int] = Field(default_factory=dict)
    """Component → weight in percent; the weights add up to 100 (`critiques` is computed
    from the graded critiques)."""
    channels: dict[str, str] = Field(default_factory=dict)
    """Channel key → channel name or id (`announcements`, `general`, `battles`,
    `discussions`). On Discord and Slack a name is resolved to its channel's id once, when
    the bot starts (a renamed channel keeps its posts); when two channels share a name,
    give the id here or bind it with `coursebot course channel`."""
    bindings: Bindings = Field(default_factory=Bindings)
    """Where the course lives on each platform."""
    no_class: list[Day] = Field(default_factory=list)
    """Single days without class (holidays); use `breaks` for ranges with a reason."""
    breaks: list[BreakEntry] = Field(default_factory=list)
    """Ranges of days without class, with a reason (`{from: 2024-03-11, to: 2024-03-15,
    reason: Spring break}`)."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{v!r} is not an IANA timezone; use a name like America/New_York"
            ) from None
        return v

    @field_validator("grading")
    @classmethod
    def _weights(cls, v: dict[str, int]) -> dict[str, int]:
        if v and sum(v.values()) != 100:
            raise ValueError(f"weights must add up to 100 (they add up to {sum(v.values())})")
        return v


class PaperEntry(_Strict):
    """A paper of the reading list."""

    id: int = Field(ge=1)
    """The paper's number, what everyone types (`paper 5`, `critique submit 5`)."""
    title: str = Field(min_length=1)
    """The title."""
    authors: str = ""
    """The authors, as they should be shown ("Christoph Feichtenhofer, Haoqi Fan, …")."""
    venue: str | None = None
    """Where it appeared ("ICCV 2019")."""
    url: str | None = None
    """A link to it (arXiv, the proceedings)."""
    date: Day | None = None
    """The class day it is presented."""
    slot: Annotated[Literal["30", "45", "battle", "instructor"], BeforeValidator(_slot)]
    """`30` or `45` (a student talk of that many minutes), `battle` (one side of a paper
    battle) or `instructor`."""
    critique: bool = False
    """Students hand in a critique of it (due at `critique_deadline` on its day)."""
    discussion: bool = False
    """It has an in-class discussion in breakout groups."""


_BATTLE_ID = re.compile(r"^[A-Za-z][A-Za-z_-]*(\d+)$")


def _battle_id(v: Any) -> Any:
    """A battle's id: a number (``4``), or letters and a number (``B4``: battle 4)."""
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v.strip())
    if isinstance(v, bool):
        raise ValueError("must be a number or letters and a number, like 4 or B4")
    if isinstance(v, int):
        if v < 1:
            raise ValueError("must be at least 1")
        return v
    if isinstance(v, str) and _BATTLE_ID.match(v.strip()):
        return v.strip()
    raise ValueError(f"must be a number or letters and a number, like 4 or B4, not {v!r}")


BattleId = Annotated[int | str, BeforeValidator(_battle_id)]


def battle_number(battle_id: int | str) -> int:
    """The number of a battle id (``B4`` → 4)."""
    if isinstance(battle_id, int):
        return battle_id
    m = _BATTLE_ID.match(battle_id)
    return int(m.group(1)) if m else int(battle_id)


class BattleEntry(_Strict):
    """A paper battle: two battle papers, two sides, one vote."""

    id: BattleId
    """A number (`4`) or letters and a number (`B4`, shown as is; every battle command
    takes either, in any case: `battle show B4`, `battle timer 4 a`)."""
    a: int
    """Side A's paper (a `battle` paper)."""
    b: int
    """Side B's paper (a `battle` paper)."""
    date: Day | None = None
    """The class day of the battle."""
    theme: str | None = Field(None, max_length=200)
    """What the two papers fight about ("Efficient video backbones")."""
    start: ClockTime | None = None
    """When it starts on its day, local time; unset: with the class."""
    phases: list[PhaseEntry] | None = None
    """This battle's own format; unset: `battle_rules.phases` (or the default)."""

    @field_validator("phases")
    @classmethod
    def _phases(cls, v: list[PhaseEntry] | None) -> list[PhaseEntry] | None:
        return _unique_phases(v)

    @property
    def number(self) -> int:
        return battle_number(self.id)

    @property
    def label(self) -> str | None:
        return self.id if isinstance(self.id, str) else None


AgendaKind = Literal["talk", "discussion", "battle", "presentations", "lecture", "break", "other"]


class AgendaItem(_Strict):
    """One timed item of a session's agenda; `agenda timer <n>` times it."""

    title: str | None = Field(None, max_length=200)
    """What happens; unset for a paper's talk or a battle (their titles are used)."""
    minutes: int = Field(ge=1, le=600)
    """How long it takes."""
    kind: AgendaKind | None = None
    """`talk`, `discussion`, `battle`, `presentations`, `lecture`, `break` or `other`;
    unset: `talk` with a paper, `battle` with a battle, else `other`."""
    paper: int | None = Field(None, ge=1)
    """The paper it is about (a talk, its discussion)."""
    battle: BattleId | None = None
    """The battle it is (run with `battle timer`, phase by phase)."""
    start: ClockTime | None = None
    """When it starts, local time; unset: when the item before it ends (the first: when the
    session starts)."""

    @model_validator(mode="after")
    def _fill(self) -> AgendaItem:
        if self.kind is None:
            self.kind = "talk" if self.paper else "battle" if self.battle else "other"
        if not self.title and self.paper is None and self.battle is None:
            raise ValueError("give a title (or the paper or battle it is)")
        return self


SessionKind = Literal[
    "class", "lecture", "papers", "battle", "project", "guest", "exam", "review", "other"
]


class SessionEntry(_Strict):
    """A class meeting described as the syllabus does: a title, a kind, an agenda. Class
    days of the weekly pattern need no entry; one is needed for what they cannot say
    (a guest lecture, project presentations, an extra meeting, a timed agenda)."""

    date: Day
    """The day it meets."""
    title: str | None = Field(None, max_length=200)
    """What it is ("Guest lecture: Prof. Ada Lovelace", "Final project presentations")."""
    kind: SessionKind = "class"
    """`class`, `lecture`, `papers`, `battle`, `project`, `guest`, `exam`, `review` or
    `other`."""
    start: ClockTime | None = None
    """When it starts if not at `class_start`."""
    end: ClockTime | None = None
    """When it ends if not at `class_end`."""
    place: str | None = Field(None, max_length=200)
    """Where, if not the usual room."""
    link: str | None = Field(None, max_length=500)
    """A link (slides, a video call)."""
    note: str | None = Field(None, max_length=500)
    """A line shown with it."""
    agenda: list[AgendaItem] = Field(default_factory=list)
    """Its timed items, in order."""


class MilestoneEntry(_Strict):
    """A project milestone: presentation days and a write-up deadline."""

    key: str = Field(min_length=1)
    """The milestone's key (`proposal`), what `project submit` takes."""
    title: str
    """Its name ("Project proposal")."""
    presentations: list[date] = Field(default_factory=list)
    """Class days with project presentations."""
    due: LocalDateTime | None = None
    """When the write-up is due (local date and time)."""
    weight: int | None = None
    """Its weight in percent of the course grade (shown by `grading`)."""


class DeadlineEntry(_Strict):
    """Any other dated obligation (a survey, a form)."""

    key: str = Field(min_length=1)
    """A stable key (it names the deadline's calendar event)."""
    title: str
    """What is due."""
    due: LocalDateTime
    """When (local date and time)."""


class PersonEntry(_Strict):
    """Someone on the roster: a student, a TA or an instructor."""

    name: str = Field(min_length=1)
    """The name shown in chat and replies."""
    email: str
    """Their email: the roster key (importing again matches people by it)."""
    given_name: str | None = Field(None, max_length=100)
    """Their given name, when `name` does not say it plainly (Canvas exports and sorting
    use it)."""
    family_name: str | None = Field(None, max_length=100)
    """Their family name (Canvas exports sort and print "Family, Given")."""
    # withdrawn: a student who left the course (`people drop`), kept for the record
    role: Literal["instructor", "ta", "student", "withdrawn"] = "student"
    """`student`, `ta`, `instructor`, or `withdrawn` (a student who left, kept for the
    record)."""
    degree: Literal["BA", "BS", "MS", "PhD"] | None = None
    """The degree they study for; once a student gives their own (`intro`), importing
    again keeps theirs, and leaving it out never erases it."""
    year: int | None = Field(None, ge=1, le=10)
    """Their year in it (kept like `degree`)."""
    sis_id: str | None = None
    """The SIS user id (Canvas's "SIS User ID")."""
    onyen: str | None = None
    """The campus login (Canvas's "SIS Login ID")."""
    canvas_id: str | None = None
    """Canvas's internal user id ("ID")."""
    section: str | None = None
    """The Canvas section."""
    handles: dict[Literal["terminal", "discord", "slack"], str] = Field(default_factory=dict)
    """Chat accounts linked at import: platform → user id."""
    #: Other addresses of this person that `register` accepts (a Slack profile's email).
    email_aliases: list[str] = Field(default_factory=list)
    """Other addresses of theirs that `register` accepts (a Slack profile's email)."""

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not EMAIL.match(v):
            raise ValueError(f"{v!r} is not an email address")
        return v.lower()

    @field_validator("email_aliases")
    @classmethod
    def _aliases(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if not EMAIL.match(a)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an email address")
        return list(dict.fromkeys(a.lower() for a in v))

    @field_validator("sis_id", "canvas_id", mode="before")
    @classmethod
    def _idstr(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v


@functools.lru_cache(maxsize=32)
def _syllabus_of(stored: str) -> Syllabus:
    return Syllabus.model_validate(json.loads(stored))


class CourseFile(_Strict):
    """A course file: one YAML document that describes a course. Dates and times are
    local to `course.timezone`."""

    course: CourseSettings
    """The course's settings."""
    papers: list[PaperEntry] = Field(default_factory=list)
    """The reading list."""
    battles: list[BattleEntry] = Field(default_factory=list)
    """Paper battles: pairs of `battle` papers."""
    sessions: list[SessionEntry] = Field(default_factory=list)
    """Class meetings that need more than the weekly pattern says: titles, kinds,
    agendas, extra meetings."""
    milestones: list[MilestoneEntry] = Field(default_factory=list)
    """Project milestones."""
    deadlines: list[DeadlineEntry] = Field(default_factory=list)
    """Other deadlines."""
    people: list[PersonEntry] = Field(default_factory=list)
    """The roster."""


class Syllabus(_Strict):
    """What ``courses.syllabus`` keeps of a course file (the meetings as a syllabus
    describes them)."""

    first_day: Day | None = None
    """See `course.first_day`."""
    last_day: Day | None = None
    """See `course.last_day`."""
    breaks: list[BreakEntry] = Field(default_factory=list)
    """See `course.breaks`."""
    office_hours_slots: list[OfficeHoursSlot] = Field(default_factory=list)
    """See `course.office_hours_slots`."""
    talk_rules: TalkRules = Field(default_factory=TalkRules)
    """See `course.talk_rules`."""
    sessions: list[SessionEntry] = Field(default_factory=list)
    """See `sessions`."""
    critique_rules: CritiqueRules = Field(default_factory=CritiqueRules)
    """See `course.critique_rules`."""
    reminders: ReminderRules = Field(default_factory=ReminderRules)
    """See `course.reminders`."""

    @classmethod
    def of(cls, course: Any) -> Syllabus:
        """The syllabus stored on a course row (read once per stored content: the
        scheduler asks for it for every paper on every pass). Treat it as read-only."""
        stored = getattr(course, "syllabus", None) or {}
        return _syllabus_of(json.dumps(stored, sort_keys=True, default=str))

    def session_on(self, day: date) -> SessionEntry | None:
        return next((s for s in self.sessions if s.date == day), None)

    def break_on(self, day: date) -> BreakEntry | None:
        return next((b for b in self.breaks if b.covers(day)), None)


# --------------------------------------------------------------------------- loading
@dataclass
class Problem:
    loc: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.loc}: {self.message}"


class CourseFileError(InvalidInput):
    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.problems = problems
        head = f"{source} has {len(problems)} problem{'s' * (len(problems) != 1)}:"
        super().__init__("\n".join([head, *(f"  - {p}" for p in problems)]))


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        if p == "[key]":  # pydantic's marker for "the key itself" of a mapping
            continue
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Map each YAML path (``("papers", 12, "slot")``) to its 1-based line."""
    lines: dict[tuple[Any, ...], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                lines[(*path, k.value)] = k.start_mark.line + 1
                walk(v, (*path, k.value))
                lines[(*path, k.value)] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


def _line_for(index: dict[tuple[Any, ...], int], parts: tuple[Any, ...]) -> int | None:
    for n in range(len(parts), -1, -1):
        if parts[:n] in index:
            return index[parts[:n]]
    return None


def _message(err: Any) -> str:
    if err["type"] == "literal_error":
        exp = err.get("ctx", {}).get("expected", "")
        return "must be one of " + exp.replace("'", "").replace(" or ", ", ")
    if err["type"] == "missing":
        return "is required"
    if err["type"] == "extra_forbidden":
        return "is not a known field (check the spelling)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg[0].lower() + msg[1:]


def parse_course_file(text: str, source: str = "course file") -> CourseFile:
    """Parse and validate a course file; raise :class:`CourseFileError` listing every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise CourseFileError(
            source, [Problem("YAML", f"not valid YAML: {problem}", line)]
        ) from None
    if not isinstance(data, dict):
        raise CourseFileError(
            source, [Problem("(top)", "must be a mapping with a `course:` section")]
        )
    index = _line_index(text)
    try:
        cf = CourseFile.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(_loc(tuple(e["loc"])), _message(e), _line_for(index, tuple(e["loc"])))
            for e in exc.errors()
        ]
        # Also check the rules that span entries, on the entries that are valid alone,
        # so one import reports every problem of the file.
        seen = {p.loc for p in problems}
        for loc, msg in _partial_cross_check(data):
            if _loc(loc) not in seen:
                problems.append(Problem(_loc(loc), msg, _line_for(index, loc)))
        raise CourseFileError(source, problems) from None
    problems = [Problem(_loc(loc), msg, _line_for(index, loc)) for loc, msg in cross_check(cf)]
    if problems:
        raise CourseFileError(source, problems)
    return cf


def _partial_cross_check(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """:func:`cross_check` over the list entries that validate on their own (locations
    mapped back to the entries' places in the file)."""
    models: dict[str, type[BaseModel]] = {
        "papers": PaperEntry,
        "battles": BattleEntry,
        "sessions": SessionEntry,
        "milestones": MilestoneEntry,
        "deadlines": DeadlineEntry,
        "people": PersonEntry,
    }
    kept: dict[str, list[Any]] = {}
    where: dict[str, list[int]] = {}
    for name, model in models.items():
        raw = data.get(name)
        kept[name], where[name] = [], []
        if not isinstance(raw, list):
            continue
        for i, item in enumerate(raw):
            if isinstance(item, dict):  # an unknown field is reported already; ignore it here
                item = {k: v for k, v in item.items() if k in model.model_fields}
            try:
                kept[name].append(model.model_validate(item))
            except ValidationError:
                continue
            where[name].append(i)
    partial = CourseFile.model_construct(course=None, **kept)
    out = []
    for loc, msg in cross_check(partial):
        if len(loc) >= 2 and isinstance(loc[1], int):
            loc = (loc[0], where[loc[0]][loc[1]], *loc[2:])
        out.append((loc, msg))
    return out


def cross_check(cf: CourseFile) -> list[tuple[tuple[Any, ...], str]]:
    """Rules that span entries: unique ids, battle papers exist and are battle papers..."""
    out: list[tuple[tuple[Any, ...], str]] = []
    papers = {}
    for i, p in enumerate(cf.papers):
        if p.id in papers:
            out.append((("papers", i, "id"), f"paper id {p.id} is used twice"))
        papers[p.id] = p
        if p.slot in ("instructor", "battle") and p.critique:
            out.append((("papers", i, "critique"), f"a {p.slot} paper cannot require a critique"))
    seen_battles: dict[int, BattleEntry] = {}
    battle_of: dict[int, int] = {}  # paper id -> the index of the first battle naming it
    for i, b in enumerate(cf.battles):
        if b.number in seen_battles:
            first = seen_battles[b.number].id
            same = f"battle id {b.id} is used twice"
            if first != b.id:
                same = f"battle ids {first} and {b.id} are both battle {b.number}"
            out.append((("battles", i, "id"), same))
        seen_battles.setdefault(b.number, b)
        if b.a == b.b:
            out.append((("battles", i, "b"), "a battle needs two different papers"))
        for side in ("a", "b"):
            pid = getattr(b, side)
            first_battle = battle_of.setdefault(pid, i)
            if first_battle != i:
                other = cf.battles[first_battle]
                out.append(
                    (
                        ("battles", i, side),
                        f"paper {pid} is already in battle {other.id} (battles[{first_battle}]); "
                        "a paper battles once",
                    )
                )
            if pid not in papers:
                out.append((("battles", i, side), f"paper {pid} does not exist"))
            elif papers[pid].slot != "battle":
                out.append(
                    (("battles", i, side), f"paper {pid} has slot {papers[pid].slot}, not battle")
                )
    for key, entries in (("milestones", cf.milestones), ("deadlines", cf.deadlines)):
        keys: set[str] = set()
        for i, m in enumerate(entries):
            if m.key in keys:
                out.append(((key, i, "key"), f"key {m.key!r} is used twice"))
            keys.add(m.key)
    emails: set[str] = set()
    handles: set[tuple[str, str]] = set()
    for i, person in enumerate(cf.people):
        if person.email in emails:
            out.append((("people", i, "email"), f"{person.email} is listed twice"))
        emails.add(person.email)
    for i, person in enumerate(cf.people):  # an alias names one person, never two
        for alias in person.email_aliases:
            if alias in emails:
                out.append((("people", i, "email_aliases"), f"{alias} is listed twice"))
            emails.add(alias)
    for i, person in enumerate(cf.people):
        for platform, handle in person.handles.items():
            if (platform, handle) in handles:
                out.append((("people", i, "handles", platform), f"{handle!r} is used twice"))
            handles.add((platform, handle))
    out.extend(_check_sessions(cf, papers, seen_battles))
    if cf.course is not None:
        out.extend(_check_reminders(cf))
        out.extend(_check_assignment_rules(cf, papers))
        out.extend(_check_calendar(cf, papers))
        out.extend(_check_battle_times(cf))
    return out


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _hhmm_of(minutes: int) -> str:
    return f"{minutes // 60}:{minutes % 60:02d}"


def agenda_times(start: time | None, items: list[AgendaItem]) -> list[tuple[int, int] | None]:
    """Each item's (start, end) in minutes after midnight: its own start, else when the
    item before it ends (the first: the session's start); None while unknown."""
    out: list[tuple[int, int] | None] = []
    at = _minutes(start) if start is not None else None
    for item in items:
        if item.start is not None:
            at = _minutes(item.start)
        if at is None:
            out.append(None)
            continue
        out.append((at, at + item.minutes))
        at += item.minutes
    return out


def _check_sessions(
    cf: CourseFile, papers: dict[int, PaperEntry], battles: dict[int, BattleEntry]
) -> list[tuple[tuple[Any, ...], str]]:
    """Sessions: one a day; their agendas name papers and battles of that day and fit
    in the session's time."""
    out: list[tuple[tuple[Any, ...], str]] = []
    days: dict[date, int] = {}
    for i, sess in enumerate(cf.sessions):
        if sess.date in days:
            out.append(
                (
                    ("sessions", i, "date"),
                    f"{sess.date} already has a session (sessions[{days[sess.date]}])",
                )
            )
        days.setdefault(sess.date, i)
        for j, item in enumerate(sess.agenda):
            loc = ("sessions", i, "agenda", j)
            if item.paper is not None:
                paper = papers.get(item.paper)
                if paper is None:
                    out.append(((*loc, "paper"), f"paper {item.paper} does not exist"))
                elif paper.date is not None and paper.date != sess.date:
                    out.append(
                        (
                            (*loc, "paper"),
                            f"paper {item.paper} is presented on {paper.date}, not {sess.date}",
                        )
                    )
            if item.battle is not None:
                battle = battles.get(battle_number(item.battle))
                if battle is None:
                    out.append(((*loc, "battle"), f"battle {item.battle} does not exist"))
                elif battle.date is not None and battle.date != sess.date:
                    out.append(
                        (
                            (*loc, "battle"),
                            f"battle {item.battle} is on {battle.date}, not {sess.date}",
                        )
                    )
        if cf.course is None:
            continue
        start = sess.start or cf.course.class_start
        end = sess.end or cf.course.class_end
        if start is not None and end is not None and end <= start:
            out.append(
                (("sessions", i, "end"), f"ends ({end:%H:%M}) before it starts ({start:%H:%M})")
            )
            continue
        for j, span in enumerate(agenda_times(start, sess.agenda)):
            if span is None or end is None:
                continue
            if start is not None and span[0] < _minutes(start):
                out.append(
                    (
                        ("sessions", i, "agenda", j, "start"),
                        f"starts at {_hhmm_of(span[0])}, before the session ({start:%H:%M})",
                    )
                )
            if span[1] > _minutes(end):
                out.append(
                    (
                        ("sessions", i, "agenda", j),
                        f"ends at {_hhmm_of(span[1])}, after the session ends ({end:%H:%M}); "
                        "shorten the agenda or give the session a later `end`",
                    )
                )
                break
    return out


def _check_calendar(
    cf: CourseFile, papers: dict[int, PaperEntry]
) -> list[tuple[tuple[Any, ...], str]]:
    """The first and last class days are in order; sessions, papers and battles are not on
    a day without class, nor outside the first and last class days."""
    s = cf.course
    out: list[tuple[tuple[Any, ...], str]] = []
    if s.first_day and s.last_day and s.last_day < s.first_day:
        out.append((("course", "last_day"), f"{s.last_day} is before first_day ({s.first_day})"))
        return out
    for j, later in enumerate(s.breaks):
        for i, earlier in enumerate(s.breaks[:j]):
            if earlier.start <= later.last and later.start <= earlier.last:
                out.append(
                    (
                        ("course", "breaks", j),
                        f"overlaps breaks[{i}] ({earlier.reason}, {_span(earlier)}); give each "
                        "day off once: merge the two or move one's `from`/`to`",
                    )
                )
                break
    off = set(s.no_class)

    def closed(day: date) -> str | None:
        if day in off:
            return f"{day} is a no-class day (course.no_class)"
        for b in s.breaks:
            if b.covers(day):
                return f"{day} is in a break ({b.reason})"
        if s.first_day and day < s.first_day:
            return f"{day} is before the first class day ({s.first_day})"
        if s.last_day and day > s.last_day:
            return f"{day} is after the last class day ({s.last_day})"
        return None

    dated: list[tuple[tuple[Any, ...], date | None]] = [
        (("sessions", i, "date"), x.date) for i, x in enumerate(cf.sessions)
    ]
    dated += [(("papers", i, "date"), p.date) for i, p in enumerate(cf.papers)]
    dated += [(("battles", i, "date"), b.date) for i, b in enumerate(cf.battles)]
    for loc, day in dated:
        if day is not None and (why := closed(day)):
            out.append((loc, why))
    return out


def _span(b: BreakEntry) -> str:
    return f"{b.start}" if b.last == b.start else f"{b.start} to {b.last}"


def _check_battle_times(cf: CourseFile) -> list[tuple[tuple[Any, ...], str]]:
    """A battle's format (its phases, one after the other) fits in its class: from the
    battle's `start` (else the class's) to the end of its day's session (else
    `class_end`). The course's own format is checked once against the class's length;
    a battle on the course's format is then checked only for what it changes (a later
    `start`, a session with other times)."""
    s = cf.course
    out: list[tuple[tuple[Any, ...], str]] = []
    rules = s.battle_rules
    course_total = sum(p.minutes for p in rules.phase_list())
    course_too_long = False
    if s.class_start is not None and s.class_end is not None and s.class_end > s.class_start:
        length = _minutes(s.class_end) - _minutes(s.class_start)
        if course_total > length:
            course_too_long = True
            where = (
                ("course", "battle_rules", "phases") if rules.phases else ("course", "battle_rules")
            )
            out.append(
                (
                    where,
                    f"the battle format takes {course_total} minutes, longer than the class "
                    f"({s.class_start:%H:%M}–{s.class_end:%H:%M}, {length} minutes); shorten "
                    "its phases",
                )
            )
    sessions = {sess.date: sess for sess in cf.sessions}
    for i, b in enumerate(cf.battles):
        sess = sessions.get(b.date) if b.date is not None else None
        class_start = (sess.start if sess else None) or s.class_start
        start = b.start or class_start
        end = (sess.end if sess else None) or s.class_end
        if start is None or end is None:
            continue
        if b.start is not None and class_start is not None and b.start < class_start:
            out.append(
                (
                    ("battles", i, "start"),
                    f"starts at {b.start:%H:%M}, before the class ({class_start:%H:%M})",
                )
            )
            continue
        phases = b.phases or rules.phase_list()
        total = sum(p.minutes for p in phases)
        if b.phases is None and course_too_long and (start, end) == (s.class_start, s.class_end):
            continue  # said once, at course.battle_rules
        finish = _minutes(start) + total
        if finish > _minutes(end):
            where = ("battles", i, "phases") if b.phases else ("battles", i)
            own = "its format" if b.phases else "the course's battle format"
            out.append(
                (
                    where,
                    f"{own} takes {total} minutes: from {start:%H:%M} it ends at "
                    f"{_hhmm_of(finish)}, after the class ends ({end:%H:%M}); shorten the "
                    "phases, or start it earlier",
                )
            )
    return out


def _check_reminders(cf: CourseFile) -> list[tuple[tuple[Any, ...], str]]:
    """A reminder by clock time on the deadline's day comes before the deadline."""
    due = cf.course.critique_deadline
    out: list[tuple[tuple[Any, ...], str]] = []
    deadline = datetime.combine(date(2000, 1, 3), due, tzinfo=UTC)
    for i, spec in enumerate(cf.course.reminders.critique):
        if reminder_instant(spec, deadline) >= deadline:
            out.append(
                (
                    ("course", "reminders", "critique", i),
                    f"{spec} is not before the critique deadline ({due:%H:%M}); a reminder "
                    "comes before it",
                )
            )
    return out


def student_refs(people: list[PersonEntry]) -> dict[str, str]:
    """How the assignment rules may name a student (email, onyen, name; any case) ->
    their roster email."""
    out: dict[str, str] = {}
    for p in people:
        if p.role == "student":
            for ref in (p.email, p.onyen, p.name, *p.email_aliases):
                if ref:
                    out[ref.lower()] = p.email
    return out


def _check_assignment_rules(
    cf: CourseFile, papers: dict[int, PaperEntry]
) -> list[tuple[tuple[Any, ...], str]]:
    """Partners, conflicts and unavailable days name students of the course (when the
    file lists people) and do not contradict each other."""
    rules = cf.course.assignment
    where = ("course", "assignment")
    refs = student_refs(cf.people)
    out: list[tuple[tuple[Any, ...], str]] = []

    def known(ref: str, loc: tuple[Any, ...]) -> str:
        if refs and ref.lower() not in refs:
            out.append((loc, f"{ref!r} is not a student in people (use their email)"))
        return refs.get(ref.lower(), ref.lower())

    partnered: dict[str, int] = {}
    pairs: set[frozenset[str]] = set()
    for i, entry in enumerate(rules.partners):
        a, b = (known(r, (*where, "partners", i, "students")) for r in entry.students)
        if a == b:
            out.append(((*where, "partners", i, "students"), "a student cannot partner themself"))
        for who in (a, b):
            if who in partnered:
                out.append(
                    (
                        (*where, "partners", i, "students"),
                        f"{who} is already in partners[{partnered[who]}]; one partner each",
                    )
                )
            partnered[who] = i
        pairs.add(frozenset((a, b)))
        if entry.paper is not None:
            paper = papers.get(entry.paper)
            if paper is None:
                out.append(
                    ((*where, "partners", i, "paper"), f"paper {entry.paper} does not exist")
                )
            elif paper.slot not in ("30", "45"):
                out.append(
                    (
                        (*where, "partners", i, "paper"),
                        f"paper {entry.paper} is a {paper.slot} paper; partners present a 30 "
                        "or 45 minute one",
                    )
                )
    for i, (x, y) in enumerate(rules.conflicts):
        a, b = known(x, (*where, "conflicts", i)), known(y, (*where, "conflicts", i))
        if a == b:
            out.append(((*where, "conflicts", i), "a conflict needs two different students"))
        elif frozenset((a, b)) in pairs:
            out.append(
                ((*where, "conflicts", i), f"{x} and {y} are also partners; keep one of the two")
            )
    for ref in rules.unavailable:
        known(ref, (*where, "unavailable", ref))
    return out


def stored_rules(cf: CourseFile) -> dict[str, Any]:
    """The assignment rules as stored on the course: people named by roster email."""
    rules = cf.course.assignment
    refs = student_refs(cf.people)

    def email(ref: str) -> str:
        return refs.get(ref.lower(), ref.lower())

    out = rules.model_dump(mode="json", exclude_defaults=True)
    if rules.partners:
        out["partners"] = [
            {"students": [email(a), email(b)], "paper": e.paper}
            if e.paper is not None
            else [email(a), email(b)]
            for e in rules.partners
            for a, b in [e.students]
        ]
    if rules.conflicts:
        out["conflicts"] = [[email(a), email(b)] for a, b in rules.conflicts]
    if rules.unavailable:
        out["unavailable"] = {
            email(k): [d.isoformat() for d in v] for k, v in rules.unavailable.items()
        }
    return out


def stored_syllabus(cf: CourseFile) -> dict[str, Any]:
    """What ``courses.syllabus`` keeps: the meetings as the file describes them (JSON)."""
    s = cf.course
    return Syllabus(
        first_day=s.first_day,
        last_day=s.last_day,
        breaks=s.breaks,
        office_hours_slots=s.office_hours_slots,
        talk_rules=s.talk_rules,
        sessions=cf.sessions,
        critique_rules=s.critique_rules,
        reminders=s.reminders,
    ).model_dump(mode="json", by_alias=True, exclude_defaults=True)


# ---------------------------------------------------------------------------- import
@dataclass
class ImportReport:
    course_key: str
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    removed: Counter[str] = field(default_factory=Counter)
    kept: Counter[str] = field(default_factory=Counter)
    new_course: bool = False

    def summary(self) -> str:
        def fmt(c: Counter[str]) -> str:
            return ", ".join(f"{n} {k}" for k, n in sorted(c.items())) or "nothing"

        lines = [
            f"Course {self.course_key}: {'created' if self.new_course else 'updated'}.",
            f"  added: {fmt(self.created)}",
            f"  changed: {fmt(self.updated)}",
        ]
        if self.removed:
            lines.append(f"  removed (no longer in the file): {fmt(self.removed)}")
        if self.kept:
            lines.append(f"  kept (not in the file, still on the roster): {fmt(self.kept)}")
        return "\n".join(lines)


def _set(obj: Any, report: ImportReport, kind: str, created: bool, **values: Any) -> None:
    changed = False
    for k, v in values.items():
        if getattr(obj, k, None) != v:
            setattr(obj, k, v)
            changed = True
    if created:
        report.created[kind] += 1
    elif changed:
        report.updated[kind] += 1


def _instant(local: datetime | None, tz: ZoneInfo) -> datetime | None:
    if local is None:
        return None
    if local.tzinfo is None:
        local = local.replace(tzinfo=tz)
    return local.astimezone(UTC)


async def import_course(session: AsyncSession, cf: CourseFile, *, now: datetime) -> ImportReport:
    """Create or update the course described by ``cf`` (in the caller's transaction)."""
    s = cf.course
    tz = ZoneInfo(s.timezone)
    course = await session.scalar(select(Course).where(Course.key == s.key))
    report = ImportReport(s.key, new_course=course is None)
    if course is None:
        course = Course(key=s.key)
        session.add(course)
    _set(
        course,
        report,
        "course settings",
        False,
        name=s.name,
        term=s.term,
        timezone=s.timezone,
        class_days=list(s.class_days),
        class_start=s.class_start,
        class_end=s.class_end,
        critique_deadline=s.critique_deadline,
        ranking_deadline=_instant(s.ranking_deadline, tz),
        standard_choices=s.ranking.standard_choices,
        battle_choices=s.ranking.battle_choices,
        max_presenters=s.ranking.max_presenters,
        battle_group_min=s.ranking.battle_group[0],
        battle_group_max=s.ranking.battle_group[1],
        battle_rules=s.battle_rules.model_dump(),
        website=s.website,
        office_hours_url=s.office_hours,
        office_hours_note=s.office_hours_note,
        grading=dict(s.grading),
        assign_rules=stored_rules(cf),
        channels=dict(s.channels),
        no_class=[d.isoformat() for d in s.no_class],
        syllabus=stored_syllabus(cf),
    )
    await session.flush()
    await _import_bindings(session, course, s.bindings, report)

    papers = {
        p.number: p
        for p in await session.scalars(select(Paper).where(Paper.course_id == course.id))
    }
    for entry in cf.papers:
        paper = papers.get(entry.id)
        created = paper is None
        if paper is None:
            paper = Paper(course_id=course.id, number=entry.id)
            session.add(paper)
            papers[entry.id] = paper
        _set(
            paper,
            report,
            "papers",
            created,
            title=entry.title,
            authors=entry.authors,
            venue=entry.venue,
            url=entry.url,
            class_date=entry.date,
            slot=Slot(entry.slot),
            critique=entry.critique,
            discussion=entry.discussion,
        )
    await session.flush()

    battles = {
        b.number: b
        for b in await session.scalars(select(Battle).where(Battle.course_id == course.id))
    }
    wanted = {b.number for b in cf.battles}
    for number, battle in battles.items():
        if number not in wanted:
            await session.delete(battle)
            report.removed["battles"] += 1
    for entry in cf.battles:
        battle = battles.get(entry.number)
        created = battle is None
        if battle is None:
            battle = Battle(course_id=course.id, number=entry.number)
            session.add(battle)
        _set(
            battle,
            report,
            "battles",
            created,
            paper_a_id=papers[entry.a].id,
            paper_b_id=papers[entry.b].id,
            class_date=entry.date,
            label=entry.label,
            theme=entry.theme,
            start_time=entry.start,
            phases=None
            if entry.phases is None
            else [p.model_dump(mode="json") for p in entry.phases],
        )
    await session.flush()
    wanted_papers = {p.id for p in cf.papers}
    for number, paper in papers.items():
        if number not in wanted_papers:
            await session.delete(paper)
            report.removed["papers"] += 1

    for model, entries, kind in (
        (Milestone, cf.milestones, "milestones"),
        (Deadline, cf.deadlines, "deadlines"),
    ):
        rows = {
            r.key: r
            for r in await session.scalars(select(model).where(model.course_id == course.id))
        }
        for key, row in rows.items():
            if key not in {e.key for e in entries}:
                await session.delete(row)
                report.removed[kind] += 1
        for entry in entries:
            row = rows.get(entry.key)
            created = row is None
            if row is None:
                row = model(course_id=course.id, key=entry.key)
                session.add(row)
            values: dict[str, Any] = {"title": entry.title, "due": _instant(entry.due, tz)}
            if isinstance(entry, MilestoneEntry):
                values.update(
                    presentations=[d.isoformat() for d in entry.presentations], weight=entry.weight
                )
            _set(row, report, kind, created, **values)

    await _import_people(session, course, cf.people, report, now=now)
    await session.flush()
    return report


async def _import_bindings(
    session: AsyncSession, course: Course, b: Bindings, report: ImportReport
) -> None:
    for platform in Platform:
        external = getattr(b, platform.value)
        if external is None:
            continue
        existing = await session.scalar(
            select(CourseBinding).where(
                CourseBinding.platform == platform, CourseBinding.external_id == external
            )
        )
        if existing is None:
            session.add(CourseBinding(course_id=course.id, platform=platform, external_id=external))
            report.created["bindings"] += 1
        elif existing.course_id != course.id:
            raise InvalidInput(
                f"course.bindings.{platform.value}: {external!r} is already bound to another course."
            )


async def _import_people(
    session: AsyncSession,
    course: Course,
    people: list[PersonEntry],
    report: ImportReport,
    *,
    now: datetime,
) -> None:
    existing = {
        p.email: p
        for p in await session.scalars(select(Person).where(Person.course_id == course.id))
    }
    # A student who introduced themselves (`intro`) gave their own degree and year: a
    # re-import keeps them; a file that leaves them out never erases them.
    introduced = set(
        await session.scalars(
            select(Introduction.person_id).where(Introduction.course_id == course.id)
        )
    )
    for entry in people:
        person = existing.get(entry.email)
        created = person is None
        if person is None:
            person = Person(course_id=course.id, email=entry.email)
            session.add(person)
            existing[entry.email] = person
        own = person.id in introduced
        _set(
            person,
            report,
            "people",
            created,
            name=entry.name,
            given_name=entry.given_name,
            family_name=entry.family_name,
            # `people drop` outlives a re-import of a file that still lists the student.
            role=Role.WITHDRAWN
            if person.role is Role.WITHDRAWN and entry.role == "student"
            else Role(entry.role),
            degree=person.degree if own or not entry.degree else Degree(entry.degree),
            year=person.year if own or entry.year is None else entry.year,
            sis_id=entry.sis_id,
            onyen=entry.onyen,
            canvas_id=entry.canvas_id or person.canvas_id,
            section=entry.section or person.section,
            email_aliases=entry.email_aliases,
        )
        await session.flush()
        for platform_name, handle in entry.handles.items():
            await link_identity(session, course, person, Platform(platform_name), handle, now=now)
    listed = {p.email for p in people}
    kept = [e for e in existing if e not in listed]
    if kept:
        report.kept["people"] += len(kept)


async def link_identity(
    session: AsyncSession,
    course: Course,
    person: Person,
    platform: Platform,
    user_id: str,
    *,
    now: datetime,
    display_name: str | None = None,
    replace: bool = True,
) -> Identity:
    """Link ``user_id`` on ``platform`` to ``person``, moving any previous link."""
    taken = await session.scalar(
        select(Identity).where(
            Identity.course_id == course.id,
            Identity.platform == platform,
            Identity.user_id == user_id,
        )
    )
    if taken is not None and taken.person_id != person.id:
        if not replace:
            other = await session.get(Person, taken.person_id)
            raise InvalidInput(
                f"That {platform.value} account is already linked to {other.name if other else 'someone'}."
            )
        await session.delete(taken)
        await session.flush()
    elif taken is not None:
        return taken
    mine = await session.scalar(
        select(Identity).where(Identity.person_id == person.id, Identity.platform == platform)
    )
    if mine is not None:
        if not replace:
            raise Conflict(
                f"{person.name} is already linked to another {platform.value} account.",
                hint="If that is not you, ask an instructor (`register unlink`).",
            )
        mine.user_id = user_id
        mine.display_name = display_name or mine.display_name
        mine.linked_at = now
        return mine
    ident = Identity(
        course_id=course.id,
        person_id=person.id,
        platform=platform,
        user_id=user_id,
        display_name=display_name,
        linked_at=now,
    )
    session.add(ident)
    await session.flush()
    return ident


# ---------------------------------------------------------------------------- export
def _local_text(instant: datetime | None, tz: ZoneInfo) -> str | None:
    if instant is None:
        return None
    return instant.astimezone(tz).strftime("%Y-%m-%dT%H:%M")


def _hm(t: time | None) -> str | None:
    return t.strftime("%H:%M") if t else None


async def export_course(session: AsyncSession, course: Course) -> dict[str, Any]:
    """The course as a course-file document (what ``course import`` reads back)."""
    tz = ZoneInfo(course.timezone)
    bindings = {
        b.platform.value: b.external_id
        for b in await session.scalars(
            select(CourseBinding).where(CourseBinding.course_id == course.id)
        )
    }
    syl = Syllabus.of(course)
    battle_rules = BattleRules.model_validate(course.battle_rules or {}).model_dump()
    if battle_rules.get("phases") is None:
        battle_rules.pop("phases", None)
    settings: dict[str, Any] = {
        "key": course.key,
        "name": course.name,
        "term": course.term,
        "timezone": course.timezone,
        "class_days": list(course.class_days),
        "class_start": _hm(course.class_start),
        "class_end": _hm(course.class_end),
        "first_day": syl.first_day,
        "last_day": syl.last_day,
        "critique_deadline": _hm(course.critique_deadline),
        "critique_rules": syl.critique_rules.model_dump(exclude_defaults=True) or None,
        "reminders": syl.reminders.model_dump(exclude_defaults=True) or None,
        "ranking_deadline": _local_text(course.ranking_deadline, tz),
        "ranking": {
            "standard_choices": course.standard_choices,
            "battle_choices": course.battle_choices,
            "max_presenters": course.max_presenters,
            "battle_group": [course.battle_group_min, course.battle_group_max],
        },
        "assignment": AssignmentRules.model_validate(course.assign_rules or {}).model_dump(
            mode="json", exclude_defaults=True
        ),
        "battle_rules": battle_rules,
        "talk_rules": _yaml_ready(syl.talk_rules.model_dump(exclude_defaults=True)) or None,
        "website": course.website,
        "office_hours": course.office_hours_url,
        "office_hours_note": course.office_hours_note,
        "office_hours_slots": [_doc(slot) for slot in syl.office_hours_slots] or None,
        "grading": dict(course.grading),
        "channels": dict(course.channels),
        "bindings": bindings,
        "no_class": [date.fromisoformat(d) for d in course.no_class],
        "breaks": [_doc(b) for b in syl.breaks] or None,
    }
    papers = list(
        await session.scalars(
            select(Paper).where(Paper.course_id == course.id).order_by(Paper.number)
        )
    )
    by_id = {p.id: p.number for p in papers}
    battles = await session.scalars(
        select(Battle).where(Battle.course_id == course.id).order_by(Battle.number)
    )
    milestones = await session.scalars(
        select(Milestone).where(Milestone.course_id == course.id).order_by(Milestone.id)
    )
    deadlines = await session.scalars(
        select(Deadline).where(Deadline.course_id == course.id).order_by(Deadline.id)
    )
    people = await session.scalars(
        select(Person).where(Person.course_id == course.id).order_by(Person.id)
    )
    idents: dict[int, dict[str, str]] = {}
    for ident in await session.scalars(select(Identity).where(Identity.course_id == course.id)):
        idents.setdefault(ident.person_id, {})[ident.platform.value] = ident.user_id

    def person_doc(p: Person) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": p.name, "email": p.email, "role": p.role.value}
        optional = {
            "degree": p.degree.value if p.degree else None,
            "year": p.year,
            "sis_id": p.sis_id,
            "onyen": p.onyen,
            "canvas_id": p.canvas_id,
            "section": p.section,
            "given_name": p.given_name,
            "family_name": p.family_name,
            "handles": idents.get(p.id),
            "email_aliases": list(p.email_aliases or []),
        }
        doc.update({k: v for k, v in optional.items() if v})
        return doc

    return {
        "course": {k: v for k, v in settings.items() if v is not None},
        "papers": [
            {
                k: v
                for k, v in {
                    "id": p.number,
                    "title": p.title,
                    "authors": p.authors,
                    "venue": p.venue,
                    "url": p.url,
                    "date": p.class_date,
                    "slot": p.slot.value,
                    "critique": p.critique,
                    "discussion": p.discussion,
                }.items()
                if v is not None
            }
            for p in papers
        ],
        "battles": [
            {
                k: v
                for k, v in {
                    "id": b.label or b.number,
                    "a": by_id[b.paper_a_id],
                    "b": by_id[b.paper_b_id],
                    "date": b.class_date,
                    "theme": b.theme,
                    "start": _hm(b.start_time),
                    "phases": b.phases,
                }.items()
                if v is not None or k == "date"
            }
            for b in battles
        ],
        "sessions": [_doc(x) for x in syl.sessions],
        "milestones": [
            {
                k: v
                for k, v in {
                    "key": m.key,
                    "title": m.title,
                    "presentations": [date.fromisoformat(d) for d in m.presentations],
                    "due": _local_text(m.due, tz),
                    "weight": m.weight,
                }.items()
                if v is not None
            }
            for m in milestones
        ],
        "deadlines": [
            {"key": d.key, "title": d.title, "due": _local_text(d.due, tz)} for d in deadlines
        ],
        "people": [person_doc(p) for p in people],
    }


def _yaml_ready(value: Any) -> Any:
    """Times as ``HH:MM`` text (YAML has no time type), recursively."""
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, dict):
        return {k: _yaml_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_ready(v) for v in value]
    return value


def _doc(model: BaseModel) -> dict[str, Any]:
    """An entry as the course file writes it: set fields only, by their file names."""
    return _yaml_ready(model.model_dump(by_alias=True, exclude_defaults=True))


def dump_course(doc: dict[str, Any]) -> str:
    header = "# coursebot course file (written by `coursebot course export`).\n"
    header += "# Dates and times are local to the course timezone.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


# ------------------------------------------------------------------------ Canvas roster
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")


def parse_canvas_roster(
    text: str, *, source: str = "roster", email_domain: str | None = None
) -> list[PersonEntry]:
    """Read a Canvas gradebook/roster CSV export into roster entries.

    Columns: Student ("Last, First"), ID, SIS User ID, SIS Login ID, Section and,
    if present, Email. Without an Email column ``email_domain`` builds one from the
    SIS Login ID. Canvas puts a "Points Possible" row under the header; it is skipped.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = reader.fieldnames or []
    missing = [c for c in ("Student", "SIS Login ID") if c not in header]
    if missing:
        raise CourseFileError(
            source,
            [
                Problem(
                    "header",
                    f"missing column{'s' * (len(missing) != 1)} {', '.join(missing)}; a Canvas export has "
                    + ", ".join(CANVAS_COLUMNS),
                )
            ],
        )
    has_email = "Email" in header
    if not has_email and not email_domain:
        raise CourseFileError(
            source,
            [
                Problem(
                    "header",
                    "no Email column: pass --email-domain (e.g. unc.edu) to build emails "
                    "from the SIS Login ID",
                )
            ],
        )
    problems: list[Problem] = []
    people: list[PersonEntry] = []
    for row in reader:
        line = reader.line_num
        student = (row.get("Student") or "").strip()
        if not student or "Points Possible" in student or student.startswith("Test Student"):
            if not student:
                problems.append(Problem("Student", "is empty", line))
            continue
        last, _, first = student.partition(",")
        name = f"{first.strip()} {last.strip()}".strip() if first else student
        login = (row.get("SIS Login ID") or "").strip()
        email = (row.get("Email") or "").strip() if has_email else ""
        built = f"{login}@{email_domain}".lower() if login and email_domain else ""
        if not email and built:
            email = built
        # Both known (first.last@ and login@): the login address is an alias for `register`.
        aliases = [built] if built and built != email.lower() else []
        try:
            people.append(
                PersonEntry(
                    name=name,
                    email=email,
                    given_name=first.strip() or None if first else None,
                    family_name=last.strip() or None if first else None,
                    role="student",
                    sis_id=(row.get("SIS User ID") or "").strip() or None,
                    onyen=login or None,
                    canvas_id=(row.get("ID") or "").strip() or None,
                    section=(row.get("Section") or "").strip() or None,
                    email_aliases=aliases,
                )
            )
        except ValidationError as exc:
            for err in exc.errors():
                problems.append(Problem(_loc(tuple(err["loc"])), _message(err), line))
    if problems:
        raise CourseFileError(source, problems)
    return people


async def import_roster(
    session: AsyncSession, course: Course, people: list[PersonEntry], *, now: datetime
) -> ImportReport:
    """Add or update students from a roster (matched by email, then SIS id); never removes."""
    report = ImportReport(course.key)
    existing = list(await session.scalars(select(Person).where(Person.course_id == course.id)))
    by_email = {p.email: p for p in existing}
    by_sis = {p.sis_id: p for p in existing if p.sis_id}
    for entry in people:
        person = by_email.get(entry.email) or (by_sis.get(entry.sis_id) if entry.sis_id else None)
        created = person is None
        if person is None:
            person = Person(course_id=course.id, email=entry.email, role=Role.STUDENT)
            session.add(person)
            by_email[entry.email] = person
        _set(
            person,
            report,
            "people",
            created,
            name=entry.name,
            email=entry.email,
            given_name=entry.given_name or person.given_name,
            family_name=entry.family_name or person.family_name,
            sis_id=entry.sis_id or person.sis_id,
            onyen=entry.onyen or person.onyen,
            canvas_id=entry.canvas_id or person.canvas_id,
            section=entry.section or person.section,
            email_aliases=list(
                dict.fromkeys([*(person.email_aliases or []), *entry.email_aliases])
            ),
        )
    await session.flush()
    return report


# ------------------------------------------------------------------- schema and reference
def course_file_schema() -> dict[str, Any]:
    """The course file's JSON Schema (``coursebot course schema``): editors that know
    YAML language servers complete and check the file with it."""
    schema = CourseFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "coursebot course file"
    return schema


#: The models the reference documents, in reading order.
REFERENCE_MODELS: tuple[type[BaseModel], ...] = (
    CourseFile,
    CourseSettings,
    RankingRules,
    AssignmentRules,
    PresenterLimits,
    PartnerEntry,
    BattleRules,
    PhaseEntry,
    TalkRules,
    CritiqueRules,
    ReminderRules,
    Bindings,
    BreakEntry,
    OfficeHoursSlot,
    PaperEntry,
    BattleEntry,
    SessionEntry,
    AgendaItem,
    MilestoneEntry,
    DeadlineEntry,
    PersonEntry,
)

#: How the reference names the course file's special types.
_TYPE_NAMES: dict[Any, str] = {
    str: "text",
    int: "integer",
    bool: "true/false",
    float: "number",
    date: "date (`2023-08-30`)",
    time: 'time (`"14:30"`)',
    datetime: "date and time (`2023-08-27T23:59`)",
}


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _type_text(ann: Any, metadata: list[Any] | None = None) -> str:
    """A readable type: ``list of [PhaseEntry](#phaseentry)``, ``one of a, b``."""
    from types import UnionType
    from typing import Union, get_args, get_origin

    funcs = {getattr(m, "func", None) for m in metadata or []}
    origin = get_origin(ann)
    if origin is Annotated:
        base, *extra = get_args(ann)
        return _type_text(base, extra)
    if _local_datetime in funcs:
        return _TYPE_NAMES[datetime]
    if _hhmm in funcs:
        return _TYPE_NAMES[time]
    if _battle_id in funcs:
        return "integer, or letters and a number (`B4`)"
    if _duration in funcs:
        return "length of time (`48h`, `90m`, `7d`)"
    if _reminder_at in funcs:
        return 'time before the deadline (`24h`) or clock time (`"18:00 the day before"`)'
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(ann))
    if origin in (Union, UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        inner = " or ".join(_type_text(a) for a in args)
        return f"{inner} (optional)" if len(args) < len(get_args(ann)) else inner
    if origin in (list, tuple):
        args = [a for a in get_args(ann) if a is not Ellipsis]
        if origin is tuple and len(args) == 2 and args[0] == args[1]:
            return f"pair of {_type_text(args[0])} (`[x, y]`)"
        return f"list of {_type_text(args[0])}" if args else "list"
    if origin is dict:
        k, v = get_args(ann)
        return f"mapping of {_type_text(k)} → {_type_text(v)}"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return f"[{ann.__name__}](#{_anchor(ann)})"
    return _TYPE_NAMES.get(ann, getattr(ann, "__name__", str(ann)))


def _bounds(info: Any) -> str:
    parts = []
    for m in info.metadata:
        for attr, word in (
            ("ge", "≥"),
            ("le", "≤"),
            ("min_length", "length ≥"),
            ("max_length", "length ≤"),
        ):
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{word} {v}")
        if getattr(m, "pattern", None):
            parts.append(f"matches `{m.pattern}`")
    return "; ".join(parts)


def _default_text(info: Any) -> str:
    if info.is_required():
        return "**required**"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "(its defaults)"
    if isinstance(value, time):
        return f'`"{value:%H:%M}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value in ([], {}, ""):
        return "empty"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def course_file_reference() -> str:
    """docs/course-file.md: every field of the course file, from the pydantic models
    (``coursebot course docs`` writes it; a test checks that it is up to date)."""
    out = [
        "# The course file: reference",
        "",
        "<!-- Generated from commands/coursefile.py by `coursebot course docs`; do not edit. -->",
        "",
        "A course is one YAML file: `coursebot course new FILE.yaml` writes a commented start, "
        "`coursebot course import FILE.yaml` loads it (again: updates, never duplicates), "
        "`coursebot course export` writes it back and `coursebot course schema` writes its JSON "
        "Schema for editors. Every problem is reported at once, with its line. Dates and times "
        'are local to `course.timezone`; quote clock times (`"14:30"`), which YAML would '
        "otherwise read as a number. `examples/comp790-23f.yaml` is a full sample.",
        "",
        "Checks that span entries: ids and keys are unique; a battle's papers exist and are "
        "`battle` papers, each in one battle; a battle's format (its phases, one after the "
        "other, from its `start`) ends by the end of its class; a session's agenda names papers "
        "and battles of its day and ends by the session's end; breaks do not overlap; sessions, "
        "papers and battles are not on a no-class day, in a break, or outside "
        "`first_day`–`last_day`; the assignment rules name students of `people`.",
        "",
    ]
    for model in REFERENCE_MODELS:
        title = "CourseFile (the top level)" if model is CourseFile else model.__name__
        out += [f"## {title}", ""]
        doc = " ".join((model.__doc__ or "").split())
        if doc:
            out += [doc, ""]
        out += ["| field | type | default | meaning |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            key = info.alias or name
            kind = _type_text(info.annotation, info.metadata)
            bounds = _bounds(info)
            if bounds:
                kind += f"; {bounds}"
            out.append(
                f"| `{key}` | {_cell(kind)} | {_cell(_default_text(info))} | "
                f"{_cell(info.description or '')} |"
            )
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------ a new course
STARTER = """\
# A coursebot course file: `coursebot course import {file}` loads it; importing again
# updates the course (never duplicates). Every field: docs/course-file.md.
# Dates and times are local to course.timezone; quote clock times ("14:30").

course:
  key: {key}                       # unique: lowercase letters, digits, . _ -
  name: {name}
  term: {term}
  timezone: America/New_York
  class_days: [mon, wed]           # the weekly pattern
  class_start: "14:30"
  class_end: "15:45"
  first_day: {first}               # first and last class day: every meeting is known
  last_day: {last}
  no_class: []                     # single days off, e.g. [{first}]
  breaks: []                       # e.g. [{{from: 2024-03-11, to: 2024-03-15, reason: Spring break}}]
  critique_deadline: "13:00"       # critiques are due then on the paper's class day
  # critique_rules: {{missing: zero, late_penalty: 0.5, late_cutoff: 48h}}
  # reminders: {{critique: [24h, 2h]}}   # private reminders to those who still owe one
  # ranking_deadline: {first}T23:59
  grading: {{participation: 10, critiques: 20, presentations: 30, project: 40}}
  # office_hours: https://calendly.com/you
  office_hours_slots: []           # e.g. [{{day: tue, start: "15:00", end: "16:00", place: "Room 101"}}]
  channels: {{announcements: announcements, general: general, battles: battles}}
  bindings: {{terminal: {key}}}     # also discord: GUILD_ID, slack: TEAM_ID

papers: []
  # - id: 1
  #   title: "A paper"
  #   authors: "First Author, Second Author"
  #   venue: "CVPR 2024"
  #   url: https://arxiv.org/abs/0000.00000
  #   date: {first}
  #   slot: 45                     # 30, 45, battle or instructor
  #   critique: true
  #   discussion: true

battles: []
  # - {{id: 1, a: 2, b: 3, date: {first}, theme: "What the two papers fight about"}}

sessions: []                       # meetings that need a title or a timed agenda
  # - date: {first}
  #   title: Guest lecture
  #   kind: guest
  #   agenda:
  #     - {{title: Talk, minutes: 45, kind: lecture}}
  #     - {{title: Questions, minutes: 30}}

milestones: []
  # - {{key: proposal, title: Project proposal, presentations: [{first}], due: {first}T23:59, weight: 10}}

deadlines: []

people:
  - name: {instructor}
    email: {email}
    role: instructor
    handles: {{terminal: instructor}}
"""


def starter_course_file(
    key: str,
    name: str,
    *,
    term: str = "",
    first_day: date | None = None,
    last_day: date | None = None,
    instructor: str = "The Instructor",
    email: str = "instructor@example.edu",
    file: str = "course.yaml",
) -> str:
    """A commented course file to start from (``coursebot course new``); it imports as is."""
    first = first_day or date(date.today().year, 8, 20)
    last = last_day or first + timedelta(weeks=15)
    text = STARTER.format(
        key=key,
        name=_yaml_text(name),
        term=_yaml_text(term) if term else '""',
        first=first.isoformat(),
        last=last.isoformat(),
        instructor=_yaml_text(instructor),
        email=email,
        file=file,
    )
    parse_course_file(text, source=file)  # it must import as written
    return text


def _yaml_text(value: str) -> str:
    return yaml.safe_dump(value, default_style=None, width=1000).strip().removesuffix("...").strip()
