"""The chaos benchmark: nothing the bot owes is lost, and nothing is said twice, when the
bot, the leader replica or a GPU worker is killed with ``kill -9``.

Run from the repository root (one command, prints one table)::

    python -m bench.chaos                  # SQLite and Postgres, every platform and target
    python -m bench.chaos --quick          # 3 kills of the bot, SQLite, 1 GPU job (~1 min)
    python -m bench.chaos --backends sqlite --platforms discord --targets bot --kills 10

**The week.** A bot process (:mod:`bench.chaos_child`) hosts one bot per platform, each
on a database of its own: the real command core, scheduler and outbox dispatcher, on
virtual time that stands still while only the bot acts and jumps to the next instant
anything is due, and flows (5× real time) while a GPU worker runs a job
(:mod:`bench.chaos_clock`). Each bot plays the sample course's rankings week, Fri
2023-08-25 to Fri 2023-09-01, its commands typed through the core by the course's people:
two announcements scheduled ahead; battle 1's strict timer (warnings, time's up, an
overrun post every 30 s) and its poll, opened, voted on by six students (each vote edits
the poll) and closed by hand (the results with a chart); battle 2's timer and a poll
that closes itself after 20 minutes; ``rankings remind`` (25 private messages) and the
24-hour reminders and nudges; the critique pings and "closed" posts; six GPU demo jobs
(``--gpu-jobs``; the demo: ``--demo``, see :mod:`bench.chaos_clock`) run by a real GPU
worker process per bot (:mod:`bench.chaos_worker`), each with its progress message and
result; an in-class discussion (three breakout threads with their members, the 5-minute
warning, the call-back, the summary). About 200 posts and a dozen edited messages per
platform.

**The platforms** (a row each): *terminal*, the shell's transcript: a file the bot
process writes, keyed by the outbox row's delivery key (the key Discord gets as nonce),
so a message sent again after a crash is not written twice; *discord*, the real
``CourseBot`` (discord.py's HTTP client, a nonce with ``enforce_nonce`` on every outbox
send, its gateway parsing) against a fake Discord; *slack*, the real ``SlackBot``
(slack_sdk's web client, which has no idempotency key) against a fake Web API. The
fakes run in a process of their own (:mod:`bench.chaos_platforms`) that outlives every
kill and records each message it accepts in an fsynced file before it answers.

**The kill targets** (a row each per backend and platform):

- *bot*: the bot process, at ``--kills`` random moments (50), restarted each time;
- *leader* (Postgres only): two replicas of the bot process on the same databases; a
  replica holding leader locks is killed at ``--leader-kills`` random moments (20) and a
  new replica started; another must lead within 15 s (measured from the kill to its
  ``lead``) and send what was due, once;
- *worker*: the GPU workers, killed in the middle of a job (``--worker-kills`` in all, 18,
  spread over the platforms by chance) and started again: the job is run again, or
  reported as stopped after a second kill, and its result posted once.

Kills come at random moments spread over the week's work (measured by a first run
without kills, which also gives the posts expected); every run starts on fresh databases
and fresh fakes. Restarted bot processes are forked from a process that has done
Python's imports (a fork server), so a restart costs what starting the bot costs.

**What is counted.** A post is a message a platform accepted (a channel post, a private
message, a thread and its first message); an edited message counts once, by the text it
ends with (edits are idempotent: one sent again changes nothing). GPU jobs are named by
the order they were submitted in; their progress steps (which depend on timing) and
whether a killed job's result is "finished" or "stopped" are not compared, only that
each job gets exactly one result. *lost*: expected and never delivered (or an edited
message not ending as expected); *dup*: delivered more often than expected; *window*:
messages the platform had already accepted when the process died that were sent again
after the restart -- the kill fell between the platform's answer and the commit marking
the outbox row sent. On the terminal and Discord the delivery key and the nonce make
those sends no-ops; on Slack each one is a duplicate (the benchmark's Slack client names
the row it sends in a header, which the fake records, to count them).

Targets (the verdict column): 0 lost everywhere; 0 duplicates on the terminal and
Discord; on Slack at most one duplicate per kill in the answer→commit window; the
follower leads within 15 s; every run finishes its week.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.workload import PG_ADMIN_URL, postgres_database

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = ("terminal", "discord", "slack")
TARGETS = ("bot", "leader", "worker")
#: The longest a follower may take to lead after the leader died (issue #16).
TAKEOVER_LIMIT = 15.0
#: Kills come at intervals drawn from [0, SPREAD × the week's work / kills]: on average
#: they are all made within the first 80% of the week's work, so that the last of them
#: still has work to interrupt.
SPREAD = 1.6
#: A replica's week goes faster than the reference's (GPU jobs run on while it takes
#: over), so its kills come closer together.
LEADER_SPREAD = 1.2
#: How long a demo job runs (chaos-conv2d's 8 steps of 0.2 s), for timing worker kills.
JOB_SECONDS = 1.6


# ----------------------------------------------------------------------------- processes


class Proc:
    """A benchmark process (``python -m <module> ...``) whose stdout lines are collected,
    with the monotonic time each arrived."""

    def __init__(
        self,
        module: str,
        args: list[str],
        log: Path,
        *,
        stdin: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = module.rsplit(".", 1)[-1]
        self._err: IO[bytes] = open(log, "ab")  # noqa: SIM115 (closed in reap)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "COURSEBOT_LOG_LEVEL": "ERROR",
                **(env or {}),
            },
        )
        self.lines: list[tuple[float, str]] = []
        self.eof = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append((time.monotonic(), line.strip()))
                self._changed.notify_all()
        with self._changed:
            self.eof = True
            self._changed.notify_all()

    def find(self, pred: Callable[[str], bool]) -> tuple[float, str] | None:
        with self._changed:
            return next(((t, s) for t, s in self.lines if pred(s)), None)

    def _wait(self, pred: Callable[[str], bool], timeout: float) -> tuple[float, str] | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                hit = next(((t, s) for t, s in self.lines if pred(s)), None)
                left = deadline - time.monotonic()
                if hit is not None or self.eof or left <= 0:
                    return hit
                self._changed.wait(left)

    async def wait(self, line: str | Callable[[str], bool], within: float = 120.0) -> float | None:
        """When the process printed ``line`` (None: it did not within ``within`` seconds)."""
        pred = (lambda s: s == line) if isinstance(line, str) else line
        hit = await asyncio.to_thread(self._wait, pred, within)
        return None if hit is None else hit[0]

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """``kill -9``, and wait for it to be gone."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGKILL)
        self.reap()

    def stop(self) -> None:
        """SIGTERM (a worker gives its job back), then SIGKILL after 10 s."""
        if self.alive:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self.reap()

    def reap(self) -> None:
        self.popen.wait()
        self._err.close()


class Forked(Proc):
    """A bot process forked by the fork server (``bench.chaos_child --fork-server``):
    its stdout is a file, read as it grows; the kernel reaps it when it dies."""

    def __init__(self, server: Proc, config: Path, out: Path, err: Path) -> None:
        self.name = "bot"
        self.lines = []
        self.eof = False
        self._changed = threading.Condition()
        self.out = out
        out.write_bytes(b"")
        before = len(server.lines)
        assert server.popen.stdin is not None
        server.popen.stdin.write(f"{config}\t{out}\t{err}\n")
        server.popen.stdin.flush()
        deadline = time.monotonic() + 60
        while len(server.lines) <= before:
            if time.monotonic() > deadline or not server.alive:
                raise RuntimeError("the fork server did not answer")
            time.sleep(0.005)
        self.pid = int(server.lines[before][1])
        threading.Thread(target=self._tail, daemon=True).start()

    def _tail(self) -> None:
        with open(self.out, encoding="utf-8") as f:
            pending = ""
            while True:
                alive = self.alive
                chunk = f.read()
                if chunk:
                    pending += chunk
                    *complete, pending = pending.split("\n")
                    with self._changed:
                        now = time.monotonic()
                        self.lines += [(now, line.strip()) for line in complete]
                        self._changed.notify_all()
                elif not alive:
                    break
                else:
                    time.sleep(0.01)
        with self._changed:
            self.eof = True
            self._changed.notify_all()

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.reap()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        self.reap()

    def reap(self) -> None:
        deadline = time.monotonic() + 30
        while self.alive and time.monotonic() < deadline:
            time.sleep(0.005)
        if self.alive:  # pragma: no cover - a process that ignores SIGTERM
            os.kill(self.pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    """What one run (the reference, or one kill target) left behind."""

    records: dict[str, Path]
    kills: dict[str, int]
    seconds: float
    finished: bool
    work_seconds: float = 0.0  # the reference: from the first "ready" to "done"
    takeovers: list[float] = field(default_factory=list)
    gpu: dict[str, Counter[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@asynccontextmanager
async def databases(
    backend: str, work: Path, platforms: list[str], pg_url: str
) -> AsyncIterator[dict[str, str]]:
    """A fresh database per platform (SQLite files, or throwaway Postgres databases)."""
    if backend == "sqlite":
        yield {p: f"sqlite+aiosqlite:///{work / p / 'bot.db'}" for p in platforms}
        return
    async with AsyncExitStack() as stack:
        yield {p: await stack.enter_async_context(postgres_database(pg_url)) for p in platforms}


async def gpu_outcomes(url: str) -> Counter[str]:
    """How the run's GPU jobs ended: succeeded (first try or run again) or not."""
    from sqlalchemy import select

    from db.models import GpuJob
    from db.session import Database

    db = Database(url)
    try:
        async with db.session() as session:
            rows = (await session.execute(select(GpuJob.state, GpuJob.attempts))).all()
    finally:
        await db.dispose()
    out: Counter[str] = Counter()
    for state, attempts in rows:
        out[f"{state} after a re-run" if state == "succeeded" and attempts > 1 else state] += 1
    return out


class Run:
    """The processes of one run: the platform fakes, the bot process (or two replicas)
    and one GPU worker per bot instance."""

    def __init__(
        self,
        work: Path,
        urls: dict[str, str],
        gpu_jobs: int,
        demo: str,
        *,
        replica: bool = False,
    ) -> None:
        self.work = work
        self.urls = urls
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.server = Proc(
            "bench.chaos_platforms", [str(work / "records")], self.logs / "platforms.err"
        )
        self.config = work / "config.json"
        self.replica = replica
        self.gpu_jobs = gpu_jobs
        self.demo = demo
        self.workers: dict[str, Proc] = {}
        self.forks = Proc(
            "bench.chaos_child", ["--fork-server"], self.logs / "fork-server.err", stdin=True
        )
        self.bots: list[Proc] = []

    async def start(self) -> None:
        if await self.server.wait(lambda s: s.startswith("ports"), 60) is None:
            raise RuntimeError("the platform fakes did not start (see logs/platforms.err)")
        if await self.forks.wait("fork-server", 60) is None:
            raise RuntimeError("the fork server did not start (see logs/fork-server.err)")
        found = self.server.find(lambda s: s.startswith("ports"))
        assert found is not None
        _, discord_port, slack_port = found[1].split()
        instances = []
        for platform, url in self.urls.items():
            (self.work / platform).mkdir(exist_ok=True)
            instances.append({"platform": platform, "url": url, "dir": str(self.work / platform)})
        self.config.write_text(
            json.dumps(
                {
                    "replica": self.replica,
                    "discord": f"http://127.0.0.1:{discord_port}",
                    "slack": f"http://127.0.0.1:{slack_port}",
                    "gpu_jobs": self.gpu_jobs,
                    "demo": self.demo,
                    "instances": instances,
                }
            )
        )

    def bot(self) -> Proc:
        """A bot process (a fresh one, forked by the fork server)."""
        out = self.logs / f"bot-{len(self.bots) + 1}.out"
        self.bots.append(Forked(self.forks, self.config, out, self.logs / "bot.err"))
        return self.bots[-1]

    def start_worker(self, platform: str) -> None:
        state = self.work / platform / "state.json"
        self.workers[platform] = Proc(
            "bench.chaos_worker",
            [self.urls[platform], str(self.work / platform / "data"), str(state)],
            self.logs / f"worker-{platform}.err",
            env={"CHAOS_DEMO": self.demo},
        )

    def records(self) -> dict[str, Path]:
        out = {}
        for platform in self.urls:
            if platform == "terminal":
                out[platform] = self.work / "terminal" / "terminal.jsonl"
            else:
                out[platform] = self.work / "records" / f"{platform}.jsonl"
        return out

    def close(self) -> None:
        for proc in self.bots:
            if proc.alive:
                proc.kill()
        for proc in self.workers.values():
            proc.stop()
        self.server.kill()
        self.forks.kill()


async def ready(proc: Proc, what: str = "the bot process") -> None:
    if await proc.wait("ready", 180) is None:
        proc.kill()
        raise RuntimeError(f"{what} did not start (see the logs)")


async def run_target(
    target: str | None,
    backend: str,
    work: Path,
    platforms: list[str],
    opts: argparse.Namespace,
    rng: random.Random,
    work_seconds: float,
) -> RunResult:
    """One run on fresh databases and fakes: the reference (``target`` None) or the
    week with the bot, the leader replica or the GPU workers killed."""
    work.mkdir(parents=True)
    started = time.monotonic()
    async with databases(backend, work, platforms, opts.pg_url) as urls:
        run = Run(work, urls, opts.gpu_jobs, opts.demo, replica=target == "leader")
        try:
            await run.start()
            if target is None:
                result = await _reference(run)
            elif target == "bot":
                result = await _kill_bot(run, opts.kills, work_seconds, rng)
            elif target == "leader":
                result = await _kill_leader(run, opts.leader_kills, work_seconds, rng)
            else:
                result = await _kill_workers(run, opts.worker_kills, rng)
        finally:
            run.close()
        for platform, url in urls.items():
            result.gpu[platform] = await gpu_outcomes(url)
    result.seconds = time.monotonic() - started
    return result


async def _start_workers(run: Run) -> None:
    for platform in run.urls:
        run.start_worker(platform)
    for platform, proc in run.workers.items():
        await ready(proc, f"the GPU worker of {platform}")


async def _reference(run: Run) -> RunResult:
    bot = run.bot()
    await ready(bot)
    t0 = time.monotonic()
    await _start_workers(run)
    done = await bot.wait("done", 900)
    bot.reap()
    return RunResult(
        run.records(),
        dict.fromkeys(run.urls, 0),
        0.0,
        done is not None,
        work_seconds=(done or time.monotonic()) - t0,
    )


async def _kill_bot(run: Run, kills: int, work_seconds: float, rng: random.Random) -> RunResult:
    bot = run.bot()
    await ready(bot)
    await _start_workers(run)
    done = 0
    while done < kills:
        # A random moment within the work left, so that the kills spread over the week.
        await asyncio.sleep(rng.uniform(0, SPREAD * work_seconds / kills))
        if bot.find(lambda s: s == "done") or not bot.alive:
            break  # it finished the week before the kill
        bot.kill()
        done += 1
        bot = run.bot()
        await ready(bot)
    finished = await bot.wait("done", 900) is not None
    bot.reap()
    return RunResult(run.records(), dict.fromkeys(run.urls, done), 0.0, finished)


async def _kill_leader(run: Run, kills: int, work_seconds: float, rng: random.Random) -> RunResult:
    """Two replicas; at random moments a replica that leads (one or more instances: each
    database has its own leader lock) is killed and a new replica started; each
    instance it led must be led by another replica within TAKEOVER_LIMIT."""
    names = list(run.urls)
    first = run.bot()
    await ready(first, "the first replica")
    for name in names:
        if await first.wait(f"lead {name}", 120) is None:
            raise RuntimeError("the first replica did not lead")
    await _start_workers(run)
    second = run.bot()
    await ready(second, "the second replica")
    replicas, dead = [first, second], []
    done, takeovers, problems = 0, [], []

    def finished() -> bool:
        return all(
            any(p.find(lambda s, n=name: s == f"done {n}") for p in replicas + dead)
            for name in names
        )

    def leads(proc: Proc) -> list[str]:
        return [n for n in names if proc.find(lambda s, n=n: s == f"lead {n}")]

    while done < kills:
        await asyncio.sleep(rng.uniform(0, LEADER_SPREAD * work_seconds / kills))
        if finished():
            break
        leaders = [p for p in replicas if leads(p)]
        if not leaders:
            problems.append("no replica leads")
            break
        victim = rng.choice(leaders)
        led = leads(victim)
        killed_at = time.monotonic()
        victim.kill()
        replicas.remove(victim)
        dead.append(victim)
        done += 1
        replicas.append(run.bot())  # the replica restarted: it follows once it has started
        took = 0.0
        for name in led:
            hit = await _first_line(replicas, f"lead {name}", 60)
            if hit is None:
                problems.append(f"no replica took the lead of {name} within 60 s")
                took = float("inf")
                break
            took = max(took, hit - killed_at)
        takeovers.append(took)
        if took == float("inf"):
            break
    ok = await _until(lambda: finished() or not any(p.alive for p in replicas), 900)
    ok = ok and finished()
    for proc in replicas:
        proc.kill()
    return RunResult(
        run.records(),
        dict.fromkeys(run.urls, done),
        0.0,
        ok,
        takeovers=takeovers,
        problems=problems,
    )


async def _until(pred: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


async def _first_line(procs: list[Proc], line: str, within: float) -> float | None:
    """When the first of ``procs`` printed ``line``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        seen = [hit[0] for p in procs if (hit := p.find(lambda s: s == line)) is not None]
        if seen:
            return min(seen)
        await asyncio.sleep(0.02)
    return None


async def _kill_workers(run: Run, kills: int, rng: random.Random) -> RunResult:
    """Kill a worker in the middle of a job (each started job is a candidate, with
    probability 0.6, until ``kills`` were made), then start it again at once."""
    bot = run.bot()
    await ready(bot)
    await _start_workers(run)
    made: Counter[str] = Counter()
    seen: dict[str, int] = dict.fromkeys(run.urls, 0)  # lines of the current worker read
    plans: dict[str, tuple[float, str]] = {}  # platform → (when, job) to kill
    while bot.alive and not bot.find(lambda s: s == "done"):
        now = time.monotonic()
        for platform, proc in list(run.workers.items()):
            lines = [s for _, s in proc.lines[seen[platform] :]]
            seen[platform] += len(lines)
            for line in lines:
                what, _, job = line.partition(" ")
                if what == "run" and sum(made.values()) + len(plans) < kills and rng.random() < 0.6:
                    plans[platform] = (now + rng.uniform(0.1, JOB_SECONDS - 0.1), job)
                elif what == "end" and plans.get(platform, (0, ""))[1] == job:
                    del plans[platform]  # it finished first
            plan = plans.get(platform)
            if plan is not None and now >= plan[0]:
                del plans[platform]
                if proc.find(lambda s, j=plan[1]: s == f"end {j}") is None:
                    proc.kill()
                    made[platform] += 1
                    run.start_worker(platform)
                    seen[platform] = 0
        await asyncio.sleep(0.02)
    finished = await bot.wait("done", 900) is not None
    bot.reap()
    return RunResult(run.records(), {p: made[p] for p in run.urls}, 0.0, finished)


# ----------------------------------------------------------------------------- analysis

#: The first message of a GPU job (its progress message, edited as the job runs); any
#: other post naming the job is its result (finished, or stopped: its wording varies).
GPU_QUEUED = re.compile(r"GPU job #(\d+) \([^)]*\): queued")
GPU_ANY = re.compile(r"GPU job #(\d+)")
GPU_DONE = re.compile(r": (?:succeeded|failed|expired|cancelled)\b")


@dataclass
class Delivered:
    """What one platform fake recorded, normalised for comparison."""

    posts: Counter[tuple[str, str]]
    final: dict[str, str]  # edited message → the text it ended with
    window: int  # messages accepted before a kill and sent again after it


def read_records(path: Path, platform: str) -> Delivered:
    records: list[dict[str, Any]] = []
    if path.exists():
        for raw in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                records.append(json.loads(raw))
    posts: list[list[str]] = []  # [where, text]
    last_of_row: dict[str, int] = {}
    final: dict[str, str] = {}
    replays = 0
    keys: Counter[str] = Counter()
    for rec in records:
        kind, where, text, key = rec["kind"], rec["where"], rec.get("text") or "", rec.get("key")
        if kind == "replay":
            replays += 1
        elif kind == "edit":
            final[where] = text
        elif platform == "slack" and key and key.endswith(".file"):
            # A file upload belongs to the message its row posted just before it.
            keys[key] += 1
            row = key.split(".")[0]
            if row in last_of_row:
                posts[last_of_row[row]][1] += f" {text}"
            else:
                posts.append([where, text])
        else:
            if key:
                keys[key] += 1
                last_of_row[key.split(".")[0]] = len(posts)
            posts.append([where, text])
    window = replays
    if platform == "slack":  # no nonce: a message sent again is a second accept of its key
        window = sum(n - 1 for key, n in keys.items() if key.endswith(".post"))
    # GPU jobs by the order they were submitted in (a Postgres sequence skips the ids of
    # transactions a kill rolled back, so the ids themselves differ between runs).
    ids = sorted({int(m) for w, t in [*posts, *final.items()] for m in GPU_ANY.findall(f"{w} {t}")})
    job = {n: k for k, n in enumerate(ids, start=1)}
    normal: Counter[tuple[str, str]] = Counter()
    for where, text in posts:
        if (m := GPU_QUEUED.search(text)) is not None:
            text = f"GPU job {job[int(m[1])]}: its progress message"
        elif (m := GPU_ANY.search(text)) is not None:
            text = f"GPU job {job[int(m[1])]}: its result"
        normal[(where, text)] += 1
    edits: dict[str, str] = {}
    for where, text in final.items():
        m = GPU_ANY.search(where) or GPU_ANY.search(text)
        if m:  # a job's progress message: only whether it ends on the job's outcome
            key = f"GPU job {job[int(m[1])]}: its progress message"
            edits[key] = "finished" if GPU_DONE.search(text) else text
        else:
            edits[where] = text
    return Delivered(normal, edits, window)


@dataclass
class Row:
    backend: str
    platform: str
    target: str
    kills: int
    expected: int
    delivered: int
    lost: int
    duplicated: int
    window: int
    seconds: float
    verdict: str
    why: list[str] = field(default_factory=list)


def compare(
    backend: str,
    platform: str,
    target: str,
    ref: Delivered,
    got: Delivered,
    result: RunResult,
) -> Row:
    lost_posts = ref.posts - got.posts
    dup_posts = got.posts - ref.posts
    wrong_edits = [w for w, text in ref.final.items() if got.final.get(w) != text]
    expected = sum(ref.posts.values()) + len(ref.final)
    lost = sum(lost_posts.values()) + len(wrong_edits)
    dup = sum(dup_posts.values())
    kills = result.kills.get(platform, 0)
    why = []
    if lost:
        shown = [f"{w} | {t[:70]}" for (w, t) in lost_posts] + [
            f"{w} ends {got.final.get(w, '(never edited)')[:50]!r}, not {ref.final[w][:50]!r}"
            for w in wrong_edits
        ]
        why.append(f"lost: {'; '.join(shown[:3])}")
    if platform in ("terminal", "discord") and dup:
        why.append(f"duplicated: {'; '.join(f'{w} | {t[:70]}' for (w, t) in list(dup_posts)[:3])}")
    if platform == "slack" and (dup > got.window or got.window > kills):
        why.append(f"{dup} duplicates, {got.window} re-sends after {kills} kills")
    if target == "leader" and any(t > TAKEOVER_LIMIT for t in result.takeovers):
        why.append(f"a takeover took {max(result.takeovers):.1f} s")
    if not result.finished:
        why.append("the week did not finish")
    why += result.problems
    return Row(
        backend,
        platform,
        target,
        kills,
        expected,
        expected - lost,
        lost,
        dup,
        got.window,
        result.seconds,
        "FAIL" if why else "OK",
        why,
    )


def table(rows: list[Row], notes: list[str]) -> str:
    head = (
        f"{'backend':8} {'platform':8} {'killed':7} {'kills':>5} {'expected':>8} "
        f"{'delivered':>9} {'lost':>4} {'dup':>4} {'window':>6} {'time':>6}  verdict"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.backend:8} {r.platform:8} {r.target:7} {r.kills:>5} {r.expected:>8} "
            f"{r.delivered:>9} {r.lost:>4} {r.duplicated:>4} {r.window:>6} {r.seconds:>5.0f}s  "
            f"{r.verdict}"
        )
    lines.append("")
    lines.append(
        "kills: of the bot process (bot, leader: one process hosts the three platforms' bots, "
        "so each kill interrupts all three) or of the GPU workers in mid-job (worker)."
    )
    lines.append(
        "window: messages the platform had accepted when the process died, sent again after "
        "the restart (the kill fell between the platform's answer and the commit); the "
        "terminal's delivery key and Discord's nonce absorb them, on Slack each is a duplicate."
    )
    lines += notes
    for r in rows:
        for why in r.why:
            lines.append(f"FAIL {r.backend}/{r.platform}/{r.target}: {why}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the bench


_BEGUN = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _BEGUN:5.0f} s] {text}", file=sys.stderr, flush=True)


async def run(opts: argparse.Namespace) -> tuple[list[Row], list[str]]:
    rng = random.Random(opts.seed)
    rows: list[Row] = []
    notes: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="coursebot-chaos-"))
    try:
        for backend in opts.backends:
            targets = [t for t in opts.targets if t != "leader" or backend == "postgres"]
            try:
                say(f"{backend}: the reference run (no kills)")
                ref_run = await run_target(
                    None, backend, tmp / f"{backend}-reference", opts.platforms, opts, rng, 0
                )
            except OSError as exc:
                notes.append(f"{backend}: skipped ({exc})")
                continue
            if not ref_run.finished:
                raise RuntimeError(f"{backend}: the reference run did not finish its week")
            refs = {p: read_records(path, p) for p, path in ref_run.records.items()}
            say(
                f"{backend}: {sum(sum(r.posts.values()) for r in refs.values())} posts expected "
                f"in all; the week's work took {ref_run.work_seconds:.1f} s"
            )
            notes.append(
                f"{backend}: the week without kills took {ref_run.work_seconds:.0f} s "
                f"({', '.join(opts.platforms)} in one process)"
            )
            for target in targets:
                say(f"{backend}: killing the {target}")
                try:
                    result = await run_target(
                        target,
                        backend,
                        tmp / f"{backend}-{target}",
                        opts.platforms,
                        opts,
                        rng,
                        ref_run.work_seconds,
                    )
                except (RuntimeError, OSError) as exc:  # a process that did not start
                    for platform in opts.platforms:
                        rows.append(
                            Row(
                                backend, platform, target, 0, 0, 0, 0, 0, 0, 0.0, "FAIL", [str(exc)]
                            )
                        )
                    continue
                for platform, path in result.records.items():
                    row = compare(
                        backend,
                        platform,
                        target,
                        refs[platform],
                        read_records(path, platform),
                        result,
                    )
                    rows.append(row)
                    say(
                        f"  {platform}: {row.kills} kills, lost {row.lost}, dup {row.duplicated}, "
                        f"window {row.window}: {row.verdict}"
                    )
                if result.takeovers:
                    notes.append(
                        f"{backend} leader: {len(result.takeovers)} takeovers, the follower led "
                        f"after {min(result.takeovers):.1f}–{max(result.takeovers):.1f} s "
                        f"(limit {TAKEOVER_LIMIT:.0f} s)"
                    )
                if target == "worker":
                    ends = Counter[str]()
                    for counts in result.gpu.values():
                        ends.update(counts)
                    jobs = sum(ends.values())
                    notes.append(
                        f"{backend} worker: {jobs} GPU jobs ended "
                        + ", ".join(f"{n} {state}" for state, n in sorted(ends.items()))
                        + "; each result posted once (lost/dup above)"
                    )
    finally:
        if opts.keep:
            say(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return rows, notes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres")
    p.add_argument("--platforms", default=",".join(PLATFORMS), help="terminal,discord,slack")
    p.add_argument("--targets", default=",".join(TARGETS), help="bot,leader,worker")
    p.add_argument("--kills", type=int, default=50, help="kills of the bot process (50)")
    p.add_argument("--leader-kills", type=int, default=20, help="kills of the leader (20)")
    p.add_argument("--worker-kills", type=int, default=18, help="GPU worker kills in all (18)")
    p.add_argument("--gpu-jobs", type=int, default=6, help="GPU jobs in the week (at most 6)")
    p.add_argument(
        "--demo", default="chaos-conv2d", help="the GPU demo: chaos-conv2d, or conv2d (torch)"
    )
    p.add_argument("--quick", action="store_true", help="3 kills of the bot on SQLite, 1 GPU job")
    p.add_argument("--pg-url", default=PG_ADMIN_URL, help="an ADMIN url (throwaway databases)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs, records)")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.backends, opts.targets, opts.kills, opts.gpu_jobs = "sqlite", "bot", 3, 1
    opts.backends = [b for b in opts.backends.split(",") if b]
    opts.platforms = [x for x in opts.platforms.split(",") if x]
    opts.targets = [t for t in opts.targets.split(",") if t]
    for name, given, known in (
        ("--backends", opts.backends, ("sqlite", "postgres")),
        ("--platforms", opts.platforms, PLATFORMS),
        ("--targets", opts.targets, TARGETS),
    ):
        if not given or set(given) - set(known):
            p.error(f"{name} takes {', '.join(known)}")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    started = time.monotonic()
    rows, notes = asyncio.run(run(opts))
    notes.append(f"total {time.monotonic() - started:.0f} s")
    print(table(rows, notes))
    return 1 if any(r.verdict != "OK" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
