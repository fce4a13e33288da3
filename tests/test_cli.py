"""The ``coursebot`` command line, run as the real executable in a subprocess, on a
temporary SQLite file (and on throwaway Postgres databases for ``db upgrade``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from db.models import Base
from tests.conftest import PG_ADMIN_URL, throwaway_pg_database

REPO = Path(__file__).resolve().parent.parent
COURSEBOT = Path(sys.executable).with_name("coursebot")
SAMPLE = "examples/comp790-23f.yaml"
ROSTER = "examples/canvas_roster.csv"
TABLES = {*Base.metadata.tables, "alembic_version"}
UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:1/x"
CREATED = (
    "Course comp790-23f: created.\n"
    "  added: 5 battles, 1 bindings, 1 deadlines, 3 milestones, 32 papers, 27 people\n"
)
NO_CHANGE = "Course comp790-23f: updated.\n  added: nothing\n  changed: nothing\n"


def _env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    drop = ("DATABASE_URL", "DISCORD_", "SLACK_", "COURSEBOT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    # The GPU worker process is tested in tests/test_gpu_queue.py; here it would only cost time.
    env.update(
        DATABASE_URL=database_url,
        COURSEBOT_DATA_DIR=str(data_dir),
        COURSEBOT_GPU_WORKER="false",
        **extra,
    )
    return env


def coursebot(
    *args: str,
    database_url: str,
    data_dir: Path,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COURSEBOT), *args],
        cwd=REPO,
        env=_env(database_url, data_dir, **(env or {})),
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Workdir:
    """A temporary SQLite database and data folder, and ``coursebot`` bound to them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "coursebot.db"
        self.url = f"sqlite+aiosqlite:///{self.db}"
        self.data = root / "data"

    def __call__(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return coursebot(*args, database_url=self.url, data_dir=self.data, **kwargs)  # type: ignore[arg-type]

    def dump(self) -> list[str]:
        with sqlite3.connect(self.db) as conn:
            return list(conn.iterdump())

    def count(self, table: str) -> int:
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def _no_traceback_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def imported_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file into which ``coursebot course import`` loaded the sample course."""
    work = Workdir(tmp_path_factory.mktemp("cli-template"))
    assert _ok(work("course", "import", SAMPLE)).startswith(CREATED)
    return work.db


@pytest.fixture
def work(tmp_path: Path) -> Workdir:
    """An empty database (no file yet)."""
    return Workdir(tmp_path)


@pytest.fixture
def sample(tmp_path: Path, imported_template: Path) -> Workdir:
    """A database holding the sample course, imported through the CLI."""
    w = Workdir(tmp_path)
    for suffix in ("", "-wal"):  # SQLite removes the WAL file on a clean close
        src = Path(f"{imported_template}{suffix}")
        if src.exists():
            shutil.copy(src, f"{w.db}{suffix}")
    return w


# ------------------------------------------------------------------------ 1. db upgrade
def _head() -> str:
    from alembic.script import ScriptDirectory

    from db.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def test_db_upgrade_creates_every_table_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "coursebot.db"  # the folder does not exist yet
    url = f"sqlite+aiosqlite:///{path}"
    out = _ok(coursebot("db", "upgrade", database_url=url, data_dir=tmp_path))
    assert out == f"Database at {url} is at revision head.\n"
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert names >= TABLES  # every model table (and alembic_version) exists
    assert version == [(_head(),)]


def _pg_fetch(url: str, sql: str) -> list[tuple[object, ...]]:
    import asyncpg

    parsed = make_url(url)

    async def run() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(
            host=parsed.host,
            port=parsed.port or 5432,
            user=parsed.username,
            database=parsed.database,
        )
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A throwaway, empty Postgres database (its name); dropped afterwards."""
    with throwaway_pg_database("coursebot_cli") as name:
        yield name


def _pg_upgrade(database: str, scheme: str, tmp_path: Path) -> tuple[str, str]:
    """``coursebot db upgrade`` on an empty database; returns the URL used and an
    asyncpg URL to inspect it."""
    admin = make_url(PG_ADMIN_URL).set(database=database)
    url = admin.set(drivername=scheme).render_as_string(hide_password=False)
    out = _ok(coursebot("db", "upgrade", database_url=url, data_dir=tmp_path))
    assert out == f"Database at {make_url(url)} is at revision head.\n"
    check = admin.render_as_string(hide_password=False)
    rows = _pg_fetch(check, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert {r[0] for r in rows} >= TABLES
    assert _pg_fetch(check, "SELECT version_num FROM alembic_version") == [(_head(),)]
    return url, check


def test_db_upgrade_creates_every_table_on_postgres(pg_database: str, tmp_path: Path) -> None:
    _pg_upgrade(pg_database, "postgresql+asyncpg", tmp_path)


def test_a_plain_postgresql_url_is_accepted(pg_database: str, tmp_path: Path) -> None:
    url, check = _pg_upgrade(pg_database, "postgresql", tmp_path)
    assert url.startswith("postgresql://")
    out = _ok(coursebot("course", "import", SAMPLE, database_url=url, data_dir=tmp_path))
    assert out.startswith(CREATED)
    assert _pg_fetch(check, "SELECT key FROM courses") == [("comp790-23f",)]
    assert _pg_fetch(check, "SELECT count(*) FROM papers") == [(32,)]


# ---------------------------------------------------------------------- 2. course import
def test_course_import_twice_creates_then_updates(work: Workdir) -> None:
    assert _ok(work("course", "import", SAMPLE)).startswith(CREATED)
    before = work.dump()
    assert _ok(work("course", "import", SAMPLE)) == NO_CHANGE
    assert work.dump() == before
    assert work.count("courses") == 1 and work.count("papers") == 32
    assert work.count("people") == 27
    # --database-url wins over DATABASE_URL (here an unreachable server).
    listed = coursebot(
        "course", "list", "--database-url", work.url, database_url=UNREACHABLE, data_dir=work.data
    )
    assert _ok(listed) == "comp790-23f\tCOMP 590/790 Video Recognition\tterminal:default\n"


def test_a_broken_course_file_is_refused_and_changes_nothing(sample: Workdir) -> None:
    before = sample.dump()
    lines = (REPO / SAMPLE).read_text(encoding="utf-8").splitlines()
    title = lines.index('    title: "Non-local Neural Networks"')
    lines[title] = '    title: "Changed"'  # a valid edit that must not be stored either
    slot = next(i for i in range(lines.index("  - id: 4"), len(lines)) if "slot:" in lines[i])
    lines[slot] = "    slot: 60"
    tz = lines.index("  timezone: America/New_York")
    lines[tz] = "  timezone: Nowhere/Town"
    broken = sample.root / "broken.yaml"
    broken.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = sample("course", "import", str(broken))
    err = _no_traceback_failure(result)
    assert result.returncode == 1
    assert result.stdout == ""
    assert err == (
        f"{broken} has 2 problems:\n"
        f"  - line {tz + 1}: course.timezone: 'Nowhere/Town' is not an IANA timezone; "
        "use a name like America/New_York\n"
        f"  - line {slot + 1}: papers[3].slot: must be one of 30, 45, battle, instructor\n"
    )
    assert sample.dump() == before

    err = _no_traceback_failure(sample("course", "import", "nope.yaml"))
    assert err == "Cannot read the course file nope.yaml: No such file or directory.\n"


# ---------------------------------------------------------------------- 3. course export
def test_export_then_import_reports_no_change(sample: Workdir) -> None:
    out = sample.root / "out.yaml"
    result = sample("course", "export", "-o", str(out))
    assert _ok(result) == ""
    assert result.stderr == f"Wrote {out}.\n"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# coursebot course file (written by `coursebot course export`).")
    assert "SlowFast Networks for Video Recognition" in text
    before = sample.dump()
    assert _ok(sample("course", "import", str(out))) == NO_CHANGE
    assert sample.dump() == before


# ---------------------------------------------------------------------- 4. course roster
def test_course_roster_updates_then_changes_nothing(sample: Workdir) -> None:
    # The course file has no Canvas ids or sections: the roster adds them to all 25.
    assert _ok(sample("course", "roster", ROSTER)) == (
        "Course comp790-23f: updated.\n  added: nothing\n  changed: 25 people\n"
    )
    assert sample.count("people") == 27
    with sqlite3.connect(sample.db) as conn:
        row = conn.execute(
            "SELECT canvas_id, section FROM people WHERE email = 'alice.chen@unc.edu'"
        ).fetchone()
    assert row == ("481205", "COMP 790.001.FA23")
    before = sample.dump()
    assert _ok(sample("course", "roster", ROSTER)) == NO_CHANGE
    assert sample.dump() == before


def test_course_roster_errors_are_clear(sample: Workdir) -> None:
    before = sample.dump()
    err = _no_traceback_failure(sample("course", "roster", "missing.csv"))
    assert err == "Cannot read missing.csv: No such file or directory.\n"

    bad = sample.root / "bad.csv"
    lines = (REPO / ROSTER).read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace("alice.chen@unc.edu", "alice.chen")
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    err = _no_traceback_failure(sample("course", "roster", str(bad)))
    assert err == (
        f"{bad} has 1 problem:\n  - line 4: email: 'alice.chen' is not an email address\n"
    )
    assert sample.dump() == before


# ------------------------------------------------------------------- 5. scripted shell
def test_piped_shell_runs_each_line(sample: Workdir) -> None:
    out = _ok(sample("shell", stdin="papers battle\n:as alice\nwhoami\n"))
    assert "gedas@#general> papers battle" in out  # the instructor speaks first
    assert "10 battle papers" in out
    assert "TSM: Temporal Shift Module for Efficient Video Understanding" in out
    assert "(now speaking as alice)" in out
    assert "alice@#general> whoami" in out
    assert "Name: Alice Chen" in out and "(only you can see this)" in out


BAD_SCRIPT = (
    "# comment lines and blank lines are skipped\n\npapers battle\nfoo\n:as alice\nwhoami\n"
)


@pytest.mark.parametrize(
    ("source", "strict"), [("stdin", True), ("stdin", False), ("script", True)]
)
def test_strict_stops_at_the_first_error(sample: Workdir, source: str, strict: bool) -> None:
    args = ["shell", *(["--strict"] if strict else [])]
    if source == "script":
        script = sample.root / "lines.txt"
        script.write_text(BAD_SCRIPT, encoding="utf-8")
        result = sample(*args, "--script", str(script))
    else:
        result = sample(*args, stdin=BAD_SCRIPT)
    assert "Traceback" not in result.stderr, result.stderr
    out = result.stdout
    assert "comment" not in out
    assert "10 battle papers" in out
    assert "Unknown command `foo`" in out
    if strict:
        assert result.returncode == 1
        assert "now speaking as alice" not in out and "Alice Chen" not in out
    else:
        assert result.returncode == 0
        assert "(now speaking as alice)" in out and "Name: Alice Chen" in out


def test_shell_as_bob(sample: Workdir) -> None:
    out = _ok(sample("shell", "--as", "bob", "--strict", stdin="whoami\n"))
    assert "bob@#general> whoami" in out
    assert "Name: Bob Okafor" in out


def test_a_missing_script_file_is_named(sample: Workdir) -> None:
    err = _no_traceback_failure(sample("shell", "--script", "missing.txt"))
    assert "missing.txt" in err
    assert "database" not in err.lower()


def test_a_bad_now_is_explained(sample: Workdir) -> None:
    err = _no_traceback_failure(sample("shell", "--now", "garbage", stdin="whoami\n"))
    assert "garbage" in err and len(err.strip().splitlines()) == 1


def test_export_to_an_unwritable_path_is_named(sample: Workdir) -> None:
    target = sample.root / "no" / "such" / "dir" / "out.yaml"
    err = _no_traceback_failure(sample("course", "export", "-o", str(target)))
    assert str(target) in err
    assert "database" not in err.lower()


# ---------------------------------------------------------------------------- 6. run
def test_run_without_tokens_is_the_terminal_shell(work: Workdir) -> None:
    # An empty database: `run` loads the sample course first (COURSEBOT_COURSE_FILE).
    out = _ok(work("run", stdin="whoami\n:as alice\ncourse\n"))
    assert "gedas@#general> whoami" in out
    assert "Name: Gedas Bertasius" in out and "Role: instructor" in out
    assert "COMP 590/790 Video Recognition" in out and "Fall 2023" in out
    assert work.count("papers") == 32


def test_run_on_discord_without_a_token_says_what_is_missing(sample: Workdir) -> None:
    """No network in tests: without DISCORD_TOKEN the adapter refuses before connecting."""
    result = sample("run", "--platform", "discord", stdin="whoami\n")
    assert result.returncode == 2
    assert result.stdout == ""  # the shell did not start
    assert "DISCORD_TOKEN is not set" in result.stderr and "Traceback" not in result.stderr


def test_run_platform_terminal_overrides_tokens(sample: Workdir) -> None:
    out = _ok(
        sample(
            "run",
            "--platform",
            "terminal",
            "--as",
            "alice",
            stdin="whoami\n",
            env={"DISCORD_TOKEN": "x-not-a-real-token"},
        )
    )
    assert "Name: Alice Chen" in out


# ------------------------------------------------------------- 7. unreachable database
UNREACHABLE_COMMANDS = [
    ("course", "list"),
    ("course", "import", SAMPLE),
    ("shell",),
    ("run",),
    ("db", "upgrade"),
    ("db", "current"),
]


@pytest.fixture(scope="module")
def unreachable_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """Every command against a closed port, run side by side to save time."""
    data = tmp_path_factory.mktemp("unreachable")
    with ThreadPoolExecutor(len(UNREACHABLE_COMMANDS)) as pool:
        futures = {
            args: pool.submit(
                coursebot, *args, database_url=UNREACHABLE, data_dir=data, stdin="whoami\n"
            )
            for args in UNREACHABLE_COMMANDS
        }
        return {args: future.result() for args, future in futures.items()}


@pytest.mark.parametrize(
    "args",
    [
        *UNREACHABLE_COMMANDS[:4],
        UNREACHABLE_COMMANDS[4],
        UNREACHABLE_COMMANDS[5],
    ],
    ids=lambda a: " ".join(a),
)
def test_an_unreachable_database_is_one_clear_line(
    unreachable_results: dict[tuple[str, ...], subprocess.CompletedProcess[str]],
    args: tuple[str, ...],
) -> None:
    result = unreachable_results[args]
    err = _no_traceback_failure(result)
    assert result.returncode == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("Cannot reach the database: ")
    assert "Connect call failed" in lines[0] and lines[0].endswith("Check DATABASE_URL.")


# ---------------------------------------------------- 8. --course with several courses
@pytest.fixture
def two_courses(sample: Workdir) -> Workdir:
    """The sample course and a second one (a copy under another key and binding)."""
    text = (REPO / SAMPLE).read_text(encoding="utf-8")
    other = sample.root / "other.yaml"
    other.write_text(
        text.replace("key: comp790-23f", "key: comp991-24s").replace(
            "bindings: {terminal: default}", "bindings: {terminal: spring}"
        ),
        encoding="utf-8",
    )
    _ok(sample("course", "import", str(other)))
    return sample


WRITES = [
    ("course", "roster", ROSTER),
    ("rankings", "import", "examples/rankings.csv"),
    ("people", "link", "maya.johnson@unc.edu", "terminal", "maya2"),
    ("people", "unlink", "maya.johnson@unc.edu"),
]


@pytest.mark.parametrize("args", WRITES, ids=lambda a: " ".join(a[:2]))
def test_a_write_names_its_course_when_there_are_several(
    two_courses: Workdir, args: tuple[str, ...]
) -> None:
    before = two_courses.dump()
    result = two_courses(*args)
    err = _no_traceback_failure(result)
    assert err == (
        "The database holds 2 courses; say which one this is for with --course KEY:\n"
        "  comp790-23f  (COMP 590/790 Video Recognition, Fall 2023)\n"
        "  comp991-24s  (COMP 590/790 Video Recognition, Fall 2023)\n"
    )
    assert two_courses.dump() == before  # nothing landed in the first course
    _ok(two_courses(*args, "--course", "comp991-24s"))


def test_a_read_still_takes_the_first_course_and_an_unknown_key_is_named(
    two_courses: Workdir,
) -> None:
    assert "key: comp790-23f" in _ok(two_courses("course", "export"))
    err = _no_traceback_failure(two_courses("course", "export", "--course", "nope"))
    assert err.startswith("No course 'nope' in the database. It has: comp790-23f, comp991-24s.")


# ------------------------------------------------------------------- 9. backup, restore
def test_backup_then_restore_brings_back_the_database_and_files(sample: Workdir) -> None:
    stored = sample.data / "critiques" / "comp790-23f" / "5-3.pdf"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"%PDF-1.4 a critique")
    (sample.data / "shell-files").mkdir()
    (sample.data / "shell-files" / "msg1-1-chart.png").write_bytes(b"not kept")
    archive = sample.root / "backup.tar.gz"
    out = _ok(sample("backup", "create", "-o", str(archive)))
    assert out == f"Backed up the database and 1 stored file to {archive}.\n"
    before = sample.dump()

    _ok(sample("people", "link", "maya.johnson@unc.edu", "terminal", "maya2"))
    stored.write_bytes(b"%PDF-1.4 overwritten")
    assert sample.dump() != before
    err = _no_traceback_failure(sample("backup", "restore", str(archive)))
    assert err == "Restoring replaces the database and stored files: add --yes to go ahead.\n"

    out = _ok(sample("backup", "restore", str(archive), "--yes"))
    assert out == f"Restored the database and 1 stored file from {archive}.\n"
    assert sample.dump() == before
    assert stored.read_bytes() == b"%PDF-1.4 a critique"
    kept = list(sample.root.glob("coursebot.db.before-restore-*"))
    assert [p.name for p in kept if not p.name.endswith(("-wal", "-shm"))]  # the old one, kept
    assert list(sample.data.glob("before-restore-*/critiques/comp790-23f/5-3.pdf"))
    err = _no_traceback_failure(sample("backup", "restore", str(ROSTER), "--yes"))
    assert "Cannot read the backup" in err


def test_restore_is_refused_while_the_bot_runs(sample: Workdir) -> None:
    archive = sample.root / "b.tar.gz"
    _ok(sample("backup", "create", "-o", str(archive)))
    # Another process holds the bot's lock on this SQLite file, as a running bot does.
    lock = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from bot.leader import claim_sqlite; "
            f"claim_sqlite({sample.url!r}); print('held', flush=True); time.sleep(60)",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert lock.stdout is not None and lock.stdout.readline() == "held\n"
        err = _no_traceback_failure(sample("backup", "restore", str(archive), "--yes"))
        assert "is already running on" in err
    finally:
        lock.kill()
        lock.wait()
