"""The simulated users, the course they use, and one timed run on one backend.

Every command goes through the real dispatcher (:meth:`CommandCore.handle_text`), so a
sample's latency is what an adapter would wait for: the course and caller lookup, option
parsing, the handler and its transaction, and any wait for a pooled connection or, on
SQLite, for the write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bot.app import settle_heap, start_app
from bot.settings import SAMPLE_COURSE, Settings
from commands import offload
from commands.clock import FixedClock
from commands.context import Caller, Request, Where
from commands.coursefile import (
    CourseFile,
    PaperEntry,
    PersonEntry,
    PresenterLimits,
    import_course,
    parse_course_file,
)
from commands.replies import Reply
from db.models import Identity, Paper, Person, Platform, Slot
from db.session import Database

#: Friday of the sample course's ranking week, 10 AM in New York (as in tests/conftest.py).
NOW = datetime(2023, 8, 25, 14, 0, tzinfo=UTC)
#: The sample course's terminal binding.
WORKSPACE = "default"
#: The TA of the sample course file; runs the roster writes (see ``MIX``).
STAFF_HANDLE = "maya"
#: The instructor of the sample course file; runs `assign` beside the users (--assign).
INSTRUCTOR_HANDLE = "gedas"
#: Seconds between two `assign` runs beside the users.
ASSIGN_PAUSE_S = 2.0
#: Students in the sample course file itself.
SAMPLE_STUDENTS = 25
#: Simulated students get these emails (``{handle}@...``); nobody else in the course does.
EMAIL_DOMAIN = "bench.example"


@dataclass(frozen=True)
class Op:
    """One kind of command in the mix.

    ``lines`` are templates filled with the user's ``{email}`` and ``{handle}``. A user
    cycles through them (the first time it picks this op it runs ``lines[0]``, the next
    time ``lines[1]``, ...), so an op can be a sequence that keeps that user's own state
    consistent, e.g. link then unlink. ``as_staff``: the TA runs it on the user's behalf.
    """

    lines: tuple[str, ...]
    weight: int
    write: bool = False
    as_staff: bool = False


#: Every simulated user's first command, a real write: link their terminal account.
FIRST = "register"
FIRST_OP = Op(("register {email}",), weight=0, write=True)

#: The command mix after ``register``, by relative weight (reads 16 : writes 4, so 20 %
#: writes). Add new student commands here (``rank ...``, votes) as they land.
#:
#: Writes: students (re)submit their rankings (the clock is in the ranking week), and the
#: TA's roster admin runs *on this user's behalf*: link a Discord account to the user (an
#: INSERT into ``identities``),
#: then unlink it (a DELETE), alternately. Only this user's own Discord identity is
#: touched, so the writes never conflict with each other and never break the user's
#: terminal link, which all of their other commands depend on. The latency is charged to
#: the simulated user whose task issued it.
MIX: dict[str, Op] = {
    "papers": Op(("papers",), weight=3),
    "papers battle": Op(("papers battle",), weight=2),
    "schedule week=3": Op(("schedule week=3",), weight=3),
    "deadlines": Op(("deadlines",), weight=3),
    "whoami": Op(("whoami",), weight=2),
    "grading": Op(("grading",), weight=1),
    "course": Op(("course",), weight=1),
    "help": Op(("help",), weight=1),
    "rank standard": Op(
        ("rank standard 5 6 7 8 13 14 15", "rank standard 15 14 13 8 7 6 5"),
        weight=1,
        write=True,
    ),
    "rank battle": Op(("rank battle 9 11 16", "rank battle 16 11 9"), weight=1, write=True),
    "register link/unlink (TA)": Op(
        (
            "register link {email} {handle}-discord discord",
            "register unlink {email} discord",
        ),
        weight=2,
        write=True,
        as_staff=True,
    ),
}


def all_ops() -> dict[str, Op]:
    return {FIRST: FIRST_OP, **MIX}


# ------------------------------------------------------------------------------ course


def handle_for(i: int, users: int) -> str:
    return f"user{i:0{max(3, len(str(users - 1)))}d}"


def build_course(users: int, rankers: int = 0, *, assign: bool = False) -> CourseFile:
    """The sample course plus ``users`` students with no linked handle, and ``rankers``
    students with a terminal handle who rank papers before the run; ``assign``: papers
    enough for all of them, as `assign` runs beside the users (see ``--assign``)."""
    cf = parse_course_file(SAMPLE_COURSE.read_text(encoding="utf-8"), source=str(SAMPLE_COURSE))
    for i in range(users):
        handle = handle_for(i, users)
        cf.people.append(PersonEntry(name=f"Bench User {handle}", email=f"{handle}@{EMAIL_DOMAIN}"))
    if rankers or assign:
        # A class this size needs more papers: extra 30/45-minute papers on the sample's
        # class days, up to 6 presenters each.
        days = sorted({p.date for p in cf.papers if p.slot in ("30", "45") and p.date})
        students = sum(1 for p in cf.people if p.role == "student") + rankers
        for n in range(max(0, students // 6 + 1 - len(days))):
            cf.papers.append(
                PaperEntry(
                    id=1000 + n,
                    title=f"Bench paper {n}",
                    date=days[n % len(days)],
                    slot="30" if n % 2 else "45",
                )
            )
        limits = PresenterLimits(min=1, max=6)
        cf.course.assignment.presenters = {"30": limits, "45": limits}
        cf.course.ranking.max_presenters = 4
        cf.course.ranking.battle_group = (3, students // 10 + 1)
    for i in range(rankers):
        cf.people.append(
            PersonEntry(
                name=f"Bench Ranker {i:03d}",
                email=f"ranker{i:03d}@{EMAIL_DOMAIN}",
                handles={"terminal": f"ranker{i:03d}"},
            )
        )
    return cf


async def rank_all(app: Any, rankers: int, seed: int) -> None:
    """Each ranker ranks 7 standard and 3 battle papers (seeded), through the core."""
    rng = random.Random(f"{seed}:rankers")
    async with app.db.session() as session:
        slots = dict((await session.execute(select(Paper.number, Paper.slot))).all())
    standard = sorted(n for n, s in slots.items() if s in (Slot.MIN30, Slot.MIN45))
    battle = sorted(n for n, s in slots.items() if s is Slot.BATTLE)
    for i in range(rankers):
        me = _request(f"ranker{i:03d}")
        for kind, pool, k in (("standard", standard, 7), ("battle", battle, 3)):
            picks = " ".join(str(p) for p in rng.sample(pool, k))
            reply = await app.core.handle_text(me, f"rank {kind} {picks}")
            if reply.is_error:
                raise RuntimeError(f"ranker{i:03d}: `rank {kind} {picks}`: {reply.text}")


async def assign_loop(app: Any, stop: asyncio.Event, out: list[float]) -> None:
    """The instructor runs `assign` again and again until ``stop``; each run's seconds."""
    me = _request(INSTRUCTOR_HANDLE)
    while not stop.is_set():
        t0 = time.perf_counter()
        reply = await app.core.handle_text(me, "assign")
        out.append(time.perf_counter() - t0)
        if reply.is_error:
            raise RuntimeError(f"`assign` failed: {reply.text}")
        # An instructor reading each proposal before the next: one every few seconds.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ASSIGN_PAUSE_S)


# ------------------------------------------------------------------------------ backends


@asynccontextmanager
async def sqlite_database(tmp: Path) -> AsyncIterator[str]:
    """A fresh SQLite file (``start_app`` migrates it)."""
    yield f"sqlite+aiosqlite:///{tmp / 'bench.db'}"


#: The local Postgres (trust auth) the benchmarks make their throwaway databases next to.
PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def pg_admin(admin_url: str, sql: str) -> None:
    import asyncpg

    u = make_url(admin_url)
    conn = await asyncpg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username,
        password=u.password,
        database=u.database,
        timeout=5,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def postgres_database(admin_url: str) -> AsyncIterator[str]:
    """A throwaway database next to ``admin_url``'s, dropped (WITH FORCE) afterwards."""
    name = f"coursebot_bench_{uuid.uuid4().hex[:8]}"
    await pg_admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Sample:
    op: str
    write: bool
    seconds: float
    error: str | None = None


@dataclass
class RunResult:
    backend: str
    users: int
    think_ms: float
    samples: list[Sample]
    wall_seconds: float
    setup_seconds: float
    problems: list[str] = field(default_factory=list)  # failed end-of-run checks
    #: Seconds of each `assign` run beside the users (``--assign``), and its course size.
    assigns: list[float] = field(default_factory=list)
    assign_students: int = 0

    @property
    def label(self) -> str:
        return f"{self.backend} {'burst' if self.think_ms <= 0 else f'think {self.think_ms:g}'}"

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if s.error is not None]


def plan_for(rng: random.Random, commands: int) -> list[str]:
    """``register`` then ``commands - 1`` ops drawn from ``MIX`` by weight."""
    names = list(MIX)
    weights = [MIX[n].weight for n in names]
    return [FIRST, *rng.choices(names, weights=weights, k=max(0, commands - 1))]


def _request(handle: str) -> Request:
    return Request(
        platform=Platform.TERMINAL,
        workspace=WORKSPACE,
        # The simulated users' platform vouches for their email (as Slack profiles do), so
        # `register` links at once, the write this benchmark measures.
        caller=Caller(Platform.TERMINAL, handle, handle, f"{handle}@{EMAIL_DOMAIN}"),
        where=Where(channel="general"),
    )


def _error_text(reply: Reply) -> str | None:
    if not reply.is_error:
        return None
    return reply.text.splitlines()[0] if reply.text else "(empty error reply)"


async def _simulated_user(
    handle_text: Callable[[Request, str], Awaitable[Reply]],
    handle: str,
    plan: list[str],
    start: asyncio.Event,
    rng: random.Random,
    think_s: float,
    out: list[Sample],
) -> dict[str, int]:
    """One user: waits for the start, then runs its plan; returns how often it ran each op."""
    me, staff = _request(handle), _request(STAFF_HANDLE)
    ops = all_ops()
    fill = {"email": f"{handle}@{EMAIL_DOMAIN}", "handle": handle}
    runs: Counter[str] = Counter()
    await start.wait()
    for name in plan:
        if think_s > 0:
            # Before every command, the first too, so users arrive spread out. Uniform on
            # [0, 2T] rather than exponential: the same mean, but a shorter run tail; the
            # sum of 200 users' arrivals is close to Poisson either way.
            await asyncio.sleep(rng.uniform(0, 2 * think_s))
        op = ops[name]
        line = op.lines[runs[name] % len(op.lines)].format(**fill)
        runs[name] += 1
        t0 = time.perf_counter()
        reply = await handle_text(staff if op.as_staff else me, line)
        elapsed = time.perf_counter() - t0
        error = _error_text(reply)
        out.append(Sample(name, op.write, elapsed, f"{line!r}: {error}" if error else None))
    return dict(runs)


class _NoOutboxYet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("no outbox yet")


NO_OUTBOX_YET = _NoOutboxYet()


async def run_backend(
    backend: str,
    url: str,
    tmp: Path,
    *,
    users: int,
    commands_per_user: int,
    seed: int,
    think_ms: float,
    assign_students: int = 0,
) -> RunResult:
    """Set up the course on ``url``, release all users at once, time every command."""
    t_setup = time.perf_counter()
    settings = Settings(
        database_url=url,
        COURSEBOT_DATA_DIR=tmp / "data",
        COURSEBOT_COURSE_FILE=None,
        _env_file=None,
    )
    app = await start_app(settings, clock=FixedClock(NOW))
    # No platform is attached, so the messages commands queue (a TA's roster edit tells
    # the student) stay in the outbox: said once here rather than at every command.
    logging.getLogger("coursebot.core").addFilter(NO_OUTBOX_YET)  # added once
    try:
        # The course's students number ``assign_students`` at least (the sample's own,
        # the users, and rankers to make up the rest), all of whom rank when asked to.
        rankers = max(0, assign_students - users - SAMPLE_STUDENTS) if assign_students else 0
        async with app.db.transaction() as session:
            await import_course(
                session, build_course(users, rankers, assign=assign_students > 0), now=NOW
            )
        if assign_students:
            await rank_all(app, rankers, seed)

        # Warm-up, not measured: the TA runs every read once, so the first measured
        # commands do not pay SQLAlchemy's one-off statement compilation.
        for name, op in MIX.items():
            if not op.write:
                reply = await app.core.handle_text(_request(STAFF_HANDLE), op.lines[0])
                if reply.is_error:
                    raise RuntimeError(f"warm-up `{name}` failed: {reply.text}")
        setup_seconds = time.perf_counter() - t_setup
        # As a bot process does once after its start: this run's app, set up, is moved
        # out of the collector's sight (the first run's was; a later one's would not be).
        settle_heap(again=True)
        # As a bot process does at start: the solver's worker is running before users come.
        if (ready := offload.prestart()) is not None:
            await asyncio.wrap_future(ready)

        start = asyncio.Event()
        samples: list[Sample] = []
        tasks = []
        for i in range(users):
            handle = handle_for(i, users)
            rng = random.Random(f"{seed}:{handle}")
            tasks.append(
                asyncio.create_task(
                    _simulated_user(
                        app.core.handle_text,
                        handle,
                        plan_for(rng, commands_per_user),
                        start,
                        rng,
                        think_ms / 1000,
                        samples,
                    )
                )
            )
        await asyncio.sleep(0)  # let every task reach start.wait()
        stop, assigns = asyncio.Event(), []
        t0 = time.perf_counter()
        start.set()
        beside = asyncio.create_task(assign_loop(app, stop, assigns)) if assign_students else None
        runs = await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
        if beside is not None:
            stop.set()
            await beside
        problems = await _check_state(app.db, users, runs)
    finally:
        await app.close()
    result = RunResult(backend, users, think_ms, samples, wall, setup_seconds, problems)
    result.assigns = assigns
    # The students `assign` placed: the whole class, which may be more than asked for.
    result.assign_students = SAMPLE_STUDENTS + users + rankers if assign_students else 0
    return result


async def _check_state(db: Database, users: int, runs: list[dict[str, int]]) -> list[str]:
    """Did the writes land? Every user linked on the terminal; Discord links as expected."""
    link_op = "register link/unlink (TA)"
    want_discord = sum(1 for r in runs if r.get(link_op, 0) % 2 == 1)
    async with db.session() as s:
        bench_people = (
            select(Identity.platform, func.count())
            .join(Person, Person.id == Identity.person_id)
            .where(Person.email.like(f"user%@{EMAIL_DOMAIN}"))  # not the rankers
            .group_by(Identity.platform)
        )
        counts = {p: n for p, n in (await s.execute(bench_people)).all()}
    problems = []
    if counts.get(Platform.TERMINAL, 0) != users:
        problems.append(f"{counts.get(Platform.TERMINAL, 0)} of {users} users ended up registered")
    if counts.get(Platform.DISCORD, 0) != want_discord:
        problems.append(
            f"{counts.get(Platform.DISCORD, 0)} Discord links stored, {want_discord} expected"
        )
    return problems
