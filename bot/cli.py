"""The ``coursebot`` command line (Typer)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.settings import Settings
from db.models import Course

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

DbOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="DATABASE_URL", help="Overrides DATABASE_URL."),
]
CourseOption = Annotated[
    str | None, typer.Option("--course", help="Course key (default: the first).")
]


def _settings(database_url: str | None = None, **overrides: object) -> Settings:
    settings = Settings()
    if database_url:
        settings.database_url = database_url
    for key, value in overrides.items():
        if value is not None:
            setattr(settings, key, value)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return settings


def _one_process(settings: Settings) -> None:
    """On SQLite one bot process runs: a second one is told so and stops."""
    from bot.leader import AlreadyRunning, claim_sqlite

    try:
        claim_sqlite(settings.database_url)
    except AlreadyRunning as exc:
        _fail(str(exc))


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


def _run(coro: object) -> int:
    from sqlalchemy.exc import OperationalError

    from commands.errors import CourseBotError

    try:
        return asyncio.run(coro) or 0  # type: ignore[arg-type]
    except CourseBotError as err:
        _fail(str(err))
    except (OperationalError, ConnectionError, socket.gaierror, TimeoutError) as err:
        _fail(_db_error(err))
    return 1


def _db_error(err: BaseException) -> str:
    return f"Cannot reach the database: {getattr(err, 'orig', None) or err}. Check DATABASE_URL."


# ------------------------------------------------------------------------------ bot
@app.command()
def run(
    database_url: DbOption = None,
    platform: Annotated[
        str, typer.Option(help="auto (from the tokens in .env), terminal, discord or slack")
    ] = "auto",
    speaker: Annotated[str | None, typer.Option("--as", help="Terminal: who speaks first.")] = None,
    course: CourseOption = None,
) -> None:
    """Start the bot: Discord or Slack when their tokens are set, else the terminal shell."""
    settings = _settings(database_url)
    chosen = settings.platform if platform == "auto" else platform
    if chosen in ("terminal", "discord", "slack"):
        _one_process(settings)
    if chosen == "terminal":
        _shell_log_env(settings)
    if chosen in ("terminal", "discord", "slack"):
        _embedded_worker(settings)
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
    _embedded_worker(settings)
    raise typer.Exit(_run(_shell(settings, speaker, course, strict=strict, script=script)))


def _embedded_worker(settings: Settings) -> None:
    """The GPU side of the bot: the queue engine for its submissions
    (COURSEBOT_GPU_QUEUE), and the GPU worker in its own spawned process next to the bot
    (COURSEBOT_GPU_WORKER)."""
    from gpu_queue import procrastinate_app

    procrastinate_app.configure(settings.gpu_queue)
    if not settings.gpu_worker:
        return
    import atexit

    from db.migrate import upgrade
    from gpu_queue.worker import start_embedded_worker

    _check_engine(settings)
    _worker_env(settings)
    _sync_db(lambda: upgrade(settings.database_url))  # the worker needs the tables
    proc = start_embedded_worker(settings.database_url, settings.data_dir, settings.gpu_queue)
    atexit.register(proc.terminate)


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

    scripted = script is not None or not stdin_is_interactive()
    log_file = _log_to_file(shell_log(settings))
    # A scripted run with --now lives on virtual time: it moves only with :advance and
    # :wait, so two runs of one script print the same transcript.
    app_ = await start_app(settings, virtual=scripted)
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
    from sqlalchemy.exc import OperationalError

    try:
        step()
    except (OperationalError, ConnectionError, socket.gaierror, TimeoutError) as err:
        _fail(_db_error(err))


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
    database_url: DbOption = None,
) -> None:
    """Connect a course to a Discord guild, a Slack workspace or a terminal session."""
    settings = _settings(database_url)

    async def go() -> int:
        from commands.errors import Conflict, InvalidInput
        from db.models import CourseBinding, Platform

        try:
            plat = Platform(platform)
        except ValueError:
            raise InvalidInput(
                f"Unknown platform {platform!r}: use terminal, discord or slack."
            ) from None
        async with _in_course(settings, course, write=True) as (session, c):
            existing = await session.scalar(
                select(CourseBinding).where(
                    CourseBinding.platform == plat, CourseBinding.external_id == external_id
                )
            )
            if existing is not None and existing.course_id != c.id:
                raise Conflict(f"{platform} {external_id} is already bound to another course.")
            if existing is None:
                session.add(CourseBinding(course_id=c.id, platform=plat, external_id=external_id))
        typer.echo(f"Course {course} is bound to {platform} {external_id}.")
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
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (default: KEY.ics).")
    ] = None,
) -> None:
    """The whole course's calendar (every deadline, class and presentation) as .ics."""
    settings = _settings(database_url)

    async def go() -> int:
        from commands.grades import calendar_ics

        async with _in_course(settings, course) as (session, c):
            data = await calendar_ics(session, c, None)
        target = out or Path(f"{c.key}.ics")
        _write(target, data)
        typer.echo(f"Wrote {target}.")
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
            yield session, await _course(session, key)
    finally:
        await db.dispose()


async def _open(settings: Settings):  # type: ignore[no-untyped-def]
    from db.migrate import upgrade_async
    from db.session import Database

    await upgrade_async(settings.database_url)
    return Database(settings.database_url)


async def _course(session, key: str | None):  # type: ignore[no-untyped-def]
    from commands.errors import NotFound
    from db.models import Course

    q = select(Course).order_by(Course.id)
    if key:
        q = q.where(Course.key == key)
    c = await session.scalar(q)
    if c is None:
        raise NotFound(
            f"No course {key!r} in the database." if key else "No course in the database yet.",
            hint="Import one with `coursebot course import FILE.yaml`.",
        )
    return c


if __name__ == "__main__":
    app()
