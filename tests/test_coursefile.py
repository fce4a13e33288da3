"""The course file and Canvas rosters at the domain level: parsing and validation,
import (idempotent, on SQLite and Postgres), export round trips, bindings, DST."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.settings import SAMPLE_COURSE
from commands.coursefile import (
    CourseFile,
    CourseFileError,
    ImportReport,
    dump_course,
    export_course,
    import_course,
    import_roster,
    parse_canvas_roster,
    parse_course_file,
)
from commands.errors import InvalidInput
from db.models import (
    Base,
    Battle,
    Course,
    CourseBinding,
    Deadline,
    Identity,
    Milestone,
    Paper,
    Person,
    Role,
    Slot,
)
from db.session import Database
from tests.conftest import SAMPLE_NOW

SAMPLE_TEXT = SAMPLE_COURSE.read_text(encoding="utf-8")
ROSTER = Path(SAMPLE_COURSE).parent / "canvas_roster.csv"
ROSTER_TEXT = ROSTER.read_text(encoding="utf-8")
NY = ZoneInfo("America/New_York")


# ----------------------------------------------------------------------------- helpers
def _find(lines: list[str], text: str, *, after: str | None = None) -> int:
    """0-based index of the only line equal to ``text`` (stripped), or of the first such
    line after the first line equal to ``after`` (papers come before battles)."""
    if after is not None:
        start = next(i for i, line in enumerate(lines) if line.strip() == after) + 1
        return next(i for i in range(start, len(lines)) if lines[i].strip() == text)
    hits = [i for i, line in enumerate(lines) if line.strip() == text]
    assert len(hits) == 1, (text, hits)
    return hits[0]


def _problems(err: CourseFileError) -> set[str]:
    return {str(p) for p in err.problems}


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


async def _import(db: Database, cf: CourseFile) -> ImportReport:
    async with db.transaction() as session:
        return await import_course(session, cf, now=SAMPLE_NOW)


async def _counts(db: Database) -> dict[str, int]:
    async with db.session() as session:
        return {
            table.name: int(await session.scalar(select(func.count()).select_from(table)) or 0)
            for table in Base.metadata.sorted_tables
        }


async def _course(session, key: str = "comp790-23f") -> Course:  # type: ignore[no-untyped-def]
    course = await session.scalar(select(Course).where(Course.key == key))
    assert course is not None, key
    return course


def _assert_nothing_happened(report: ImportReport) -> None:
    assert not report.new_course
    assert dict(report.created) == {}
    assert dict(report.updated) == {}
    assert dict(report.removed) == {}
    assert dict(report.kept) == {}
    assert "added: nothing" in report.summary() and "changed: nothing" in report.summary()


# ------------------------------------------------------------------------- 1. the sample
def test_the_sample_course_file_parses() -> None:
    cf = parse_course_file(SAMPLE_TEXT, source="comp790-23f.yaml")
    assert cf.course.key == "comp790-23f"
    assert len(cf.papers) == 32
    paper5 = next(p for p in cf.papers if p.id == 5)
    assert paper5.title == "SlowFast Networks for Video Recognition"
    assert paper5.slot == "45" and paper5.critique and paper5.discussion
    assert paper5.date == date(2023, 8, 30)
    assert sum(p.critique for p in cf.papers) == 10
    assert len(cf.battles) == 5
    assert [(b.a, b.b) for b in cf.battles] == [(9, 10), (11, 12), (16, 17), (19, 20), (27, 28)]
    assert [m.key for m in cf.milestones] == ["proposal", "milestone", "final"]
    assert len(cf.people) == 27
    assert sum(p.role == "student" for p in cf.people) == 25
    # YAML 1.1 would read an unquoted 13:00 as 780; the quoted times are clock times.
    assert cf.course.critique_deadline.hour == 13 and cf.course.class_start.minute == 30  # type: ignore[union-attr]


async def test_importing_the_sample_stores_instants_in_utc(db: Database) -> None:
    report = await _import(db, parse_course_file(SAMPLE_TEXT))
    assert report.new_course
    assert report.created == {
        "papers": 32,
        "battles": 5,
        "milestones": 3,
        "deadlines": 1,
        "people": 27,
        "bindings": 1,
    }
    async with db.session() as s:
        course = await _course(s)
        # 2023-08-27 23:59 in New York is EDT (UTC-4).
        assert course.ranking_deadline == datetime(2023, 8, 28, 3, 59, tzinfo=UTC)
        final = await s.scalar(select(Milestone).where(Milestone.key == "final"))
        assert final is not None
        # 2023-12-10 23:59 is after the DST change: EST (UTC-5).
        assert final.due == datetime(2023, 12, 11, 4, 59, tzinfo=UTC)
        assert final.due.astimezone(NY).strftime("%Y-%m-%d %H:%M %Z") == "2023-12-10 23:59 EST"
        rankings = await s.scalar(select(Deadline).where(Deadline.key == "rankings"))
        assert rankings is not None and rankings.due == course.ranking_deadline
        paper5 = await s.scalar(select(Paper).where(Paper.number == 5))
        assert paper5 is not None and paper5.slot is Slot.MIN45 and paper5.critique
        # 24 terminal handles: Ibrahim, Sofia and Zoe have none in the file.
        assert await s.scalar(select(func.count()).select_from(Identity)) == 24
        gedas = await s.scalar(select(Person).where(Person.email == "gedas@cs.unc.edu"))
        assert gedas is not None and gedas.role is Role.INSTRUCTOR


# ------------------------------------------------------------------------ 2. validation
def _broken_sample() -> tuple[str, dict[str, set[str]]]:
    """The sample with seven problems; returns the text and the expected problem lines,
    split into those the schema finds and those only the cross-checks find."""
    lines = SAMPLE_TEXT.splitlines()
    schema: set[str] = set()
    cross: set[str] = set()

    i = _find(lines, "timezone: America/New_York")
    lines[i] = "  timezone: Mars/Olympus"
    schema.add(
        f"line {i + 1}: course.timezone: 'Mars/Olympus' is not an IANA timezone; "
        "use a name like America/New_York"
    )

    i = _find(lines, "grading: {participation: 10, critiques: 20, presentations: 30, project: 40}")
    lines[i] = "  grading: {participation: 10, critiques: 20, presentations: 30, project: 50}"
    schema.add(f"line {i + 1}: course.grading: weights must add up to 100 (they add up to 110)")

    i = _find(lines, "slot: instructor", after="- id: 4")
    lines[i] = '    slot: "60"'
    schema.add(f"line {i + 1}: papers[3].slot: must be one of 30, 45, battle, instructor")

    i = _find(lines, "b: 10      # X3D")
    lines[i] = "    b: 99"
    cross.add(f"line {i + 1}: battles[0].b: paper 99 does not exist")

    i = _find(lines, "onyen: achen")
    lines.insert(i + 1, "    nickname: Al")
    schema.add(f"line {i + 2}: people[2].nickname: is not a known field (check the spelling)")

    i = _find(lines, "email: bob.okafor@unc.edu")
    lines[i] = "    email: Alice.Chen@unc.edu"
    cross.add(f"line {i + 1}: people[3].email: alice.chen@unc.edu is listed twice")

    i = _find(lines, "email: carol.martinez@unc.edu")
    lines[i] = "    email: carol.martinez(at)unc.edu"
    schema.add(
        f"line {i + 1}: people[4].email: 'carol.martinez(at)unc.edu' is not an email address"
    )
    return "\n".join(lines) + "\n", {"schema": schema, "cross": cross}


def test_every_problem_is_reported_at_once_with_its_line() -> None:
    text, expected = _broken_sample()
    with pytest.raises(CourseFileError) as info:
        parse_course_file(text, source="course.yaml")
    everything = expected["schema"] | expected["cross"]
    assert _problems(info.value) == everything
    message = str(info.value)
    assert message.startswith(f"course.yaml has {len(everything)} problems:")
    for problem in everything:
        assert f"  - {problem}" in message


def test_schema_problems_are_all_reported_with_location_and_line() -> None:
    """Without the cross-file mistakes, every schema problem comes back in one error."""
    text, expected = _broken_sample()
    lines = text.splitlines()
    lines[_find(lines, "b: 99")] = "    b: 10"
    lines[_find(lines, "email: Alice.Chen@unc.edu")] = "    email: bob.okafor@unc.edu"
    with pytest.raises(CourseFileError) as info:
        parse_course_file("\n".join(lines), source="course.yaml")
    assert _problems(info.value) == expected["schema"]
    assert str(info.value).startswith("course.yaml has 5 problems:")
    slot = next(p for p in info.value.problems if p.loc == "papers[3].slot")
    assert str(slot).startswith("line ") and slot.line == _find(lines, 'slot: "60"') + 1


def test_cross_checks_are_all_reported_with_location_and_line() -> None:
    lines = SAMPLE_TEXT.splitlines()
    expected = set()
    i = _find(lines, "b: 10      # X3D")
    lines[i] = "    b: 99"
    expected.add(f"line {i + 1}: battles[0].b: paper 99 does not exist")
    i = _find(lines, "a: 11      # TimeSformer")
    lines[i] = "    a: 5"
    expected.add(f"line {i + 1}: battles[1].a: paper 5 has slot 45, not battle")
    i = _find(lines, "critique: false", after="- id: 9")
    lines[i] = "    critique: true"
    expected.add(f"line {i + 1}: papers[8].critique: a battle paper cannot require a critique")
    i = _find(lines, "- key: milestone")
    lines[i] = "  - key: proposal"
    expected.add(f"line {i + 1}: milestones[1].key: key 'proposal' is used twice")
    i = _find(lines, "email: bob.okafor@unc.edu")
    lines[i] = "    email: ALICE.CHEN@unc.edu"  # emails compare case-insensitively
    expected.add(f"line {i + 1}: people[3].email: alice.chen@unc.edu is listed twice")
    i = _find(lines, "handles: {terminal: carol}")
    lines[i] = "    handles: {terminal: alice}"
    expected.add(f"line {i + 1}: people[4].handles.terminal: 'alice' is used twice")
    with pytest.raises(CourseFileError) as info:
        parse_course_file("\n".join(lines), source="course.yaml")
    assert _problems(info.value) == expected


def test_nested_locations_are_named_like_the_file() -> None:
    text = (
        "course: {key: x-1, name: X, class_days: [mon, funday]}\n"
        "people:\n"
        "  - {name: A, email: a@b.co, year: 0}\n"
    )
    with pytest.raises(CourseFileError) as info:
        parse_course_file(text)
    assert _problems(info.value) == {
        "line 1: course.class_days[1]: must be one of mon, tue, wed, thu, fri, sat, sun",
        "line 3: people[0].year: input should be greater than or equal to 1",
    }


def test_an_unknown_handle_platform_is_named_by_its_key() -> None:
    text = (
        "course: {key: x-1, name: X}\npeople:\n  - {name: A, email: a@b.co, handles: {github: a}}\n"
    )
    with pytest.raises(CourseFileError) as info:
        parse_course_file(text)
    assert _problems(info.value) == {
        "line 3: people[0].handles.github: must be one of terminal, discord, slack"
    }


@pytest.mark.parametrize(
    ("line", "replacement", "says"),
    [
        # a tab where YAML wants spaces
        ("slot: instructor", "\tslot: instructor", "found character '\\t'"),
        # a value indented into the previous mapping
        ("critique: false", "      critique: false", "mapping values are not allowed here"),
    ],
)
def test_malformed_yaml_is_one_problem_with_its_line(
    line: str, replacement: str, says: str
) -> None:
    lines = SAMPLE_TEXT.splitlines()
    i = _find(lines, line, after="- id: 2")
    lines[i] = replacement
    with pytest.raises(CourseFileError) as info:
        parse_course_file("\n".join(lines), source="course.yaml")
    [problem] = info.value.problems
    assert problem.line == i + 1
    assert problem.message.startswith("not valid YAML: ") and says in problem.message
    assert str(info.value).startswith(f"course.yaml has 1 problem:\n  - line {i + 1}: YAML: ")


def test_an_unclosed_bracket_is_reported_where_the_parser_notices_it() -> None:
    """PyYAML notices an unclosed flow sequence on the next line (where it meets `:`);
    the problem carries that line and says that `]` was expected."""
    lines = SAMPLE_TEXT.splitlines()
    i = _find(lines, "class_days: [mon, wed]")
    lines[i] = "  class_days: [mon, wed"
    with pytest.raises(CourseFileError) as info:
        parse_course_file("\n".join(lines), source="course.yaml")
    [problem] = info.value.problems
    assert problem.loc == "YAML"
    assert problem.message.startswith("not valid YAML: ") and "']'" in problem.message
    assert problem.line == i + 2


@pytest.mark.parametrize("text", ["- course: x\n- papers: []\n", "", "just words\n"])
def test_a_document_that_is_not_a_mapping_is_refused(text: str) -> None:
    with pytest.raises(CourseFileError) as info:
        parse_course_file(text, source="list.yaml")
    assert str(info.value) == (
        "list.yaml has 1 problem:\n  - (top): must be a mapping with a `course:` section"
    )


def test_a_missing_course_section_is_named() -> None:
    with pytest.raises(CourseFileError) as info:
        parse_course_file("papers: []\n", source="c.yaml")
    assert _problems(info.value) == {"line 1: course: is required"}


# ------------------------------------------------------------------------ 3. idempotence
async def test_importing_twice_changes_nothing(db: Database) -> None:
    cf = parse_course_file(SAMPLE_TEXT)
    await _import(db, cf)
    first = await _counts(db)
    assert first["courses"] == 1 and first["papers"] == 32 and first["people"] == 27
    assert first["battles"] == 5 and first["milestones"] == 3 and first["identities"] == 24
    again = await _import(db, parse_course_file(SAMPLE_TEXT))
    _assert_nothing_happened(again)
    assert await _counts(db) == first


async def test_reimport_applies_exactly_the_edits_and_keeps_people(db: Database) -> None:
    await _import(db, parse_course_file(SAMPLE_TEXT))
    before = await _counts(db)

    lines = SAMPLE_TEXT.splitlines()
    i = _find(lines, 'title: "Non-local Neural Networks"')
    lines[i] = '    title: "Non-local Neural Networks (revised)"'
    start = _find(lines, "- key: milestone")
    del lines[start : start + 5]  # the whole `milestone` entry
    start = _find(lines, "- name: Zoe Williams")
    del lines[start:]  # Zoe leaves the file but stays on the roster
    report = await _import(db, parse_course_file("\n".join(lines)))

    assert not report.new_course
    assert dict(report.created) == {}
    assert dict(report.updated) == {"papers": 1}
    assert dict(report.removed) == {"milestones": 1}
    assert dict(report.kept) == {"people": 1}
    assert "removed (no longer in the file): 1 milestones" in report.summary()
    after = await _counts(db)
    assert after == {**before, "milestones": before["milestones"] - 1}
    async with db.session() as s:
        paper6 = await s.scalar(select(Paper).where(Paper.number == 6))
        assert paper6 is not None and paper6.title == "Non-local Neural Networks (revised)"
        keys = set(await s.scalars(select(Milestone.key)))
        assert keys == {"proposal", "final"}
        assert await s.scalar(select(Person).where(Person.email == "zoe.williams@unc.edu"))


# ------------------------------------------------------------------------ 4. round trip
async def test_export_round_trips_and_reimports_as_no_change(db: Database) -> None:
    original = parse_course_file(SAMPLE_TEXT)
    await _import(db, original)
    async with db.session() as s:
        text = dump_course(await export_course(s, await _course(s)))
    assert text.startswith("# coursebot course file")
    exported = parse_course_file(text, source="export.yaml")
    assert exported.course.model_dump() == original.course.model_dump()
    for part in ("papers", "battles", "milestones", "deadlines", "people"):
        assert [e.model_dump() for e in getattr(exported, part)] == [
            e.model_dump() for e in getattr(original, part)
        ], part
    assert exported.model_dump() == original.model_dump()

    before = await _counts(db)
    _assert_nothing_happened(await _import(db, exported))
    assert await _counts(db) == before


# -------------------------------------------------------------------------- 5. bindings
async def test_a_binding_used_by_another_course_is_refused_and_nothing_is_stored(
    db: Database,
) -> None:
    await _import(db, parse_course_file(SAMPLE_TEXT))
    before = await _counts(db)
    other = SAMPLE_TEXT.replace("key: comp790-23f", "key: comp790-24s", 1)
    with pytest.raises(InvalidInput) as info:
        await _import(db, parse_course_file(other))
    assert str(info.value) == (
        "course.bindings.terminal: 'default' is already bound to another course."
    )
    assert await _counts(db) == before  # a fresh session: the new course was rolled back
    async with db.session() as s:
        assert list(await s.scalars(select(Course.key))) == ["comp790-23f"]

    # The same course under its own binding is fine: one deployment, two courses.
    spring = other.replace("bindings: {terminal: default}", "bindings: {terminal: spring}")
    report = await _import(db, parse_course_file(spring))
    assert report.new_course and report.created["papers"] == 32
    async with db.session() as s:
        assert sorted(await s.scalars(select(Course.key))) == ["comp790-23f", "comp790-24s"]
        rows = await s.execute(select(Course.key, CourseBinding.external_id).join(CourseBinding))
        pairs = {(key, external) for key, external in rows}
        assert pairs == {("comp790-23f", "default"), ("comp790-24s", "spring")}
        assert await s.scalar(select(func.count()).select_from(Paper)) == 64


# ---------------------------------------------------------------------- 6. Canvas roster
def test_the_canvas_roster_matches_the_sample_students() -> None:
    people = parse_canvas_roster(ROSTER_TEXT, source="canvas_roster.csv")
    assert len(people) == 25
    students = [p for p in parse_course_file(SAMPLE_TEXT).people if p.role == "student"]
    assert {p.name for p in people} == {p.name for p in students}
    assert {(p.name, p.email, p.sis_id, p.onyen) for p in people} == {
        (p.name, p.email, p.sis_id, p.onyen) for p in students
    }
    tomas = next(p for p in people if p.onyen == "therrera")
    assert tomas.name == "Tomás Herrera" and tomas.canvas_id == "484102"
    assert (tomas.given_name, tomas.family_name) == ("Tomás", "Herrera")  # "Herrera, Tomás"
    assert tomas.section == "COMP 790.001.FA23" and tomas.role == "student"


async def test_roster_import_creates_students_once(db: Database) -> None:
    without_people = SAMPLE_TEXT[: SAMPLE_TEXT.index("\npeople:\n")] + "\n"
    cf = parse_course_file(without_people)
    assert cf.people == []
    await _import(db, cf)
    people = parse_canvas_roster(ROSTER_TEXT)
    async with db.transaction() as s:
        report = await import_roster(s, await _course(s), people, now=SAMPLE_NOW)
    assert dict(report.created) == {"people": 25}
    counts = await _counts(db)
    assert counts["people"] == 25
    async with db.session() as s:
        alice = await s.scalar(select(Person).where(Person.email == "alice.chen@unc.edu"))
        assert alice is not None
        assert (alice.name, alice.role, alice.sis_id, alice.onyen, alice.canvas_id) == (
            "Alice Chen",
            Role.STUDENT,
            "730418265",
            "achen",
            "481205",
        )

    async with db.transaction() as s:
        again = await import_roster(s, await _course(s), people, now=SAMPLE_NOW)
    assert dict(again.created) == {} and dict(again.updated) == {}
    assert await _counts(db) == counts


async def test_roster_matches_by_sis_id_when_the_email_changed(db: Database) -> None:
    await _import(db, parse_course_file(SAMPLE_TEXT))
    text = ROSTER_TEXT.replace("alice.chen@unc.edu", "alice@cs.unc.edu")
    async with db.transaction() as s:
        report = await import_roster(s, await _course(s), parse_canvas_roster(text), now=SAMPLE_NOW)
    assert dict(report.created) == {}
    assert report.updated["people"] == 25  # canvas ids and sections are new for everyone
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Person)) == 27
        alice = await s.scalar(select(Person).where(Person.sis_id == "730418265"))
        assert alice is not None and alice.email == "alice@cs.unc.edu"


def test_roster_without_email_builds_emails_from_the_login() -> None:
    rows = [line.rsplit(",", 1)[0] for line in ROSTER_TEXT.splitlines()]
    assert rows[0] == "Student,ID,SIS User ID,SIS Login ID,Section"
    text = "\n".join(rows) + "\n"
    people = parse_canvas_roster(text, email_domain="unc.edu")
    assert len(people) == 25
    by_name = {p.name: p.email for p in people}
    assert by_name["Sofia Andersson"] == "sanderss@unc.edu"
    assert by_name["Quinn O'Brien"] == "qobrien@unc.edu"
    with pytest.raises(CourseFileError) as info:
        parse_canvas_roster(text, source="r.csv")
    assert "no Email column" in str(info.value) and "--email-domain" in str(info.value)


def test_roster_missing_the_student_column_is_refused() -> None:
    text = ROSTER_TEXT.replace("Student,ID,", "Name,ID,", 1)
    with pytest.raises(CourseFileError) as info:
        parse_canvas_roster(text, source="r.csv")
    [problem] = info.value.problems
    assert problem.loc == "header"
    assert problem.message.startswith("missing column Student;")
    assert str(info.value).startswith("r.csv has 1 problem:\n  - header: missing column Student")


def test_roster_problems_name_the_csv_line_and_points_possible_is_skipped() -> None:
    lines = ROSTER_TEXT.splitlines()
    lines.insert(1, "    Points Possible,,,,,")
    text = "\n".join(lines) + "\n"
    assert len(parse_canvas_roster(text)) == 25  # the Points Possible row is not a student

    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith('"Chen, Alice"'))
    lines[i] = lines[i].replace("alice.chen@unc.edu", "alice.chen-at-unc.edu")
    j = next(n for n, line in enumerate(lines) if line.startswith('"Zhang, Wei"'))
    lines[j] = lines[j].replace("wei.zhang@unc.edu", "wei zhang@unc.edu")
    with pytest.raises(CourseFileError) as info:
        parse_canvas_roster("\n".join(lines) + "\n", source="r.csv")
    assert _problems(info.value) == {
        f"line {i + 1}: email: 'alice.chen-at-unc.edu' is not an email address",
        f"line {j + 1}: email: 'wei zhang@unc.edu' is not an email address",
    }
    assert i + 1 == 5  # header, Points Possible, Andersson, Asante, then Chen


# --------------------------------------------------------------------------------- 7. DST
DST_COURSE = """\
course:
  key: dst-test
  name: DST edge cases
  timezone: America/New_York
  ranking_deadline: 2023-11-05T01:30
deadlines:
  - {key: fall-back, title: Ambiguous (01:30 happens twice), due: 2023-11-05T01:30}
  - {key: spring-forward, title: Nonexistent (02:30 never happens), due: 2023-03-12T02:30}
"""


async def test_dst_ambiguous_and_nonexistent_local_times(db: Database) -> None:
    """Local times are read with ``fold=0`` (zoneinfo's default):

    * 2023-11-05 01:30 happens twice in New York; the first (EDT, UTC-4) is taken, so
      it is stored as 05:30 UTC and reads back as 01:30 EDT.
    * 2023-03-12 02:30 never happens; the offset from before the jump (EST, UTC-5) is
      used, so it is stored as 07:30 UTC and reads back as 03:30 EDT: the same date, an
      hour later on the wall clock (never earlier than what the file says).
    The export writes what the instants read back as, and re-importing it is stable.
    """
    report = await _import(db, parse_course_file(DST_COURSE))
    assert report.created["deadlines"] == 2
    async with db.session() as s:
        course = await _course(s, "dst-test")
        due = {d.key: d.due for d in await s.scalars(select(Deadline))}
    fall, spring = due["fall-back"], due["spring-forward"]
    assert fall == datetime(2023, 11, 5, 5, 30, tzinfo=UTC)
    assert course.ranking_deadline == fall
    local = fall.astimezone(NY)
    assert (local.date(), local.hour, local.minute) == (date(2023, 11, 5), 1, 30)
    assert local.utcoffset() == timedelta(hours=-4)

    assert spring == datetime(2023, 3, 12, 7, 30, tzinfo=UTC)
    local = spring.astimezone(NY)
    assert local.date() == date(2023, 3, 12)
    assert (local.hour, local.minute, local.tzname()) == (3, 30, "EDT")

    async with db.session() as s:
        text = dump_course(await export_course(s, await _course(s, "dst-test")))
    exported = parse_course_file(text)
    assert {d.key: d.due for d in exported.deadlines} == {
        "fall-back": datetime(2023, 11, 5, 1, 30),
        "spring-forward": datetime(2023, 3, 12, 3, 30),
    }
    _assert_nothing_happened(await _import(db, exported))


def test_a_date_without_a_time_means_end_of_day() -> None:
    text = DST_COURSE.replace("due: 2023-03-12T02:30", "due: 2023-03-12")
    cf = parse_course_file(text)
    assert cf.deadlines[1].due == datetime(2023, 3, 12, 23, 59)
    with pytest.raises(CourseFileError) as info:
        parse_course_file(DST_COURSE.replace("due: 2023-03-12T02:30", "due: next friday"))
    assert _problems(info.value) == {
        "line 8: deadlines[1].due: must be a date and time like 2023-08-27T23:59, not 'next friday'"
    }


# ------------------------------------------------------- 8. the course as it really runs
def _with(extra_course: str = "", tail: str = "", replace: tuple[str, str] | None = None) -> str:
    """The sample with lines added to `course:` and sections added at the end."""
    text = SAMPLE_TEXT
    if replace:
        assert replace[0] in text, replace[0]
        text = text.replace(*replace)
    if extra_course:
        text = text.replace(
            "course:\n  key: comp790-23f\n", f"course:\n  key: comp790-23f\n{extra_course}"
        )
    return text + tail


def test_the_sample_describes_its_meetings_as_a_syllabus_does() -> None:
    cf = parse_course_file(SAMPLE_TEXT)
    s = cf.course
    assert (s.first_day, s.last_day) == (date(2023, 8, 21), date(2023, 12, 6))
    assert [(b.start, b.last, b.reason) for b in s.breaks] == [
        (date(2023, 10, 19), date(2023, 10, 20), "Fall break"),
        (date(2023, 11, 22), date(2023, 11, 24), "Thanksgiving break"),
    ]
    assert [x.day for x in s.office_hours_slots] == ["tue", "thu"]
    final = next(x for x in cf.sessions if x.date == date(2023, 12, 4))
    assert final.kind == "project" and final.agenda[0].kind == "presentations"
    talk = next(x for x in cf.sessions if x.date == date(2023, 8, 30)).agenda
    assert [(i.kind, i.paper, i.minutes) for i in talk] == [("talk", 5, 45), ("discussion", 5, 30)]
    assert cf.battles[0].theme == "Efficient video backbones"
    tomas = next(p for p in cf.people if p.onyen == "therrera")
    assert (tomas.given_name, tomas.family_name) == ("Tomás", "Herrera")


def test_syllabus_problems_are_all_reported_with_their_lines() -> None:
    text = _with(
        replace=(
            "  - date: 2023-08-30\n    agenda:\n      - {paper: 5, minutes: 45}\n",
            "  - date: 2023-08-30\n    agenda:\n      - {paper: 6, minutes: 55}\n",
        )
    )
    text = text.replace(
        "\nmilestones:\n",
        "  - date: 2023-12-04\n    title: Twice the same day\n\nmilestones:\n",
        1,
    )
    text = text.replace(
        "    - {from: 2023-10-19, to: 2023-10-20, reason: Fall break}",
        "    - {from: 2023-10-19, to: 2023-10-20, reason: Fall break}\n"
        "    - {from: 2023-10-02, to: 2023-10-01, reason: Backwards}",
    )
    text = text.replace(
        '{day: tue, start: "15:00", end: "16:00", place: "Sitterson Hall 255", '
        "host: Gedas Bertasius}",
        '{day: tue, start: "15:00", end: "16:00"}',
    )
    lines = text.splitlines()
    with pytest.raises(CourseFileError) as info:
        parse_course_file(text)
    found = _problems(info.value)
    backwards = _find(lines, "- {from: 2023-10-02, to: 2023-10-01, reason: Backwards}") + 1
    slot = _find(lines, '- {day: tue, start: "15:00", end: "16:00"}') + 1
    paper6 = _find(lines, "- {paper: 6, minutes: 55}") + 1
    twice = _find(lines, "title: Twice the same day")  # the entry's `- date:` line
    assert found == {
        f"line {backwards}: course.breaks[1]: `to` (2023-10-01) is before `from` (2023-10-02)",
        f"line {slot}: course.office_hours_slots[0]: give a place or a link",
        # the schema errors stop the course's checks; the list entries are still checked
        f"line {paper6}: sessions[1].agenda[0].paper: paper 6 is presented on 2023-09-06, "
        "not 2023-08-30",
        f"line {twice}: sessions[9].date: 2023-12-04 already has a session (sessions[7])",
    }


def test_agendas_days_off_and_class_days_are_checked() -> None:
    text = _with(
        replace=(
            "  - date: 2023-08-30\n    agenda:\n      - {paper: 5, minutes: 45}\n",
            "  - date: 2023-08-30\n    agenda:\n      - {paper: 5, minutes: 50}\n",
        )
    )
    text = text.replace("    date: 2023-09-11\n    slot: 30", "    date: 2023-10-20\n    slot: 30")
    text = text.replace("  last_day: 2023-12-06\n", "  last_day: 2023-12-04\n")
    lines = text.splitlines()
    with pytest.raises(CourseFileError) as info:
        parse_course_file(text)
    found = _problems(info.value)
    talk = (
        _find(
            lines,
            "- {title: Breakout discussion of SlowFast, paper: 5, kind: discussion, minutes: 30}",
        )
        + 1
    )
    assert (
        f"line {talk}: sessions[1].agenda[1]: ends at 15:50, after the session ends (15:45); "
        "shorten the agenda or give the session a later `end`" in found
    )
    paper7 = _find(lines, "date: 2023-10-20") + 1
    assert f"line {paper7}: papers[6].date: 2023-10-20 is in a break (Fall break)" in found
    dec6 = _find(lines, "- date: 2023-12-06") + 1
    assert (
        f"line {dec6}: sessions[8].date: 2023-12-06 is after the last class day (2023-12-04)"
        in found
    )
    assert len(found) == 3, found


@pytest.mark.parametrize(
    ("battle_rules", "message"),
    [
        ("phases: [{key: stop, title: x, minutes: 1}]", "'stop' is a word of `battle timer`"),
        (
            "phases: [{key: a, title: x, minutes: 1}, {key: a, title: y, minutes: 2}]",
            "phase 'a' is listed twice",
        ),
        ("phases: []", "a battle needs at least one phase"),
        ("phases: [{key: A1, title: x, minutes: 1}]", "should match pattern"),
        (
            "phases: [{key: a, title: x, minutes: 0}]",
            "a phase lasts from 1 to 120 minutes (you gave 0)",
        ),
        (
            "phases: [{key: a, title: x, minutes: -5}]",
            "a phase lasts from 1 to 120 minutes (you gave -5)",
        ),
    ],
)
def test_battle_formats_are_checked(battle_rules: str, message: str) -> None:
    text = SAMPLE_TEXT.replace("ballot: secret}", f"ballot: secret, {battle_rules}}}")
    with pytest.raises(CourseFileError) as info:
        parse_course_file(text)
    assert any(message in p and "course.battle_rules.phases" in p for p in _problems(info.value))


def test_battle_ids_may_be_letters_and_a_number() -> None:
    text = SAMPLE_TEXT.replace("  - id: 4\n    a: 19", "  - id: B4\n    a: 19")
    cf = parse_course_file(text)
    b4 = cf.battles[3]
    assert (b4.id, b4.number, b4.label) == ("B4", 4, "B4")
    clash = text.replace("  - id: 5\n    a: 27", "  - id: b4\n    a: 27")
    with pytest.raises(CourseFileError) as info:
        parse_course_file(clash)
    assert any("battle ids B4 and b4 are both battle 4" in p for p in _problems(info.value))
    bad = text.replace("  - id: B4\n", "  - id: four\n")
    with pytest.raises(CourseFileError) as info:
        parse_course_file(bad)
    assert any(
        "battles[3].id: must be a number or letters and a number" in p
        for p in _problems(info.value)
    )


def _broken_battles() -> tuple[str, set[str]]:
    """The sample with a problem in every battle; the text and the problems expected."""
    lines = SAMPLE_TEXT.splitlines()
    found: set[str] = set()

    def at(text: str) -> int:
        return _find(lines, text, after="battles:")

    i = at("b: 10      # X3D")
    lines[i] = "    b: 5"
    found.add(f"line {i + 1}: battles[0].b: paper 5 has slot 45, not battle")
    i = at("a: 11      # TimeSformer")
    lines[i] = "    a: 99"
    found.add(f"line {i + 1}: battles[1].a: paper 99 does not exist")
    i = at("date: 2023-09-18")
    lines.insert(i + 1, '    start: "14:00"')
    found.add(f"line {i + 2}: battles[1].start: starts at 14:00, before the class (14:30)")
    i = at("a: 16      # MViT")
    lines[i] = "    a: 9"
    found.add(
        f"line {i + 1}: battles[2].a: paper 9 is already in battle 1 (battles[0]); "
        "a paper battles once"
    )
    i = at("date: 2023-10-09")
    lines.insert(i + 1, "    phases: [{key: all, title: both sides at once, minutes: 80}]")
    found.add(
        f"line {i + 2}: battles[2].phases: its format takes 80 minutes: from 14:30 it ends at "
        "15:50, after the class ends (15:45); shorten the phases, or start it earlier"
    )
    i = at("- id: 4")
    lines[i] = "  - id: 1"
    found.add(f"line {i + 1}: battles[3].id: battle id 1 is used twice")
    i = at("date: 2023-10-16")
    lines[i] = "    date: 2023-12-11"
    found.add(f"line {i + 1}: battles[3].date: 2023-12-11 is after the last class day (2023-12-06)")
    i = at("date: 2023-11-13")
    lines[i] = "    date: 2023-11-22"
    found.add(f"line {i + 1}: battles[4].date: 2023-11-22 is in a break (Thanksgiving break)")
    return "\n".join(lines) + "\n", found


def test_battles_are_checked_against_the_papers_each_other_and_the_calendar() -> None:
    text, expected = _broken_battles()
    with pytest.raises(CourseFileError) as info:
        parse_course_file(text)
    assert _problems(info.value) == expected


def test_a_battle_format_longer_than_the_class_is_named_once() -> None:
    text = SAMPLE_TEXT.replace("present_minutes: 20,", "present_minutes: 35,")
    line = next(i for i, x in enumerate(text.splitlines(), 1) if "battle_rules:" in x)
    with pytest.raises(CourseFileError) as info:
        parse_course_file(text)
    # Every battle is on the course's format: said once, where the format is.
    assert _problems(info.value) == {
        f"line {line}: course.battle_rules: the battle format takes 80 minutes, longer than "
        "the class (14:30–15:45, 75 minutes); shorten its phases"
    }
    # A battle's own format that fits, starting with the class, is fine.
    fits = SAMPLE_TEXT.replace(
        "# ViViT\n    date: 2023-09-18\n",
        '# ViViT\n    date: 2023-09-18\n    start: "14:30"\n'
        "    phases: [{key: a, title: side A, minutes: 30, side: A}, "
        "{key: b, title: side B, minutes: 30, side: B}, {key: vote, title: vote, minutes: 15}]\n",
        1,
    )
    assert parse_course_file(fits).battles[1].phases is not None
    late = fits.replace('    start: "14:30"\n', '    start: "14:35"\n', 1)
    with pytest.raises(CourseFileError) as info:
        parse_course_file(late)
    assert any(
        "battles[1].phases: its format takes 75 minutes: from 14:35 it ends at 15:50, after "
        "the class ends (15:45)" in p
        for p in _problems(info.value)
    )


def test_overlapping_breaks_are_refused_with_their_line() -> None:
    text = SAMPLE_TEXT.replace(
        "    - {from: 2023-10-19, to: 2023-10-20, reason: Fall break}\n",
        "    - {from: 2023-10-19, to: 2023-10-20, reason: Fall break}\n"
        "    - {from: 2023-11-23, reason: Thanksgiving}\n"
        "    - {from: 2023-10-20, to: 2023-10-22, reason: Long weekend}\n",
    )
    lines = text.splitlines()
    with pytest.raises(CourseFileError) as info:
        parse_course_file(text)
    long_weekend = _find(lines, "- {from: 2023-10-20, to: 2023-10-22, reason: Long weekend}") + 1
    thanksgiving = _find(lines, "- {from: 2023-11-22, to: 2023-11-24, reason: Thanksgiving break}")
    assert _problems(info.value) == {
        f"line {long_weekend}: course.breaks[2]: overlaps breaks[0] (Fall break, 2023-10-19 to "
        "2023-10-20); give each day off once: merge the two or move one's `from`/`to`",
        f"line {thanksgiving + 1}: course.breaks[3]: overlaps breaks[1] (Thanksgiving, "
        "2023-11-23); give each day off once: merge the two or move one's `from`/`to`",
    }
    # Breaks that touch without sharing a day are fine.
    touching = SAMPLE_TEXT.replace(
        "    - {from: 2023-10-19, to: 2023-10-20, reason: Fall break}\n",
        "    - {from: 2023-10-19, to: 2023-10-20, reason: Fall break}\n"
        "    - {from: 2023-10-21, to: 2023-10-22, reason: Weekend}\n",
    )
    assert len(parse_course_file(touching).course.breaks) == 3


async def test_a_course_file_with_bad_battles_changes_nothing_stored(
    db: Database, tmp_path: Path
) -> None:
    from bot.app import import_course_file
    from commands.clock import FixedClock

    await _import(db, parse_course_file(SAMPLE_TEXT))
    before = await _counts(db)
    async with db.session() as s:
        exported = dump_course(await export_course(s, await _course(s)))
    text, expected = _broken_battles()
    path = tmp_path / "course.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CourseFileError) as info:
        await import_course_file(db, path, FixedClock(SAMPLE_NOW))
    assert str(info.value).startswith(f"{path} has {len(expected)} problems:")
    assert _problems(info.value) == expected
    assert await _counts(db) == before
    async with db.session() as s:
        assert dump_course(await export_course(s, await _course(s))) == exported


async def test_syllabus_labels_and_names_round_trip_and_reimport_as_no_change(
    db: Database,
) -> None:
    text = SAMPLE_TEXT.replace("  - id: 4\n    a: 19", "  - id: B4\n    a: 19").replace(
        "    b: 20      # MAE As Spatiotemporal Learners\n    date: 2023-10-16\n",
        '    b: 20\n    date: 2023-10-16\n    start: "15:00"\n'
        "    phases: [{key: all, title: both sides at once, minutes: 40}]\n",
    )
    assert "both sides at once" in text
    original = parse_course_file(text)
    await _import(db, original)
    async with db.session() as s:
        course = await _course(s)
        exported = dump_course(await export_course(s, course))
        battle = await s.scalar(select(Battle).where(Battle.number == 4))
        assert battle is not None and battle.label == "B4"
        assert battle.phases == [
            {"key": "all", "title": "both sides at once", "minutes": 40, "side": None}
        ]
    assert "- id: B4\n" in exported and "from: 2023-10-19" in exported
    assert "given_name: Tomás" in exported and "kind: project" in exported
    again = parse_course_file(exported, source="export.yaml")
    assert again.model_dump() == original.model_dump()
    _assert_nothing_happened(await _import(db, again))


def test_every_field_is_documented_and_the_reference_is_up_to_date() -> None:
    from typing import get_args

    from pydantic import BaseModel

    from commands.coursefile import REFERENCE_MODELS, course_file_reference

    seen: set[type] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
            stack = [info.annotation]
            while stack:
                ann = stack.pop()
                if isinstance(ann, type) and issubclass(ann, BaseModel):
                    walk(ann)
                stack.extend(get_args(ann))

    walk(CourseFile)
    assert seen <= set(REFERENCE_MODELS), seen - set(REFERENCE_MODELS)
    docs = Path(__file__).resolve().parent.parent / "docs" / "course-file.md"
    assert docs.read_text(encoding="utf-8") == course_file_reference() + "\n", (
        "docs/course-file.md is out of date: run `coursebot course docs`"
    )


def test_the_json_schema_and_the_starter_file() -> None:
    from commands.coursefile import course_file_schema, starter_course_file

    schema = course_file_schema()
    assert set(schema["properties"]) == {
        "course",
        "papers",
        "battles",
        "sessions",
        "milestones",
        "deadlines",
        "people",
    }
    assert "from" in schema["$defs"]["BreakEntry"]["properties"]
    assert schema["$defs"]["SessionEntry"]["additionalProperties"] is False
    starter = starter_course_file(
        "vision-25s",
        "Vision: a seminar",
        term="Spring 2025",
        first_day=date(2025, 1, 8),
        last_day=date(2025, 4, 28),
        instructor="Ada O'Neil",
        email="ada@example.edu",
    )
    assert starter.count("#") >= 20 and "# - id: 1" in starter
    cf = parse_course_file(starter)
    assert (cf.course.key, cf.course.name, cf.course.term) == (
        "vision-25s",
        "Vision: a seminar",
        "Spring 2025",
    )
    assert cf.people[0].name == "Ada O'Neil" and cf.course.bindings.terminal == "vision-25s"


def test_an_empty_course_file_setting_loads_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bot.settings import Settings

    monkeypatch.setenv("COURSEBOT_COURSE_FILE", "")
    assert Settings(_env_file=None).course_file is None
    monkeypatch.delenv("COURSEBOT_COURSE_FILE")
    assert Settings(_env_file=None).course_file == SAMPLE_COURSE
    env = tmp_path / ".env"
    env.write_text("COURSEBOT_COURSE_FILE=\n")
    assert Settings(_env_file=env).course_file is None
    monkeypatch.setenv("COURSEBOT_COURSE_FILE", str(tmp_path / "mine.yaml"))
    assert Settings(_env_file=env).course_file == tmp_path / "mine.yaml"  # the process wins


def test_course_new_schema_unbind_and_remove_from_the_command_line(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from bot.cli import app as cli

    runner = CliRunner()
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}", "COURSEBOT_COURSE_FILE": ""}

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, list(args), env=env)
        return result.exit_code, result.output

    new = tmp_path / "mine.yaml"
    assert run("course", "new", str(new), "--key", "mine-25s", "--name", "Mine")[0] == 0
    assert run("course", "new", str(new))[0] == 1  # no overwrite without --force
    code, out = run("course", "schema")
    assert code == 0 and json.loads(out)["title"] == "coursebot course file"
    assert run("course", "import", str(new))[0] == 0
    assert run("course", "import", str(SAMPLE_COURSE))[0] == 0
    code, out = run("course", "unbind", "comp790-23f", "terminal")
    assert code == 0 and "no longer bound to terminal default" in out
    code, out = run("course", "unbind", "comp790-23f", "slack")
    assert code == 1 and "not bound to slack" in out
    code, out = run("course", "remove", "comp790-23f")
    assert code == 1 and "Would remove course comp790-23f" in out and "32 papers" in out
    code, out = run("course", "remove", "comp790-23f", "--yes")
    assert code == 0 and "Removed course comp790-23f" in out
    code, out = run("course", "list")
    assert "mine-25s" in out and "comp790-23f" not in out


async def test_schedule_papers_and_paper_show_the_course_as_it_runs(app) -> None:  # type: ignore[no-untyped-def]
    from commands.context import Caller, Request, Where
    from commands.replies import render_text
    from db.models import Platform

    async def say(line: str) -> str:
        r = Request(
            Platform.TERMINAL,
            "default",
            Caller(Platform.TERMINAL, "alice", "alice"),
            Where("general"),
        )
        return render_text(await app.core.handle_text(r, line))

    week1 = await say("schedule week=1")
    assert "Mon Aug 21: Introduction: the course, and video recognition in one lecture" in week1
    assert "1. 2:30 PM–3:00 PM Course logistics and the paper ranking (lecture, 30 min)" in week1
    assert (
        "    Karen Simonyan, Andrew Zisserman (NeurIPS 2014) · https://arxiv.org/abs/1406.2199"
        in week1
    )
    everything = await say("schedule --all")
    assert "Thu Oct 19: No class: Fall break (Thu Oct 19 – Fri Oct 20)" in everything
    assert "Wed Nov 22: No class: Thanksgiving break (Wed Nov 22 – Fri Nov 24)" in everything
    assert "Mon Sep 4: No class" in everything
    assert "Wed Dec 6: Final project presentations · The final write-up is due" in everything
    assert "Battle 1 (Efficient video backbones): #9 TSM" in everything
    papers = await say("papers battle")
    assert "TSM: Temporal Shift Module for Efficient Video Understanding" in papers
    assert "#9 Lin et al. (ICCV 2019) · https://arxiv.org/abs/1811.08383" in papers
    one = await say("paper 5")
    assert "Authors: Christoph Feichtenhofer, Haoqi Fan, Jitendra Malik, Kaiming He" in one
    assert "Venue: ICCV 2019" in one and "Link: https://arxiv.org/abs/1812.03982" in one
    assert "Date: Wed Aug 30, class at 2:30 PM (talk at 2:30 PM, 45 min)" in one
    battle = await say("paper 10")
    assert "Battle: Battle 1 (Efficient video backbones), side B vs #9 TSM" in battle
    assert "There is no paper #99" in await say("paper 99")
    # A class day with nothing on it yet is still a class.
    text = SAMPLE_TEXT.replace("    date: 2023-09-11\n", "    date: 2023-09-06\n")
    async with app.db.transaction() as s:
        await import_course(s, parse_course_file(text), now=SAMPLE_NOW)
    assert "Mon Sep 11: Class (nothing scheduled yet)" in await say("schedule week=4")
    hours = await say("officehours")
    assert "Tuesdays   3:00 PM–4:00 PM" in hours and "Maya Johnson (TA)" in hours


async def test_paper_takes_its_number_as_printed_and_shows_presenters_once_published(app) -> None:  # type: ignore[no-untyped-def]
    from commands.context import Caller, Request, Where
    from commands.replies import Reply, render_text
    from db.models import Assignment, Platform

    async def say(line: str, who: str = "alice") -> Reply:
        r = Request(
            Platform.TERMINAL, "default", Caller(Platform.TERMINAL, who, who), Where("general")
        )
        return await app.core.handle_text(r, line)

    one = render_text(await say("paper #5"))
    assert one == render_text(await say("paper 5"))
    assert one.startswith("== #5 SlowFast Networks for Video Recognition ==")
    for line in (
        "Authors: Christoph Feichtenhofer, Haoqi Fan, Jitendra Malik, Kaiming He",
        "Venue: ICCV 2019",
        "Link: https://arxiv.org/abs/1812.03982",
        "Slot: 45-min presentation",
        "Date: Wed Aug 30, class at 2:30 PM (talk at 2:30 PM, 45 min)",
        "Presented by: unassigned",
        "Also: critique due 1:00 PM on its day (`critique submit 5`); breakout discussion in class",
    ):
        assert line in one.splitlines(), (line, one)
    battle = render_text(await say("paper  #10 "))
    assert "Battle: Battle 1 (Efficient video backbones), side B vs #9 TSM" in battle
    assert "Also:" not in battle  # a battle paper takes no critique

    # Presenters: a proposal is staff's to see; everyone sees them once published.
    async with app.db.transaction() as s:
        paper = await s.scalar(select(Paper).where(Paper.number == 5))
        alice = await s.scalar(select(Person).where(Person.email == "alice.chen@unc.edu"))
        assert paper is not None and alice is not None
        row = Assignment(
            course_id=paper.course_id, paper_id=paper.id, person_id=alice.id, published=False
        )
        s.add(row)
    assert "Presented by: unassigned" in render_text(await say("paper #5"))
    assert "Presented by: Alice Chen" in render_text(await say("paper #5", "gedas"))
    async with app.db.transaction() as s:
        await s.execute(
            Assignment.__table__.update().values(published=True)  # type: ignore[attr-defined]
        )
    assert "Presented by: Alice Chen" in render_text(await say("paper #5"))

    # What is not a paper's number is refused privately, saying what to type.
    for line, said in (
        ("paper #x", "`paper` must be a whole number written with the digits 0-9 only"),
        ("paper ##5", "(you gave `#5`)"),
        ("paper #0", "`paper` is out of range"),
        ("paper #99", "There is no paper #99"),
    ):
        r = await say(line)
        assert r.is_error and r.ephemeral and said in r.text, (line, r.text)
        assert "paper" in r.text
