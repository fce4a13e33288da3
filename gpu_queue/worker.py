"""The GPU worker: claims jobs from the database and runs each demo in a child process
(spawned, never forked, so CUDA state is never copied), with a hard wall-clock timeout
per demo. Cancelling a running job kills its child. The worker beats the job's
heartbeat while it runs; a worker killed with ``kill -9`` leaves a stale heartbeat,
which :func:`gpu_queue.queue.recover` turns into a retry (young jobs, once) or an
expiry. Torch is imported only in the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from commands.clock import Clock, SystemClock
from db.models import GpuJob
from db.session import Database
from gpu_queue.queue import CANCELLED, FAILED, SUCCEEDED, claim, recover

log = logging.getLogger("coursebot.gpu")
HEARTBEAT_S = 2.0


def _child(demo_name: str, params: dict[str, Any], conn: Any) -> None:
    """Runs in the spawned child: the demo, reporting progress through the pipe."""
    from gpu_queue.demos import DemoError, catalogue, pick_device

    demo = catalogue()[demo_name]
    try:
        device = pick_device(os.environ.get("COURSEBOT_GPU_DEVICE", "auto"))
        result = demo.run(
            demo.params.model_validate(params), device, lambda f, w: conn.send(("progress", f, w))
        )
        conn.send(("ok", result.text, result.images))
    except DemoError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:  # the student reads this; the worker logs it too
        if type(exc).__name__ == "OutOfMemoryError":
            conn.send(("error", "The GPU ran out of memory; try a smaller input or fewer classes."))
        else:
            conn.send(("error", f"The demo failed: {type(exc).__name__}: {exc}"))


class Worker:
    def __init__(
        self,
        db: Database,
        data_dir: Path,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        timeouts: dict[str, float] | None = None,
    ) -> None:
        self.db = db
        self.timeouts = timeouts or {}  # per-demo overrides of the catalogue's limits
        self.data_dir = data_dir
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock or SystemClock()

    def now(self) -> datetime:
        return self.clock.now()

    async def run_once(self) -> int | None:
        """Claim and run one job; its id, or None if the queue is empty."""
        async with self.db.transaction() as session:
            await recover(session, self.now())
            job = await claim(session, self.name, self.now())
            if job is None:
                return None
            job_id, demo, params = job.id, job.demo, dict(job.params)
        try:
            await self.execute(job_id, demo, params)
        except Exception as exc:
            log.exception("GPU job %s could not be run", job_id)
            await self._finish(job_id, ("error", f"The job could not be run: {exc}", None))
        return job_id

    async def execute(self, job_id: int, demo_name: str, params: dict[str, Any]) -> None:
        from gpu_queue.demos import catalogue

        timeout = self.timeouts.get(demo_name, catalogue()[demo_name].timeout_s)
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(demo_name, params, child), daemon=True)
        proc.start()
        child.close()
        started = asyncio.get_running_loop().time()
        outcome: tuple[str, Any, Any] | None = None
        try:
            while outcome is None:
                ready = await asyncio.to_thread(parent.poll, HEARTBEAT_S)
                while ready:
                    msg = parent.recv()
                    if msg[0] == "progress":
                        await self._update(job_id, progress=float(msg[1]), note=str(msg[2]))
                    else:
                        outcome = (msg[0], msg[1], msg[2] if len(msg) > 2 else None)
                        break
                    ready = parent.poll(0)
                if outcome is not None:
                    break
                state = await self._update(job_id)
                if state == CANCELLED:
                    outcome = ("cancelled", None, None)
                elif asyncio.get_running_loop().time() - started > timeout:
                    outcome = (
                        "error",
                        f"The demo took longer than its limit of {timeout:g} s and was stopped.",
                        None,
                    )
                elif not proc.is_alive() and not parent.poll(0):
                    outcome = ("error", "The demo stopped without a result.", None)
        except EOFError:
            outcome = ("error", "The demo stopped without a result.", None)
        finally:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            parent.close()
        await self._finish(job_id, outcome)

    async def _update(self, job_id: int, **values: Any) -> str:
        async with self.db.transaction() as session:
            job = await session.get(GpuJob, job_id)
            assert job is not None
            if job.state == "running":
                job.heartbeat_at = self.now()
                for k, v in values.items():
                    setattr(job, k, v)
            return job.state

    async def _finish(self, job_id: int, outcome: tuple[str, Any, Any]) -> None:
        kind, first, images = outcome
        async with self.db.transaction() as session:
            job = await session.get(GpuJob, job_id)
            assert job is not None
            if job.state != "running":
                return  # cancelled while finishing: keep the cancellation
            job.finished_at = self.now()
            if kind == "ok":
                folder = self.data_dir / "gpu" / str(job_id)
                folder.mkdir(parents=True, exist_ok=True)
                paths = []
                for name, data in images or []:
                    path = folder / Path(name).name
                    path.write_bytes(data)
                    paths.append(str(path))
                job.state, job.result_text, job.result_files, job.progress = (
                    SUCCEEDED,
                    first,
                    paths,
                    1.0,
                )
            elif kind == "cancelled":
                job.state = CANCELLED
            else:
                job.state, job.error = FAILED, first

    async def serve(
        self, stop: asyncio.Event, poll_s: float = 0.5, parent_pid: int | None = None
    ) -> None:
        log.info("GPU worker %s serving", self.name)
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.info("GPU worker %s: the bot is gone; stopping", self.name)
                return
            try:
                ran = await self.run_once()
            except Exception:
                log.exception("GPU worker: a job failed unexpectedly")
                ran = None
            if ran is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_s)


def worker_main(database_url: str, data_dir: str, parent_pid: int | None = None) -> None:
    """Entry point of the embedded worker process (and of `coursebot worker`)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        db = Database(database_url)
        try:
            await Worker(db, Path(data_dir)).serve(asyncio.Event(), parent_pid=parent_pid)
        finally:
            await db.dispose()

    asyncio.run(main())


def start_embedded_worker(database_url: str, data_dir: Path) -> mp.process.BaseProcess:
    """The worker in its own spawned process, next to the bot (never on its event loop)."""
    # Not a daemon (a daemon may not start the demos' child processes); it stops when the
    # bot exits (atexit in the CLI) or, if the bot dies, when it sees its parent gone.
    proc = mp.get_context("spawn").Process(
        target=worker_main, args=(database_url, str(data_dir), os.getpid()), name="coursebot-gpu"
    )
    proc.start()
    return proc
