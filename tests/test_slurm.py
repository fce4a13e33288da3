"""GPU workers on a real single-node Slurm (.ci/setup-slurm.sh starts one; without it
these tests skip and say why): a worker submitted with sbatch runs conv2d from the
queue; Slurm's warning before the time limit (USR1) and scancel (TERM) each make a
worker hand its running job back, which then runs once elsewhere; a refused sbatch
(no such partition) is one clear message and submits nothing."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from commands.context import Caller, Request, Where
from commands.gpu import due_gpu_posts
from db.models import GpuJob, GpuWorker, Platform
from gpu_queue import slurm
from gpu_queue.worker import Worker

WHY_NOT = slurm.available()
needs_slurm = pytest.mark.skipif(
    WHY_NOT is not None, reason=f"Slurm is not available ({WHY_NOT}); .ci/setup-slurm.sh"
)
needs_torch = pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None,
    reason="torch is installed by the `demos` extra (make test)",
)
ROOT = Path(__file__).resolve().parent.parent


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


def test_the_batch_script_and_time_limits() -> None:
    script = slurm.batch_script(
        slurm.WorkerRequest(partition="gpu", gpus=2, time="1-02:00:00", account="cs", qos="hi")
    )
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --time=1-02:00:00",
        "#SBATCH --account=cs",
        "#SBATCH --qos=hi",
        "#SBATCH --signal=B:USR1@60",
        'worker --gpu "${CUDA_VISIBLE_DEVICES:-cpu}"',
    ):
        assert line in script
    assert "DATABASE_URL" not in script  # settings travel in the environment, not the file
    assert slurm.time_limit_seconds("30") == 1800
    assert slurm.time_limit_seconds("4:00:00") == 4 * 3600
    assert slurm.time_limit_seconds("1-00:30") == 86400 + 1800
    with pytest.raises(slurm.SlurmError, match="longer than 60 s"):
        slurm.batch_script(slurm.WorkerRequest(partition="p", gpus=0, time="0:30"))
    with pytest.raises(slurm.SlurmError, match="not a Slurm time limit"):
        slurm.time_limit_seconds("soon")
    assert slurm.this_allocation({}) is None


@needs_slurm
def test_sbatch_refused_is_one_clear_message(tmp_path: Path) -> None:
    from bot.cli import app as cli

    before = {j.job_id for j in slurm.jobs()}
    out = CliRunner().invoke(
        cli,
        ["slurm", "workers", "--partition", "nope", "--gpus", "0", "--time", "10",
         "--database-url", f"sqlite+aiosqlite:///{tmp_path}/x.db"],
        env={"COURSEBOT_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert out.exit_code == 1
    assert "Slurm refused the worker job: invalid partition specified: nope" in out.output
    assert {j.job_id for j in slurm.jobs()} == before  # nothing submitted


async def _until(fn: Any, limit: float = 90.0, what: str = "") -> Any:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        got = await fn()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _job(app: Any, job_id: int) -> GpuJob:
    async with app.db.session() as s:
        job = await s.get(GpuJob, job_id)
        assert job is not None
        return job


@needs_slurm
@needs_torch
@pytest.mark.parametrize("backend", ["postgres"])
async def test_slurm_workers_serve_the_queue_and_hand_jobs_back(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"DATABASE_URL": app.db.url, "COURSEBOT_DATA_DIR": str(tmp_path / "data")}
    request = slurm.WorkerRequest(
        partition="debug", gpus=0, time="10", log_dir=tmp_path / "logs", workdir=ROOT
    )
    [first] = await asyncio.to_thread(slurm.submit, request, env)
    submitted = time.monotonic()
    try:
        # 1. A worker submitted through Slurm runs conv2d from the queue.
        r = await app.core.handle_text(req("alice"), "gpu run conv2d")
        assert not r.is_error, r.text

        async def done() -> GpuJob | None:
            job = await _job(app, 1)
            return job if job.state in ("succeeded", "failed") else None

        job = await _until(done, what="the conv2d job")
        assert job.state == "succeeded", job.error
        assert job.worker is not None and job.worker.startswith(f"slurm-{first}:")
        assert "18  56  80  88" in (job.result_text or "")
        async with app.db.session() as s:
            [row] = await s.scalars(select(GpuWorker))
        assert row.slurm_job_id == first and row.ends_at is not None
        left = (row.ends_at - datetime.now(UTC)).total_seconds()
        assert 8 * 60 < left <= 10 * 60 + 5  # the allocation's end, from Slurm
        from bot.cli import app as cli

        out = await asyncio.to_thread(
            CliRunner().invoke, cli, ["slurm", "status", "--database-url", app.db.url]
        )
        assert out.exit_code == 0 and first in out.output and "RUNNING" in out.output
        assert f"slurm-{first}:" in out.output
        print(f"slurm: submit → conv2d result {time.monotonic() - submitted:.1f} s")

        # 2. Slurm's warning before the time limit (USR1 to the batch shell): the worker
        #    hands its running job back and leaves.
        handed = await _run_and_signal(app, "bob", first, ["--signal=USR1", "--batch"])
        assert handed.note.startswith("its worker stopped")

        # 3. scancel (TERM) of a second worker mid-job: the same.
        [second] = await asyncio.to_thread(slurm.submit, request, env)
        again = await _run_and_signal(app, "carol", second, [], wait_for_worker=True)
    finally:
        await asyncio.to_thread(slurm.cancel, [j.job_id for j in slurm.jobs()])

    # Each handed-back job runs once more, on another worker (the second Slurm worker
    # may already have taken the first; a local one takes what is left), and is
    # announced once.
    worker = Worker(app.db, tmp_path, name="local")
    try:
        while await worker.run_once() is not None:
            pass
    finally:
        worker.close()
    for job_id, gave_back in ((handed.id, first), (again.id, second)):
        job = await _job(app, job_id)
        assert (job.state, job.attempts) == ("succeeded", 1), (job_id, job.state, job.error)
        assert job.worker is not None and not job.worker.startswith(f"slurm-{gave_back}:")
    async with app.db.transaction() as s:
        posts = await due_gpu_posts(s, datetime.now(UTC) + timedelta(seconds=1))
    finished = [o for _, o in posts if o.edit_key is None]
    assert len(finished) == 3  # conv2d and the two handed-back jobs: once each


async def _run_and_signal(
    app: Any, who: str, slurm_id: str, how: list[str], *, wait_for_worker: bool = False
) -> GpuJob:
    """Queue a cnn job, wait until Slurm job ``slurm_id``'s worker runs it, signal the
    Slurm job (``scancel`` + ``how``), and return the job once it is queued again."""
    if wait_for_worker:  # a fresh worker: let it register (and import torch) first

        async def registered() -> bool:
            async with app.db.session() as s:
                row = await s.scalar(select(GpuWorker).where(GpuWorker.slurm_job_id == slurm_id))
                return row is not None and row.state == "idle"

        await _until(registered, what=f"Slurm worker {slurm_id}")
    r = await app.core.handle_text(req(who), "gpu run cnn")
    assert not r.is_error, r.text
    job_id = int(r.text.split("#")[1].split()[0])

    async def running() -> GpuJob | None:
        job = await _job(app, job_id)
        return job if job.state == "running" else None

    job = await _until(running, what=f"job {job_id} to start")
    assert job.worker is not None and job.worker.startswith(f"slurm-{slurm_id}:")
    await asyncio.to_thread(subprocess.run, ["scancel", *how, slurm_id], check=True, timeout=30)

    async def back() -> GpuJob | None:
        job = await _job(app, job_id)
        return job if job.state != "running" else None

    job = await _until(back, limit=30, what=f"job {job_id} to be handed back")
    assert (job.state, job.attempts, job.worker) == ("queued", 0, None)

    async def left() -> bool:
        return slurm_id not in {j.job_id for j in slurm.jobs()}

    await _until(left, limit=30, what=f"Slurm job {slurm_id} to end")
    async with app.db.session() as s:
        row = await s.scalar(select(GpuWorker).where(GpuWorker.slurm_job_id == slurm_id))
    assert row is not None and row.state == "stopped"
    return job


async def test_a_worker_near_the_end_of_its_allocation_claims_nothing(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = await app.core.handle_text(req("alice"), "gpu run conv2d")
    assert not r.is_error
    now = app.clock.now()
    late = Worker(
        app.db, tmp_path, name="late", clock=app.clock, ends_at=now + timedelta(seconds=30)
    )
    assert await late.run_once() is None  # 30 s left: the job is left to another worker
    assert (await _job(app, 1)).state == "queued"
    assert slurm.this_allocation({"SLURM_JOB_ID": "42", "SLURM_JOB_END_TIME": "1700000000"}) == (
        slurm.Allocation("42", datetime.fromtimestamp(1700000000, UTC))
    )
