"""The GPU job state machine and the limits under real concurrency, on SQLite and
Postgres: one table of transitions; 20 submissions at once by one student queue exactly
their cap; concurrent workers never run two jobs of one student nor one job twice; a
paused queue says so; each terminal state is announced exactly once; estimates come
from the queue ahead and measured run times ("starting now" with an idle worker); the
term's usage; migration 0017 up and down."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from commands.context import Caller, Request, Where
from commands.gpu import due_gpu_posts
from commands.replies import render_text
from db.models import Course, GpuJob, GpuWorker, Person, Platform
from db.session import Database
from gpu_queue import fleet, queue
from gpu_queue.jobs import (
    TRANSITIONS,
    Event,
    IllegalTransition,
    Jobs,
    JobState,
    StoredFile,
    allowed,
)

NOW = datetime(2023, 8, 25, 14, 0, tzinfo=UTC)  # the app fixture's clock


def req(user: str, channel: str | None = "general") -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where(channel)
    )


async def ids(app: Any) -> tuple[dict[str, int], int]:
    async with app.db.session() as s:
        people = {p.name.split()[0].lower(): p.id for p in await s.scalars(select(Person))}
        course = await s.scalar(select(Course.id))
    assert course is not None
    return people, course


async def submit(app: Any, person: int, course: int, demo: str = "conv2d", **kw: Any) -> int:
    async with app.db.transaction() as s:
        job = await queue.submit(
            s, course_id=course, person_id=person, demo=demo, params=kw.get("params", {}),
            channel=kw.get("channel", "general"), now=kw.get("now", NOW),
            queued_cap=kw.get("cap", 10),
        )  # fmt: skip
        return job.id


# ------------------------------------------------------------------ the machine


def test_the_transition_table() -> None:
    table = allowed()
    assert table[JobState.QUEUED] == {JobState.RUNNING, JobState.CANCELLED}
    assert table[JobState.RUNNING] == {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.EXPIRED,
        JobState.QUEUED,
    }
    for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED):
        assert table[state] == set() and state.terminal
    assert set(TRANSITIONS) == set(Event)  # every event has its row
    job = GpuJob(id=7, state="succeeded")
    with pytest.raises(IllegalTransition, match="Job #7 is already succeeded"):
        Jobs._move(job, Event.CANCEL)
    assert job.state == "succeeded"


async def test_every_step_goes_through_the_repository(app) -> None:  # type: ignore[no-untyped-def]
    people, course = await ids(app)
    job_id = await submit(app, people["alice"], course)
    async with app.db.transaction() as s:
        jobs = Jobs(s)
        job = await jobs.claim_next("w", NOW)
        assert job is not None and (job.id, job.state, job.attempts) == (job_id, "running", 1)
        assert await jobs.beat(job_id, "w", NOW, progress=0.5, note="half") == "running"
        assert await jobs.beat(job_id, "other", NOW) is None  # not its worker
        assert await jobs.requeue(job_id, "w", NOW, note="handed back")
        assert (job.state, job.attempts, job.worker) == ("queued", 0, None)
        assert await jobs.claim(job_id, "w2", NOW) is not None
        png = StoredFile("out.png", b"\x89PNG...", "image/png")
        assert await jobs.finish(job_id, "w2", NOW, text="done", images=[png])
        assert not await jobs.fail(job_id, "w2", NOW, error="late")  # finished stays
        with pytest.raises(IllegalTransition):
            await jobs.cancel(job_id, NOW)
    async with app.db.session() as s:
        job = await s.get(GpuJob, job_id)
        assert job is not None and (job.state, job.result_files) == ("succeeded", ["out.png"])


# ------------------------------------------------------------------ limits under concurrency


async def test_twenty_concurrent_submissions_queue_exactly_the_cap(app) -> None:  # type: ignore[no-untyped-def]
    """20 submissions by one student at once, each in its own session (connection):
    exactly their cap is queued, on both backends; then the same through the command."""
    people, course = await ids(app)

    async def one() -> str:
        try:
            async with app.db.transaction() as s:
                await queue.submit(
                    s, course_id=course, person_id=people["alice"], demo="conv2d", params={},
                    channel="general", now=NOW, queued_cap=2,
                )  # fmt: skip
            return "queued"
        except queue.QueueError as exc:
            return str(exc)

    outcomes = await asyncio.gather(*(one() for _ in range(20)))
    assert outcomes.count("queued") == 2
    assert all("already have 2 jobs waiting" in o for o in outcomes if o != "queued")

    replies = await asyncio.gather(
        *(app.core.handle_text(req("bob"), "gpu run conv2d") for _ in range(20))
    )
    assert sum(not r.is_error for r in replies) == 2
    assert all("already have 2 jobs waiting" in r.text for r in replies if r.is_error)
    async with app.db.session() as s:
        counts = dict(
            (
                await s.execute(select(GpuJob.person_id, func.count()).group_by(GpuJob.person_id))
            ).all()
        )
    assert counts == {people["alice"]: 2, people["bob"]: 2}


@pytest.mark.parametrize("backend", ["postgres"])
async def test_concurrent_workers_never_run_one_job_twice_nor_two_of_a_student(app) -> None:  # type: ignore[no-untyped-def]
    people, course = await ids(app)
    for who in ("alice", "alice", "alice", "bob", "carol"):
        await submit(app, people[who], course)
    # Separate engines: each "worker" has its own connections, as on its own host.
    dbs = [Database(app.db.url) for _ in range(4)]
    try:

        async def claim(i: int) -> int | None:
            async with dbs[i].transaction() as s:
                job = await Jobs(s).claim_next(f"w{i}", NOW)
                return job.id if job else None

        for _ in range(3):
            claimed = [j for j in await asyncio.gather(*(claim(i) for i in range(4))) if j]
            assert len(claimed) == len(set(claimed))
    finally:
        for db in dbs:
            await db.dispose()
    async with app.db.session() as s:
        running = list(await s.execute(select(GpuJob.person_id).where(GpuJob.state == "running")))
    owners = [p for (p,) in running]
    assert sorted(owners) == sorted({people["alice"], people["bob"], people["carol"]})


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_student_busy_submitting_is_passed_over_never_reordered(app) -> None:  # type: ignore[no-untyped-def]
    """While one of Alice's submissions holds her row, a worker passes her over (takes
    Bob's) and never starts her second job before her first."""
    people, course = await ids(app)
    first = await submit(app, people["alice"], course)
    await submit(app, people["alice"], course)
    bob = await submit(app, people["bob"], course)
    async with app.db.transaction() as holding:  # her next submission, in flight
        await Jobs(holding)._lock_owner(people["alice"])
        async with app.db.transaction() as s:
            job = await Jobs(s).claim_next("w1", NOW)
            assert job is not None and job.id == bob
        async with app.db.transaction() as s:
            assert await Jobs(s).claim_next("w2", NOW) is None
    async with app.db.transaction() as s:
        job = await Jobs(s).claim_next("w2", NOW)
        assert job is not None and job.id == first


async def test_a_paused_queue_shows_as_paused_with_its_jobs(app) -> None:  # type: ignore[no-untyped-def]
    await app.core.handle_text(req("gedas"), "gpu pause")
    for who in ("alice", "bob"):
        r = await app.core.handle_text(req(who), "gpu run conv2d")
        assert "paused the GPU queue" in r.text and "position" in r.text
    r = await app.core.handle_text(req("alice"), "gpu status")
    assert "paused: 2 jobs waiting" in r.text, r.text
    assert "#1 (paused)" in render_text(r)
    r = await app.core.handle_text(req("alice"), "gpu status 1")
    assert "queued (the GPU queue is paused)" in r.text
    async with app.db.transaction() as s:
        assert await Jobs(s).claim_next("w", NOW) is None
    await app.core.handle_text(req("gedas"), "gpu resume")
    r = await app.core.handle_text(req("alice"), "gpu status")
    assert "2 jobs waiting" in r.text and "paused" not in r.text


# ------------------------------------------------------------------ announcements


async def test_each_terminal_state_is_announced_exactly_once(app) -> None:  # type: ignore[no-untyped-def]
    people, course = await ids(app)
    ok = await submit(app, people["alice"], course)
    failed = await submit(app, people["bob"], course)
    gone = await submit(app, people["carol"], course)  # cancelled while queued
    stopped = await submit(app, people["deepak"], course)  # cancelled while running
    dead = await submit(app, people["emily"], course, now=NOW - timedelta(hours=1))
    async with app.db.transaction() as s:
        jobs = Jobs(s)
        for j in (ok, failed, stopped, dead):
            assert await jobs.claim(j, f"w{j}", NOW) is not None
        await jobs.finish(ok, f"w{ok}", NOW, text="h = ...")
        await jobs.fail(failed, f"w{failed}", NOW, error="The demo failed: boom")
    r = await app.core.handle_text(req("carol"), f"gpu cancel {gone}")
    assert "is cancelled." in r.text
    r = await app.core.handle_text(req("gedas"), f"gpu cancel {stopped} too long")
    assert "its run is being stopped" in r.text

    later = NOW + timedelta(minutes=1)  # the dead worker's job expires (it is old)

    async def tick() -> list[Any]:
        async with app.db.transaction() as s:
            return await due_gpu_posts(s, later)

    first = [o for batch in await asyncio.gather(tick(), tick()) for o in batch]
    again = await tick()
    posts = [o for _, o in first + again if o.edit_key is None]
    texts = sorted(render_text(o.reply) for o in posts)
    assert len(posts) == 5, texts
    assert sum(f"#{ok} (conv2d) finished" in t for t in texts) == 1
    assert sum(f"#{failed} (conv2d) failed: The demo failed: boom" in t for t in texts) == 1
    assert sum(f"#{gone} (conv2d) cancelled (cancelled by its owner)" in t for t in texts) == 1
    assert sum(f"#{stopped} (conv2d) cancelled (cancelled by Gedas" in t for t in texts) == 1
    assert sum(f"#{dead} (conv2d) expired: The worker stopped" in t for t in texts) == 1
    edits = [render_text(o.reply) for _, o in first + again if o.edit_key == f"gpu:{failed}"]
    assert edits == [f"❌ GPU job #{failed} (conv2d): failed"]  # the state, not the error again
    assert await tick() == []


# ------------------------------------------------------------------ estimates


async def _worker(app: Any, name: str, state: str, job_id: int | None = None) -> None:
    async with app.db.transaction() as s:
        await fleet.register(s, fleet.Identity(name=name), NOW)
        await fleet.beat(s, name, NOW, state=state, job_id=job_id)


async def test_estimates_from_the_queue_ahead_and_measured_run_times(app) -> None:  # type: ignore[no-untyped-def]
    people, course = await ids(app)
    r = await app.core.handle_text(req("alice"), "gpu run conv2d")
    assert "no GPU worker is running right now" in r.text
    await _worker(app, "idle-1", fleet.IDLE)
    r = await app.core.handle_text(req("bob"), "gpu run conv2d")
    assert "queued at position 2" in r.text  # alice's is first ...
    async with app.db.session() as s:
        alice = await s.scalar(select(GpuJob).where(GpuJob.person_id == people["alice"]))
        assert alice is not None
        assert (await queue.estimate(s, alice, NOW)).starting_now  # ... and starts now
    # Measured: conv2d took 40 s twice. A busy worker 10 s into a conv2d, an idle one.
    async with app.db.transaction() as s:
        for k in range(2):
            j = await Jobs(s).submit(
                course_id=course, person_id=people["quinn"], demo="conv2d", params={},
                channel="", now=NOW - timedelta(hours=2), queued_cap=5,
            )  # fmt: skip
            await Jobs(s).claim(j.id, "old", NOW - timedelta(hours=2, minutes=k))
            await Jobs(s).finish(
                j.id, "old", NOW - timedelta(hours=2, minutes=k) + timedelta(seconds=40), text=""
            )
        busy = await Jobs(s).claim_next("busy-1", NOW - timedelta(seconds=10))
        assert busy is not None and busy.id == alice.id
    await _worker(app, "busy-1", fleet.BUSY, alice.id)
    async with app.db.session() as s:
        times = await queue.run_times(s)
        assert times["conv2d"] == 40.0
        bob = await s.scalar(select(GpuJob).where(GpuJob.person_id == people["bob"]))
        est = await queue.estimate(s, bob, NOW)  # type: ignore[arg-type]
        assert est.starting_now and est.workers == 2  # the idle worker takes it
    async with app.db.transaction() as s:
        await Jobs(s).claim(bob.id, "idle-1", NOW)  # type: ignore[union-attr]
    await _worker(app, "idle-1", fleet.BUSY, bob.id)  # type: ignore[union-attr]
    r = await app.core.handle_text(req("carol"), "gpu run conv2d")
    assert "start in about 30 s" in r.text, r.text  # alice's ends in 40 - 10 s


# ------------------------------------------------------------------ usage


async def test_usage_per_student_and_demo_with_a_csv(app) -> None:  # type: ignore[no-untyped-def]
    people, course = await ids(app)
    async with app.db.transaction() as s:
        jobs = Jobs(s)
        for who, demo, secs in (("alice", "conv2d", 30), ("alice", "cnn", 90), ("bob", "cnn", 600)):
            j = await jobs.submit(
                course_id=course, person_id=people[who], demo=demo, params={}, channel="",
                now=NOW, queued_cap=5,
            )  # fmt: skip
            await jobs.claim(j.id, "w", NOW)
            await jobs.finish(j.id, "w", NOW + timedelta(seconds=secs), text="")
    r = await app.core.handle_text(req("gedas"), "gpu usage")
    out = render_text(r)
    assert "GPU time this term: 12.0 min over 3 jobs by 2 students" in out, out
    [f] = r.files
    assert f.name.endswith("-gpu-usage.csv") and f.mime == "text/csv"
    rows = list(csv.DictReader(io.StringIO(f.data.decode())))
    assert {(x["student"].split()[0], x["demo"], x["gpu_seconds"]) for x in rows} == {
        ("Alice", "conv2d", "30.0"), ("Alice", "cnn", "90.0"), ("Bob", "cnn", "600.0")
    }  # fmt: skip
    r = await app.core.handle_text(req("alice"), "gpu usage")
    assert "Your GPU time this term: 2.0 min over 2 jobs" in r.text and not r.files
    assert "Bob" not in render_text(r)


# ------------------------------------------------------------------ memory, migration


async def test_a_demo_too_big_for_every_gpu_is_refused_at_submission(app) -> None:  # type: ignore[no-untyped-def]
    async with app.db.transaction() as s:
        await fleet.register(s, fleet.Identity(name="small", memory_mib=600), NOW)
    r = await app.core.handle_text(req("alice"), "gpu run video clips=4000")
    assert r.is_error and "needs about" in r.text and "has 600 MiB" in r.text
    r = await app.core.handle_text(req("alice"), "gpu run video clips=100")
    assert not r.is_error, r.text
    async with app.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(GpuJob)) == 1


def test_migration_0017_up_and_down(backend: str, tmp_path: Any) -> None:
    from alembic import command

    from db.migrate import alembic_config, upgrade

    def check(url: str) -> None:
        upgrade(url, "0017")
        command.downgrade(alembic_config(url), "0016")
        upgrade(url, "0017")

    if backend == "sqlite":
        check(f"sqlite+aiosqlite:///{tmp_path}/m.db")
        return
    from sqlalchemy.engine import make_url

    from tests.conftest import PG_ADMIN_URL, throwaway_pg_database

    with throwaway_pg_database("coursebot_mig") as name:
        check(make_url(PG_ADMIN_URL).set(database=name).render_as_string(False))


async def test_the_state_is_checked_by_the_database(app) -> None:  # type: ignore[no-untyped-def]
    people, course = await ids(app)
    job_id = await submit(app, people["alice"], course)
    with pytest.raises(Exception, match="ck_gpu_jobs_state"):
        async with app.db.transaction() as s:
            job = await s.get(GpuJob, job_id)
            job.state = "bogus"  # type: ignore[union-attr]
    async with app.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(GpuWorker)) == 0
