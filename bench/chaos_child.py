"""One bot process of the chaos benchmark, killed and restarted by :mod:`bench.chaos`.

It hosts one bot instance per platform, each on a database of its own: the command
core, the scheduler (``ReminderSweeper``) and the outbox dispatcher on shared virtual
time (:mod:`bench.chaos_clock`), behind

- **terminal**: a transcript file (:class:`FileOutbox`), in this process, as the shell's
  output is; each message is written with the outbox row's delivery key and a key that
  is already in the transcript is not written again;
- **discord**: the real ``CourseBot`` (discord.py: its HTTP client with nonces and
  ``enforce_nonce``, its gateway parsing) against the fake Discord of
  :mod:`bench.chaos_platforms`;
- **slack**: the real ``SlackBot`` (slack_sdk's ``AsyncWebClient``) against the fake
  Slack Web API; the client only adds a header naming the row it sends, for counting.

Each instance plays the same course week (:func:`week`): its commands are typed by the
course's people through the core, everything else is due work the scheduler posts.

As a replica (``"replica": true``) an instance first waits for the leader lock of its
database (``bot.leader``), as a follower does, and plays from where the dead leader
stopped.

Usage: python -m bench.chaos_child CONFIG_JSON. Prints ``ready`` once every instance has
started, ``lead <platform>`` when an instance begins to play (a replica: when it took the
lead), ``done <platform>`` when its week is over, and ``done`` at the end. The benchmark
starts these processes through ``--fork-server`` (:func:`fork_server`), so that a restart
does not pay for Python's imports again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select

import commands.gpu  # noqa: F401  (the catalogue the benchmark's demo is added to)
from bench.chaos_clock import DEMO, START, ChaosState, SharedClock, install_demo
from bench.chaos_platforms import GUILD_ID, SLACK_TEAM, USER_BASE
from bot.app import App, start_app
from bot.leader import leadership
from bot.scheduler import ReminderSweeper
from bot.settings import SAMPLE_COURSE, Settings, SlackSettings
from commands.context import Caller, Request, Where
from commands.coursefile import link_identity
from commands.due import earliest
from commands.outbox import delivery_nonce
from commands.replies import Reply, render_text
from db.models import Assignment, Course, CourseBinding, GpuJob, Paper, Person, Platform

END = START + timedelta(days=7)
#: The states a GPU job ends in.
FINISHED = ("succeeded", "failed", "cancelled", "expired")
H, D = 3600, 86400


@dataclass(frozen=True)
class Line:
    """A command of the week: ``at`` seconds after START, typed by ``who`` in ``channel``."""

    at: int
    who: str
    channel: str
    text: str


VOTERS = ["alice", "bob", "carol", "deepak", "emily", "farah"]
#: The published assignment's battle groups (paper number → presenters' first names).
BATTLE_GROUPS = {
    9: ["gabriel", "hannah", "jiawen"],
    10: ["kwame", "laura", "mateo"],
    11: ["nadia", "omar", "priya"],
    12: ["quinn", "ravi", "sofia"],
}
REASONS = [
    "Temporal shifts are free and keep the 2D backbone intact.",
    "Expanding a tiny network along each axis is the more general idea.",
]


def week(gpu_jobs: int = 6, demo: str = DEMO) -> list[Line]:
    """The sample course's rankings week, Fri 2023-08-25 to Fri 2023-09-01: announcements
    scheduled ahead, two battles (strict timers with warnings and overruns; a poll with
    justified votes closed by hand, another closed by its own timer), ``rankings remind``
    and the 24-hour deadline reminders and nudges, the critique pings and "closed" posts,
    ``gpu_jobs`` GPU demo jobs (at most one per voter) whose results a worker process
    produces, and an in-class discussion (breakout threads, the 5-minute warning, the
    call-back, the summary)."""
    lines = [
        Line(0, "gedas", "general", 'announce "Laptops on Monday, please." at 2023-08-26T09:00'),
        Line(1 * H, "maya", "general", "battle timer 1 a"),
        Line(2 * H, "gedas", "battles", "battle open 1"),
        *[
            Line(2 * H + 60 * (i + 1), who, "battles", f'battle vote 1 {"AB"[i % 2]} "{REASONS[i % 2]}"')
            for i, who in enumerate(VOTERS)
        ],
        Line(3 * H, "maya", "general", "rankings remind"),
        Line(3 * H + 1800, "gedas", "battles", "battle close 1"),
        Line(2 * D, "gedas", "general", 'announce "Rankings close tonight." at 2023-08-27T18:00'),
        *[Line(3 * D, who, "general", f"gpu run {demo}") for who in VOTERS[:gpu_jobs]],
        Line(4 * D, "maya", "general", "battle timer 2 b"),
        Line(4 * D + H, "gedas", "battles", "battle open 2 minutes=20"),
        *[
            Line(4 * D + H + 60 * (i + 1), who, "battles", f'battle vote 2 {"BA"[i % 3 == 0]} "{REASONS[i % 2]}"')
            for i, who in enumerate(VOTERS)
        ],
        Line(5 * D + 3 * H, "gedas", "general", 'discussion add 5 "Why does the fast pathway need so few channels?"'),
        Line(5 * D + 3 * H, "gedas", "general", 'discussion add 5 "Would two pathways help for audio too?"'),
        Line(5 * D + 3 * H, "gedas", "general", 'discussion add 5 "What would a third, slower pathway add?"'),
        Line(5 * D + 3 * H + 60, "gedas", "general", "discussion accept 5"),
        Line(5 * D + 4 * H + 1800, "gedas", "general", "discussion start 5 groups=3 minutes=20"),
        Line(5 * D + 4 * H + 1800 + 25 * 60, "gedas", "general", "discussion end 5"),
    ]  # fmt: skip
    return sorted(lines, key=lambda line: line.at)


# ----------------------------------------------------------------------------- terminal


def flat(text: str) -> str:
    return " ".join(text.split())


def shown(reply: Reply) -> str:
    """What a reader of the transcript sees: the rendered reply and its files' names."""
    files = " ".join(f"[{f.name}]" for f in reply.files)
    return flat(f"{render_text(reply)} {files}")


class FileOutbox:
    """The terminal: a transcript file. Every message is one fsynced JSON line with the
    outbox row's delivery key; a key already in the transcript (a message sent again
    after a crash) is not written twice, only noted as a ``replay``."""

    platform = Platform.TERMINAL

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, str] = {}
        self.reload()
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (lives with the process)

    def reload(self) -> None:
        """Read the keys already in the transcript (at start, and when a replica takes
        over from one that wrote to it meanwhile)."""
        if not self.path.exists():
            return
        for raw in self.path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(raw)
                if rec.get("key") and rec["kind"] != "replay":
                    self.seen[rec["key"]] = rec["ref"]

    def _write(
        self, kind: str, where: str, text: str, key: str | None, ref: str | None = None
    ) -> None:
        line = {"kind": kind, "where": where, "text": text, "key": key, "ref": ref}
        self.file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    async def _deliver(self, where: str, reply: Reply, *, thread: bool = False) -> str:
        """Write the message (once per delivery key); its reference: for a thread, the
        thread (where later posts go); else ``<where> / <first words>`` (what an edit
        names)."""
        key = delivery_nonce()
        if key is not None and key in self.seen:
            self._write("replay", where, "", key, self.seen[key])
            return self.seen[key]
        text = shown(reply)
        ref = where if thread else f"{where} / {text[:40]}"
        self._write("post", where, text, key, ref)
        if key is not None:
            self.seen[key] = ref
        await asyncio.sleep(0.002)  # the answer travels back
        return ref

    @staticmethod
    def _where(channel: str) -> str:
        return channel if channel.startswith("#") else f"#{channel}"

    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        return await self._deliver(self._where(channel), reply)

    async def edit(self, course_id: int, message_ref: str, reply: Reply) -> None:
        self._write("edit", message_ref, shown(reply), None)  # an edit is idempotent

    async def dm(self, course_id: int, person_id: int, reply: Reply) -> str:
        return await self._deliver(f"dm {person_id}", reply)

    async def dm_account(self, course_id: int, user_id: str, reply: Reply) -> str:
        return await self._deliver(f"dm @{user_id}", reply)

    async def thread(
        self, course_id: int, channel: str, name: str, reply: Reply, person_ids: Sequence[int] = ()
    ) -> str:
        return await self._deliver(f"{self._where(channel)} > {name}", reply, thread=True)


# ----------------------------------------------------------------------------- Slack


def keyed_client(base_url: str) -> Any:
    """slack_sdk's AsyncWebClient that names the outbox row being sent in a header
    (``X-Chaos-Key``); the fake Slack records it and nothing else changes."""
    from slack_sdk.web.async_client import AsyncWebClient

    class KeyedWebClient(AsyncWebClient):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.sent: Counter[tuple[str, str]] = Counter()

        async def api_call(  # type: ignore[override]
            self, api_method: str, *, headers: dict[str, str] | None = None, **kwargs: Any
        ) -> Any:
            nonce = delivery_nonce()
            if nonce is not None and api_method in (
                "chat.postMessage",
                "files.completeUploadExternal",
            ):
                n = self.sent[(nonce, api_method)]
                self.sent[(nonce, api_method)] += 1
                headers = {**(headers or {}), "X-Chaos-Key": f"{nonce}.{n}"}
            return await super().api_call(api_method, headers=headers, **kwargs)

    return KeyedWebClient(token="xoxb-chaos", base_url=base_url)


# ----------------------------------------------------------------------------- one instance


class Instance:
    """One bot on one platform and one database."""

    def __init__(self, spec: dict[str, Any], conf: dict[str, Any]) -> None:
        self.platform = Platform(spec["platform"])
        self.url: str = spec["url"]
        self.dir = Path(spec["dir"])
        self.conf = conf
        self.state = ChaosState(self.dir / "state.json", START)
        self.clock = SharedClock(self.state, follow=bool(conf.get("replica")))
        self.script = week(int(conf.get("gpu_jobs", 6)), str(conf.get("demo", DEMO)))
        self.app: App | None = None
        self.sweeper: ReminderSweeper | None = None
        self.transcript: FileOutbox | None = None
        self._close: list[Any] = []

    async def start(self) -> None:
        settings = Settings(
            database_url=self.url,
            COURSEBOT_DATA_DIR=self.dir / "data",
            COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
            COURSEBOT_GPU_WORKER=False,
            _env_file=None,
        )
        if self.platform is Platform.SLACK:
            slack = SlackSettings(
                bot_token="xoxb-chaos",
                signing_secret="chaos",
                api_url=f"{self.conf['slack']}/api/",
                _env_file=None,
            )
            settings = settings.model_copy(update={"slack": slack})
        app = await start_app(settings, clock=self.clock)
        self.app = app
        self._close.append(app.close)
        await self._prepare(app)
        if self.platform is Platform.TERMINAL:
            outbox = self.transcript = FileOutbox(self.dir / "terminal.jsonl")
            app.core.outbox = outbox
            self.sweeper = ReminderSweeper(
                app.db,
                outbox,
                self.clock,
                hours_before=settings.reminder_hours,
                platform=Platform.TERMINAL,
            )
        elif self.platform is Platform.DISCORD:
            self.sweeper = await self._start_discord(app)
        else:
            from bot.slack.bot import SlackBot

            bot = SlackBot(
                app, client=keyed_client(f"{self.conf['slack']}/api/"), post_interval=0.0
            )
            await bot.start(sweep=False)
            self._close.insert(0, bot.stop)
            self.sweeper = bot.sweeper

    async def _start_discord(self, app: App) -> ReminderSweeper:
        import discord
        import yarl
        from discord.gateway import DiscordWebSocket

        from bot.discord.client import CourseBot

        base = self.conf["discord"]
        discord.http.Route.BASE = f"{base}/api/v10"
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(base.replace("http", "ws", 1) + "/gateway")
        bot = CourseBot(
            app, guild_id=GUILD_ID, scheduler=False, sync=False, guild_ready_timeout=0.05
        )
        await bot.login("chaos-token")
        gateway = asyncio.create_task(bot.connect(reconnect=False))
        await asyncio.wait_for(bot.wait_until_ready(), 60)
        if gateway.done():
            gateway.result()

        async def close() -> None:
            await bot.close()
            gateway.cancel()

        self._close.insert(0, close)
        return bot.sweeper

    async def _prepare(self, app: App) -> None:
        """Once per database, in one transaction: the published assignment's battle
        groups (so battles 1 and 2 run), and on Discord or Slack the course bound to the
        fake's guild or workspace with every person linked to an account there (so
        private messages can go out)."""
        async with app.db.transaction() as session:
            course = await session.scalar(select(Course))
            assert course is not None
            if await session.scalar(select(Assignment.id).limit(1)) is not None:
                return
            people = {
                p.name.split()[0].lower(): p
                for p in await session.scalars(select(Person).where(Person.course_id == course.id))
            }
            papers = {
                p.number: p
                for p in await session.scalars(select(Paper).where(Paper.course_id == course.id))
            }
            for number, names in BATTLE_GROUPS.items():
                for name in names:
                    session.add(
                        Assignment(
                            course_id=course.id,
                            paper_id=papers[number].id,
                            person_id=people[name].id,
                            published=True,
                        )
                    )
            if self.platform is Platform.TERMINAL:
                return
            external = str(GUILD_ID) if self.platform is Platform.DISCORD else SLACK_TEAM
            session.add(
                CourseBinding(course_id=course.id, platform=self.platform, external_id=external)
            )
            for person in list(
                await session.scalars(select(Person).where(Person.course_id == course.id))
            ):
                account = (
                    str(USER_BASE + person.id)
                    if self.platform is Platform.DISCORD
                    else f"U{person.id:04d}"
                )
                await link_identity(
                    session, course, person, self.platform, account, now=self.clock.now(),
                    display_name=person.name,
                )  # fmt: skip

    async def close(self) -> None:
        for close in self._close:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close(), 10)

    # ------------------------------------------------------------------ the week
    async def run(self) -> None:
        if self.conf.get("replica"):
            await leadership(self.url).wait()
            self.state.load()
            self.clock.follow = False
            if self.transcript is not None:
                self.transcript.reload()
        print(f"lead {self.platform.value}", flush=True)
        await self.play()
        print(f"done {self.platform.value}", flush=True)

    async def play(self) -> None:
        assert self.app is not None and self.sweeper is not None
        sweeper, clock, state = self.sweeper, self.clock, self.state
        # What a dead process was sending when it stopped goes out again now.
        await sweeper.dispatcher.release_stale()
        while True:
            now = clock.now()
            # Commands due by now, in order; after a restart the first may be one that
            # did commit (its event id makes it a no-op), none runs twice otherwise.
            while (
                state.done < len(self.script)
                and START + timedelta(seconds=self.script[state.done].at) <= now
            ):
                await self.command(state.done)
                state.done += 1
                state.save()
            await sweeper.run_due()
            await sweeper.dispatcher.deliver()
            if await self.gpu_busy():
                clock.flow()  # a worker in real time is part of the story now
                await asyncio.sleep(0.1)
                continue
            if now >= END:
                break
            script = (
                START + timedelta(seconds=self.script[state.done].at)
                if state.done < len(self.script)
                else None
            )
            nxt = earliest(
                await sweeper.next_at(), await sweeper.dispatcher.next_due(), script, END
            )
            assert nxt is not None
            clock.jump(max(nxt, now + timedelta(microseconds=1)))
            await asyncio.sleep(0.003)  # room for the kill to land anywhere

    async def command(self, i: int) -> None:
        assert self.app is not None
        line = self.script[i]
        request = Request(
            Platform.TERMINAL,
            "default",
            Caller(Platform.TERMINAL, line.who, line.who),
            Where(line.channel),
            event_id=f"chaos-{i}",
        )
        reply = await self.app.core.handle_text(request, line.text)
        if reply.is_error:
            print(f"{self.platform.value}: `{line.text}` failed: {reply.text}", file=sys.stderr)

    async def gpu_busy(self) -> bool:
        """A job queued or running, or a finished one not yet posted."""
        assert self.app is not None
        async with self.app.db.session() as session:
            found = await session.scalar(
                select(GpuJob.id)
                .where(
                    or_(
                        GpuJob.state.in_(("queued", "running")),
                        and_(GpuJob.posted.is_(False), GpuJob.state.in_(FINISHED)),
                    )
                )
                .limit(1)
            )
        return found is not None


async def main(config: str) -> None:
    conf = json.loads(Path(config).read_text())
    install_demo()
    instances = [Instance(spec, conf) for spec in conf["instances"]]
    for inst in instances:
        await inst.start()
    print("ready", flush=True)
    await asyncio.gather(*(inst.run() for inst in instances))
    for inst in instances:
        await inst.close()
    print("done", flush=True)


def fork_server() -> None:
    """``--fork-server``: import everything a bot process needs once, then, for each
    line ``CONFIG<TAB>STDOUT<TAB>STDERR`` read on stdin, fork a fresh bot process (no
    event loop, connection or client exists before the fork: it starts the bot from
    scratch, only Python's imports are already done) and print its pid. The children are
    reaped by the kernel (SIGCHLD ignored), so a killed one vanishes at once."""
    import bot.discord.client
    import bot.slack.bot  # noqa: F401
    from commands import load_registry

    load_registry()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print("fork-server", flush=True)
    for request in sys.stdin:
        config, out, err = request.rstrip("\n").split("\t")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND), 1)
                os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_APPEND), 2)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                logging.basicConfig(level=logging.ERROR)
                asyncio.run(main(config))
                code = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(pid, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--fork-server":
        fork_server()
    else:
        logging.basicConfig(level=logging.ERROR)
        asyncio.run(main(sys.argv[1]))
