"""The GPU queue: overhead, throughput, fairness, and the warm child against a cold one.

Run from the repository root (torch from the ``demos`` extra)::

    python -m bench.gpu                          # SQLite and Postgres, prints the tables
    python -m bench.gpu --backends sqlite --jobs 50 --tick 0.05

Per backend and engine (a fresh SQLite file with the embedded worker's engine, rows; a
throwaway Postgres database woken by LISTEN/NOTIFY (``auto``), and by polling (``db``)): migrate,
load the sample course, start a real worker process (``worker_main``, as the bot and
``coursebot worker`` do) and wait for its warm child, then

- **overhead**: ``--jobs`` trivial jobs one after another (``conv2d`` on a 1×1 grid, about
  50 ms in a warm child), each submitted 50–250 ms after the previous result (students do
  not submit in lockstep with the worker); *submit → start* is the row's ``started_at − created_at``
  (commit, wake-up, claim), *finish → posted* is from ``finished_at`` until the bot's
  GPU poll (``gpu_posts_pending`` then ``due_gpu_posts`` every ``--tick`` seconds, 50 ms in the bot) has taken the result
  for posting;
- **throughput**: ``--burst`` trivial jobs submitted at once by the course's students,
  jobs per second from the first submission to the last result, and the queue's own
  *turnaround* between one job's result and the next job's start;
- **fairness**: A submits 10 jobs, B one while A's first runs; the order the 11 start in.

Then, once (the engine does not matter), **warm vs cold**: repeated jobs of a demo that
loads a model (``classify`` when the catalogue has it, else ``cnn``) in one warm child,
and with a fresh child per job; seconds per job (median), claim to result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing as mp
import os
import random
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url

from bench.report import percentile
from bench.workload import PG_ADMIN_URL, pg_admin, postgres_database
from bot.app import App, start_app
from bot.settings import SAMPLE_COURSE, Settings
from commands.gpu import due_gpu_posts, gpu_posts_pending
from commands.replies import Table, render_table, render_text
from db.models import Course, GpuJob, Person, Role
from gpu_queue import engines, queue

TRIVIAL = {"grid": "1", "kernel": "1"}  # conv2d on a 1×1 grid: ~50 ms in a warm child
TARGET_MS = 50.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres")
    p.add_argument(
        "--pg-engines",
        default="auto,db",
        help="wake-ups measured on Postgres: auto (LISTEN/NOTIFY) and/or db (polling)",
    )
    p.add_argument("--pg-url", default=PG_ADMIN_URL, help="an ADMIN url (throwaway database)")
    p.add_argument("--jobs", type=int, default=30, help="trivial jobs, one at a time (30)")
    p.add_argument("--burst", type=int, default=40, help="trivial jobs submitted at once (40)")
    p.add_argument("--tick", type=float, default=0.05, help="the bot's GPU poll in seconds (0.05)")
    p.add_argument("--warm-jobs", type=int, default=5, help="jobs in one warm child (5)")
    p.add_argument("--cold-jobs", type=int, default=3, help="jobs with a fresh child each (3)")
    p.add_argument("--demo", default="auto", help="warm vs cold demo (auto: classify, else cnn)")
    p.add_argument("--no-warm-cold", action="store_true", help="skip warm vs cold")
    p.add_argument("--concurrent", type=int, default=20, help="submits at once by one student")
    p.add_argument("--slurm-partition", default="debug", help="partition for the Slurm worker")
    p.add_argument("--slurm-jobs", type=int, default=10, help="trivial jobs on the Slurm worker")
    p.add_argument("--no-slurm", action="store_true", help="skip the Slurm worker")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.pg_engines = [e.strip() for e in args.pg_engines.split(",") if e.strip()]
    if set(args.backends) - {"sqlite", "postgres"}:
        p.error("--backends takes sqlite and/or postgres")
    if set(args.pg_engines) - {"auto", "procrastinate", "db"}:
        p.error("--pg-engines takes auto and/or db")
    return args


# ------------------------------------------------------------------------- plumbing


class Rows:
    """Reads job rows without disturbing the worker: on SQLite through a plain WAL
    reader (the bot's sessions take the write lock at BEGIN)."""

    def __init__(self, app: App) -> None:
        self.app = app
        url = make_url(app.db.url)
        self.sqlite = (
            sqlite3.connect(str(url.database), isolation_level=None)
            if url.get_backend_name() == "sqlite"
            else None
        )

    async def states(self, ids: list[int]) -> dict[int, str]:
        if self.sqlite is not None:
            marks = ",".join("?" * len(ids))
            cur = self.sqlite.execute(f"SELECT id, state FROM gpu_jobs WHERE id IN ({marks})", ids)
            return {int(i): str(s) for i, s in cur}
        async with self.app.db.session() as s:
            rows = await s.execute(select(GpuJob.id, GpuJob.state).where(GpuJob.id.in_(ids)))
            return {int(i): str(st) for i, st in rows}

    async def wait(self, ids: list[int], states: tuple[str, ...], limit: float = 120) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            got = await self.states(ids)
            if all(got.get(i) in states for i in ids):
                return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"jobs {ids} did not reach {states} within {limit:g} s")

    async def jobs(self, ids: list[int]) -> list[GpuJob]:
        async with self.app.db.session() as s:
            return list(await s.scalars(select(GpuJob).where(GpuJob.id.in_(ids))))

    def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()


class Ticker:
    """The bot's GPU poll (a cheap read, then ``due_gpu_posts``, every ``tick`` s): when each result was taken."""

    def __init__(self, app: App, tick: float) -> None:
        self.app, self.tick = app, tick
        self.posted: dict[int, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            async with self.app.db.session() as s:
                pending = await gpu_posts_pending(s)
            posts = []
            if pending:
                async with self.app.db.transaction() as s:
                    posts = await due_gpu_posts(s, datetime.now(UTC), recover=False)
            at = datetime.now(UTC)
            for _, out in posts:
                if out.edit_key is None:
                    m = re.search(r"GPU job #(\d+)", render_text(out.reply))
                    if m:
                        self.posted.setdefault(int(m.group(1)), at)
            await asyncio.sleep(self.tick)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait(self, ids: list[int], limit: float = 60) -> None:
        end = time.monotonic() + limit
        while any(i not in self.posted for i in ids):
            if time.monotonic() > end:
                raise TimeoutError("results were not posted")
            await asyncio.sleep(0.02)


async def submit(
    app: App, course: int, person: int, demo: str = "conv2d", params: dict[str, Any] | None = None
) -> int:
    async with app.db.transaction() as s:
        job = await queue.submit(
            s,
            course_id=course,
            person_id=person,
            demo=demo,
            params=params if params is not None else TRIVIAL,
            channel="general",
            now=datetime.now(UTC),
            queued_cap=10_000,
        )
        return job.id


async def course_and_students(app: App) -> tuple[int, list[int]]:
    async with app.db.session() as s:
        course = await s.scalar(select(Course.id))
        students = list(
            await s.scalars(
                select(Person.id).where(Person.role == Role.STUDENT).order_by(Person.id)
            )
        )
    assert course is not None and len(students) >= 2
    return course, students


def start_worker(url: str, data_dir: Path, engine: str) -> mp.process.BaseProcess:
    from gpu_queue.worker import worker_main

    proc = mp.get_context("spawn").Process(
        target=worker_main, args=(url, str(data_dir), os.getpid(), engine), name="bench-gpu"
    )
    proc.start()
    return proc


def stop_worker(proc: mp.process.BaseProcess) -> None:
    if proc.is_alive() and proc.pid is not None:
        os.kill(proc.pid, signal.SIGTERM)
    proc.join(30)
    if proc.is_alive():
        proc.kill()


def ms(delta_s: float) -> float:
    return delta_s * 1000.0


# ---------------------------------------------------------------------- queue runs


@dataclass
class QueueRun:
    label: str
    engine: str
    start_ms: list[float] = field(default_factory=list)
    posted_ms: list[float] = field(default_factory=list)
    burst: int = 0
    jobs_per_s: float = float("nan")
    turnaround_ms: list[float] = field(default_factory=list)
    order: str = ""
    b_next: bool = False
    error: str | None = None


async def run_queue(
    label: str, engine: str, url: str, tmp: Path, args: argparse.Namespace
) -> QueueRun:
    result = QueueRun(label, engine)
    engines.configure(engine)
    settings = Settings(
        database_url=url,
        COURSEBOT_DATA_DIR=tmp / "data",
        COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
        _env_file=None,
    )
    app = await start_app(settings)
    rows, ticker = Rows(app), Ticker(app, args.tick)
    proc = start_worker(app.db.url, tmp / "data", engine)
    try:
        course, students = await course_and_students(app)
        ticker.start()
        first = await submit(app, course, students[0])  # the worker is up, its child warm
        await rows.wait([first], ("succeeded",), limit=300)

        ids, rng = [], random.Random(790)
        for i in range(args.jobs):
            await asyncio.sleep(rng.uniform(0.05, 0.25))  # students are not in lockstep
            job_id = await submit(app, course, students[i % len(students)])
            await rows.wait([job_id], ("succeeded",))
            ids.append(job_id)
        await ticker.wait(ids, limit=args.tick * 3 + 30)
        for job in await rows.jobs(ids):
            assert job.started_at and job.finished_at
            result.start_ms.append(ms((job.started_at - job.created_at).total_seconds()))
            result.posted_ms.append(ms((ticker.posted[job.id] - job.finished_at).total_seconds()))

        ids = [await submit(app, course, students[i % len(students)]) for i in range(args.burst)]
        await rows.wait(ids, ("succeeded",), limit=600)
        burst = sorted(await rows.jobs(ids), key=lambda j: j.started_at)  # type: ignore[arg-type,return-value]
        span = max(j.finished_at for j in burst) - min(j.created_at for j in burst)  # type: ignore[type-var,operator]
        result.burst = len(burst)
        result.jobs_per_s = len(burst) / span.total_seconds()
        result.turnaround_ms = [
            ms((b.started_at - a.finished_at).total_seconds())  # type: ignore[operator]
            for a, b in itertools.pairwise(burst)
        ]

        a, b = students[0], students[1]
        a_ids = [await submit(app, course, a, params={}) for _ in range(10)]  # ~0.5 s each
        await rows.wait(a_ids[:1], ("running", "succeeded"))
        b_id = await submit(app, course, b)
        await rows.wait([*a_ids, b_id], ("succeeded",), limit=600)
        started = sorted(await rows.jobs([*a_ids, b_id]), key=lambda j: j.started_at)  # type: ignore[arg-type,return-value]
        result.order = " ".join("B" if j.id == b_id else "A" for j in started)
        result.b_next = started[1].id == b_id
    except Exception as exc:
        traceback.print_exc()
        result.error = repr(exc)
    finally:
        await ticker.stop()
        stop_worker(proc)
        rows.close()
        await app.close()
    return result


# ------------------------------------------------------------------- warm vs cold


@dataclass
class WarmCold:
    demo: str
    warm_s: list[float] = field(default_factory=list)
    cold_s: list[float] = field(default_factory=list)
    error: str | None = None


def pick_demo(wanted: str) -> str:
    from gpu_queue.demos import catalogue

    if wanted != "auto":
        return wanted
    if "classify" not in catalogue():
        return "cnn"
    from gpu_queue.demos import DemoError, classify  # type: ignore[attr-defined]

    try:
        classify.weights_path()  # its pretrained weights are installed
    except DemoError:
        return "cnn"
    return "classify"


async def run_warm_cold(tmp: Path, args: argparse.Namespace) -> WarmCold:
    from gpu_queue.worker import Worker

    demo = pick_demo(args.demo)
    result = WarmCold(demo)
    engines.configure("db")
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'warm.db'}",
        COURSEBOT_DATA_DIR=tmp / "data",
        COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
        _env_file=None,
    )
    app = await start_app(settings)
    try:
        course, students = await course_and_students(app)

        async def timed(worker: Worker) -> float:
            job_id = await submit(app, course, students[0], demo=demo, params={})
            t = time.perf_counter()
            assert await worker.run_once() == job_id
            took = time.perf_counter() - t
            async with app.db.session() as s:
                job = await s.get(GpuJob, job_id)
            if job is None or job.state != "succeeded":
                raise RuntimeError(
                    f"{demo} job {job_id}: {job.state if job else '?'}: {job and job.error}"
                )
            return took

        warm = Worker(app.db, tmp / "data", name="bench-warm")
        try:
            await timed(warm)  # the first job starts the child and loads the model
            result.warm_s = [await timed(warm) for _ in range(args.warm_jobs)]
        finally:
            warm.close()
        cold = Worker(app.db, tmp / "data", name="bench-cold", warm=False)
        try:
            result.cold_s = [await timed(cold) for _ in range(args.cold_jobs)]
        finally:
            cold.close()
    except Exception as exc:
        traceback.print_exc()
        result.error = repr(exc)
    finally:
        await app.close()
    return result


# ---------------------------------------------------- limits under concurrency, Slurm


@dataclass
class CapRun:
    label: str
    submitted: int = 0
    queued: int = 0
    cap: int = 0
    ms: float = float("nan")
    error: str | None = None


async def run_cap(label: str, url: str, tmp: Path, n: int) -> CapRun:
    """``n`` submissions by one student at once, each in its own session (connection):
    how many were queued (it must be exactly the cap) and how long the burst took."""
    result = CapRun(label, submitted=n, cap=queue.QUEUED_CAP)
    settings = Settings(
        database_url=url,
        COURSEBOT_DATA_DIR=tmp / "data",
        COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
        _env_file=None,
    )
    app = await start_app(settings)
    try:
        course, students = await course_and_students(app)

        async def one() -> bool:
            try:
                async with app.db.transaction() as s:
                    await queue.submit(
                        s, course_id=course, person_id=students[0], demo="conv2d",
                        params=TRIVIAL, channel="general", now=datetime.now(UTC),
                        queued_cap=queue.QUEUED_CAP,
                    )  # fmt: skip
                return True
            except queue.QueueError:
                return False

        t = time.perf_counter()
        outcomes = await asyncio.gather(*(one() for _ in range(n)))
        result.ms = (time.perf_counter() - t) * 1000
        result.queued = sum(outcomes)
    except Exception as exc:
        result.error = repr(exc)
    finally:
        await app.close()
    return result


@dataclass
class SlurmRun:
    label: str
    up_s: float = float("nan")  # sbatch → the worker registered (torch imported)
    start_ms: list[float] = field(default_factory=list)  # job submit → claimed
    result_ms: list[float] = field(default_factory=list)  # job submit → succeeded
    handback_ms: float = float("nan")  # scancel → the running job queued again
    error: str | None = None


async def run_slurm(label: str, url: str, tmp: Path, args: argparse.Namespace) -> SlurmRun:
    """A worker submitted through Slurm (sbatch, partition ``--slurm-partition``): how
    long until it serves, the submit → start overhead of trivial jobs on it, and how
    fast ``scancel`` hands a running job back."""
    from db.models import GpuWorker
    from gpu_queue import slurm

    result = SlurmRun(label)
    settings = Settings(
        database_url=url,
        COURSEBOT_DATA_DIR=tmp / "data",
        COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
        _env_file=None,
    )
    app = await start_app(settings)
    rows = Rows(app)
    ids: list[str] = []
    try:
        course, students = await course_and_students(app)
        req = slurm.WorkerRequest(
            partition=args.slurm_partition, gpus=0, time="15", log_dir=tmp / "slurm",
            workdir=Path.cwd(),
        )  # fmt: skip
        t = time.perf_counter()
        ids = await asyncio.to_thread(
            slurm.submit, req, {"DATABASE_URL": url, "COURSEBOT_DATA_DIR": str(tmp / "data")}
        )
        end = time.monotonic() + 300
        while time.monotonic() < end:
            async with app.db.session() as s:
                w = await s.scalar(select(GpuWorker).where(GpuWorker.slurm_job_id == ids[0]))
            if w is not None:
                break
            await asyncio.sleep(0.05)
        result.up_s = time.perf_counter() - t
        first = await submit(app, course, students[0])  # the child finishes warming
        await rows.wait([first], ("succeeded",), limit=300)
        for i in range(args.slurm_jobs):
            job_id = await submit(app, course, students[i % len(students)])
            await rows.wait([job_id], ("succeeded", "failed"), limit=120)
            [job] = await rows.jobs([job_id])
            assert job.started_at and job.finished_at
            result.start_ms.append(ms((job.started_at - job.created_at).total_seconds()))
            result.result_ms.append(ms((job.finished_at - job.created_at).total_seconds()))
            await asyncio.sleep(random.uniform(0.05, 0.25))
        job_id = await submit(app, course, students[0], demo="cnn", params={})
        await rows.wait([job_id], ("running",), limit=120)
        t = time.perf_counter()
        await asyncio.to_thread(slurm.cancel, ids)
        await rows.wait([job_id], ("queued",), limit=60)
        result.handback_ms = (time.perf_counter() - t) * 1000
    except Exception as exc:
        result.error = repr(exc)
    finally:
        rows.close()
        if ids:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(slurm.cancel, ids)
        await app.close()
    return result


def cap_table(runs: list[CapRun]) -> str:
    cols = ["Backend", "Concurrent submits (one student)", "Queued", "Cap", "Burst ms", "Holds"]
    rows = [
        [r.label, str(r.submitted), str(r.queued), str(r.cap), f"{r.ms:.0f}",
         "FAILED: " + r.error if r.error else ("yes" if r.queued == r.cap else "NO")]
        for r in runs
    ]  # fmt: skip
    return render_table(Table(cols, rows, title="Per-student cap under concurrency"), width=160)


def slurm_table(runs: list[SlurmRun]) -> str:
    cols = ["Backend", "sbatch → serving s", "Jobs", "submit→start p50 ms", "p95 ms",
            "submit→result p50 ms", "scancel → handed back ms"]  # fmt: skip
    rows = []
    for r in runs:
        if r.error:
            rows.append([r.label, "—", "—", "—", "—", "—", f"FAILED: {r.error}"])
            continue
        rows.append([r.label, f"{r.up_s:.1f}", str(len(r.start_ms)), _p(r.start_ms, 50),
                     _p(r.start_ms, 95), _p(r.result_ms, 50), f"{r.handback_ms:.0f}"])  # fmt: skip
    return render_table(Table(cols, rows, title="A GPU worker under Slurm"), width=180)


# -------------------------------------------------------------------------- report


def _p(values: list[float], q: float) -> str:
    return f"{percentile(sorted(values), q):.1f}" if values else "—"


def queue_table(runs: list[QueueRun], tick: float) -> str:
    cols = [
        "Backend",
        "Engine",
        "Jobs",
        "submit→start p50 ms",
        "p95 ms",
        f"finish→posted p50 ms (poll {tick:g} s)",
        "p95 ms",
        "Burst jobs/s",
        "Turnaround p50 ms",
        "Start order (A×10, then B)",
        "B next",
    ]
    rows = []
    for r in runs:
        if r.error:
            rows.append([r.label, r.engine, "—", *["—"] * 7, "FAILED"])
            continue
        rows.append(
            [
                r.label,
                r.engine,
                str(len(r.start_ms)),
                _p(r.start_ms, 50),
                _p(r.start_ms, 95),
                _p(r.posted_ms, 50),
                _p(r.posted_ms, 95),
                f"{r.jobs_per_s:.1f} ({r.burst})",
                _p(r.turnaround_ms, 50),
                r.order,
                "yes" if r.b_next else "NO",
            ]
        )
    return render_table(
        Table(cols, rows, title="Queue overhead, throughput and fairness"), width=220
    )


def warm_table(wc: WarmCold) -> str:
    cols = ["Child", "Demo", "Jobs", "median s/job", "min s", "max s", "speed-up"]
    if wc.error:
        return render_table(Table(cols, [["—", wc.demo, "—", "—", "—", "—", "FAILED"]]))
    w, c = statistics.median(wc.warm_s), statistics.median(wc.cold_s)
    rows = [
        ["warm (one child)", wc.demo, str(len(wc.warm_s)), f"{w:.2f}", f"{min(wc.warm_s):.2f}", f"{max(wc.warm_s):.2f}", f"{c / w:.1f}×"],
        ["cold (a child per job)", wc.demo, str(len(wc.cold_s)), f"{c:.2f}", f"{min(wc.cold_s):.2f}", f"{max(wc.cold_s):.2f}", "1.0×"],
    ]  # fmt: skip
    return render_table(Table(cols, rows, title="Warm vs cold child"), width=160)


async def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("COURSEBOT_LOG_LEVEL", "WARNING")  # the worker processes' logs
    runs: list[QueueRun] = []
    for backend in args.backends:
        wakeups = ["db"] if backend == "sqlite" else args.pg_engines
        for engine in wakeups:
            label = "SQLite" if backend == "sqlite" else "Postgres"
            print(f"running {label} / {engine} ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="coursebot-bench-gpu-") as tmp_name:
                tmp = Path(tmp_name)
                if backend == "sqlite":
                    runs.append(
                        await run_queue(
                            label, engine, f"sqlite+aiosqlite:///{tmp / 'q.db'}", tmp, args
                        )
                    )
                    continue
                try:
                    await pg_admin(args.pg_url, "SELECT 1")
                except Exception as exc:
                    runs.append(QueueRun(label, engine, error=f"not reachable: {exc!r}"))
                    continue
                async with postgres_database(args.pg_url) as url:
                    runs.append(await run_queue(label, engine, url, tmp, args))
    caps: list[CapRun] = []
    slurms: list[SlurmRun] = []
    from gpu_queue import slurm

    slurm_missing = slurm.available()
    for backend in args.backends:
        label = "SQLite" if backend == "sqlite" else "Postgres"
        print(f"running {label} / {args.concurrent} concurrent submits ...", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="coursebot-bench-gpu-") as tmp_name:
            tmp = Path(tmp_name)
            if backend == "sqlite":
                caps.append(await run_cap(label, f"sqlite+aiosqlite:///{tmp / 'c.db'}", tmp,
                                          args.concurrent))  # fmt: skip
                continue
            try:
                async with postgres_database(args.pg_url) as url:
                    caps.append(await run_cap(label, url, tmp, args.concurrent))
                    if not args.no_slurm and slurm_missing is None:
                        print("running a Slurm worker ...", file=sys.stderr, flush=True)
                        slurms.append(await run_slurm(label, url, tmp, args))
            except Exception as exc:
                caps.append(CapRun(label, error=f"not reachable: {exc!r}"))
    wc = None
    if not args.no_warm_cold:
        print("running warm vs cold ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="coursebot-bench-gpu-") as tmp_name:
            wc = await run_warm_cold(Path(tmp_name), args)
    print()
    print(queue_table(runs, args.tick))
    print()
    print(cap_table(caps))
    print()
    if slurms:
        print(slurm_table(slurms))
    else:
        why = "--no-slurm" if args.no_slurm else slurm_missing
        print(f"(No Slurm worker measured: {why}; .ci/setup-slurm.sh starts one.)")
    if wc is not None:
        print()
        print(warm_table(wc))
    print()
    print(
        f"Trivial job: conv2d on a 1×1 grid (two small PNGs; about 50 ms in a warm child). "
        f"Target: queue overhead p50 < {TARGET_MS:g} ms. finish→posted waits for the bot's "
        f"GPU poll (every {args.tick:g} s: half of it on average, then the post itself)."
    )
    failed: list[Any] = [r for r in runs if r.error] + ([wc] if wc is not None and wc.error else [])
    failed += [c for c in caps if c.error or c.queued != c.cap] + [r for r in slurms if r.error]
    for r in failed:
        print(f"!! {getattr(r, 'label', 'warm vs cold')}: {r.error or 'the cap did not hold'}")
    print(f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
