"""The GPU worker: claims jobs and runs each demo in a warm child process.

**The child** is spawned, never forked (CUDA state is never copied), imports torch once
and then serves job after job through a pipe, so models a demo caches at module level
(e.g. ``classify``'s weights) stay loaded between jobs. A job that is cancelled, runs
past its demo's wall-clock limit, runs out of GPU memory or kills its process takes the
child with it; the next job gets a fresh one. The child dies with its worker, even
under ``kill -9`` (Linux ``PR_SET_PDEATHSIG``, and a watchdog thread elsewhere).

**The worker** beats the job's heartbeat while it runs and writes progress and the
result to the job's row (only while the row is still running for it). A worker killed
with ``kill -9`` leaves a stale heartbeat, which :func:`gpu_queue.queue.recover` turns
into a retry (young jobs, once) or an expiry. A worker that is stopped (SIGTERM, Ctrl-C,
the bot exiting) kills its child and gives the running job back to the queue.

**Engines** (``gpu_queue/procrastinate_app.py``): on SQLite, or with
``COURSEBOT_GPU_QUEUE=db``, :meth:`Worker.serve` claims rows itself (woken within ~25 ms
of a commit: SQLite's ``data_version``, or a cheap look every 50 ms on Postgres); on
Postgres :meth:`Worker.serve_procrastinate` runs a procrastinate worker (concurrency 1,
woken by LISTEN/NOTIFY) whose task is :meth:`Worker.run_job`.
**Files** travel through the database (``GpuJobFile``), so a worker on another host
needs no shared folder: before a job runs, its input files are written to a private
temporary folder on this host (removed afterwards) and the demo is given that path;
the result images are stored as ``output`` rows, which the bot posts.
Torch is imported only in the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import make_url

from commands.clock import Clock, SystemClock
from db.models import GpuJob, GpuJobFile
from db.session import Database
from gpu_queue import procrastinate_app
from gpu_queue.queue import (
    CANCELLED,
    FAILED,
    INPUT,
    OUTPUT,
    QUEUED,
    RUNNING,
    STALE,
    SUCCEEDED,
    claim,
    claim_job,
    recover,
    ref_id,
    release,
    safe_name,
    turn,
)

if TYPE_CHECKING:
    from gpu_queue.demos import Demo, Progress

log = logging.getLogger("coursebot.gpu")
HEARTBEAT_S = 2.0
#: Spawning a child and importing torch (and CUDA) may take this long on a cold host;
#: it does not count against the demo's own time limit.
CHILD_START_S = 300.0
#: Progress reported by a demo is written at most this often (each write also beats).
PROGRESS_EVERY_S = 0.5
OOM_MESSAGE = (
    "The GPU ran out of memory running `{demo}`. Try smaller parameters (a smaller "
    "image, batch or model), or run it again later when the GPU is less busy."
)

#: (kind, text, images). Kinds: ok, error (the demo's own failure; the child is
#: healthy), fail (the child must go: time limit, out of memory, died), cancelled,
#: lost (the row is no longer ours), released (the worker is stopping).
Outcome = tuple[str, Any, Any]


# ------------------------------------------------------------------- in the child


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def run_demo(demo: Demo, params: dict[str, Any], device: str, progress: Progress) -> Outcome:
    """Run one demo (in the child) and say what the student reads."""
    from gpu_queue.demos import DemoError

    try:
        result = demo.run(demo.params.model_validate(params), device, progress)
        return ("ok", result.text, result.images)
    except DemoError as exc:
        return ("error", str(exc), None)
    except Exception as exc:
        if _is_oom(exc):
            return ("fail", OOM_MESSAGE.format(demo=demo.name), None)
        log.exception("demo %s failed", demo.name)
        return ("error", f"The demo failed: {type(exc).__name__}: {exc}", None)


def _die_with_parent(parent_pid: int) -> None:
    """Never outlive the worker: Linux kills us when it dies (``PR_SET_PDEATHSIG``),
    and a watchdog thread exits when we are re-parented (any platform)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(0.5)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child_main(conn: Connection, parent_pid: int) -> None:
    """The warm child: import torch once, then run jobs sent through the pipe."""
    _die_with_parent(parent_pid)
    try:
        from gpu_queue.demos import catalogue, pick_device

        device = pick_device(os.environ.get("COURSEBOT_GPU_DEVICE", "auto"))  # imports torch
        demos = catalogue()
    except Exception as exc:
        conn.send(("fail", f"The GPU worker could not start a demo process: {exc}", None))
        return
    conn.send(("ready", device))

    def progress(fraction: float, what: str) -> None:
        conn.send(("progress", float(fraction), str(what)))

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the worker closed the pipe (or died)
        if msg[0] != "run":
            return
        _, name, params = msg
        demo = demos.get(name)
        if demo is None:
            conn.send(("error", f"There is no demo `{name}` on this worker.", None))
            continue
        conn.send(run_demo(demo, params, device, progress))


# ------------------------------------------------------------------ in the worker


class MissingInput(Exception):
    """A job's input file is not in the database (``str()``: the student's message)."""


def _write_inputs(folder: Path, files: dict[str, tuple[str, bytes]]) -> dict[str, str]:
    """Write each parameter's file (name, bytes) under ``folder``; the paths."""
    paths = {}
    for key, (name, data) in files.items():
        path = folder / key / safe_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths[key] = str(path)
    return paths


@dataclass
class _Child:
    proc: BaseProcess
    conn: Connection
    device: str | None = None  # set when the child is ready
    jobs: int = 0

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class Worker:
    """Runs claimed jobs through one warm child (``warm=False``: a fresh child per job)."""

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        timeouts: dict[str, float] | None = None,
        warm: bool = True,
    ) -> None:
        self.db = db
        self.timeouts = timeouts or {}  # per-demo overrides of the catalogue's limits
        # This host's data folder; job files travel through the database instead, and
        # inputs are staged in a private temporary folder per job.
        self.data_dir = data_dir
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock or SystemClock()
        self.warm = warm
        self.stop = asyncio.Event()  # set: release the running job, serve no more
        self._child: _Child | None = None

    def now(self) -> datetime:
        return self.clock.now()

    # ------------------------------------------------------------------ the child

    def _spawn(self) -> _Child:
        # From the event loop's (main) thread: PR_SET_PDEATHSIG follows the thread.
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=_child_main, args=(child, os.getpid()), name="coursebot-gpu-child", daemon=True
        )
        proc.start()
        child.close()
        return _Child(proc, parent)

    def warm_up(self) -> None:
        """Start the child now, so that the first job finds torch already imported."""
        if self.warm and (self._child is None or not self._child.proc.is_alive()):
            self._discard_child()
            self._child = self._spawn()

    def _discard_child(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None

    def close(self) -> None:
        self._discard_child()

    @property
    def child_pid(self) -> int | None:
        return self._child.proc.pid if self._child is not None else None

    @staticmethod
    async def _recv(conn: Connection, wait_s: float) -> Any:
        def get() -> Any:
            return conn.recv() if conn.poll(wait_s) else None

        return await asyncio.to_thread(get)

    # ---------------------------------------------------------------- the engines

    async def run_once(self) -> int | None:
        """Claim the next job (round-robin) and run it; its id, or None if none waits."""
        async with self.db.transaction() as session:
            await recover(session, self.now())
            job = await claim(session, self.name, self.now())
            if job is None:
                return None
            job_id, demo, params = job.id, job.demo, dict(job.params)
        await self._run_claimed(job_id, demo, params)
        return job_id

    async def run_job(self, job_id: int) -> str:
        """Run one given job (procrastinate's task): ``ran``, or ``gone`` (no longer
        queued: cancelled, or delivered twice) or ``wait`` (offered again later)."""
        async with self.db.transaction() as session:
            status, job = await claim_job(session, job_id, self.name, self.now())
            if status != "claimed" or job is None:
                return status
            demo, params = job.demo, dict(job.params)
        await self._run_claimed(job_id, demo, params)
        return "ran"

    async def _run_claimed(self, job_id: int, demo: str, params: dict[str, Any]) -> None:
        try:
            await self.execute(job_id, demo, params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("GPU job %s could not be run", job_id)
            self._discard_child()
            await self._finish(job_id, ("fail", f"The job could not be run: {exc}", None))

    async def execute(self, job_id: int, demo_name: str, params: dict[str, Any]) -> None:
        """Run a job this worker has claimed and write its outcome to the row."""
        from gpu_queue.demos import catalogue

        limit_s = self.timeouts.get(demo_name, catalogue()[demo_name].timeout_s)
        folder: Path | None = None
        try:
            try:
                params, folder = await self._stage_inputs(job_id, params)
            except MissingInput as exc:
                outcome: Outcome = ("error", str(exc), None)
            else:
                outcome = await self._drive(job_id, demo_name, params, limit_s)
        except asyncio.CancelledError:  # the worker is being stopped (procrastinate abort)
            self._discard_child()
            await asyncio.shield(self._release(job_id))
            raise
        except (EOFError, OSError):  # the child died mid-message
            outcome = ("fail", "The demo stopped without a result.", None)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        kind = outcome[0]
        if kind not in ("ok", "error") or not self.warm:
            self._discard_child()  # a child that was killed, failed or is not kept warm
        elif self._child is not None:
            self._child.jobs += 1
        if kind == "released":
            await self._release(job_id)
        elif kind != "lost":
            await self._finish(job_id, outcome)

    async def _stage_inputs(
        self, job_id: int, params: dict[str, Any]
    ) -> tuple[dict[str, Any], Path | None]:
        """Write the job's input files (params ``db:<id>``) from the database to a
        private temporary folder on this host; the params with their paths instead, and
        the folder (None when the job has no files)."""
        refs = {k: i for k, v in params.items() if (i := ref_id(v)) is not None}
        if not refs:
            return params, None
        async with self.db.session() as session:
            rows = {
                f.id: (f.name, f.data)
                for f in await session.scalars(
                    select(GpuJobFile).where(
                        GpuJobFile.job_id == job_id,
                        GpuJobFile.role == INPUT,
                        GpuJobFile.id.in_(list(refs.values())),
                    )
                )
            }
        missing = [k for k, i in refs.items() if i not in rows]
        if missing:
            raise MissingInput(f"The job's attached file ({missing[0]}) is gone; run it again.")
        folder = Path(tempfile.mkdtemp(prefix=f"coursebot-gpu-{job_id}-"))  # mode 0700
        try:
            paths = await asyncio.to_thread(
                _write_inputs, folder, {k: rows[i] for k, i in refs.items()}
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return {**params, **paths}, folder

    async def _drive(
        self, job_id: int, demo_name: str, params: dict[str, Any], limit_s: float
    ) -> Outcome:
        loop = asyncio.get_running_loop()
        if self._child is None or not self._child.proc.is_alive():
            self._discard_child()
            self._child = self._spawn()
        child = self._child
        begun = last_write = loop.time()
        sent_at: float | None = None
        progress: dict[str, Any] = {}
        while True:
            if sent_at is None and child.device is not None:
                child.conn.send(("run", demo_name, params))
                sent_at = loop.time()
            wait = HEARTBEAT_S
            if sent_at is not None:  # wake up in time to enforce the limit
                wait = max(0.01, min(wait, sent_at + limit_s - loop.time() + 0.01))
            msg = await self._recv(child.conn, wait)
            if msg is not None:
                if msg[0] == "ready":
                    child.device = msg[1]
                    continue
                if msg[0] != "progress":
                    return (msg[0], msg[1], msg[2] if len(msg) > 2 else None)
                progress = {"progress": msg[1], "note": msg[2][:200]}
            now = loop.time()
            if now - last_write >= (PROGRESS_EVERY_S if progress else HEARTBEAT_S):
                state = await self._update(job_id, **progress)
                progress, last_write = {}, now
                if state == CANCELLED:
                    return ("cancelled", None, None)
                if state != RUNNING:
                    log.warning("GPU job %s was taken from %s (%s)", job_id, self.name, state)
                    return ("lost", None, None)
            if self.stop.is_set():
                return ("released", None, None)
            if sent_at is not None and now - sent_at > limit_s:
                return (
                    "fail",
                    f"The demo took longer than its limit of {limit_s:g} s and was stopped.",
                    None,
                )
            if sent_at is None and now - begun > CHILD_START_S:
                return ("fail", "The GPU worker could not start the demo in time.", None)
            if not child.proc.is_alive() and not child.conn.poll(0):
                return ("fail", "The demo stopped without a result.", None)

    async def _update(self, job_id: int, **values: Any) -> str:
        """Beat the heartbeat (and write progress); the row's state, or ``lost`` when
        it is running for another worker (ours was presumed dead and it was re-run)."""
        async with self.db.transaction() as session:
            job = await session.get(GpuJob, job_id)
            if job is None:
                return "lost"
            if job.state == RUNNING:
                if job.worker != self.name:
                    return "lost"
                job.heartbeat_at = self.now()
                for k, v in values.items():
                    setattr(job, k, v)
            return job.state

    async def _release(self, job_id: int) -> None:
        async with self.db.transaction() as session:
            if await release(session, job_id, self.name, self.now()):
                log.info("GPU worker %s: job %s given back to the queue", self.name, job_id)

    async def _finish(self, job_id: int, outcome: Outcome) -> None:
        kind, first, images = outcome
        async with self.db.transaction() as session:
            job = await session.get(GpuJob, job_id)
            assert job is not None
            if job.state != RUNNING or job.worker != self.name:
                return  # cancelled while finishing, or no longer ours: keep that
            job.finished_at = self.now()
            if kind == "ok":
                # The result images go to the database (the bot may be on another host).
                await session.execute(
                    delete(GpuJobFile).where(GpuJobFile.job_id == job_id, GpuJobFile.role == OUTPUT)
                )
                names = []
                for name, data in images or []:
                    names.append(safe_name(name))
                    session.add(
                        GpuJobFile(
                            job_id=job_id,
                            role=OUTPUT,
                            name=names[-1],
                            content_type="image/png",
                            data=data,
                            created_at=self.now(),
                        )
                    )
                job.state, job.result_text, job.result_files, job.progress = (
                    SUCCEEDED,
                    first,
                    names,
                    1.0,
                )
            elif kind == "cancelled":
                job.state = CANCELLED
            else:
                job.state, job.error = FAILED, first

    # ------------------------------------------------------------------ serving

    async def serve(self, poll_s: float = 0.5, parent_pid: int | None = None) -> None:
        """The database engine: claim rows until :attr:`stop` is set."""
        log.info("GPU worker %s serving (claiming rows)", self.name)
        self.warm_up()
        wake: _SqliteWake | _PollWake = _SqliteWake.open(self.db.url) or _PollWake(self.db)
        watch = _watch_parent(parent_pid, self.stop)
        try:
            while not self.stop.is_set():
                try:
                    ran = await self.run_once()
                except Exception:
                    log.exception("GPU worker: a job failed unexpectedly")
                    ran = None
                if ran is None:
                    await wake.wait(self.stop, poll_s)
        finally:
            watch.cancel()
            wake.close()
            self.close()

    async def serve_procrastinate(self, database_url: str, parent_pid: int | None = None) -> None:
        """The procrastinate engine: one procrastinate worker (concurrency 1) running
        :meth:`run_job`, until :attr:`stop` is set."""
        log.info("GPU worker %s serving (procrastinate, queue %r)", self.name, "gpu")
        app = procrastinate_app.make_app(database_url, self.run_job)
        self.warm_up()
        watch = _watch_parent(parent_pid, self.stop)
        try:
            await procrastinate_app.run_worker(
                app, self.name, self.stop, lambda: self.maintain(app)
            )
        finally:
            watch.cancel()
            self.close()

    async def maintain(self, app: Any = None) -> None:
        """Recover rows of dead workers; with procrastinate, also fail dead workers'
        procrastinate jobs and re-offer queued rows that no procrastinate job carries."""
        if app is not None:
            await procrastinate_app.finish_stalled(app, STALE.total_seconds())
        async with self.db.transaction() as session:
            await recover(session, self.now())
            if procrastinate_app.uses_procrastinate(session):
                for job_id in await procrastinate_app.orphans(session):
                    job = await session.get(GpuJob, job_id)
                    assert job is not None
                    log.warning("GPU job %s had no procrastinate job; offered again", job_id)
                    await procrastinate_app.defer(
                        session, job_id, priority=-await turn(session, job)
                    )


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _watch_parent(parent_pid: int | None, stop: asyncio.Event) -> asyncio.Task[None]:
    """Set ``stop`` when the process that started us (the bot) is gone."""

    async def watch() -> None:
        while parent_pid is not None and not stop.is_set():
            if os.getppid() != parent_pid:
                log.info("GPU worker: the bot is gone; stopping")
                stop.set()
            await _sleep(stop, 1.0)

    return asyncio.create_task(watch())


class _SqliteWake:
    """Wakes the SQLite worker within ~25 ms of a commit (by another connection) that
    leaves a job queued, instead of a slow poll: SQLite has no LISTEN. It reads through
    its own plain connection (a WAL reader never blocks the bot's writes), so only a
    wake-up with work to do takes the write lock to claim."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.seen = self._version()

    @classmethod
    def open(cls, url: str) -> _SqliteWake | None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            return None
        return cls(str(parsed.database))

    def _version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def _changed_with_work(self) -> bool:
        try:
            version = self._version()
            if version == self.seen:
                return False
            self.seen = version
            return (
                self.conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM gpu_jobs WHERE state = 'queued')"
                ).fetchone()[0]
                == 1
            )
        except sqlite3.Error:  # busy or locked: let the regular poll decide
            return False

    async def wait(self, stop: asyncio.Event, limit: float) -> None:
        end = time.monotonic() + limit
        while not stop.is_set() and time.monotonic() < end:
            if self._changed_with_work():
                return
            await _sleep(stop, 0.025)

    def close(self) -> None:
        self.conn.close()


class _PollWake:
    """The same on Postgres with ``COURSEBOT_GPU_QUEUE=db`` (procrastinate's LISTEN is
    the default there): a cheap indexed look at the queue every 50 ms, waking when a
    job was queued or one finished (which may let an owner's next one start)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seen: tuple[Any, ...] | None = None

    async def _signature(self) -> tuple[Any, ...]:
        async with self.db.session() as session:
            row = await session.execute(
                select(GpuJob.state, func.count(), func.max(GpuJob.id))
                .where(GpuJob.state.in_((QUEUED, RUNNING)))
                .group_by(GpuJob.state)
                .order_by(GpuJob.state)
            )
            return tuple(tuple(r) for r in row)

    async def wait(self, stop: asyncio.Event, limit: float) -> None:
        end = time.monotonic() + limit
        while not stop.is_set() and time.monotonic() < end:
            await _sleep(stop, 0.05)
            try:
                signature = await self._signature()
            except Exception:  # the database is away: let the regular poll decide
                continue
            if self.seen is not None and signature != self.seen:
                self.seen = signature
                return
            self.seen = signature

    def close(self) -> None:
        pass


# --------------------------------------------------------------- processes, the CLI


def select_gpu(gpu: str | None) -> str | None:
    """Point this process's children at one GPU (``"0"``, ``"1"``…) or the CPU
    (``"cpu"``); None keeps ``CUDA_VISIBLE_DEVICES``/``COURSEBOT_GPU_DEVICE`` as set.
    A suffix for the worker's name."""
    if gpu is None:
        return None
    if gpu == "cpu":
        os.environ["COURSEBOT_GPU_DEVICE"] = "cpu"
        return "cpu"
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ.setdefault("COURSEBOT_GPU_DEVICE", "auto")
    return f"gpu{gpu}"


def worker_main(
    database_url: str,
    data_dir: str,
    parent_pid: int | None = None,
    engine: str | None = None,
    gpu: str | None = None,
) -> None:
    """Entry point of the embedded worker process and of `coursebot worker`: serve jobs
    with the engine ``engine`` (auto, db, procrastinate) until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=os.environ.get("COURSEBOT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        # Next to a terminal shell the log goes to its file, not between the replies.
        filename=os.environ.get("COURSEBOT_LOG_FILE") or None,
    )
    suffix = select_gpu(gpu)
    procrastinate_app.configure(engine)

    async def main() -> None:
        db = Database(database_url)
        name = f"{socket.gethostname()}:{os.getpid()}" + (f":{suffix}" if suffix else "")
        worker = Worker(db, Path(data_dir), name=name)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop.set)
        try:
            if procrastinate_app.engine_for(db.backend, strict=True) == "procrastinate":
                await worker.serve_procrastinate(database_url, parent_pid=parent_pid)
            else:
                await worker.serve(parent_pid=parent_pid)
        finally:
            await db.dispose()

    asyncio.run(main())


def start_embedded_worker(
    database_url: str, data_dir: Path, engine: str | None = None
) -> mp.process.BaseProcess:
    """The worker in its own spawned process, next to the bot (never on its event loop)."""
    # Not a daemon (a daemon may not start the demos' child processes); it stops when the
    # bot exits (atexit in the CLI) or, if the bot dies, when it sees its parent gone.
    proc = mp.get_context("spawn").Process(
        target=worker_main,
        args=(database_url, str(data_dir), os.getpid(), engine),
        name="coursebot-gpu",
    )
    proc.start()
    return proc


def run_workers(
    database_url: str,
    data_dir: str,
    gpus: list[str],
    engine: str | None = None,
) -> int:
    """`coursebot worker --gpu 0,1,…`: one worker process per GPU, until they stop (a
    SIGTERM or Ctrl-C here is passed on); the highest exit code."""
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(
            target=worker_main,
            args=(database_url, data_dir, os.getpid(), engine, gpu),
            name=f"coursebot-gpu-{gpu}",
        )
        for gpu in gpus
    ]
    for p in procs:
        p.start()

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    return max((p.exitcode or 0) for p in procs)
