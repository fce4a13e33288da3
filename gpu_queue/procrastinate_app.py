"""Scale-out on Postgres: procrastinate carries "run GPU job <id>" to workers on GPU hosts.

The ``gpu_jobs`` rows stay the single source of truth (state, fairness, caps, results);
a procrastinate job is only a wake-up call with ``{"job_id": id}``. Each GPU host runs
``coursebot worker`` (one per GPU: a procrastinate worker with concurrency 1) whose
task claims that row atomically and runs it through :class:`gpu_queue.worker.Worker`
(warm child process, time limit, cancel kill, heartbeat, result on the row).

**One transaction.** The bot talks to Postgres through SQLAlchemy and asyncpg;
procrastinate's own ``defer_async(connection=...)`` needs a psycopg connection, so it
cannot join our session's transaction. Instead :func:`defer` calls the SQL function
procrastinate's manager itself calls, ``procrastinate_defer_jobs_v1(
procrastinate_job_to_defer_v1[])`` (``procrastinate/sql/queries.sql``, ``defer_jobs``),
in our session: the job row and the procrastinate job commit or roll back together, and
the ``AFTER INSERT`` trigger's ``NOTIFY`` (sent at commit) wakes a listening worker at
once. The bot never imports procrastinate or psycopg; only workers do.

**Order.** Procrastinate fetches by ``priority DESC, id ASC``; a job's priority is minus
its owner's backlog when it is deferred (their queued jobs ahead of it, plus one while
one of theirs runs), which is the round-robin turn of :func:`gpu_queue.queue.queue_order`:
when A has 10 queued and B submits one, B's (priority 0) comes before A's second
(priority -1). Caps and the instructor's pause are checked on our rows when a worker
claims the job; a job that must wait is deferred again a little later (same
transaction as the check).

**Delivered twice?** Harmless: the claim is a conditional update of our row (``queued``
→ ``running`` under a row lock, per-owner advisory lock for the running cap), so a
second delivery finds the row no longer queued and does nothing; the result is written
to the row once and posted once (``posted``). A worker killed with ``kill -9`` leaves
its row ``running`` with a stale heartbeat: :func:`gpu_queue.queue.recover` (the bot's
tick, and every worker's maintenance loop) queues it again once if young, deferring a
new procrastinate job in the same transaction, or expires it; the dead worker's
procrastinate job is marked failed by the maintenance loop.

**Choosing the engine.** ``COURSEBOT_GPU_QUEUE``: ``auto`` (default: procrastinate on
Postgres, direct row claims on SQLite), ``db`` (direct claims with
``FOR UPDATE SKIP LOCKED``, also on Postgres) or ``procrastinate`` (Postgres only). Set
the same value for the bot and its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    import procrastinate

log = logging.getLogger("coursebot.gpu")

TASK = "coursebot.gpu.run_job"
QUEUE = "gpu"
ENGINES = ("auto", "db", "procrastinate")
ENV = "COURSEBOT_GPU_QUEUE"
Engine = Literal["db", "procrastinate"]

_configured: str | None = None


def configure(setting: str | None) -> None:
    """Set this process's engine setting (from ``Settings.gpu_queue``); None: the env."""
    global _configured
    if setting is not None and setting not in ENGINES:
        raise ValueError(f"{ENV} must be one of {', '.join(ENGINES)}, not {setting!r}.")
    _configured = setting


def engine_setting() -> str:
    return _configured or os.environ.get(ENV) or "auto"


def engine_for(dialect: str, setting: str | None = None, *, strict: bool = False) -> Engine:
    """Which engine runs jobs on a database of this dialect ("sqlite", "postgresql")."""
    chosen = setting or engine_setting()
    if chosen not in ENGINES:
        raise ValueError(f"{ENV} must be one of {', '.join(ENGINES)}, not {chosen!r}.")
    if dialect != "postgresql":
        if strict and chosen == "procrastinate":
            raise ValueError(
                f"{ENV}=procrastinate needs Postgres (DATABASE_URL=postgresql+asyncpg://...); "
                "on SQLite the worker claims jobs from the database itself (auto or db)."
            )
        return "db"
    return "db" if chosen == "db" else "procrastinate"


def uses_procrastinate(session: AsyncSession) -> bool:
    bind = session.bind
    return bind is not None and engine_for(bind.dialect.name) == "procrastinate"


# ------------------------------------------------------------- SQL in our own session

_DEFER = text(
    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW("
    "CAST(:queue AS varchar), CAST(:task AS varchar), CAST(:priority AS integer), "
    "CAST(NULL AS text), CAST(NULL AS text), CAST(:args AS jsonb), "
    "CAST(:at AS timestamptz))::procrastinate_job_to_defer_v1])) AS id"
)


async def defer(
    session: AsyncSession, job_id: int, *, priority: int = 0, at: datetime | None = None
) -> int:
    """Queue "run GPU job ``job_id``" for a worker, in the caller's transaction; the
    procrastinate job's id. ``at``: not before this instant (None: now)."""
    args = json.dumps({"job_id": job_id})
    pid = await session.scalar(
        _DEFER, {"queue": QUEUE, "task": TASK, "priority": priority, "args": args, "at": at}
    )
    return int(pid)


_ORPHANS = text(
    "SELECT g.id FROM gpu_jobs AS g WHERE g.state = 'queued' AND NOT EXISTS ("
    " SELECT 1 FROM procrastinate_jobs AS p WHERE p.task_name = :task"
    " AND p.status IN ('todo', 'doing') AND p.args ->> 'job_id' = CAST(g.id AS text))"
    " ORDER BY g.id"
)


async def orphans(session: AsyncSession) -> list[int]:
    """Queued rows that no procrastinate job would run (e.g. a defer lost to a crash
    between procrastinate's fetch and our claim)."""
    return list(await session.scalars(_ORPHANS, {"task": TASK}))


async def pending(session: AsyncSession, job_id: int | None = None) -> int:
    """How many procrastinate jobs wait to run (for ``job_id``, or any GPU job)."""
    q = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task AND status = 'todo'"
    params: dict[str, Any] = {"task": TASK}
    if job_id is not None:
        q += " AND args ->> 'job_id' = :jid"
        params["jid"] = str(job_id)
    return int(await session.scalar(text(q), params) or 0)


# ------------------------------------------------------------------ the worker side


def conninfo(database_url: str) -> str:
    """A libpq URI (psycopg) for the SQLAlchemy URL the bot uses."""
    url = make_url(database_url)
    query = dict(url.query)
    if "ssl" in query and "sslmode" not in query:  # asyncpg's spelling
        query["sslmode"] = query.pop("ssl")
    url = url.set(drivername="postgresql", query=query)
    return url.render_as_string(hide_password=False)


def make_app(database_url: str, run_job: Callable[[int], Awaitable[str]]) -> procrastinate.App:
    """A procrastinate app whose one task runs our job ``job_id`` with ``run_job``."""
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=conninfo(database_url), min_size=1, max_size=3
        )
    )

    # Our task never raises for a failed demo (that is the row's state); an exception
    # here is the database or the worker itself, worth a few retries.
    @app.task(name=TASK, queue=QUEUE, retry=procrastinate.RetryStrategy(max_attempts=5, wait=2))
    async def run_gpu_job(job_id: int) -> str:
        return await run_job(job_id)

    return app


async def finish_stalled(app: procrastinate.App, stale_s: float) -> int:
    """Mark failed the procrastinate jobs of dead workers (their rows are recovered by
    :func:`gpu_queue.queue.recover`, which defers a new job when one runs again)."""
    from procrastinate.jobs import Status

    n = 0
    for job in await app.job_manager.get_stalled_jobs(
        task_name=TASK, seconds_since_heartbeat=stale_s
    ):
        assert job.id is not None
        with contextlib.suppress(Exception):  # finished meanwhile
            await app.job_manager.finish_job_by_id_async(job.id, Status.FAILED, False)
            n += 1
    return n


async def run_worker(
    app: procrastinate.App,
    name: str,
    stop: asyncio.Event,
    maintain: Callable[[], Awaitable[None]],
    *,
    maintain_s: float = 10.0,
) -> None:
    """One procrastinate worker (concurrency 1: one job at a time, one per GPU) until
    ``stop`` is set, plus ``maintain`` every ``maintain_s`` seconds."""

    async def maintenance() -> None:
        while not stop.is_set():
            try:
                await maintain()
            except Exception:
                log.exception("GPU worker %s: maintenance failed", name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), maintain_s)

    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=[QUEUE],
                concurrency=1,
                name=name,
                install_signal_handlers=False,  # ours set ``stop``
                delete_jobs="successful",
                listen_notify=True,
                fetch_job_polling_interval=1.0,  # also catches jobs deferred to later
                shutdown_graceful_timeout=0,  # a running job is released at once
            )
        )
        side = asyncio.create_task(maintenance())
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({worker, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            for task in (worker, side, waiter):
                task.cancel()
            outcomes = await asyncio.gather(worker, side, waiter, return_exceptions=True)
        failed = outcomes[0]
        if isinstance(failed, Exception):  # the worker stopped by itself: say why
            raise failed
