"""The GPU worker for real: on Postgres woken by NOTIFY sent at the submission's commit
(never before it, never for a rolled-back one), a job run once however often a worker
is told; the warm child (kept across jobs, replaced after a kill), a real ``kill -9`` of
a worker process and the recovery, a worker that stops handing its job back, and the
student's message when the GPU runs out of memory."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from commands.gpu import due_gpu_posts
from commands.replies import render_text
from db.models import Course, GpuJob, GpuJobFile, GpuWorker, Person
from gpu_queue import engines, procrastinate_app, queue
from gpu_queue.jobs import Jobs
from gpu_queue.worker import OOM_MESSAGE, Worker, run_demo, worker_main

CNN_IMAGES = [
    "cnn-pipeline.png",
    "cnn-filters.png",
    "cnn-conv1.png",
    "cnn-pool.png",
    "cnn-conv2.png",
    "cnn-fc-softmax.png",
]


async def ids_and_course(app: Any) -> tuple[dict[str, int], int]:
    async with app.db.session() as s:
        people = {p.name.split()[0].lower(): p.id for p in await s.scalars(select(Person))}
        course = await s.scalar(select(Course.id))
    assert course is not None
    return people, course


async def submit(app: Any, person: int, course: int, demo: str = "conv2d", **kw: Any) -> int:
    now = kw.pop("now", datetime.now(UTC))
    async with app.db.transaction() as s:
        job = await queue.submit(
            s, course_id=course, person_id=person, demo=demo, params=kw.get("params", {}),
            channel="general", now=now, queued_cap=kw.get("cap", queue.QUEUED_CAP),
        )  # fmt: skip
        return job.id


async def row(app: Any, job_id: int) -> GpuJob:
    async with app.db.session() as s:
        job = await s.get(GpuJob, job_id)
        assert job is not None
        return job


async def until(app: Any, job_id: int, states: tuple[str, ...], limit: float = 60) -> GpuJob:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        job = await row(app, job_id)
        if job.state in states:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} is {job.state}, not {states}")


torch_needed = pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None,
    reason="torch is installed by the `demos` extra (make test)",
)


# ------------------------------------------------------------------ waking on Postgres


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_submission_wakes_listening_workers_at_commit_only(app) -> None:  # type: ignore[no-untyped-def]
    people, course = await ids_and_course(app)
    wake = await engines.open_wake(app.db)
    assert isinstance(wake, engines.NotifyWake)
    try:
        with pytest.raises(RuntimeError):
            async with app.db.transaction() as s:
                await queue.submit(
                    s, course_id=course, person_id=people["alice"], demo="conv2d", params={},
                    channel="general", now=datetime.now(UTC),
                )  # fmt: skip
                await asyncio.sleep(0.2)
                assert not wake.event.is_set()  # not before the commit
                raise RuntimeError("the command failed after submitting")
        await asyncio.sleep(0.2)
        assert not wake.event.is_set()  # a rolled-back submission wakes nobody
        async with app.db.session() as s:
            assert await s.scalar(select(GpuJob.id)) is None
        stop = asyncio.Event()

        async def later() -> float:
            await asyncio.sleep(0.2)
            await submit(app, people["alice"], course)
            return time.perf_counter()

        committed = asyncio.create_task(later())
        await wake.wait(stop, 5.0)  # what an idle worker does: woken at the commit
        woke = time.perf_counter()
        assert woke - await committed < 0.15  # not the 2 s fallback
    finally:
        await wake.close()


@torch_needed
@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_listening_worker_runs_a_committed_job_once(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    people, course = await ids_and_course(app)
    worker = Worker(app.db, tmp_path, name="gpu-host-1:gpu0")
    serving = asyncio.create_task(worker.serve())
    try:
        await asyncio.sleep(0.5)  # listening
        job_id = await submit(app, people["alice"], course)
        job = await until(app, job_id, ("succeeded", "failed"))
    finally:
        worker.stop.set()
        await asyncio.wait_for(serving, 30)
    assert job.state == "succeeded" and job.attempts == 1 and job.worker == "gpu-host-1:gpu0"
    assert (job.started_at - job.created_at).total_seconds() < 1.0  # type: ignore[operator]
    assert "18  56  80  88" in (job.result_text or "")
    assert await worker.run_job(job_id) == "gone"  # told again: nothing
    async with app.db.transaction() as s:
        posts = await due_gpu_posts(s, datetime.now(UTC))
    results = [o for _, o in posts if o.edit_key is None]
    assert len(results) == 1 and "finished" in render_text(results[0].reply)
    async with app.db.session() as s:
        [row] = await s.scalars(select(GpuWorker))
        assert (row.name, row.state, row.jobs_run) == ("gpu-host-1:gpu0", "stopped", 1)


@torch_needed
@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_gpu_host_worker_reads_the_input_and_returns_images_through_the_database(
    app, settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A worker on "another host" (its own data folder, nothing shared): the attached
    image reaches it from the database, the result images go back there, and the bot
    posts them once."""
    import io

    from PIL import Image

    people, course = await ids_and_course(app)
    buf = io.BytesIO()
    Image.new("L", (64, 48), 200).save(buf, format="PNG")
    async with app.db.transaction() as s:
        job = await queue.submit(
            s, course_id=course, person_id=people["alice"], demo="cnn", params={"classes": 3},
            channel="general", now=datetime.now(UTC),
            inputs={"image": queue.JobInput("my photo.png", buf.getvalue(), "image/png")},
        )  # fmt: skip
        job_id = job.id
        [ref] = [v for k, v in job.params.items() if k == "image"]
    host = tmp_path / "gpu-host-2"
    worker = Worker(app.db, host, name="gpu-host-2:gpu0")
    serving = asyncio.create_task(worker.serve())
    try:
        done = await until(app, job_id, ("succeeded", "failed"))
    finally:
        worker.stop.set()
        await asyncio.wait_for(serving, 30)
    assert done.state == "succeeded", done.error
    assert done.params["image"] == ref and queue.ref_id(ref) is not None
    assert not host.exists() and not (settings.data_dir / "gpu").exists()
    async with app.db.session() as s:
        files = [(f.role, f.name) for f in await s.scalars(select(GpuJobFile).order_by("id"))]
    assert files[0] == ("input", "my_photo.png") and len(files) == 1 + len(CNN_IMAGES)
    async with app.db.transaction() as s:
        posts = await due_gpu_posts(s, datetime.now(UTC))
    [result] = [o.reply for _, o in posts if o.edit_key is None]
    assert [f.name for f in result.files] == [n for r, n in files if r == "output"]
    assert all(f.description for f in result.files)  # alt text
    async with app.db.transaction() as s:
        assert [o for _, o in await due_gpu_posts(s, datetime.now(UTC)) if not o.edit_key] == []


async def test_a_job_waits_while_its_owner_has_one_running(app) -> None:  # type: ignore[no-untyped-def]
    people, course = await ids_and_course(app)
    first = await submit(app, people["alice"], course)
    second = await submit(app, people["alice"], course)
    async with app.db.transaction() as s:  # alice's first runs elsewhere ...
        assert await Jobs(s).claim(first, "other-host", datetime.now(UTC)) is not None
    worker = Worker(app.db, Path("."), name="w")
    assert await worker.run_job(second) == "wait"  # ... so her second waits its turn
    assert await worker.run_once() is None
    assert (await row(app, second)).state == "queued"


# --------------------------------------------------------------------- the warm child


@torch_needed
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_child_stays_warm_and_is_replaced_after_a_kill(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    people, course = await ids_and_course(app)
    worker = Worker(app.db, tmp_path, name="w")
    try:
        took, pids = [], []
        for _ in range(2):  # a 1×1 grid: the time is the child's start, not the drawing
            job_id = await submit(app, people["alice"], course, params={"grid": "1", "kernel": "1"})
            t = time.perf_counter()
            assert await worker.run_once() == job_id
            took.append(time.perf_counter() - t)
            pids.append(worker.child_pid)
            assert (await row(app, job_id)).state == "succeeded"
        assert pids[0] == pids[1] is not None  # one child served both jobs
        assert took[1] < took[0] / 3  # the second found torch imported

        # A worker that is stopped mid-job kills its child and gives the job back
        # (the attempt is not counted); the next job gets a fresh child (a cancelled
        # or timed-out job's child goes the same way: test_gpu_queue.py).
        job_id = await submit(app, people["alice"], course, demo="cnn")
        running = asyncio.create_task(worker.run_once())
        await until(app, job_id, ("running",))
        worker.stop.set()
        await asyncio.wait_for(running, 30)
        job = await row(app, job_id)
        assert (job.state, job.attempts, job.worker) == ("queued", 0, None)
        assert worker.child_pid is None and not _alive(pids[0])  # type: ignore[arg-type]
        worker.warm_up()  # what serving does next: a fresh child
        assert worker.child_pid not in (None, pids[0])
    finally:
        worker.close()


def test_out_of_memory_tells_the_student_what_to_do() -> None:
    torch = pytest.importorskip("torch", reason="torch is installed by the `demos` extra")
    from gpu_queue.demos import Demo, DemoResult, catalogue

    def greedy(params: Any, device: str, progress: Any) -> DemoResult:
        progress(0.5, "allocating")
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    cnn = catalogue()["cnn"]
    demo = Demo("cnn", cnn.description, cnn.params, greedy, cnn.timeout_s)
    seen: list[tuple[float, str]] = []
    kind, message, images = run_demo(demo, {"classes": 3}, "cpu", lambda f, w: seen.append((f, w)))
    assert (kind, images, seen) == ("fail", None, [(0.5, "allocating")])  # the child is replaced
    assert message == OOM_MESSAGE.format(demo="cnn")
    assert "ran out of memory running `cnn`" in message and "smaller parameters" in message


# ------------------------------------------------------------------ a real kill -9


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@torch_needed
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("age", ["young", "old"])
async def test_kill_9_of_a_worker_process_mid_job(app, tmp_path, age) -> None:  # type: ignore[no-untyped-def]
    """A real worker process (the embedded worker's entry point: rows on SQLite,
    LISTEN on Postgres) is killed with SIGKILL while its job runs; its child dies
    with it; the job runs again once and is posted once, or, if old, expires and its
    owner is told."""
    people, course = await ids_and_course(app)
    created = datetime.now(UTC) - (timedelta(hours=1) if age == "old" else timedelta(0))
    job_id = await submit(app, people["alice"], course, demo="cnn", now=created)
    second = Worker(app.db, tmp_path, name="second-worker")
    if age == "young":
        second.warm_up()  # its child imports torch meanwhile
    proc = mp.get_context("spawn").Process(
        target=worker_main, args=(app.db.url, str(tmp_path), None, "auto"), daemon=False
    )
    proc.start()
    try:
        job = await until(app, job_id, ("running",))
        children = []
        for _ in range(100):  # the warm child was spawned at start
            children = _children(proc.pid)  # type: ignore[arg-type]
            if children:
                break
            await asyncio.sleep(0.05)
        assert children, "the worker has no child process"
        os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
        proc.join(5)
    finally:
        if proc.is_alive():
            proc.kill()
    for _ in range(60):  # the child does not outlive its worker (PR_SET_PDEATHSIG)
        if not any(_alive(c) for c in children):
            break
        await asyncio.sleep(0.05)
    assert not any(_alive(c) for c in children)
    assert (await row(app, job_id)).state == "running"  # nobody knows yet

    later = job.heartbeat_at + queue.STALE + timedelta(seconds=1)  # type: ignore[operator]
    async with app.db.transaction() as s:
        posts = await due_gpu_posts(s, later)  # the bot's tick
    job = await row(app, job_id)
    if age == "old":
        second.close()
        assert job.state == "expired"
        [told] = [o for _, o in posts if o.edit_key is None]
        assert told.channel == "general"
        assert "was not run again" in render_text(told.reply)
        return
    assert (job.state, job.attempts) == ("queued", 1)
    assert [o for _, o in posts if o.edit_key is None] == []  # a requeue is no announcement
    worker = second
    serving = asyncio.create_task(worker.serve())
    try:
        job = await until(app, job_id, ("succeeded", "failed"))
    finally:
        worker.stop.set()
        await asyncio.wait_for(serving, 30)
    assert (job.state, job.attempts, job.worker) == ("succeeded", 2, "second-worker")
    assert len(job.result_files) == len(CNN_IMAGES)
    async with app.db.transaction() as s:
        posts = await due_gpu_posts(s, datetime.now(UTC))
    assert len([o for _, o in posts if o.edit_key is None]) == 1  # one result
    async with app.db.transaction() as s:
        assert await due_gpu_posts(s, datetime.now(UTC) + timedelta(minutes=5)) == []


def test_procrastinate_on_sqlite_is_refused_clearly(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from bot.cli import app as cli

    monkeypatch.setenv("COURSEBOT_GPU_QUEUE", "procrastinate")
    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    out = CliRunner().invoke(cli, ["worker", "--database-url", url])
    assert out.exit_code == 1
    assert "COURSEBOT_GPU_QUEUE=procrastinate needs Postgres" in out.output
    assert procrastinate_app.engine_for("sqlite", "auto") == "db"
    assert procrastinate_app.engine_for("postgresql", "auto") == "notify"
    assert procrastinate_app.engine_for("postgresql", "procrastinate") == "notify"  # old name
    assert procrastinate_app.engine_for("postgresql", "db") == "db"
