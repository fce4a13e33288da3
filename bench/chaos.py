"""The chaos benchmark: nothing the bot owes is lost when it is killed.

Run from the repository root::

    python -m bench.chaos                    # SQLite and Postgres, 50 kills each
    python -m bench.chaos --kills 100 --backends sqlite

What it does, per backend: a bot process (:mod:`bench.chaos_child`: the command core,
the scheduler and the outbox on virtual time) plays the sample course's rankings week:
an announcement scheduled for the next morning, two battles' strict timers (warnings,
time's up, overruns), a private reminder to every student missing rankings, the 24-hour
deadline reminders and private nudges, the critique pings and "closed" posts, a second
announcement. First a reference run without a crash gives the posts expected; then the
same week on a fresh database while the process is killed with SIGKILL at random moments
(``--kills`` times), restarted each time from where it was. Every post the platform
accepted is one line in a file (fsynced before the platform "answers").

It prints, per backend: kills, posts expected, delivered, lost (expected, never
delivered) and duplicated (delivered more often than expected). Targets: 0 lost; at
most one duplicate per kill that fell between the platform's answer and the commit
(the terminal fake has no nonce; Discord's nonce removes even those, see docs/delivery.md).
The platform here is the file fake; the Discord and Slack adapters' own crash paths are
covered by tests (tests/test_delivery_platforms.py, tests/test_inbox.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.workload import PG_ADMIN_URL, postgres_database

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    backend: str
    kills: int
    expected: int
    delivered: int
    lost: int
    duplicated: int
    seconds: float
    note: str = ""


def _child(url: str, work: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.chaos_child",
            url,
            str(work / "delivered.txt"),
            str(work / "state"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _wait_line(proc: subprocess.Popen[str], timeout: float = 120.0) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            return line.strip()
        if proc.poll() is not None:
            return ""
    return ""


def _delivered(work: Path) -> Counter[str]:
    path = work / "delivered.txt"
    return Counter(path.read_text(encoding="utf-8").splitlines()) if path.exists() else Counter()


@asynccontextmanager
async def _database(backend: str, tmp: Path, pg_url: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / 'chaos.db'}"
        return
    async with postgres_database(pg_url) as url:
        yield url


async def _reference(backend: str, tmp: Path, pg_url: str) -> tuple[Counter[str], float]:
    work = tmp / f"{backend}-reference"
    work.mkdir()
    async with _database(backend, work, pg_url) as url:
        proc = _child(url, work)
        assert _wait_line(proc) == "ready"
        started = time.monotonic()
        assert await asyncio.to_thread(_wait_line, proc, 600) == "done"
        took = time.monotonic() - started
        proc.wait()
    return _delivered(work), took


async def _chaos(
    backend: str, tmp: Path, pg_url: str, kills: int, work_seconds: float, rng: random.Random
) -> tuple[Counter[str], int, float]:
    work = tmp / f"{backend}-chaos"
    work.mkdir()
    started = time.monotonic()
    done = 0
    async with _database(backend, work, pg_url) as url:
        while True:
            proc = _child(url, work)
            if await asyncio.to_thread(_wait_line, proc) != "ready":
                proc.kill()
                raise RuntimeError("the bot process did not start")
            if done >= kills:
                line = await asyncio.to_thread(_wait_line, proc, 600)
                proc.wait()
                assert line == "done", line
                break
            # A random moment within the work left, so the kills spread over the week.
            await asyncio.sleep(rng.uniform(0, 2 * work_seconds / kills))
            if proc.poll() is not None:  # it finished the week before the kill
                break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            done += 1
    return _delivered(work), done, time.monotonic() - started


async def run(backends: list[str], kills: int, pg_url: str, seed: int) -> list[Outcome]:
    rng = random.Random(seed)
    out = []
    with tempfile.TemporaryDirectory(prefix="coursebot-chaos-") as tmp_name:
        tmp = Path(tmp_name)
        for backend in backends:
            try:
                expected, work_seconds = await _reference(backend, tmp, pg_url)
                got, done, took = await _chaos(backend, tmp, pg_url, kills, work_seconds, rng)
            except OSError as exc:
                out.append(Outcome(backend, 0, 0, 0, 0, 0, 0.0, f"skipped: {exc}"))
                continue
            lost = sum((expected - got).values())
            dup = sum((got - expected).values())
            delivered = sum((got & expected).values())
            out.append(Outcome(backend, done, sum(expected.values()), delivered, lost, dup, took))
    return out


def table(rows: list[Outcome]) -> str:
    head = f"{'backend':9} {'kills':>5} {'expected':>8} {'delivered':>9} {'lost':>5} {'dup':>4} {'time':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.note:
            lines.append(f"{r.backend:9} {r.note}")
            continue
        lines.append(
            f"{r.backend:9} {r.kills:>5} {r.expected:>8} {r.delivered:>9} {r.lost:>5} "
            f"{r.duplicated:>4} {r.seconds:>6.0f}s"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--pg-url", default=PG_ADMIN_URL)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rows = asyncio.run(run(args.backends.split(","), args.kills, args.pg_url, args.seed))
    print(table(rows))
    bad = [r for r in rows if not r.note and (r.lost or r.duplicated > r.kills)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
