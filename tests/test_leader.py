"""One leader among replicas: two real bot processes on one Postgres; only the leader
sends; when it is killed with SIGKILL the other takes over within 15 s and sends what
falls due, once. On SQLite a second bot process is refused at start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.app import App
from commands.context import Caller, Request, Where
from db.models import Announcement, Course, Platform

ROOT = Path(__file__).resolve().parent.parent


def _replica(url: str, log: Path, max_sleep: float = 0.5) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.leader_child", url, str(log), str(max_sleep)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _lines(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


async def _until(predicate, within: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < within, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def _reads_line(proc: subprocess.Popen[str], within: float) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), within)
    return line.strip()


@pytest.mark.parametrize("backend", ["postgres"])
async def test_the_follower_takes_over_within_15_s_and_sends_once(
    app: App, db_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    async with app.db.transaction() as session:
        course = await session.scalar(select(Course))
        assert course is not None
        for i, later in enumerate((4, 16)):
            session.add(
                Announcement(
                    course_id=course.id,
                    text=f"announcement {i}",
                    author_id=None,
                    created_at=now,
                    post_at=now + timedelta(seconds=later),
                )
            )
    log = tmp_path / "delivered.txt"
    first = _replica(db_url, log)
    second = None
    try:
        assert await _reads_line(first, 60) == "leads"
        second = _replica(db_url, log)
        await asyncio.sleep(3)
        assert second.poll() is None  # it runs, answering commands, but does not lead
        await _until(lambda: any("announcement 0" in x for x in _lines(log)), 30)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        assert await _reads_line(second, 20) == "leads"
        took = time.monotonic() - killed
        assert took < 15, f"took over after {took:.1f} s"
        await _until(lambda: any("announcement 1" in x for x in _lines(log)), 30)
        await asyncio.sleep(1.5)  # room for a duplicate to show up, if there were one
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    lines = _lines(log)
    assert sum("announcement 0" in x for x in lines) == 1, lines
    assert sum("announcement 1" in x for x in lines) == 1, lines


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_second_process_on_one_sqlite_file_is_refused(db_url: str, tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from bot.leader import claim_sqlite; "
            "claim_sqlite(sys.argv[1]); print('holding', flush=True); time.sleep(60)",
            db_url,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        env = {**os.environ, "DATABASE_URL": db_url, "COURSEBOT_GPU_WORKER": "false"}
        env["COURSEBOT_DATA_DIR"] = str(tmp_path / "data")
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", "shell", "--script", os.devnull],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert "Another coursebot process (pid" in done.stderr
    assert "A SQLite deployment runs one bot process" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_command_on_another_replica_wakes_the_leader(
    app: App, db_url: str, tmp_path: Path
) -> None:
    """The leader sleeps until its next planned post (here up to 60 s); an announcement
    scheduled through another process's core NOTIFYs it at commit, so it goes out on
    time, seconds later, not at the leader's next wake-up."""
    log = tmp_path / "delivered.txt"
    leader = _replica(db_url, log, max_sleep=60)
    try:
        assert await _reads_line(leader, 60) == "leads"
        await asyncio.sleep(2)  # its first pass is done: it now sleeps up to 60 s
        at = (datetime.now(UTC) + timedelta(seconds=4)).astimezone(ZoneInfo("America/New_York"))
        request = Request(
            Platform.TERMINAL, "default", Caller(Platform.TERMINAL, "gedas", "gedas"), Where()
        )
        reply = await app.core.handle_text(
            request, f'announce "Wake up, replicas." at {at:%Y-%m-%dT%H:%M:%S}'
        )
        assert not reply.is_error, reply.text
        took = await _until(lambda: any("Wake up, replicas." in x for x in _lines(log)), 20)
        assert took < 15
    finally:
        leader.kill()
        leader.wait()
