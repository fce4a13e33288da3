"""The GPU worker: claims jobs and runs each demo in a warm child process.

**The child** is spawned, never forked (CUDA state is never copied), imports torch once
and then serves job after job through a pipe, so models a demo caches at module level
(e.g. ``classify``'s weights) stay loaded between jobs. A job that is cancelled, runs
past its demo's wall-clock limit, runs out of GPU memory or kills its process takes the
child with it; the next job gets a fresh one. The child dies with its worker, even
under ``kill -9`` (Linux ``PR_SET_PDEATHSIG``, and a watchdog thread elsewhere).

**The worker** changes a job only through :class:`gpu_queue.jobs.Jobs`, one transaction
per step: it claims the next job in round-robin order, beats its heartbeat (with the
progress) while it runs, and finishes or fails it. A worker killed with ``kill -9``
leaves a stale heartbeat, which :meth:`Jobs.recover` turns into a retry (young jobs,
once) or an expiry. A worker that is stopped (SIGTERM, Ctrl-C, the bot exiting, Slurm's
``scancel`` or its warning signal ``USR1`` before the time limit) kills its child and
hands the running job back to the queue, where it runs again from the start, once.

**Waking** is the only part that differs between the backends
(:mod:`gpu_queue.engines`): SQLite's ``data_version``, Postgres ``LISTEN``. The worker
also registers itself in ``gpu_workers`` (:mod:`gpu_queue.fleet`) and beats there while
idle, so the bot knows whether a job will start now.

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
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from commands.clock import Clock, SystemClock
from db.models import GpuJobFile
from db.session import Database
from gpu_queue import engines, fleet
from gpu_queue.jobs import INPUT, Jobs, JobState, StoredFile
from gpu_queue.queue import ref_id, safe_name

if TYPE_CHECKING:
    from gpu_queue.demos import Demo, Progress

log = logging.getLogger("coursebot.gpu")
HEARTBEAT_S = 2.0
#: Spawning a child and importing torch (and CUDA) may take this long on a cold host;
#: it does not count against the demo's own time limit.
CHILD_START_S = 300.0
#: Progress reported by a demo is written at most this often (each write also beats).
PROGRESS_EVERY_S = 0.5
#: An idle worker beats its ``gpu_workers`` row this often (it counts as live for STALE).
IDLE_BEAT_S = 5.0
#: How soon a running job notices that its worker is being stopped.
STOP_CHECK_S = 0.2
#: A worker whose allocation (Slurm's time limit) ends within this many seconds claims
#: no more jobs (the warning signal ``--signal=B:USR1@60`` comes 60 s before the end).
END_MARGIN_S = 60.0
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
        too_big = memory_refusal(demo, params, device)
        if too_big:
            return ("error", too_big, None)
        result = demo.run(demo.params.model_validate(params), device, progress)
        return ("ok", result.text, result.images)
    except DemoError as exc:
        return ("error", str(exc), None)
    except Exception as exc:
        if _is_oom(exc):
            return ("fail", OOM_MESSAGE.format(demo=demo.name), None)
        log.exception("demo %s failed", demo.name)
        return ("error", f"The demo failed: {type(exc).__name__}: {exc}", None)


def gpu_memory_mib(device: str) -> tuple[int, int]:
    """(total, free) memory of this process's GPU in MiB; (0, 0) on the CPU."""
    if not device.startswith("cuda"):
        return 0, 0
    import torch

    free, total = torch.cuda.mem_get_info()
    return total // 2**20, free // 2**20


def memory_refusal(demo: Demo, params: dict[str, Any], device: str) -> str | None:
    """The student's message when the demo's parameters would not fit this GPU's free
    memory (checked before anything is allocated), else None."""
    if demo.memory_mib is None or not device.startswith("cuda"):
        return None
    need = demo.memory_mib(demo.params.model_validate(params))
    total, free = gpu_memory_mib(device)
    if need <= free:
        return None
    return (
        f"`{demo.name}` with these parameters needs about {need:,.0f} MiB of GPU memory; "
        f"this GPU has {free:,} MiB free (of {total:,} MiB). Try smaller parameters "
        "(see `gpu demos`)."
    )


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
    # Stop signals are the worker's to act on (Slurm's scancel and a terminal's Ctrl-C
    # reach every process of the job or group): the worker hands the job back, then
    # kills this child itself.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    try:
        from gpu_queue.demos import catalogue, pick_device

        device = pick_device(os.environ.get("COURSEBOT_GPU_DEVICE", "auto"))  # imports torch
        demos = catalogue()
    except Exception as exc:
        conn.send(("fail", f"The GPU worker could not start a demo process: {exc}", None))
        return
    conn.send(("ready", device, gpu_memory_mib(device)[0]))

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

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


@contextlib.contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """Ignore the stop signals while a child is started (an ignored signal stays ignored
    across exec), then restore this process's own handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


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
    memory_mib: int = 0
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
        slurm_job_id: str | None = None,
        ends_at: datetime | None = None,
    ) -> None:
        self.db = db
        self.timeouts = timeouts or {}  # per-demo overrides of the catalogue's limits
        # This host's data folder; job files travel through the database instead, and
        # inputs are staged in a private temporary folder per job.
        self.data_dir = data_dir
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock or SystemClock()
        self.warm = warm
        #: Under Slurm: the job that holds this worker, and when its time limit ends
        #: (no job is claimed in the last :data:`END_MARGIN_S` seconds).
        self.slurm_job_id = slurm_job_id
        self.ends_at = ends_at
        self.stop = asyncio.Event()  # set: hand the running job back, serve no more
        self._child: _Child | None = None
        self._registered = False
        self._last_seen = 0.0

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
        with _stop_signals_ignored():  # inherited through exec: the child ignores them
            proc.start()  # from its first instruction (see _child_main)
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

    # ------------------------------------------------------------------ the fleet row

    async def register(self) -> None:
        who = fleet.Identity(
            name=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            slurm_job_id=self.slurm_job_id,
            ends_at=self.ends_at,
        )
        async with self.db.transaction() as session:
            await fleet.register(session, who, self.now())
        self._registered = True
        self._last_seen = time.monotonic()

    async def _fleet(self, **values: Any) -> None:
        if not self._registered:
            return
        try:
            async with self.db.transaction() as session:
                await fleet.beat(session, self.name, self.now(), **values)
            self._last_seen = time.monotonic()
        except Exception:  # the row is a report; a job never fails because of it
            log.warning("GPU worker %s: could not update its row", self.name, exc_info=True)

    async def _idle_beat(self) -> None:
        if self._registered and time.monotonic() - self._last_seen >= IDLE_BEAT_S:
            await self._fleet()

    def time_left(self) -> float | None:
        """Seconds until this worker's allocation ends (None: no limit)."""
        if self.ends_at is None:
            return None
        return (self.ends_at - self.now()).total_seconds()

    # ---------------------------------------------------------------- claiming

    async def run_once(self) -> int | None:
        """Recover dead workers' jobs, claim the next job (round-robin) and run it; its
        id, or None if none may start."""
        left = self.time_left()
        if left is not None and left < END_MARGIN_S:
            return None  # the allocation is about to end: leave the job to another
        async with self.db.transaction() as session:
            jobs = Jobs(session)
            await jobs.recover(self.now())
            job = await jobs.claim_next(self.name, self.now())
            if job is None:
                return None
            job_id, demo, params = job.id, job.demo, dict(job.params)
        await self._run_claimed(job_id, demo, params)
        return job_id

    async def run_job(self, job_id: int) -> str:
        """Run one given job if it may start now: ``ran``, or ``wait``/``gone``."""
        async with self.db.transaction() as session:
            job = await Jobs(session).claim(job_id, self.name, self.now())
            if job is None:
                current = await Jobs(session).get(job_id, lock=False)
                return "wait" if current and current.state == JobState.QUEUED else "gone"
            demo, params = job.demo, dict(job.params)
        await self._run_claimed(job_id, demo, params)
        return "ran"

    async def _run_claimed(self, job_id: int, demo: str, params: dict[str, Any]) -> None:
        await self._fleet(state=fleet.BUSY, job_id=job_id)
        try:
            await self.execute(job_id, demo, params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("GPU job %s could not be run", job_id)
            self._discard_child()
            await self._end(job_id, ("fail", f"The job could not be run: {exc}", None))
        finally:
            await asyncio.shield(
                self._fleet(state=fleet.STOPPING if self.stop.is_set() else fleet.IDLE, ran=True)
            )

    # ---------------------------------------------------------------- running

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
        except asyncio.CancelledError:  # the worker's task is being cancelled
            self._discard_child()
            await asyncio.shield(self._hand_back(job_id))
            raise
        except (EOFError, OSError):  # the child died mid-message
            outcome = ("fail", "The demo stopped without a result.", None)
            if self.stop.is_set():  # ... because this worker is being stopped
                outcome = ("released", None, None)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        kind = outcome[0]
        if kind not in ("ok", "error") or not self.warm:
            self._discard_child()  # a child that was killed, failed or is not kept warm
        elif self._child is not None:
            self._child.jobs += 1
        await self._end(job_id, outcome)

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
            if self.stop.is_set():
                return ("released", None, None)
            msg = await self._recv(child.conn, min(wait, STOP_CHECK_S))
            if msg is not None:
                if msg[0] == "ready":
                    child.device = msg[1]
                    child.memory_mib = int(msg[2]) if len(msg) > 2 else 0
                    continue
                if msg[0] != "progress":
                    return (msg[0], msg[1], msg[2] if len(msg) > 2 else None)
                progress = {"progress": msg[1], "note": msg[2][:200]}
            now = loop.time()
            if now - last_write >= (PROGRESS_EVERY_S if progress else HEARTBEAT_S):
                state = await self._beat(job_id, **progress)
                progress, last_write = {}, now
                if state == JobState.CANCELLED:
                    return ("cancelled", None, None)
                if state != JobState.RUNNING:
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
                if self.stop.is_set():
                    return ("released", None, None)
                return ("fail", "The demo stopped without a result.", None)

    async def _beat(self, job_id: int, **values: Any) -> JobState | None:
        """Beat the job's heartbeat (and write progress); its state, or None when it is
        gone or runs for another worker (ours was presumed dead and it was re-run)."""
        async with self.db.transaction() as session:
            state = await Jobs(session).beat(job_id, self.name, self.now(), **values)
            await fleet.beat(session, self.name, self.now())
        self._last_seen = time.monotonic()
        return state

    async def _hand_back(self, job_id: int) -> None:
        note = "its worker stopped (its time was up, or it was cancelled); queued again"
        async with self.db.transaction() as session:
            if await Jobs(session).requeue(job_id, self.name, self.now(), note=note):
                log.info("GPU worker %s: job %s handed back to the queue", self.name, job_id)

    async def _end(self, job_id: int, outcome: Outcome) -> None:
        """Write the outcome: one transition, in one transaction."""
        kind, first, images = outcome
        if kind in ("lost", "cancelled"):
            return  # the row already says what happened (cancelled, or re-run elsewhere)
        if kind == "released":
            await self._hand_back(job_id)
            return
        async with self.db.transaction() as session:
            jobs = Jobs(session)
            if kind == "ok":
                files = [StoredFile(safe_name(n), d, "image/png") for n, d in images or []]
                await jobs.finish(job_id, self.name, self.now(), text=first, images=files)
            else:
                await jobs.fail(job_id, self.name, self.now(), error=str(first))

    # ------------------------------------------------------------------ serving

    async def serve(self, poll_s: float = 0.5, parent_pid: int | None = None) -> None:
        """Claim and run jobs until :attr:`stop` is set, woken by the database's own
        signal (:func:`gpu_queue.engines.open_wake`)."""
        log.info("GPU worker %s serving", self.name)
        self.warm_up()
        await self.register()
        wake = await engines.open_wake(self.db)
        watch = _watch_parent(parent_pid, self.stop)
        try:
            while not self.stop.is_set():
                try:
                    ran = await self.run_once()
                except Exception:
                    log.exception("GPU worker: a job failed unexpectedly")
                    ran = None
                if ran is None:
                    await self._idle_beat()
                    left = self.time_left()
                    if left is not None and left < END_MARGIN_S:
                        log.info("GPU worker %s: its time is nearly up; leaving", self.name)
                        break
                    await wake.wait(self.stop, poll_s)
        finally:
            watch.cancel()
            await wake.close()
            self.close()
            await asyncio.shield(self._fleet(state=fleet.STOPPED, note="stopped"))

    async def serve_procrastinate(self, database_url: str, parent_pid: int | None = None) -> None:
        """The former Postgres engine's entry point: the same as :meth:`serve`."""
        del database_url
        await self.serve(parent_pid=parent_pid)

    async def maintain(self, app: Any = None) -> None:
        """Recover dead workers' jobs (queued again once, or expired)."""
        del app
        async with self.db.transaction() as session:
            await Jobs(session).recover(self.now())


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
    """Entry point of the embedded worker process, of `coursebot worker` and of a Slurm
    worker: serve jobs until SIGTERM/SIGINT (or Slurm's warning, SIGUSR1), handing a
    running job back to the queue."""
    logging.basicConfig(
        level=os.environ.get("COURSEBOT_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        # Next to a terminal shell the log goes to its file, not between the replies.
        filename=os.environ.get("COURSEBOT_LOG_FILE") or None,
    )
    suffix = select_gpu(gpu)
    engines.configure(engine)

    async def main() -> None:
        from gpu_queue import slurm

        db = Database(database_url)
        name = f"{socket.gethostname()}:{os.getpid()}" + (f":{suffix}" if suffix else "")
        allocation = slurm.this_allocation()
        if allocation is not None:
            name = f"slurm-{allocation.job_id}:{name}"
        worker = Worker(
            db,
            Path(data_dir),
            name=name,
            slurm_job_id=allocation.job_id if allocation else None,
            ends_at=allocation.ends_at if allocation else None,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            loop.add_signal_handler(sig, worker.stop.set)
        try:
            engines.engine_for(db.backend, strict=True)
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
    signal.signal(signal.SIGUSR1, forward)
    for p in procs:
        p.join()
    return max((p.exitcode or 0) for p in procs)
