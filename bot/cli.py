"""The ``coursebot`` command line (Typer)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli_slurm import slurm_app
from bot.settings import Settings
from db.models import Course

T = TypeVar("T")

app = typer.Typer(
    help="coursebot: runs a graduate seminar on Discord, Slack or in the terminal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
course_app = typer.Typer(help="Course files, rosters and platform bindings.", no_args_is_help=True)
rankings_app = typer.Typer(help="Paper rankings collected outside the bot.", no_args_is_help=True)
assign_app = typer.Typer(help="The presentation assignment solver.", no_args_is_help=True)
calendar_app = typer.Typer(help="The course calendar (iCalendar).", no_args_is_help=True)
people_app = typer.Typer(
    help="Link chat accounts to roster entries (the first instructor, any fix).",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
app.add_typer(course_app, name="course")
app.add_typer(rankings_app, name="rankings")
app.add_typer(assign_app, name="assign")
app.add_typer(calendar_app, name="calendar")
app.add_typer(people_app, name="people")
backup_app = typer.Typer(
    help="Back up and restore the database and stored files (docs/backup.md).",
    no_args_is_help=True,
)
docs_app = typer.Typer(help="Documentation generated from the code.", no_args_is_help=True)
app.add_typer(backup_app, name="backup")
app.add_typer(docs_app, name="docs")
app.add_typer(slurm_app, name="slurm")

DbOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="DATABASE_URL", help="Overrides DATABASE_URL."),
]
CourseOption = Annotated[
    str | None, typer.Option("--course", help="Course key (default: the first).")
]


def _settings(
    database_url: str | None = None, *, need_db: bool = True, **overrides: object
) -> Settings:
    """The settings (environment, ``.env``, then the command's options), or one clear
    message naming each bad variable; with ``need_db``, DATABASE_URL is checked too."""
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(settings_problem(exc))
    if database_url:
        settings.database_url = database_url
    for key, value in overrides.items():
        if value is not None:
            setattr(settings, key, value)
    level = settings.log_level.upper()
    if not isinstance(logging.getLevelName(level), int):
        _fail(
            f"COURSEBOT_LOG_LEVEL `{settings.log_level}` is not a log level: "
            "use DEBUG, INFO, WARNING or ERROR."
        )
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if need_db:
        if (problem := url_problem(settings.database_url)) is not None:
            _fail(problem)
        _STATE["database_url"] = settings.database_url
    return settings


def _one_process(settings: Settings) -> None:
    """On SQLite one bot process runs: a second one is told so and stops."""
    from bot.leader import AlreadyRunning, claim_sqlite

    try:
        claim_sqlite(settings.database_url)
    except AlreadyRunning as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(_sqlite_problem(settings.database_url, exc))


def shell_log(settings: Settings) -> Path:
    return settings.data_dir / "coursebot.log"


def _shell_log_env(settings: Settings) -> None:
    """The GPU worker next to a terminal shell logs to the shell's log file too."""
    import os

    shell_log(settings).parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("COURSEBOT_LOG_FILE", str(shell_log(settings)))


def _log_to_file(path: Path) -> Path:
    """The terminal shell keeps the terminal for the conversation: the log goes to
    ``path`` (``:log`` shows its end), never between the prompt and the replies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if any(
        isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve()
        for h in root.handlers
    ):
        return path
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for old in list(root.handlers):
        if isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    return path


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _call(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; a known error or a database problem becomes its one message."""
    from commands.errors import CourseBotError

    try:
        return asyncio.run(coro)
    except CourseBotError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None  # Ctrl-C while a command ran: leave quietly
    except Exception as err:
        _fail_on_database(err)
        raise
    raise AssertionError("unreachable")


def _run(coro: Coroutine[Any, Any, int | None]) -> int:
    return _call(coro) or 0


# ----------------------------------------------------------------- start-up failures
#: What the command line learnt at start (the database URL, for messages).
_STATE: dict[str, str] = {}
#: The variable prefix of each nested settings group (SMTP_PORT, SLACK_PORT, ...).
_PREFIXES = {"SmtpSettings": "SMTP_", "SlackSettings": "SLACK_", "DiscordSettings": "DISCORD_"}
_EXAMPLE_URLS = (
    "sqlite+aiosqlite:///./data/coursebot.db (a file) or postgresql+asyncpg://USER@HOST:5432/DBNAME"
)


def settings_problem(exc: ValidationError) -> str:
    """Every bad setting, named by the variable people set in ``.env``."""
    lines = []
    for e in exc.errors():
        loc = [str(part) for part in e["loc"]]
        name = (_PREFIXES.get(exc.title, "") + loc[0]).upper() if loc else ""
        message = str(e["msg"]).removeprefix("Value error, ")
        got = e.get("input")
        secret = any(w in name for w in ("TOKEN", "SECRET", "PASSWORD"))
        shown = f" (it is `{got}`)" if name and isinstance(got, str) and not secret else ""
        lines.append(f"  - {name + ': ' if name else ''}{message}{shown}")
    return (
        f"coursebot cannot start: {len(lines)} setting{'s' * (len(lines) != 1)} "
        "in the environment or .env "
        f"{'are' if len(lines) != 1 else 'is'} wrong:\n"
        + "\n".join(lines)
        + "\n.env.example lists every variable and what it takes."
    )


def _masked(url: str) -> str:
    """A URL as it may be shown: any password replaced by ***."""
    import re

    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)


def url_problem(url: str) -> str | None:
    """What is wrong with DATABASE_URL before anything connects (a typo in the scheme,
    no database name), or None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"DATABASE_URL `{_masked(url)}` is not a database URL. Use {_EXAMPLE_URLS}."
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "postgres"):
        return (
            f"DATABASE_URL starts with `{parsed.drivername}://`, which is not a database "
            f"coursebot uses (a typo?). Use {_EXAMPLE_URLS}."
        )
    if backend != "sqlite" and not parsed.database:
        return (
            f"DATABASE_URL `{_masked(url)}` names no database: add it at the end, "
            "e.g. postgresql+asyncpg://USER@HOST:5432/coursebot."
        )
    if backend == "sqlite" and parsed.database in (None, ""):
        return "DATABASE_URL names no SQLite file: use sqlite+aiosqlite:///./data/coursebot.db."
    return None


def _causes(err: BaseException) -> list[BaseException]:
    """``err`` and everything it wraps (SQLAlchemy's ``orig``, causes and contexts)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return seen


def _sqlite_problem(url: str, exc: BaseException) -> str:
    from sqlalchemy.engine import make_url

    path = make_url(url).database or url
    why = getattr(exc, "strerror", None) or str(exc)
    return (
        f"Cannot open the SQLite database {path} ({why}). Check that its folder can be "
        "written to, or point DATABASE_URL elsewhere."
    )


def db_problem(err: BaseException, url: str | None = None) -> str | None:
    """One message that says what went wrong reaching the database and what to do, or
    None when ``err`` is not about reaching it (a bug keeps its traceback)."""
    import sqlite3

    import asyncpg
    from sqlalchemy.engine import make_url

    url = url or _STATE.get("database_url") or ""
    try:
        parsed = make_url(url)
    except Exception:  # an unparsable URL was refused before connecting
        parsed = None
    host = (parsed.host if parsed else None) or "localhost"
    port = (parsed.port if parsed else None) or 5432
    user = (parsed.username if parsed else None) or "postgres"
    name = (parsed.database if parsed else None) or "coursebot"
    where = f"{host}:{port}"
    for cause in _causes(err):
        if isinstance(cause, asyncpg.InvalidCatalogNameError):
            return (
                f"The database `{name}` does not exist on {where}. Create it with "
                f"`createdb -h {host} -p {port} -U {user} {name}` (or in psql: "
                f'CREATE DATABASE "{name}";), or fix its name in DATABASE_URL.'
            )
        if isinstance(cause, asyncpg.InvalidPasswordError):
            return (
                f"Postgres on {where} refused the password for `{user}`. Check the password "
                "in DATABASE_URL (write @ : / % in it as %40 %3A %2F %25)."
            )
        if isinstance(cause, asyncpg.InvalidAuthorizationSpecificationError):
            if "does not exist" in str(cause):
                return (
                    f"The Postgres role (user) `{user}` does not exist on {where}. Create it "
                    f"with `createuser -h {host} -p {port} -U postgres --createdb {user}`, "
                    "or put an existing user in DATABASE_URL."
                )
            return (
                f"Postgres on {where} does not let `{user}` in ({cause}). Allow it in "
                "pg_hba.conf, or use another user in DATABASE_URL."
            )
        if isinstance(cause, asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
            return f"Postgres on {where} cannot take a connection now ({cause}). Try again shortly."
        if isinstance(cause, socket.gaierror):
            return (
                f"Cannot find the database host `{host}` ({cause.strerror}). Check the host "
                "name in DATABASE_URL."
            )
        if isinstance(cause, TimeoutError):
            return (
                f"Cannot reach the database: {where} did not answer in time. Check that "
                "PostgreSQL runs there and that a firewall lets you in; check DATABASE_URL."
            )
        if _refused(cause):
            return (
                f"Cannot reach the database: {cause}. Is PostgreSQL running on {where} "
                f"(`pg_isready -h {host} -p {port}`)? Check DATABASE_URL."
            )
        if isinstance(cause, sqlite3.OperationalError) and "unable to open" in str(cause):
            return _sqlite_problem(url, cause)
        if (
            isinstance(cause, OSError)
            and parsed is not None
            and parsed.get_backend_name() == "sqlite"
        ):
            return _sqlite_problem(url, cause)  # its folder cannot be made or written
    return None


def _refused(err: BaseException) -> bool:
    """A connection that was refused or could not be routed (not any OSError: a file
    that cannot be read is not the database's fault)."""
    import errno

    codes = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}
    return isinstance(err, ConnectionError) or (
        isinstance(err, OSError) and (err.errno in codes or "Connect call failed" in str(err))
    )


def _fail_on_database(err: BaseException) -> None:
    """Stop with the database problem's one message (the traceback only at DEBUG)."""
    problem = db_problem(err)
    if problem is not None:
        logging.getLogger("coursebot").debug("start-up failure", exc_info=err)
        _fail(problem)


# ------------------------------------------------------------------------------ bot
@app.command()
def run(
    database_url: DbOption = None,
    platform: Annotated[
        str, typer.Option(help="auto (from the tokens in .env), terminal, discord or slack")
    ] = "auto",
    speaker: Annotated[str | None, typer.Option("--as", help="Terminal: who speaks first.")] = None,
    course: CourseOption = None,
    now: Annotated[
        str | None,
        typer.Option(
            help="Terminal only: pretend it is this time (ISO, course zone), e.g. "
            "2023-08-25T10:00; `sample`: that moment when the course is the sample course, "
            "else the real clock (what `make run` passes). Discord and Slack always run on "
            "the real clock."
        ),
    ] = None,
) -> None:
    """Start the bot: Discord or Slack when their tokens are set, else the terminal shell."""
    settings = _settings(database_url)
    chosen = settings.platform if platform == "auto" else platform
    if now is not None:
        if chosen == "terminal":
            settings.now = now
        elif chosen in ("discord", "slack"):
            typer.echo(f"(--now {now} is for the terminal shell: {chosen} runs on the real clock)")
    if chosen in ("terminal", "discord", "slack"):
        _one_process(settings)
    if chosen == "terminal":
        _shell_log_env(settings)
        _log_to_file(shell_log(settings))
    if chosen in ("discord", "slack"):
        _preflight(settings, chosen)
    if chosen in ("terminal", "discord", "slack"):
        _embedded_worker(settings)
        _serve_web(settings, scripted=chosen == "terminal" and not _interactive())
    if chosen == "terminal":
        raise typer.Exit(_run(_shell(settings, speaker, course, strict=False, script=None)))
    if chosen == "slack":
        from bot.slack import run_slack

        raise typer.Exit(_run(run_slack(settings)))
    if chosen == "discord":
        from bot.discord import run_discord

        raise typer.Exit(_run(run_discord(settings)))
    _fail(f"Unknown platform {platform!r}: use auto, terminal, discord or slack.")


@app.command()
def shell(
    database_url: DbOption = None,
    speaker: Annotated[
        str | None, typer.Option("--as", help="Who speaks first (a terminal handle).")
    ] = None,
    course: CourseOption = None,
    strict: Annotated[
        bool, typer.Option(help="Scripted: exit non-zero on the first error.")
    ] = False,
    script: Annotated[
        Path | None, typer.Option(help="Read commands from this file instead of stdin.")
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(help="Pretend it is this time (ISO, course zone), e.g. 2023-08-26T09:00."),
    ] = None,
) -> None:
    """The terminal bot: interactive at a terminal, scripted when stdin is a pipe or --script."""
    settings = _settings(database_url, now=now)
    _one_process(settings)
    _shell_log_env(settings)
    _log_to_file(shell_log(settings))
    _embedded_worker(settings)
    _serve_web(settings, scripted=script is not None or not _interactive())
    raise typer.Exit(_run(_shell(settings, speaker, course, strict=strict, script=script)))


#: `--now sample` (what `make run` passes): this moment when the shell opens the sample
#: course (Fri Aug 25, 2023, 10 AM in its zone: its rankings week), else the real clock.
SAMPLE_NOW = "2023-08-25T10:00"


async def _opens_sample(settings: Settings, course: str | None) -> bool:
    """Whether the terminal shell will open the sample course (examples/comp790-23f.yaml):
    the course asked for, else the first one bound to the terminal, else (an empty
    database) the course file loaded at start."""
    import yaml

    from bot.settings import SAMPLE_COURSE
    from db.models import CourseBinding, Platform

    sample = yaml.safe_load(SAMPLE_COURSE.read_text(encoding="utf-8"))["course"]["key"]
    db = await _open(settings)
    try:
        async with db.session() as session:
            keys = list(
                await session.scalars(
                    select(Course.key)
                    .join(CourseBinding)
                    .where(CourseBinding.platform == Platform.TERMINAL)
                    .order_by(Course.id)
                )
            )
            empty = await session.scalar(select(Course.id).limit(1)) is None
    finally:
        await db.dispose()
    if empty:
        return settings.course_file is not None and settings.course_file.resolve() == SAMPLE_COURSE
    wanted = course or settings.default_course
    return (wanted or (keys[0] if keys else None)) == sample


def _interactive() -> bool:
    from bot.shell import stdin_is_interactive

    return stdin_is_interactive()


def _serve_web(settings: Settings, *, scripted: bool) -> None:
    """The bot serves the course desk (docs/dashboard.md) on COURSEBOT_WEB_ADDRESS,
    127.0.0.1:8080 when unset; a scripted shell (a pipe, --script) only when it is set."""
    if settings.web_address is None and not scripted:
        from bot.web.server import DEFAULT_ADDRESS

        settings.web_address = DEFAULT_ADDRESS


def _embedded_worker(settings: Settings) -> None:
    """The GPU side of the bot: the queue engine for its submissions
    (COURSEBOT_GPU_QUEUE), and the GPU worker in its own spawned process next to the bot
    (COURSEBOT_GPU_WORKER)."""
    from gpu_queue import procrastinate_app

    procrastinate_app.configure(settings.gpu_queue)
    if not settings.gpu_worker:
        return
    import atexit
    import os

    from db.migrate import upgrade
    from gpu_queue.worker import start_embedded_worker

    _check_engine(settings)
    if not demos_installed():
        logging.getLogger("coursebot").warning(
            "PyTorch is not installed, so no GPU worker runs next to the bot: `gpu run` "
            "jobs wait until a worker comes up. Install the demos with "
            "`.venv/bin/pip install -e '.[demos]'` (README: Installing), or run "
            "`coursebot worker` on a GPU host (docs/deploy.md)."
        )
        return
    _worker_env(settings)
    _sync_db(lambda: upgrade(settings.database_url))  # the worker needs the tables
    # Next to the terminal shell the worker's own output (a crash, a library's warning)
    # goes to the shell's log file, never between the prompt and the replies.
    log_file = os.environ.get("COURSEBOT_LOG_FILE")
    with _output_into(Path(log_file) if log_file else None):
        proc = start_embedded_worker(settings.database_url, settings.data_dir, settings.gpu_queue)
    atexit.register(proc.terminate)


def demos_installed() -> bool:
    """Whether this environment has the ``demos`` extra's PyTorch (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except ValueError:  # a module set to None in sys.modules (tests hide it so)
        return False


@contextmanager
def _output_into(path: Path | None) -> Iterator[None]:
    """While this runs, standard output and error are ``path`` (appended) at the file
    descriptor level, so that a process started now inherits them; restored after."""
    import os

    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab") as target:
            os.dup2(target.fileno(), 1)
            os.dup2(target.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _preflight(settings: Settings, platform: str) -> None:
    """Before Discord or Slack start: a token, and a course bound to the platform, each
    missing one named with what to do (exit status 2, as a missing setting)."""
    if platform == "discord" and settings.discord.token is None:
        _fail(
            "Cannot start on Discord: DISCORD_TOKEN is not set. Copy the bot's token "
            "(Developer Portal → your application → Bot → Reset Token) into .env; "
            "see docs/discord.md.",
            2,
        )
    if platform == "slack":
        from bot.slack.run import slack_mode

        mode, missing = slack_mode(settings.slack)
        if mode is None:
            _fail(f"Cannot start on Slack: {missing} See docs/slack.md.", 2)
    problem = _call(_unbound(settings, platform))
    if problem:
        _fail(problem, 2)


async def _unbound(settings: Settings, platform: str) -> str | None:
    """Why no course would answer on ``platform`` (none bound to it, or not to
    DISCORD_GUILD_ID), with the command that binds one; None when one would."""
    from sqlalchemy import func

    from bot.app import import_course_file
    from commands.clock import SystemClock
    from db.models import CourseBinding, Platform

    db = await _open(settings)
    try:
        async with db.session() as session:
            empty = not await session.scalar(select(func.count()).select_from(Course))
        if empty and settings.course_file is not None:  # as start_app does
            await import_course_file(db, settings.course_file, SystemClock())
        async with db.session() as session:
            bound = list(
                await session.scalars(
                    select(CourseBinding.external_id).where(
                        CourseBinding.platform == Platform(platform)
                    )
                )
            )
            keys = list(await session.scalars(select(Course.key).order_by(Course.id)))
    finally:
        await db.dispose()
    key = keys[-1] if keys else "KEY"
    bind = f"`.venv/bin/coursebot course bind {key} {platform}"
    if platform == "discord":
        guild = settings.discord.guild_id
        if bound and (not guild or guild in bound):
            return None
        if guild:
            return (
                f"No course is bound to the Discord server {guild} (DISCORD_GUILD_ID), so "
                f"the bot would answer nobody there. Bind yours: {bind} {guild}`."
            )
        return (
            "No course is bound to a Discord server, so the bot would answer nobody. Bind "
            f"yours: {bind} GUILD_ID` (the server's id: turn on Developer Mode in Discord's "
            "settings, then right-click the server → Copy Server ID); docs/your-course.md."
        )
    if bound:
        return None
    return (
        "No course is bound to a Slack workspace, so the bot would answer nobody. Bind "
        f"yours: {bind} TEAM_ID` (the team id starts with T: it is in the address when "
        "Slack is open in a browser, app.slack.com/client/T…/); docs/your-course.md."
    )


def _worker_env(settings: Settings) -> None:
    """Settings the worker's processes read from the environment (gpu_queue never imports
    bot): a value from .env reaches them this way."""
    import os

    if settings.classify_weights is not None:
        os.environ.setdefault("COURSEBOT_CLASSIFY_WEIGHTS", str(settings.classify_weights))


def _check_engine(settings: Settings) -> str:
    """The GPU queue engine for this database, or a clear refusal (procrastinate on SQLite)."""
    from sqlalchemy.engine import make_url

    from db.session import normalise_url
    from gpu_queue import procrastinate_app

    backend = make_url(normalise_url(settings.database_url)).get_backend_name()
    try:
        return procrastinate_app.engine_for(backend, settings.gpu_queue, strict=True)
    except ValueError as exc:
        _fail(str(exc))
    return "db"


@app.command()
def worker(
    database_url: DbOption = None,
    gpu: Annotated[
        str | None,
        typer.Option(
            "--gpu",
            help="Which GPU(s): an index (sets CUDA_VISIBLE_DEVICES), a list such as 0,1,2,3 "
            "(one worker per GPU) or cpu. Default: as CUDA_VISIBLE_DEVICES and "
            "COURSEBOT_GPU_DEVICE say, one worker.",
        ),
    ] = None,
) -> None:
    """Run a GPU worker here (e.g. on a GPU host, against the course's Postgres): one job
    at a time per GPU; procrastinate on Postgres (COURSEBOT_GPU_QUEUE), rows on SQLite."""
    from gpu_queue.worker import run_workers, worker_main

    settings = _settings(database_url)
    if not demos_installed():  # it would take jobs only to fail them
        _fail(
            "A GPU worker needs PyTorch, which is not installed here: "
            "`pip install -e '.[demos]'` (a GPU host: the CUDA build, docs/deploy.md).",
            2,
        )
    engine = _check_engine(settings)  # the schema is the bot's: `coursebot db upgrade`
    _worker_env(settings)
    typer.echo(
        f"GPU worker on {_safe_url(settings.database_url)} ({engine}); Ctrl-C stops it.", err=True
    )
    gpus = [g.strip() for g in gpu.split(",") if g.strip()] if gpu else []
    if len(gpus) > 1:
        raise typer.Exit(
            run_workers(settings.database_url, str(settings.data_dir), gpus, settings.gpu_queue)
        )
    worker_main(
        settings.database_url,
        str(settings.data_dir),
        engine=settings.gpu_queue,
        gpu=gpus[0] if gpus else None,
    )


async def _shell(
    settings: Settings,
    speaker: str | None,
    course: str | None,
    *,
    strict: bool,
    script: Path | None,
) -> int:
    from bot.app import course_zone, start_app
    from bot.shell import (
        Shell,
        ShellError,
        resolve_workspace,
        run_interactive,
        run_script,
        stdin_is_interactive,
    )
    from commands import offload

    scripted = script is not None or not stdin_is_interactive()
    log_file = _log_to_file(shell_log(settings))
    if settings.now == "sample":  # `make run`: the sample course in its own term
        settings.now = SAMPLE_NOW if await _opens_sample(settings, course) else None
    # A scripted run with --now lives on virtual time: it moves only with :advance and
    # :wait, so two runs of one script print the same transcript.
    app_ = await start_app(settings, virtual=scripted)
    if not scripted:  # a session, not a script: start the solver's process now
        offload.prestart()
    try:
        try:
            workspace, default_speaker = await resolve_workspace(
                app_, course or settings.default_course
            )
        except ShellError as exc:
            _fail(str(exc))
        sh = Shell(
            app_,
            workspace=workspace,
            speaker=speaker or default_speaker,
            files_dir=settings.data_dir / "shell-files",
        )
        sh.zone = await course_zone(app_.db, course or settings.default_course)
        sh.log_file = log_file
        if settings.now and not scripted:
            from zoneinfo import ZoneInfo

            start = app_.clock.now().astimezone(ZoneInfo(sh.zone))
            typer.echo(
                f"Pretend clock (--now): {start:%a %Y-%m-%d %H:%M} {start.tzname()}, running on. "
                "The real clock: `make run NOW=` or `.venv/bin/coursebot run`."
            )
        if app_.web is not None and not scripted:
            typer.echo(f"The course desk is at {app_.web.url} (type `dashboard` to sign in).")
        if script is not None:
            lines = _read(script).splitlines()
            return await run_script(sh, lines, strict=strict)
        if not stdin_is_interactive():
            return await run_script(sh, sys.stdin, strict=strict)
        return await run_interactive(sh, settings.data_dir / ".shell_history")
    finally:
        await app_.close()


# ------------------------------------------------------------------------------- db
@db_app.command("upgrade")
def db_upgrade(
    database_url: DbOption = None,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or upgrade the schema (SQLite or Postgres) to the latest migration."""
    from db.migrate import upgrade

    settings = _settings(database_url)
    _sync_db(lambda: upgrade(settings.database_url, revision))
    typer.echo(f"Database at {_safe_url(settings.database_url)} is at revision {revision}.")


@db_app.command("current")
def db_current(database_url: DbOption = None) -> None:
    """Print the schema revision of the database."""
    from db.migrate import current

    url = _settings(database_url).database_url
    _sync_db(lambda: current(url))


def _sync_db(step: Callable[[], None]) -> None:
    try:
        step()
    except Exception as err:
        _fail_on_database(err)
        raise


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --------------------------------------------------------------------------- course
@course_app.command("import")
def course_import(
    file: Annotated[Path, typer.Argument(help="The course's YAML file.")],
    database_url: DbOption = None,
) -> None:
    """Validate a course file and create or update its course (never duplicates)."""
    settings = _settings(database_url)

    async def go() -> int:
        from bot.app import import_course_file
        from commands.clock import SystemClock
        from db.migrate import upgrade_async
        from db.session import Database

        await upgrade_async(settings.database_url)
        db = Database(settings.database_url)
        try:
            report = await import_course_file(db, file, SystemClock())
        finally:
            await db.dispose()
        typer.echo(report.summary())
        return 0

    raise typer.Exit(_run(go()))


@course_app.command("export")
def course_export(
    database_url: DbOption = None,
    course: CourseOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write a course back as a course file (what `course import` reads)."""
    settings = _settings(database_url)

    async def go() -> int:
        from commands.coursefile import dump_course, export_course

        async with _in_course(settings, course) as (session, c):
            text = dump_course(await export_course(session, c))
        if out:
            _write(out, text)
            typer.echo(f"Wrote {out}.", err=True)
        else:
            typer.echo(text, nl=False)
        return 0

    raise typer.Exit(_run(go()))


@course_app.command("roster")
def course_roster(
    file: Annotated[Path, typer.Argument(help="A Canvas roster / gradebook CSV export.")],
    database_url: DbOption = None,
    course: CourseOption = None,
    email_domain: Annotated[
        str | None,
        typer.Option(help="Build emails as LOGIN@DOMAIN when the CSV has no Email column."),
    ] = None,
) -> None:
    """Add or update students from a Canvas CSV (matched by email or SIS id; nobody is removed)."""
    settings = _settings(database_url)

    async def go() -> int:
        from commands.clock import SystemClock
        from commands.coursefile import import_roster, parse_canvas_roster

        people = parse_canvas_roster(_read(file), source=str(file), email_domain=email_domain)
        async with _in_course(settings, course, write=True) as (session, c):
            report = await import_roster(session, c, people, now=SystemClock().now())
        typer.echo(report.summary())
        return 0

    raise typer.Exit(_run(go()))


@course_app.command("bind")
def course_bind(
    course: Annotated[str, typer.Argument(help="Course key.")],
    platform: Annotated[str, typer.Argument(help="terminal, discord or slack")],
    external_id: Annotated[
        str, typer.Argument(help="Discord guild id, Slack team id or a terminal session name.")
    ],
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            help="KEY=CHANNEL_ID: bind a course channel by id (repeat for each), as "
            "`course channel` does.",
        ),
    ] = None,
    database_url: DbOption = None,
) -> None:
    """Connect a course to a Discord guild, a Slack workspace or a terminal session."""
    settings = _settings(database_url)

    async def go() -> int:
        from commands.channels import bind_by_hand
        from commands.errors import Conflict, InvalidInput
        from db.models import CourseBinding, Platform

        try:
            plat = Platform(platform)
        except ValueError:
            raise InvalidInput(
                f"Unknown platform {platform!r}: use terminal, discord or slack."
            ) from None
        pairs = [_channel_pair(plat, item) for item in channel or []]
        async with _in_course(settings, course, write=True) as (session, c):
            for key, _ in pairs:
                _check_channel_key(c, key)
            existing = await session.scalar(
                select(CourseBinding).where(
                    CourseBinding.platform == plat, CourseBinding.external_id == external_id
                )
            )
            if existing is not None and existing.course_id != c.id:
                raise Conflict(f"{platform} {external_id} is already bound to another course.")
            if existing is None:
                existing = CourseBinding(course_id=c.id, platform=plat, external_id=external_id)
                session.add(existing)
            for key, channel_id in pairs:
                await bind_by_hand(session, existing, key, channel_id)
        typer.echo(f"Course {course} is bound to {platform} {external_id}.")
        for key, channel_id in pairs:
            typer.echo(f"Its `{key}` channel is {plat.value} channel {channel_id}.")
        return 0

    raise typer.Exit(_run(go()))


#: How to find a channel's id, per platform (for messages about a bad one).
_CHANNEL_ID_HELP = {
    "discord": "a Discord channel id is a number of 15 to 21 digits (turn on Developer "
    "Mode in Discord's settings, then right-click the channel → Copy Channel ID)",
    "slack": "a Slack channel id starts with C (or G) and has at least 7 letters and digits, "
    "like C0123ABCD (open the channel's details: the id is at the bottom)",
}


def _channel_pair(plat: Any, item: str) -> tuple[str, str]:
    """``KEY=CHANNEL_ID`` of ``--channel``, checked."""
    from commands.errors import InvalidInput

    key, sep, value = item.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise InvalidInput(
            f"`--channel {item}` is not KEY=CHANNEL_ID.",
            hint="For example `--channel battles=1180000000000000002`.",
        )
    _check_channel_id(plat, value)
    return key.strip(), value.strip()


def _check_channel_id(plat: Any, value: str) -> None:
    from commands.channels import is_channel_id
    from commands.errors import InvalidInput

    help_ = _CHANNEL_ID_HELP.get(plat.value)
    if help_ is None:
        raise InvalidInput(
            f"The {plat.value} has no channel ids to bind: its channels are named where "
            "you type (`:in CHANNEL` in the shell).",
            hint="Bind channels for discord or slack.",
        )
    if not is_channel_id(plat, value):
        raise InvalidInput(f"`{value}` is not a {plat.value} channel id: {help_}.")


def _check_channel_key(course: Any, key: str) -> None:
    """A channel key the course uses: one of its course file's ``channels`` or one the bot
    posts to by default."""
    from commands.channels import DEFAULT_KEYS
    from commands.errors import InvalidInput

    keys = list(dict.fromkeys([*(course.channels or {}), *DEFAULT_KEYS]))
    if key not in keys:
        raise InvalidInput(
            f"Course {course.key} has no channel `{key}`.",
            hint=f"Its channels: {', '.join(f'`{k}`' for k in keys)}.",
        )


@course_app.command("channel")
def course_channel(
    course: Annotated[str, typer.Argument(help="Course key.")],
    platform: Annotated[str, typer.Argument(help="discord or slack")],
    key: Annotated[str, typer.Argument(help="The course channel: announcements, battles, ...")],
    channel_id: Annotated[
        str, typer.Argument(help="The channel's id (Discord: digits; Slack: C0123ABCD).")
    ],
    workspace: Annotated[
        str | None,
        typer.Option(
            help="The Discord guild or Slack team id, when the course is bound to several."
        ),
    ] = None,
    database_url: DbOption = None,
) -> None:
    """Bind a course channel to a channel by its id (when its name is shared by two
    channels, or is not the course file's): posts to KEY go there from now on."""
    settings = _settings(database_url)

    async def go() -> int:
        from commands.channels import bind_by_hand
        from commands.errors import InvalidInput, NotFound
        from db.models import CourseBinding

        plat = _platform(platform)
        _check_channel_id(plat, channel_id)
        async with _in_course(settings, course, write=True) as (session, c):
            _check_channel_key(c, key)
            q = select(CourseBinding).where(
                CourseBinding.course_id == c.id, CourseBinding.platform == plat
            )
            if workspace is not None:
                q = q.where(CourseBinding.external_id == workspace)
            found = list(await session.scalars(q.order_by(CourseBinding.id)))
            if not found:
                where = f"{plat.value} {workspace}" if workspace else plat.value
                raise NotFound(
                    f"Course {course} is not bound to {where}.",
                    hint=f"Bind it first: `coursebot course bind {course} {plat.value} "
                    "<server-or-team-id>`; `coursebot course list` shows the bindings.",
                )
            if len(found) > 1:
                ids = ", ".join(b.external_id for b in found)
                raise InvalidInput(
                    f"Course {course} is bound to several {plat.value} workspaces ({ids}).",
                    hint="Name one with `--workspace ID`.",
                )
            await bind_by_hand(session, found[0], key, channel_id)
            where = found[0].external_id
        typer.echo(
            f"Course {course}: its `{key}` channel on {plat.value} {where} is channel "
            f"{channel_id.strip()}. The bot checks the channel when it starts (a running bot "
            "posts there from its next message)."
        )
        return 0

    raise typer.Exit(_run(go()))


@course_app.command("list")
def course_list(database_url: DbOption = None) -> None:
    """The courses in the database and where each is bound."""
    settings = _settings(database_url)

    async def go() -> int:
        from db.models import Course, CourseBinding

        db = await _open(settings)
        try:
            async with db.session() as session:
                rows = (await session.execute(select(Course).order_by(Course.key))).scalars().all()
                for c in rows:
                    binds = await session.scalars(
                        select(CourseBinding).where(CourseBinding.course_id == c.id)
                    )
                    where = (
                        ", ".join(f"{b.platform.value}:{b.external_id}" for b in binds)
                        or "not bound"
                    )
                    typer.echo(f"{c.key}\t{c.name}\t{where}")
                if not rows:
                    typer.echo("No courses yet: `coursebot course import FILE.yaml`.")
        finally:
            await db.dispose()
        return 0

    raise typer.Exit(_run(go()))


@course_app.command("unbind")
def course_unbind(
    course: Annotated[str, typer.Argument(help="Course key.")],
    platform: Annotated[str, typer.Argument(help="terminal, discord or slack")],
    external_id: Annotated[
        str | None,
        typer.Argument(help="Only this guild / team / session (default: every one)."),
    ] = None,
    database_url: DbOption = None,
) -> None:
    """Disconnect a course from a platform (the sample course from the terminal, say)."""
    settings = _settings(database_url)

    async def go() -> int:
        from commands.errors import NotFound
        from db.models import CourseBinding

        plat = _platform(platform)
        async with _in_course(settings, course, write=True) as (session, c):
            q = select(CourseBinding).where(
                CourseBinding.course_id == c.id, CourseBinding.platform == plat
            )
            if external_id is not None:
                q = q.where(CourseBinding.external_id == external_id)
            found = list(await session.scalars(q))
            if not found:
                what = f"{plat.value} {external_id}" if external_id else plat.value
                raise NotFound(
                    f"Course {course} is not bound to {what}.",
                    hint="`coursebot course list` shows the bindings.",
                )
            for b in found:
                await session.delete(b)
        gone = ", ".join(f"{b.platform.value} {b.external_id}" for b in found)
        typer.echo(f"Course {course} is no longer bound to {gone}.")
        return 0

    raise typer.Exit(_run(go()))


@course_app.command("remove")
def course_remove(
    course: Annotated[str, typer.Argument(help="Course key.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Really remove it (without: say what would go).")
    ] = False,
    database_url: DbOption = None,
) -> None:
    """Remove a course and everything of it (people, papers, rankings, critiques, votes,
    jobs, the audit log) from the database. Without --yes it only says what would go."""
    settings = _settings(database_url)

    async def go() -> int:
        from sqlalchemy import func

        from db.models import Base

        async with _in_course(settings, course, write=yes) as (session, c):
            counts = {}
            for table in Base.metadata.sorted_tables:
                if "course_id" in table.c:
                    n = await session.scalar(
                        select(func.count()).select_from(table).where(table.c.course_id == c.id)
                    )
                    if n:
                        counts[table.name] = int(n)
            what = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "no rows"
            if not yes:
                typer.echo(
                    f"Would remove course {c.key} ({c.name}) with {what}. "
                    "Run again with --yes to remove it.",
                    err=True,
                )
                return 1
            await session.delete(c)
        typer.echo(f"Removed course {course} ({what}).")
        typer.echo(
            f"Files it kept stay under {settings.data_dir} (critiques/{course}); remove them "
            "by hand if they should go too.",
            err=True,
        )
        return 0

    raise typer.Exit(_run(go()))


@course_app.command("new")
def course_new(
    file: Annotated[Path, typer.Argument(help="The course file to write.")],
    key: Annotated[str, typer.Option(help="The course's key: lowercase, digits, . _ -")] = (
        "my-course"
    ),
    name: Annotated[str, typer.Option(help="The course's name.")] = "My seminar",
    term: Annotated[str, typer.Option(help="The term, e.g. 'Spring 2025'.")] = "",
    first_day: Annotated[str | None, typer.Option(help="The first class day, YYYY-MM-DD.")] = None,
    last_day: Annotated[str | None, typer.Option(help="The last class day, YYYY-MM-DD.")] = None,
    instructor: Annotated[str, typer.Option(help="Your name.")] = "The Instructor",
    email: Annotated[str, typer.Option(help="Your email.")] = "instructor@example.edu",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented course file to start from (it imports as written)."""
    from datetime import date

    from commands.errors import InvalidInput

    if file.exists() and not force:
        _fail(f"{file} exists; pass --force to overwrite it.")

    def day(text: str | None, what: str) -> date | None:
        if text is None:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"--{what} {text!r} is not a date like 2025-01-08.") from None

    async def go() -> int:
        from commands.coursefile import starter_course_file

        text = starter_course_file(
            key,
            name,
            term=term,
            first_day=day(first_day, "first-day"),
            last_day=day(last_day, "last-day"),
            instructor=instructor,
            email=email,
            file=str(file),
        )
        _write(file, text)
        typer.echo(f"Wrote {file}. Edit it, then `coursebot course import {file}`.")
        return 0

    raise typer.Exit(_run(go()))


@course_app.command("schema")
def course_schema(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """The course file's JSON Schema (for editors: YAML language servers check and
    complete a course file with it)."""
    import json

    from commands.coursefile import course_file_schema

    text = json.dumps(course_file_schema(), indent=2, ensure_ascii=False) + "\n"
    if out:
        _write(out, text)
        typer.echo(f"Wrote {out}.", err=True)
    else:
        typer.echo(text, nl=False)


@course_app.command("docs")
def course_docs(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where it goes (default: docs/course-file.md)."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Only check that the file is up to date.")
    ] = False,
) -> None:
    """Write docs/course-file.md, the reference of every course file field (made from
    the course file's models)."""
    from bot.settings import REPO_ROOT
    from commands.coursefile import course_file_reference

    out = out or REPO_ROOT / "docs" / "course-file.md"
    text = course_file_reference() + "\n"
    if check:
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            _fail(f"{out} is out of date: run `coursebot course docs`.")
        typer.echo(f"{out} is up to date.")
        return
    _write(out, text)
    typer.echo(f"Wrote {out}.")


# ------------------------------------------------------------------------- rankings
@rankings_app.command("import")
def rankings_import(
    file: Annotated[Path, typer.Argument(help="CSV with columns student, kind, rank, paper.")],
    database_url: DbOption = None,
    course: CourseOption = None,
) -> None:
    """Import rankings collected elsewhere (a form or quiz export); all or nothing."""
    settings = _settings(database_url)

    async def go() -> int:
        from commands.clock import SystemClock
        from commands.rankings import import_rankings, parse_rankings_csv

        rows = parse_rankings_csv(_read(file), source=str(file))
        async with _in_course(settings, course, write=True) as (session, c):
            saved = await import_rankings(session, c, rows, now=SystemClock().now())
        typer.echo(f"Imported {saved} ranked lists for {len(rows.lists)} students into {c.key}.")
        return 0

    raise typer.Exit(_run(go()))


# ---------------------------------------------------------------------------- assign
@assign_app.command("solve")
def assign_solve(
    course_file: Annotated[Path, typer.Option("--course", help="The course's YAML file.")],
    rankings: Annotated[Path, typer.Option("--rankings", help="CSV: student, kind, rank, paper.")],
    seed: Annotated[
        int, typer.Option(help="Tie-break seed (publish it: a run is reproducible).")
    ] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the assignment CSV here.")
    ] = None,
) -> None:
    """Solve an assignment at the terminal, without a bot or a database."""
    _settings()

    async def go() -> int:
        from commands.assignment import offline_instance, solve_offline, summary_sections
        from commands.coursefile import parse_course_file
        from commands.rankings import parse_rankings_csv
        from commands.replies import Reply, render_text

        cf = parse_course_file(_read(course_file), source=str(course_file))
        rows = parse_rankings_csv(_read(rankings), source=str(rankings))
        ci = offline_instance(cf, rows, seed)
        summary, csv_text = await asyncio.to_thread(solve_offline, ci)
        running = ", ".join(f"#{a} vs #{b}" for a, b in summary["running_battles"]) or "none"
        reply = Reply(
            title=f"{cf.course.name}: assignment (seed {seed})",
            text=f"{len(ci.inst.students)} students. Battles that run: {running}.",
            sections=summary_sections(summary),
        )
        typer.echo(render_text(reply))
        if out:
            _write(out, csv_text)
            typer.echo(f"Wrote {out}.")
        return 0

    raise typer.Exit(_run(go()))


# -------------------------------------------------------------------------- calendar
@calendar_app.command("export")
def calendar_export(
    database_url: DbOption = None,
    course: CourseOption = None,
    person: Annotated[
        str | None,
        typer.Option(
            "--person",
            metavar="EMAIL",
            help="One person's calendar: the course's, with their own talks and battles.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (default: KEY.ics).")
    ] = None,
) -> None:
    """The course calendar as .ics: every class session (project days too), deadline (with
    alarms) and office hour; with --person, that person's own presentations as well. The
    same UIDs as the subscription feeds, and the versions served are recorded, so a
    re-import updates events instead of duplicating them."""
    settings = _settings(database_url)

    async def go() -> int:
        from datetime import UTC, datetime

        from commands.calendar import build_calendar
        from commands.people import find_person

        db = await _open(settings)
        try:
            async with db.transaction() as session:
                c = await _course(session, course)
                who = None
                if person:
                    who = await find_person(session, c.id, person, list_matches=True)
                cal = await build_calendar(session, c, who, datetime.now(UTC), record=True)
        finally:
            await db.dispose()
        default = f"{c.key}-{who.email.split('@')[0]}.ics" if who else cal.name
        target = out or Path(default)
        _write(target, cal.data)
        typer.echo(f"Wrote {target}" + (f" ({who.name}'s calendar)." if who else "."))
        return 0

    raise typer.Exit(_run(go()))


# ---------------------------------------------------------------------------- people
#: How the command line appears in the audit log and in the messages it sends.
CLI_ACTOR = "the course administrator (command line)"


@people_app.command("link")
def people_link(
    person: Annotated[str, typer.Argument(help="Email, onyen or name of the roster entry.")],
    platform: Annotated[str, typer.Argument(help="terminal, discord or slack")],
    user_id: Annotated[
        str, typer.Argument(help="The chat user id (Discord user id, Slack member id U…).")
    ],
    database_url: DbOption = None,
    course: CourseOption = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit log).")] = None,
) -> None:
    """Link a chat account to a roster entry (staff too): how the first instructor gets in.

    An account or entry linked elsewhere before is moved, and its holder is told."""
    settings = _settings(database_url)

    async def go() -> int:
        from commands.clock import SystemClock
        from commands.outbox import Outgoing, enqueue
        from commands.people import find_person
        from commands.registration import audit_entry, link_account, lost_message

        plat = _platform(platform)
        now = SystemClock().now()
        async with _in_course(settings, course, write=True) as (session, c):
            who = await find_person(session, c.id, person, list_matches=True)
            changed, lost = await link_account(session, c, who, plat, user_id, now=now, actor=None)
            if changed:
                session.add(
                    audit_entry(
                        c,
                        now,
                        "people.link",
                        actor=CLI_ACTOR,
                        subject=who,
                        summary=f"linked {plat.value} account {user_id} to {who.name}",
                        before={"accounts": [f"{lo.platform.value}:{lo.user_id}" for lo in lost]},
                        after={"platform": plat.value, "account": user_id},
                        reason=reason,
                    )
                )
                enqueue(
                    session,
                    c.id,
                    [
                        Outgoing(
                            lost_message(c, lo, CLI_ACTOR, reason),
                            account=(lo.platform.value, lo.user_id),
                        )
                        for lo in lost
                    ],
                    now,
                )
        if not changed:
            typer.echo(f"{plat.value} account {user_id} is already linked to {who.name}.")
        else:
            typer.echo(f"Linked {plat.value} account {user_id} to {who.name} ({who.role.value}).")
        for lo in lost:
            typer.echo(
                f"  {lo.platform.value} account {lo.user_id} lost its link to {lo.person.name}."
            )
        return 0

    raise typer.Exit(_run(go()))


@people_app.command("unlink")
def people_unlink(
    person: Annotated[str, typer.Argument(help="Email, onyen or name of the roster entry.")],
    platform: Annotated[
        str | None, typer.Argument(help="Only this platform (default: every platform).")
    ] = None,
    database_url: DbOption = None,
    course: CourseOption = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit log).")] = None,
) -> None:
    """Remove a roster entry's linked chat account(s); each account is told."""
    settings = _settings(database_url)

    async def go() -> int:
        from commands.clock import SystemClock
        from commands.outbox import Outgoing, enqueue
        from commands.people import find_person
        from commands.registration import Lost, audit_entry, lost_message, unlink_accounts

        plat = _platform(platform) if platform else None
        now = SystemClock().now()
        async with _in_course(settings, course, write=True) as (session, c):
            who = await find_person(session, c.id, person, list_matches=True)
            removed = await unlink_accounts(session, who, plat, actor=None)
            accounts = [f"{i.platform.value}:{i.user_id}" for i in removed]
            session.add(
                audit_entry(
                    c,
                    now,
                    "people.unlink",
                    actor=CLI_ACTOR,
                    subject=who,
                    summary=f"unlinked {', '.join(accounts)} from {who.name}",
                    before={"accounts": accounts},
                    after={},
                    reason=reason,
                )
            )
            enqueue(
                session,
                c.id,
                [
                    Outgoing(
                        lost_message(c, Lost(i.platform, i.user_id, who), CLI_ACTOR, reason),
                        account=(i.platform.value, i.user_id),
                    )
                    for i in removed
                ],
                now,
            )
        typer.echo(f"Unlinked {who.name} ({', '.join(accounts)}).")
        return 0

    raise typer.Exit(_run(go()))


# ---------------------------------------------------------------------------- backup
#: What a backup archive holds besides the stored files (docs/backup.md).
MANIFEST = "backup.json"
DB_MEMBER = "database.sqlite"
#: What in the data folder is not worth keeping: the shell's saved replies, Slack's
#: downloads (fetched again when needed), history, logs, backups themselves, locks.
SKIP_IN_DATA = {"shell-files", "slack-files", ".shell_history", "backups"}


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    from db.session import normalise_url

    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _stored_files(data_dir: Path, skip: set[Path]) -> list[Path]:
    """The files worth keeping under ``data_dir`` (critique PDFs, project write-ups, …)."""
    if not data_dir.is_dir():
        return []
    out = []
    for path in sorted(data_dir.rglob("*")):
        rel = path.relative_to(data_dir)
        if not path.is_file() or rel.parts[0] in SKIP_IN_DATA or "before-restore" in rel.parts[0]:
            continue
        if path.resolve() in skip or path.name.startswith("coursebot.log"):
            continue
        if path.suffix in (".lock", ".db", ".db-wal", ".db-shm") or path.name.endswith(
            ("-wal", "-shm")
        ):
            continue
        out.append(path)
    return out


def _pg_names(url: str) -> str:
    from sqlalchemy.engine import make_url

    p = make_url(url)
    return f"-h {p.host or 'localhost'} -p {p.port or 5432} -U {p.username or 'postgres'} -d {p.database}"


@backup_app.command("create")
def backup_create(
    database_url: DbOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The archive to write (default: DATA/backups/coursebot-TIME.tar.gz).",
        ),
    ] = None,
) -> None:
    """Back up the database (SQLite: a consistent copy, even while the bot runs) and the
    stored files (critique PDFs, project write-ups) into one .tar.gz."""
    import io
    import json
    import sqlite3
    import tarfile
    import tempfile
    from datetime import UTC, datetime

    settings = _settings(database_url)
    from db.migrate import upgrade

    _sync_db(lambda: upgrade(settings.database_url))  # a known schema in the archive
    db_file = _sqlite_path(settings.database_url)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = out or settings.data_dir / "backups" / f"coursebot-{stamp}.tar.gz"
    skip = {target.resolve()}
    if db_file is not None:
        skip |= {Path(f"{db_file}{s}").resolve() for s in ("", "-wal", "-shm", ".lock")}
    files = _stored_files(settings.data_dir, skip)
    manifest = {
        "format": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": "sqlite" if db_file is not None else "not included (Postgres: pg_dump)",
        "revision": _revision(settings.database_url),
        "files": [p.relative_to(settings.data_dir).as_posix() for p in files],
    }
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(target, "w:gz") as tar:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            if db_file is not None:
                copy = Path(tmp) / DB_MEMBER
                source = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
                dest = sqlite3.connect(copy)
                try:
                    source.backup(dest)  # SQLite's online backup: consistent while in use
                finally:
                    dest.close()
                    source.close()
                tar.add(copy, arcname=DB_MEMBER)
            for path in files:
                tar.add(path, arcname=f"files/{path.relative_to(settings.data_dir).as_posix()}")
    except (OSError, sqlite3.Error) as exc:
        _fail(f"Cannot write the backup {target}: {getattr(exc, 'strerror', None) or exc}.")
    what = "the database and " if db_file is not None else ""
    typer.echo(f"Backed up {what}{len(files)} stored file{'s' * (len(files) != 1)} to {target}.")
    if db_file is None:
        typer.echo(
            "The database is on Postgres: back it up with "
            f"`pg_dump -Fc {_pg_names(settings.database_url)} -f coursebot.pgdump` "
            "(docs/backup.md)."
        )


def _revision(url: str) -> str | None:
    """The schema revision the database is at (alembic_version), or None."""
    from sqlalchemy import create_engine, text

    db_file = _sqlite_path(url)
    if db_file is None:
        return None
    engine = create_engine(f"sqlite:///{db_file}")
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


@backup_app.command("restore")
def backup_restore(
    archive: Annotated[Path, typer.Argument(help="A .tar.gz written by `backup create`.")],
    database_url: DbOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Replace the current data without asking.")
    ] = False,
) -> None:
    """Put a backup back: the SQLite database and the stored files. The bot must be
    stopped; what is replaced is kept beside it (…before-restore-TIME)."""
    import json
    import shutil
    import tarfile
    from datetime import UTC, datetime

    settings = _settings(database_url)
    try:
        tar = tarfile.open(archive, "r:gz")  # noqa: SIM115 (closed by the `with` below)
    except (OSError, tarfile.TarError) as exc:
        _fail(f"Cannot read the backup {archive}: {getattr(exc, 'strerror', None) or exc}.")
    with tar:
        try:
            manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
        except (KeyError, AttributeError, ValueError):
            _fail(f"{archive} is not a coursebot backup (it has no {MANIFEST}).")
        if manifest.get("format") != 1:
            _fail(f"{archive} is a backup format this coursebot does not know.")
        db_file = _sqlite_path(settings.database_url)
        has_db = DB_MEMBER in tar.getnames()
        if db_file is None and has_db:
            _fail(
                "DATABASE_URL is Postgres and this backup holds a SQLite database: restore it "
                "into a SQLite DATABASE_URL, or move the data with `course export`/`course "
                "import` (docs/backup.md)."
            )
        _one_process(settings)  # refused while a bot runs on this SQLite file
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        if not yes and not sys.stdin.isatty():
            _fail("Restoring replaces the database and stored files: add --yes to go ahead.")
        if not yes and not typer.confirm(
            f"Replace the database and stored files with {archive}? What they hold now is "
            "kept beside them.",
            default=False,
        ):
            _fail("Nothing was changed.")
        members = [m for m in tar.getmembers() if m.name.startswith("files/") and m.isfile()]
        data = settings.data_dir
        try:
            if has_db and db_file is not None:
                for suffix in ("", "-wal", "-shm"):
                    old = Path(f"{db_file}{suffix}")
                    if old.exists():
                        old.rename(f"{db_file}.before-restore-{stamp}{suffix}")
                db_file.parent.mkdir(parents=True, exist_ok=True)
                tar.extract(DB_MEMBER, db_file.parent, filter="data")
                (db_file.parent / DB_MEMBER).rename(db_file)
            tops = {Path(m.name).parts[1] for m in members}
            aside = data / f"before-restore-{stamp}"
            for top in sorted(tops):
                if (data / top).exists():
                    aside.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(data / top), str(aside / top))
            for m in members:
                m.name = m.name.removeprefix("files/")
                tar.extract(m, data, filter="data")
        except (OSError, tarfile.TarError) as exc:
            _fail(f"Restoring {archive} failed: {getattr(exc, 'strerror', None) or exc}.")
    from db.migrate import upgrade

    _sync_db(lambda: upgrade(settings.database_url))  # an older backup gets today's schema
    what = "the database and " if has_db else ""
    typer.echo(
        f"Restored {what}{len(members)} stored file{'s' * (len(members) != 1)} from {archive}."
    )
    if db_file is None:
        typer.echo(
            "The database is on Postgres: restore it with `pg_restore --clean --if-exists "
            f"--no-owner {_pg_names(settings.database_url)} coursebot.pgdump` (docs/backup.md)."
        )


# ------------------------------------------------------------------------------ docs
@docs_app.command("commands")
def docs_commands(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (docs/commands.md).")
    ] = None,
) -> None:
    """Every chat command by role, from the registry (docs/commands.md is this)."""
    text = commands_markdown()
    if out:
        _write(out, text)
        typer.echo(f"Wrote {out}.", err=True)
    else:
        typer.echo(text, nl=False)


def commands_markdown() -> str:
    """docs/commands.md: every command of the registry, by who may run it, with its
    options and examples (tests/test_examples.py checks the file is up to date)."""
    from commands import load_registry
    from commands.parsing import describe_option
    from commands.people import STUDENT_ONLY
    from commands.registry import Access

    reg = load_registry()
    roles = [
        ("Anyone", "anyone in the course's space, registered or not", Access.ANYONE, False),
        (
            "Students",
            "registered students; TAs and instructors are refused these (they do not rank, "
            "present, vote, submit critiques or join project groups)",
            Access.MEMBER,
            True,
        ),
        ("Everyone registered", "students, TAs and instructors", Access.MEMBER, False),
        ("TAs and instructors", "staff", Access.STAFF, False),
        ("Instructors", "instructors only", Access.INSTRUCTOR, False),
    ]
    lines = [
        "# Every command, by role",
        "",
        "<!-- Generated from the command registry by `.venv/bin/coursebot docs commands -o "
        "docs/commands.md`; tests/test_examples.py fails when it is out of date. -->",
        "",
        "One name on every platform: in the terminal type `rank standard 5 6 7`, on Discord "
        "`/rank standard`, on Slack `/course rank standard 5 6 7` (docs/discord.md and "
        "docs/slack.md say how each shows them). In chat, `help` lists what *you* may run, "
        "what the course calls for now first; `help <command>` explains one. Options are "
        "positional in the order shown or named (`papers kind=battle`); what each accepts "
        "is in [input.md](input.md).",
        "",
    ]
    lines += [
        "| role | who |",
        "|---|---|",
        *(f"| [{t}](#{t.lower().replace(' ', '-')}) | {who} |" for t, who, *_ in roles),
        "",
    ]
    for title, who, access, students in roles:
        cmds = [c for c in reg if c.access is access and (c.name in STUDENT_ONLY) == students]
        lines += [f"## {title}", "", f"{who[0].upper()}{who[1:]}.", ""]
        for c in cmds:
            file = f" + {c.attachment}" if c.attachment else ""
            lines.append(f"- **`{c.usage()}`**{file} — {c.description}.")
            for s in c.specs:
                lines.append(f"  - `{s.name}`: {describe_option(s)}")
            if c.examples:
                lines.append("  - e.g. " + ", ".join(f"`{e}`" for e in c.examples))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _platform(name: str):  # type: ignore[no-untyped-def]
    from commands.errors import InvalidInput
    from db.models import Platform

    try:
        return Platform(name.lower())
    except ValueError:
        raise InvalidInput(f"Unknown platform {name!r}: use terminal, discord or slack.") from None


def _read(path: Path) -> str:
    from commands.errors import InvalidInput

    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror}.") from None


def _write(path: Path, content: str | bytes) -> None:
    from commands.errors import InvalidInput

    try:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"Cannot write {path}: {exc.strerror}.") from None


@asynccontextmanager
async def _in_course(
    settings: Settings, key: str | None, *, write: bool = False
) -> AsyncIterator[tuple[AsyncSession, Course]]:
    """A session (a transaction when ``write``) on the migrated database, with the course."""
    db = await _open(settings)
    try:
        async with db.transaction() if write else db.session() as session:
            yield session, await _course(session, key, write=write)
    finally:
        await db.dispose()


async def _open(settings: Settings):  # type: ignore[no-untyped-def]
    from db.migrate import upgrade_async
    from db.session import Database

    await upgrade_async(settings.database_url)
    return Database(settings.database_url)


async def _course(session, key: str | None, *, write: bool = False):  # type: ignore[no-untyped-def]
    """The course ``key``, or the only one. A command that writes names its course
    (``--course``) when the database holds more than one: nothing lands in the sample
    course by accident."""
    from commands.errors import InvalidInput, NotFound
    from db.models import Course

    courses = list(await session.scalars(select(Course).order_by(Course.id)))
    if key:
        c = next((c for c in courses if c.key == key), None)
        if c is None:
            raise NotFound(
                f"No course {key!r} in the database."
                + (f" It has: {', '.join(c.key for c in courses)}." if courses else ""),
                hint="`coursebot course list` shows them; `coursebot course import FILE.yaml` adds one.",
            )
        return c
    if not courses:
        raise NotFound(
            "No course in the database yet.",
            hint="Import one with `coursebot course import FILE.yaml`.",
        )
    if write and len(courses) > 1:
        listed = "\n".join(f"  {c.key}  ({c.name}, {c.term})" for c in courses)
        raise InvalidInput(
            f"The database holds {len(courses)} courses; say which one this is for with "
            f"--course KEY:\n{listed}"
        )
    return courses[0]


if __name__ == "__main__":
    app()
