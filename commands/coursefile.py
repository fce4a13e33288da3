"""The course file: one YAML document describes a course (settings, papers, battle
pairs, milestones, deadlines, people). Validated with pydantic; every problem is
reported with its location (``papers[12].slot: must be one of 30, 45, battle,
instructor``) and the file's line. Importing again updates, never duplicates.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
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
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class RankingRules(_Strict):
    standard_choices: int = Field(7, ge=1, le=25)
    battle_choices: int = Field(3, ge=1, le=10)
    max_presenters: int = Field(2, ge=1, le=4)  # per 30/45-min paper (pairs when needed)
    battle_group: tuple[int, int] = (3, 4)  # students per side of a battle, min and max

    @field_validator("battle_group")
    @classmethod
    def _group(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= v[0] <= v[1]:
            raise ValueError(f"must be [min, max] with 1 <= min <= max, not {list(v)}")
        return v


class BattleRules(_Strict):
    """Paper-battle timing and voting rules."""

    present_minutes: int = Field(20, ge=1, le=120)  # each side's presentation
    reasons_minutes: int = Field(5, ge=1, le=60)  # "3 reasons why ours is better"
    rebuttal_minutes: int = Field(5, ge=1, le=60)
    warnings: list[int] = Field(default_factory=lambda: [5, 1])  # minutes before the end
    overrun_every_seconds: int = Field(30, ge=5, le=600)  # "+0:30, +1:00, ..." while over
    justification_min: int = Field(20, ge=1, le=2000)  # characters a vote's reason needs
    # secret: nobody (staff included) sees sides or reasons before the poll closes, and
    # Discord reactions are removed as soon as they are recorded; open: reactions stay
    # and the poll shows live counts per side (reasons are still read only after close).
    ballot: Literal["secret", "open"] = "secret"


class Bindings(_Strict):
    terminal: str | None = None
    discord: str | None = None  # guild id
    slack: str | None = None  # workspace (team) id


class CourseSettings(_Strict):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")
    name: str = Field(min_length=1)
    term: str = ""
    timezone: str = "America/New_York"
    class_days: list[Weekday] = Field(default_factory=list)
    class_start: ClockTime | None = None
    class_end: ClockTime | None = None
    critique_deadline: ClockTime = time(13, 0)
    ranking_deadline: LocalDateTime | None = None
    ranking: RankingRules = Field(default_factory=RankingRules)
    battle_rules: BattleRules = Field(default_factory=BattleRules)
    website: str | None = None
    office_hours: str | None = None
    office_hours_note: str | None = None
    grading: dict[str, int] = Field(default_factory=dict)
    channels: dict[str, str] = Field(default_factory=dict)
    bindings: Bindings = Field(default_factory=Bindings)
    no_class: list[date] = Field(default_factory=list)

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
    id: int = Field(ge=1)
    title: str = Field(min_length=1)
    authors: str = ""
    venue: str | None = None
    url: str | None = None
    date: Day | None = None
    slot: Annotated[Literal["30", "45", "battle", "instructor"], BeforeValidator(_slot)]
    critique: bool = False
    discussion: bool = False


class BattleEntry(_Strict):
    id: int = Field(ge=1)
    a: int
    b: int
    date: Day | None = None


class MilestoneEntry(_Strict):
    key: str = Field(min_length=1)
    title: str
    presentations: list[date] = Field(default_factory=list)
    due: LocalDateTime | None = None
    weight: int | None = None


class DeadlineEntry(_Strict):
    key: str = Field(min_length=1)
    title: str
    due: LocalDateTime


class PersonEntry(_Strict):
    name: str = Field(min_length=1)
    email: str
    role: Literal["instructor", "ta", "student"] = "student"
    degree: Literal["BA", "BS", "MS", "PhD"] | None = None
    year: int | None = Field(None, ge=1, le=10)
    sis_id: str | None = None
    onyen: str | None = None
    canvas_id: str | None = None
    section: str | None = None
    handles: dict[Literal["terminal", "discord", "slack"], str] = Field(default_factory=dict)
    #: Other addresses of this person that `register` accepts (a Slack profile's email).
    email_aliases: list[str] = Field(default_factory=list)

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


class CourseFile(_Strict):
    course: CourseSettings
    papers: list[PaperEntry] = Field(default_factory=list)
    battles: list[BattleEntry] = Field(default_factory=list)
    milestones: list[MilestoneEntry] = Field(default_factory=list)
    deadlines: list[DeadlineEntry] = Field(default_factory=list)
    people: list[PersonEntry] = Field(default_factory=list)


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
    seen_battles: set[int] = set()
    battle_papers: Counter[int] = Counter()
    for i, b in enumerate(cf.battles):
        if b.id in seen_battles:
            out.append((("battles", i, "id"), f"battle id {b.id} is used twice"))
        seen_battles.add(b.id)
        if b.a == b.b:
            out.append((("battles", i, "b"), "a battle needs two different papers"))
        for side in ("a", "b"):
            pid = getattr(b, side)
            battle_papers[pid] += 1
            if pid not in papers:
                out.append((("battles", i, side), f"paper {pid} does not exist"))
            elif papers[pid].slot != "battle":
                out.append(
                    (("battles", i, side), f"paper {pid} has slot {papers[pid].slot}, not battle")
                )
    for pid, n in battle_papers.items():
        if n > 1:
            out.append((("battles",), f"paper {pid} is in {n} battles; a paper battles once"))
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
    return out


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
        channels=dict(s.channels),
        no_class=[d.isoformat() for d in s.no_class],
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
    wanted = {b.id for b in cf.battles}
    for number, battle in battles.items():
        if number not in wanted:
            await session.delete(battle)
            report.removed["battles"] += 1
    for entry in cf.battles:
        battle = battles.get(entry.id)
        created = battle is None
        if battle is None:
            battle = Battle(course_id=course.id, number=entry.id)
            session.add(battle)
        _set(
            battle,
            report,
            "battles",
            created,
            paper_a_id=papers[entry.a].id,
            paper_b_id=papers[entry.b].id,
            class_date=entry.date,
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
    for entry in people:
        person = existing.get(entry.email)
        created = person is None
        if person is None:
            person = Person(course_id=course.id, email=entry.email)
            session.add(person)
            existing[entry.email] = person
        _set(
            person,
            report,
            "people",
            created,
            name=entry.name,
            role=Role(entry.role),
            degree=Degree(entry.degree) if entry.degree else None,
            year=entry.year,
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
    settings: dict[str, Any] = {
        "key": course.key,
        "name": course.name,
        "term": course.term,
        "timezone": course.timezone,
        "class_days": list(course.class_days),
        "class_start": _hm(course.class_start),
        "class_end": _hm(course.class_end),
        "critique_deadline": _hm(course.critique_deadline),
        "ranking_deadline": _local_text(course.ranking_deadline, tz),
        "ranking": {
            "standard_choices": course.standard_choices,
            "battle_choices": course.battle_choices,
            "max_presenters": course.max_presenters,
            "battle_group": [course.battle_group_min, course.battle_group_max],
        },
        "battle_rules": BattleRules.model_validate(course.battle_rules or {}).model_dump(),
        "website": course.website,
        "office_hours": course.office_hours_url,
        "office_hours_note": course.office_hours_note,
        "grading": dict(course.grading),
        "channels": dict(course.channels),
        "bindings": bindings,
        "no_class": [date.fromisoformat(d) for d in course.no_class],
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
                "id": b.number,
                "a": by_id[b.paper_a_id],
                "b": by_id[b.paper_b_id],
                "date": b.class_date,
            }
            for b in battles
        ],
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
                    f"missing column(s) {', '.join(missing)}; a Canvas export has "
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
