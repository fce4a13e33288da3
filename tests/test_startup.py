"""Starting the bot the first time (issue #22): each way a start can go wrong gives one
clear message with what to do, and no traceback at the default log level; the
interactive shell (in a real pseudo-terminal) leaves cleanly on Ctrl-D and Ctrl-C."""

from __future__ import annotations

import http.server
import os
import pty
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot.cli import db_problem, settings_problem, url_problem
from tests.conftest import PG_ADMIN_URL, pg_exec
from tests.test_cli import COURSEBOT, REPO, SAMPLE, Workdir, _env

PG = make_url(PG_ADMIN_URL)


def _start(
    *args: str,
    url: str,
    data: Path,
    cwd: Path = REPO,
    stdin: str = "whoami\n",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COURSEBOT), *args],
        cwd=cwd,
        env=_env(url, data, **(env or {})),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's message: non-zero status, one line on stderr, no traceback."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _postgres_up() -> None:
    try:
        pg_exec(PG_ADMIN_URL, "SELECT 1")
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Postgres at {PG_ADMIN_URL} is not reachable ({exc}); .ci/run starts it")


# ------------------------------------------------------------------ the database
def _pg(user: str, database: str) -> str:
    return PG.set(username=user, database=database).render_as_string(hide_password=False)


MISSING_DB = f"coursebot_nosuch_{uuid.uuid4().hex[:8]}"
NO_ROLE = f"nobody_{uuid.uuid4().hex[:8]}"
#: Each start-up problem that this machine can produce, as (DATABASE_URL, command).
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "missing database, shell": (_pg(PG.username or "postgres", MISSING_DB), ("shell",)),
    "missing database, run": (_pg(PG.username or "postgres", MISSING_DB), ("run",)),
    "missing database, course import": (
        _pg(PG.username or "postgres", MISSING_DB),
        ("course", "import", SAMPLE),
    ),
    "unknown role": (_pg(NO_ROLE, MISSING_DB), ("run",)),
    "scheme typo": ("postgresq+asyncpg://postgres@127.0.0.1:5432/coursebot", ("run",)),
    "not a url": ("localhost:5432/coursebot", ("shell",)),
    "no database name": ("postgresql://postgres@127.0.0.1:5432", ("db", "upgrade")),
    "unreachable port": ("postgresql+asyncpg://postgres@127.0.0.1:1/x", ("run",)),
}


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every case at once, side by side (each is a process start of a few seconds)."""
    data = tmp_path_factory.mktemp("startup")
    with ThreadPoolExecutor(4) as pool:
        futures = {
            name: pool.submit(_start, *args, url=url, data=data)
            for name, (url, args) in CASES.items()
        }
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize(
    "case", ["missing database, shell", "missing database, run", "missing database, course import"]
)
def test_a_missing_postgres_database_says_how_to_create_it(
    results: dict[str, subprocess.CompletedProcess[str]], case: str
) -> None:
    _postgres_up()
    line = _one_clear_line(results[case])
    assert line == (
        f"The database `{MISSING_DB}` does not exist on {PG.host}:{PG.port or 5432}. Create it "
        f"with `createdb -h {PG.host} -p {PG.port or 5432} -U {PG.username} {MISSING_DB}` (or "
        f'in psql: CREATE DATABASE "{MISSING_DB}";), or fix its name in DATABASE_URL.'
    )


def test_an_unknown_role_says_how_to_create_it(
    results: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    _postgres_up()
    line = _one_clear_line(results["unknown role"])
    assert line.startswith(f"The Postgres role (user) `{NO_ROLE}` does not exist on ")
    assert f"createuser -h {PG.host} -p {PG.port or 5432} -U postgres --createdb {NO_ROLE}" in line


def test_a_typo_in_the_scheme_is_named_before_connecting(
    results: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    line = _one_clear_line(results["scheme typo"])
    assert line.startswith("DATABASE_URL starts with `postgresq+asyncpg://`")
    assert "(a typo?)" in line and "postgresql+asyncpg://USER@HOST:5432/DBNAME" in line
    line = _one_clear_line(results["not a url"])
    assert line.startswith("DATABASE_URL `localhost:5432/coursebot` is not a database URL.")
    line = _one_clear_line(results["no database name"])
    assert "names no database" in line


def test_an_unreachable_server_asks_whether_postgres_runs(
    results: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    line = _one_clear_line(results["unreachable port"])
    assert line.startswith("Cannot reach the database: ")
    assert "Is PostgreSQL running on 127.0.0.1:1 (`pg_isready -h 127.0.0.1 -p 1`)?" in line


def test_a_wrong_password_is_named() -> None:
    """The local server trusts every login, so the refusal is built as asyncpg raises it,
    wrapped as SQLAlchemy wraps it."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    refused = asyncpg.InvalidPasswordError('password authentication failed for user "ta"')
    err = DBAPIError("connect", None, refused)
    url = "postgresql+asyncpg://ta:s3cret@db.example.edu:5433/comp790"
    message = db_problem(err, url)
    assert message == (
        "Postgres on db.example.edu:5433 refused the password for `ta`. Check the password "
        "in DATABASE_URL (write @ : / % in it as %40 %3A %2F %25)."
    )
    assert "s3cret" not in message
    # Not about the database: no message, so a bug keeps its traceback.
    assert db_problem(ValueError("a bug"), url) is None
    assert url_problem("postgresql://u:pw@h/db") is None
    assert "pw" not in (url_problem("postgresql://u:pw@h") or "")


def test_a_sqlite_file_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _start("run", url=f"sqlite+aiosqlite:///{blocker}/c.db", data=tmp_path / "data")
    line = _one_clear_line(result)
    assert line.startswith(f"Cannot open the SQLite database {blocker}/c.db (")


# -------------------------------------------------------------------- .env and settings
def test_no_env_file_and_an_empty_one_both_start(tmp_path: Path) -> None:
    """`.env` is read from the folder the bot starts in; none, or an empty one, is fine."""
    url = f"sqlite+aiosqlite:///{tmp_path}/c.db"
    for contents in (None, "", "\n# only a comment\nDISCORD_TOKEN=\n"):
        env_file = tmp_path / ".env"
        env_file.unlink(missing_ok=True)
        if contents is not None:
            env_file.write_text(contents)
        result = _start("run", url=url, data=tmp_path / "data", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert "Name: Gedas Bertasius" in result.stdout  # the sample course, as the instructor


def test_bad_values_in_env_are_named_by_their_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "COURSEBOT_GPU_QUEUE=fast\nSMTP_PORT=twenty-five\nSLACK_BOT_TOKEN=xoxb-secret\n"
    )
    result = _start(
        "shell", url=f"sqlite+aiosqlite:///{tmp_path}/c.db", data=tmp_path, cwd=tmp_path
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == (
        "coursebot cannot start: 1 setting in the environment or .env is wrong:"
    )
    assert "  - SMTP_PORT: Input should be a valid integer" in result.stderr
    assert "(it is `twenty-five`)" in result.stderr
    assert result.stderr.rstrip().endswith(".env.example lists every variable and what it takes.")

    (tmp_path / ".env").write_text("COURSEBOT_GPU_QUEUE=fast\nCOURSEBOT_SWEEP_SECONDS=often\n")
    result = _start(
        "shell", url=f"sqlite+aiosqlite:///{tmp_path}/c.db", data=tmp_path, cwd=tmp_path
    )
    assert "2 settings in the environment or .env are wrong" in result.stderr
    assert (
        "  - COURSEBOT_GPU_QUEUE: Input should be 'auto', 'db' or 'procrastinate'" in result.stderr
    )
    assert "  - COURSEBOT_SWEEP_SECONDS: " in result.stderr


def test_settings_problem_never_shows_a_secret() -> None:
    from pydantic import ValidationError

    from bot.settings import SmtpSettings

    with pytest.raises(ValidationError) as caught:
        SmtpSettings(host="smtp.example.edu", password="pw-s3cret", _env_file=None)  # type: ignore[call-arg]
    text = settings_problem(caught.value)
    assert "  - SMTP_SENDER (the From address) is required when SMTP_HOST is set" in text
    assert "s3cret" not in text


# ---------------------------------------------------------------- the clock and tokens
@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Workdir:
    work = Workdir(tmp_path_factory.mktemp("startup-sample"))
    assert work("course", "import", SAMPLE).returncode == 0
    return work


@pytest.mark.parametrize("command", ["shell", "run"])
def test_a_now_that_is_not_a_date_is_explained(sample: Workdir, command: str) -> None:
    line = _one_clear_line(sample(command, "--now", "next tuesday", stdin="whoami\n"))
    assert line.startswith("--now / COURSEBOT_NOW `next tuesday` is not a date and time;")


def test_run_now_puts_the_sample_inside_its_term(sample: Workdir) -> None:
    result = sample("run", "--now", "2023-08-25T10:00", stdin="deadlines\n")
    assert result.returncode == 0, result.stderr
    assert "in 2 days    Paper rankings" in result.stdout
    assert "days ago" not in result.stdout


def test_missing_tokens_name_what_to_set(sample: Workdir) -> None:
    result = sample("run", "--platform", "slack")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Cannot start on Slack: SLACK_BOT_TOKEN (xoxb-...) is not set" in result.stderr
    result = sample("run", "--platform", "slack", env={"SLACK_BOT_TOKEN": "xoxb-1"})
    assert result.returncode == 2 and "SLACK_SIGNING_SECRET" in result.stderr


def test_a_course_bound_to_nothing_there_says_how_to_bind(sample: Workdir) -> None:
    """The sample course is bound to the terminal only: Discord and Slack would answer
    nobody, so they do not start (no network is needed to find that out)."""
    result = sample("run", env={"DISCORD_TOKEN": "x-not-a-real-token"})
    line = _one_clear_line(result)
    assert result.returncode == 2
    assert line.startswith(
        "No course is bound to a Discord server, so the bot would answer nobody."
    )
    assert "`.venv/bin/coursebot course bind comp790-23f discord GUILD_ID`" in line
    result = sample("run", env={"DISCORD_TOKEN": "x-not-a-real-token", "DISCORD_GUILD_ID": "1234"})
    assert "`.venv/bin/coursebot course bind comp790-23f discord 1234`" in _one_clear_line(result)
    slack = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}
    line = _one_clear_line(sample("run", env=slack))
    assert "`.venv/bin/coursebot course bind comp790-23f slack TEAM_ID`" in line


def test_a_course_with_no_terminal_binding_says_how_to_bind(tmp_path: Path) -> None:
    text = (REPO / SAMPLE).read_text(encoding="utf-8")
    course = tmp_path / "mine.yaml"
    course.write_text(text.replace("  bindings: {terminal: default}\n", ""), encoding="utf-8")
    work = Workdir(tmp_path)
    assert work("course", "import", str(course)).returncode == 0
    line = _one_clear_line(work("shell"))
    assert "has no terminal binding" in line
    assert "coursebot course bind KEY terminal default" in line


class _RefusingSlack(http.server.BaseHTTPRequestHandler):
    """Slack's Web API as it answers a revoked or mistyped token."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"ok": false, "error": "invalid_auth"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_slack() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingSlack)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def test_an_invalid_slack_token_is_one_message(tmp_path: Path, refusing_slack: str) -> None:
    work = Workdir(tmp_path)
    assert work("course", "import", SAMPLE).returncode == 0
    assert work("course", "bind", "comp790-23f", "slack", "T0123").returncode == 0
    env = {"SLACK_BOT_TOKEN": "xoxb-revoked", "SLACK_APP_TOKEN": "xapp-1"}
    result = work("run", env={**env, "SLACK_API_URL": refusing_slack})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "Slack refused SLACK_BOT_TOKEN" in result.stderr and "invalid_auth" in result.stderr


# ------------------------------------------------------------- the GPU demos' extra
def test_without_pytorch_jobs_wait_for_a_worker(tmp_path: Path) -> None:
    """The bot without the `demos` extra: no embedded worker (the log says why), and a
    job is queued with 'no GPU worker is running'; `coursebot worker` refuses to start."""
    hide = "import sys; sys.modules['torch'] = None; from bot.cli import app; app(prog_name='coursebot')"
    url = f"sqlite+aiosqlite:///{tmp_path}/c.db"
    env = _env(url, tmp_path / "data")
    env["COURSEBOT_GPU_WORKER"] = "true"
    result = subprocess.run(
        [sys.executable, "-c", hide, "shell", "--as", "alice"],
        cwd=REPO,
        env=env,
        input="gpu run conv2d\n:log 50\n",
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "no GPU worker is running right now; it starts when one comes up" in result.stdout
    assert "PyTorch is not installed, so no GPU worker runs next to the bot" in result.stdout
    worker = subprocess.run(
        [sys.executable, "-c", hide, "worker"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 2 and "A GPU worker needs PyTorch" in worker.stderr


# ------------------------------------------------------- the interactive shell, in a pty
class Terminal:
    """``coursebot run`` in a pseudo-terminal, read and typed into as a person would."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        os.set_blocking(self.master, False)
        self.proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True
        )
        os.close(slave)
        self.screen = ""
        self.closed = False

    def read_until(self, text: str, timeout: float = 60) -> str:
        end = time.monotonic() + timeout
        while text not in self.screen:
            left = end - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and not self._pending()):
                raise AssertionError(f"{text!r} never came; the screen:\n{self.screen}")
            self._read(min(left, 0.2))
        return self.screen

    def _pending(self) -> bool:
        return not self.closed and bool(select.select([self.master], [], [], 0)[0])

    def _read(self, wait: float) -> None:
        if self.closed:
            time.sleep(wait)
            return
        if select.select([self.master], [], [], wait)[0]:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the shell has gone and closed its side
                data = b""
            if not data:
                self.closed = True
                return
            chunk = data.decode(errors="replace")
            self.screen += chunk
            if "\x1b[6n" in chunk:  # prompt_toolkit asks where the cursor is
                os.write(self.master, b"\x1b[1;1R")

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self, timeout: float = 30) -> int:
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self._read(0.1)
        if self.proc.poll() is None:
            self.proc.kill()
            raise AssertionError(f"the shell did not leave; the screen:\n{self.screen}")
        while self._pending():
            self._read(0)
        os.close(self.master)
        return self.proc.returncode


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    """`make run` on a fresh machine: an empty database, the sample course loaded."""
    url = f"sqlite+aiosqlite:///{tmp_path}/coursebot.db"
    env = _env(url, tmp_path / "data", COURSEBOT_WEB_ADDRESS="off", TERM="xterm")
    term = Terminal([str(COURSEBOT), "run", "--now", "2023-08-25T10:00"], env, REPO)
    try:
        yield term
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


@pytest.mark.parametrize("key", ["\x04", "\x03"], ids=["ctrl-d", "ctrl-c"])
def test_the_shell_leaves_cleanly(terminal: Terminal, key: str) -> None:
    screen = terminal.read_until("gedas@#general>")
    assert "Pretend clock (--now): Fri 2023-08-25 10:00 EDT" in screen
    terminal.type("deadlines\r")
    terminal.read_until("Paper rankings")
    terminal.type("papers")  # typed, not sent: Ctrl-C clears it and the shell stays
    time.sleep(0.3)
    terminal.type("\x03")
    time.sleep(0.3)
    before = terminal.screen
    terminal.type(":log\r")
    terminal.read_until("into an empty database")
    # The log is in its file (data/coursebot.log), shown by `:log`, not on the terminal.
    assert "into an empty database" not in before and " INFO " not in before
    time.sleep(0.3)
    terminal.type(key)
    assert terminal.wait() == 0
    assert "Traceback" not in terminal.screen
    assert "in 2 days" in terminal.screen and "days ago" not in terminal.screen
