"""The GPU queue on SQLite and Postgres: fair order, caps, a real worker process per job,
cancellation, recovery after a dead worker, results posted once, and attachments (a
path or, as Discord gives them, a URL) that travel to the worker through the database."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from commands.context import Attachment, Caller, Request, Where
from commands.gpu import due_gpu_posts
from commands.replies import render_text
from db.models import Course, GpuJob, GpuJobFile, Person, Platform
from gpu_queue import queue
from gpu_queue.jobs import Jobs
from gpu_queue.worker import Worker
from tests.http_fakes import file_server

NOW = datetime(2023, 9, 1, 15, 0, tzinfo=UTC)


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


async def people(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        return {p.name.split()[0].lower(): p.id for p in await s.scalars(select(Person))}


async def test_round_robin_and_caps(app) -> None:  # type: ignore[no-untyped-def]
    ids = await people(app)
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        for i in range(10):
            await queue.submit(
                s, course_id=course.id, person_id=ids["alice"], demo="conv2d", params={},
                channel="general", now=NOW + timedelta(seconds=i), queued_cap=10,
            )  # fmt: skip
        b = await queue.submit(
            s, course_id=course.id, person_id=ids["bob"], demo="conv2d", params={},
            channel="general", now=NOW + timedelta(minutes=1),
        )  # fmt: skip
        order = await queue.queue_order(s)
        assert [j.person_id for j in order[:3]] == [ids["alice"], ids["bob"], ids["alice"]]
        job = await Jobs(s).claim_next("w1", NOW + timedelta(minutes=2))
        assert job is not None and job.person_id == ids["alice"]
        order = await queue.queue_order(s)
        assert order[0].id == b.id  # A has a job running: B's runs next
        # ... and still when A's has finished: B waited longer
        assert await Jobs(s).finish(job.id, "w1", NOW + timedelta(minutes=3), text="done")
        assert [j.id for j in (await queue.queue_order(s))[:1]] == [b.id]
    r = await app.core.handle_text(req("bob"), "gpu run conv2d")
    assert not r.is_error
    r = await app.core.handle_text(req("bob"), "gpu run conv2d")
    assert r.is_error and "already have 2 jobs waiting" in r.text
    r = await app.core.handle_text(req("carol"), "gpu run nope")
    assert r.is_error and "There is no demo `nope`" in r.text
    r = await app.core.handle_text(req("carol"), "gpu run cnn classes=99")
    assert r.is_error and "`classes`" in r.text
    r = await app.core.handle_text(req("carol"), "gpu run cnn oops")
    assert r.is_error and "name=value" in r.text


async def test_a_job_runs_in_a_worker_process_and_its_result_is_posted_once(
    app, transcript, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch", reason="torch is installed by the `demos` extra (make test)")
    await transcript.say(":as alice")
    out = await transcript.say("gpu demos")
    assert "conv2d" in out and "cnn" in out
    out = await transcript.say("gpu run conv2d")
    assert "is queued at position 1" in out and "GPU job #1 (conv2d): queued" in out
    worker = Worker(app.db, tmp_path, name="test-worker", clock=app.clock)
    assert await worker.run_once() == 1
    async with app.db.session() as s:
        job = await s.get(GpuJob, 1)
        assert job is not None and job.state == "succeeded" and len(job.result_files) == 2
    await transcript.say(":sweep")
    text = transcript.text
    assert "GPU job #1 (conv2d): succeeded" in text  # the progress message, edited
    assert "18  56  80  88" in text and "conv2d-steps.png" in text
    before = len(transcript.lines)
    await transcript.say(":sweep")
    assert "GPU job #1" not in "\n".join(transcript.lines[before:])
    out = await transcript.say("gpu status 1")
    assert "succeeded" in out and "matches the slides" in out
    await transcript.say(":as bob")
    out = await transcript.say("gpu status 1")
    assert "not yours" in out

    # A week after, the job's files are pruned; the job itself (and `gpu status`) stays.
    from commands.gpu import prune_job_files

    async with app.db.transaction() as s:
        assert await prune_job_files(s, app.clock.now() + timedelta(days=6)) == 0
        assert await prune_job_files(s, app.clock.now() + timedelta(days=8)) == 2
    async with app.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(GpuJobFile)) == 0
    await transcript.say(":as alice")
    assert "succeeded" in await transcript.say("gpu status 1")


async def test_cancel_kills_a_running_job(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch", reason="torch is installed by the `demos` extra (make test)")
    await app.core.handle_text(req("alice"), "gpu run cnn")
    worker = Worker(app.db, tmp_path, name="w", clock=app.clock)
    task = asyncio.create_task(worker.run_once())
    for _ in range(100):
        async with app.db.session() as s:
            job = await s.get(GpuJob, 1)
            if job is not None and job.state == "running":
                break
        await asyncio.sleep(0.05)
    r = await app.core.handle_text(req("alice"), "gpu cancel 1")
    assert "is cancelled (its run is being stopped)" in r.text
    await asyncio.wait_for(task, 30)
    async with app.db.session() as s:
        job = await s.get(GpuJob, 1)
        assert job is not None and job.state == "cancelled" and not job.result_text
    r = await app.core.handle_text(req("alice"), "gpu cancel 1")
    assert r.is_error and "already cancelled" in r.text


async def test_a_dead_worker_requeues_young_jobs_once_and_expires_old_ones(app) -> None:  # type: ignore[no-untyped-def]
    ids = await people(app)
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        young = await queue.submit(
            s,
            course_id=course.id,
            person_id=ids["alice"],
            demo="conv2d",
            params={},
            channel="general",
            now=NOW,
        )
        old = await queue.submit(
            s,
            course_id=course.id,
            person_id=ids["bob"],
            demo="conv2d",
            params={},
            channel="general",
            now=NOW - timedelta(hours=1),
        )
        for job in (young, old):
            assert await Jobs(s).claim(job.id, "w-dead", NOW) is not None
    async with app.db.transaction() as s:
        posts = await due_gpu_posts(s, NOW + timedelta(minutes=1))
    async with app.db.session() as s:
        assert (await s.get(GpuJob, young.id)).state == "queued"  # type: ignore[union-attr]
        assert (await s.get(GpuJob, old.id)).state == "expired"  # type: ignore[union-attr]
    texts = [render_text(o.reply) for _, o in posts]
    assert any("expired" in t and "was not run again" in t for t in texts)
    async with app.db.transaction() as s:
        assert await due_gpu_posts(s, NOW + timedelta(minutes=2)) == []  # posted once


def test_the_shell_starts_a_worker_process_that_runs_jobs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`coursebot shell` starts the embedded worker (a spawned process) with the bot."""
    pytest.importorskip("torch", reason="torch is installed by the `demos` extra (make test)")
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "COURSEBOT_"))},
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cb.db",
        "COURSEBOT_DATA_DIR": str(tmp_path),
    }
    script = "gpu run conv2d\n:wait 90 jobs\n"
    out = subprocess.run(
        [str(Path(sys.executable).parent / "coursebot"), "shell", "--as", "alice"],
        input=script, cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "GPU job #1 (conv2d) finished" in out.stdout, out.stderr[-2000:]
    assert "18  56  80  88" in out.stdout and "conv2d-steps.png" in out.stdout
    import sqlite3

    with sqlite3.connect(tmp_path / "cb.db") as db:  # the images are in the database
        names = [n for (n,) in db.execute("SELECT name FROM gpu_job_files WHERE role = 'output'")]
    assert "conv2d-steps.png" in names
    assert not (tmp_path / "gpu").exists()  # ... not files in the data folder


async def test_a_job_over_its_time_limit_is_stopped(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch", reason="torch is installed by the `demos` extra (make test)")
    await app.core.handle_text(req("alice"), "gpu run cnn")
    worker = Worker(app.db, tmp_path, name="w", clock=app.clock, timeouts={"cnn": 0.05})
    assert await worker.run_once() == 1
    async with app.db.session() as s:
        job = await s.get(GpuJob, 1)
        assert job is not None and job.state == "failed"
        assert "longer than its limit of 0.05 s" in (job.error or "")
    assert worker.child_pid is None  # the child was killed with the job


async def test_instructor_pauses_resumes_and_limits_the_queue(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = await app.core.handle_text(req("alice"), "gpu pause")
    assert r.is_error and "only for instructors" in r.text
    assert not (await app.core.handle_text(req("gedas"), "gpu pause")).is_error
    r = await app.core.handle_text(req("alice"), "gpu run conv2d")
    assert "paused the GPU queue" in r.text
    worker = Worker(app.db, tmp_path, name="w", clock=app.clock)
    async with app.db.transaction() as s:
        assert await queue.queue_order(s) == []
        assert await Jobs(s).claim_next("w", NOW) is None  # nothing runs while paused
    await app.core.handle_text(req("gedas"), "gpu resume")
    async with app.db.session() as s:
        assert [j.id for j in await queue.queue_order(s)] == [1]

    r = await app.core.handle_text(req("gedas"), "gpu limit 0 bob")
    assert "Bob Okafor may now have 0 jobs waiting" in r.text
    r = await app.core.handle_text(req("bob"), "gpu run conv2d")
    assert r.is_error and "not allowed you GPU jobs" in r.text
    await app.core.handle_text(req("gedas"), "gpu limit 3")
    for _ in range(2):  # Alice already has one waiting
        assert not (await app.core.handle_text(req("alice"), "gpu run conv2d")).is_error
    r = await app.core.handle_text(req("alice"), "gpu run conv2d")
    assert r.is_error and "the limit is 3" in r.text
    del worker


# ------------------------------------------------------- attachments, files in the DB


def png(shade: int = 0) -> bytes:
    """A small grayscale PNG: a bright square on a dark ground."""
    import io

    from PIL import Image, ImageDraw

    im = Image.new("L", (120, 80), shade)
    ImageDraw.Draw(im).rectangle((70, 10, 110, 60), fill=255)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def with_files(user: str, *attachments: Attachment) -> Request:
    return Request(
        Platform.TERMINAL,
        "default",
        Caller(Platform.TERMINAL, user, user),
        Where("general"),
        attachments=attachments,
    )


async def stored_files(app) -> list[tuple[int, str, str, bytes]]:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        rows = await s.scalars(select(GpuJobFile).order_by(GpuJobFile.id))
        return [(f.job_id, f.role, f.name, f.data) for f in rows]


async def test_a_discord_attachment_url_runs_cnn_on_a_worker_on_another_host(
    app, settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Discord hands over a URL only: the bot fetches it, stores it with the job; a worker
    whose data folder is elsewhere (another host) runs it from the database and stores
    the result images there; the bot posts them once."""
    pytest.importorskip("torch", reason="torch is installed by the `demos` extra (make test)")
    image = png()
    async with file_server({"frame.png": image}) as base:
        att = Attachment(
            "frame.png", url=f"{base}/frame.png", content_type="image/png", origins=(base,)
        )
        r = await app.core.handle_text(with_files("alice", att), "gpu run cnn classes=3")
        assert not r.is_error, r.text
    [(job_id, role, name, data)] = await stored_files(app)
    assert (role, name, data) == ("input", "frame.png", image)
    async with app.db.session() as s:
        job = await s.get(GpuJob, job_id)
        assert job is not None and job.params["image"] == queue.file_ref(1)  # "db:1"
    r = await app.core.handle_text(req("alice"), "gpu run cnn classes=3")  # the sample
    assert not r.is_error, r.text

    host = tmp_path / "gpu-host"  # not the bot's data folder: nothing is shared
    worker = Worker(app.db, host, name="gpu-host:gpu0", clock=app.clock)
    before = set(Path(tempfile.gettempdir()).glob("coursebot-gpu-*"))
    try:
        assert await worker.run_once() == job_id
        assert await worker.run_once() == job_id + 1
    finally:
        worker.close()
    assert set(Path(tempfile.gettempdir()).glob("coursebot-gpu-*")) <= before  # cleaned up
    assert not (settings.data_dir / "gpu").exists() and not host.exists()
    outputs = [(j, n) for j, r_, n, _ in await stored_files(app) if r_ == "output"]
    assert [n for j, n in outputs if j == job_id] == [
        "cnn-pipeline.png", "cnn-filters.png", "cnn-conv1.png", "cnn-pool.png",
        "cnn-conv2.png", "cnn-fc-softmax.png",
    ]  # fmt: skip

    async with app.db.transaction() as s:
        posts = await due_gpu_posts(s, NOW)
    results = {o.reply.title: o.reply for _, o in posts if o.edit_key is None}
    mine = results[f"GPU job #{job_id} (cnn) finished"]
    sample = results[f"GPU job #{job_id + 1} (cnn) finished"]
    assert [f.name for f in mine.files] == [n for j, n in outputs if j == job_id]
    assert all(f.data.startswith(b"\x89PNG") and f.mime == "image/png" for f in mine.files)
    assert mine.text != sample.text  # the network saw the attached image, not the sample
    assert mine.files[0].data != sample.files[0].data
    async with app.db.transaction() as s:
        assert [o for _, o in await due_gpu_posts(s, NOW) if o.edit_key is None] == []  # once


async def test_bad_attachments_are_refused_at_submission_and_nothing_is_stored(
    app, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    notes = tmp_path / "notes.png"
    notes.write_text("not an image at all")
    huge = tmp_path / "huge.mp4"
    with huge.open("wb") as f:  # sparse: 50 MB + 1 byte
        f.truncate(50 * 1024 * 1024 + 1)
    big_png = png() + b"\0" * (10 * 1024 * 1024)  # over cnn's 10 MB
    async with file_server({"big.png": big_png, "notes.png": notes.read_bytes()}) as base:
        o = (base,)
        cases = [
            ("gpu run cnn", Attachment("notes.png", path=notes), "not an image"),
            (
                "gpu run cnn",
                Attachment("notes.png", url=f"{base}/notes.png", origins=o),
                "not an image",
            ),
            (
                "gpu run cnn",
                Attachment("big.png", url=f"{base}/big.png", origins=o),
                "larger than 10 MB",
            ),
            (
                "gpu run cnn",
                Attachment("gone.png", url=f"{base}/gone.png", origins=o),
                "Could not fetch",
            ),
            ("gpu run classify", Attachment("notes.png", path=notes), "neither an image nor"),
            ("gpu run classify", Attachment("huge.mp4", path=huge), "larger than 50 MB"),
            (
                "gpu run classify",
                Attachment("clip.mp4", url=f"{base}/clip.mp4", size=60 * 1024 * 1024, origins=o),
                "larger than 50 MB",
            ),
        ]
        for line, att, message in cases:
            r = await app.core.handle_text(with_files("alice", att), line)
            assert r.is_error and message in r.text, (line, att.name, r.text)
    r = await app.core.handle_text(req("alice"), f"gpu run cnn image={notes}")
    assert r.is_error and "attach it" in r.text  # never a path on the bot's host
    async with app.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(GpuJob)) == 0
    assert await stored_files(app) == []
