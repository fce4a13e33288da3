"""Class-sized bursts on each platform (issue #20, points 3 and 7).

Run from the repository root::

    .venv/bin/python -m bench.burst                      # 3 platforms, SQLite and Postgres
    .venv/bin/python -m bench.burst --backends sqlite    # SQLite only
    .venv/bin/python -m bench.burst --platforms slack --voters 30 --lookups 20

What it does, on each platform in turn and on each backend (a fresh database each time:
a SQLite file, or a throwaway Postgres database next to ``--pg-url``; the sample course
``examples/comp790-23f.yaml`` imported as the tests import it, plus ``--voters`` generated
students with linked accounts on that platform), through the platform's real client:

- **terminal**: the command core, with the terminal shell as its outbox port;
- **Discord**: the real discord.py client against simcord's in-memory Discord
  (``tests/discord_fakes.py``); the burst's gateway events and interactions are emitted
  in the same instant (``react_together``, ``slash_together``);
- **Slack**: the production slack-bolt app over real HTTP on 127.0.0.1, driven by signed
  requests, its slack_sdk client pointed at the fake Web API (``tests/slack_fakes.py``)
  with Slack's rate limits on (``SLACK_LIMITS``: HTTP 429 and Retry-After over them).

The instructor opens battle 1's poll (its sides published by hand, as the tests do); then

1. **reactions**: every voter reacts to the poll in the same instant (a seeded side each;
   the answer is the private request for a justification);
2. **justifications**: every voter sends theirs at once (``battle vote 1 A "..."``);
3. **lookups**: ``--lookups`` students type ``papers`` at once in #general.

The clock is real time shifted to the battle's day (``ShiftedClock``), so the outbox
coalesces the poll's edits as it does in class (at most one a second per poll, each
rendered from the votes when it is sent); after each burst the bench sends what the
outbox still has due (the dispatcher loop's job in production) until nothing is pending.

One row per platform and scenario: the poll edits the platform received, the edits the
outbox skipped (replaced by a newer one), the 429s the client saw (simcord has no rate
limits: the Discord rows, marked ``~``, count instead the requests that Discord's global
limit of 50 a second would have held back, interactions being exempt), public channel
messages posted by the lookups (must be 0), p50 / p99 / max of the time until the person
who acted had their answer (ms, from their event or request being sent to the platform
receiving the answer), how many were answered, the p99 time to acknowledge (Discord's
deferral, Slack's HTTP 200: both must come within 3 s), and whether the poll's final text
shows the true count. The exit status is 1 when a check fails. A Postgres that does not
answer is reported and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select

from bot.app import App, start_app
from bot.settings import SAMPLE_COURSE, Settings
from commands.battles import poll_key, progress_line, rules, vote_counts
from commands.clock import ShiftedClock
from commands.context import Caller, Request, Where
from commands.outbox import PENDING, SKIPPED
from commands.replies import render_text
from db.models import (
    Battle,
    BattlePoll,
    Course,
    CourseBinding,
    Identity,
    OutboxMessage,
    Person,
    Platform,
    Role,
)

#: Battle 1's class (Wed 2023-09-13, 2:30 PM in New York), as in tests/test_battles.py.
BATTLE_DAY = datetime(2023, 9, 13, 18, 30, tzinfo=UTC)
BATTLE = 1
EMOJI = {"A": "🅰️", "B": "🅱️"}
#: What the answer to a reaction asks (a vote counts once it has a justification).
ASKED = "counts once you say why"
PLATFORMS = ("terminal", "discord", "slack")
SLACK_SECRET = "burst-bench-signing-secret-0123456789"
SLACK_TEAM = "T1"
#: How long a burst's answers may take before the run fails (a failure, not a figure).
WAIT_S = 120.0
#: The local Postgres (trust auth) next to which the throwaway databases are made.
PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
#: Discord's global limit: 50 requests a second per bot (interaction callbacks and
#: follow-ups are exempt).
DISCORD_GLOBAL_PER_S = 50.0


def justification(handle: str, side: str) -> str:
    return f"{handle} votes {side}: its ablations are the more convincing ones."


def flat(text: str) -> str:
    return " ".join(text.split())


async def until(done: Callable[[], bool], what: str = "a burst's answers") -> None:
    """Poll ``done`` from the bench's own task until it holds (WAIT_S at most). On
    Discord this also keeps simcord's ``settle`` (which scans every pending task many
    times a second) out of the measured times."""
    deadline = time.perf_counter() + WAIT_S
    while not done():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{what} did not all arrive within {WAIT_S:.0f} s")
        await asyncio.sleep(0.01)


# ----------------------------------------------------------------------------- results


@dataclass
class Row:
    backend: str
    platform: str
    scenario: str
    people: int
    edits_sent: int | None = None
    edits_skipped: int | None = None
    #: 429s the client saw; on Discord (``modelled``) what a 50/s bucket would hold back.
    limited: int = 0
    modelled: bool = False
    public_posts: int | None = None
    #: Seconds until each person who acted had their answer.
    replies: list[float] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    count_ok: bool | None = None
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def pct(values: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def ms(values: list[float], q: float | None) -> str:
    if not values:
        return "-"
    return f"{(max(values) if q is None else pct(values, q)) * 1000:.0f}"


def table(rows: list[Row]) -> str:
    out = [
        "| backend | platform | scenario | edits sent | edits skipped | 429s | public posts "
        "| p50 ms | p99 ms | max ms | answered | ack p99 ms | final count |",
        "|" + "---|" * 13,
    ]
    for r in rows:

        def n(v: int | None) -> str:
            return "-" if v is None else str(v)

        final = "-" if r.count_ok is None else ("yes" if r.count_ok else "**no**")
        out.append(
            f"| {r.backend} | {r.platform} | {r.scenario} | {n(r.edits_sent)} | {n(r.edits_skipped)} "
            f"| {'~' if r.modelled else ''}{r.limited} | {n(r.public_posts)} "
            f"| {ms(r.replies, 50)} | {ms(r.replies, 99)} | {ms(r.replies, None)} "
            f"| {len(r.replies)}/{r.people} | {ms(r.acks, 99)} | {final} |"
        )
    return "\n".join(out)


# ----------------------------------------------------------------------------- the course


@dataclass(frozen=True)
class Voter:
    handle: str  # v000, ...
    side: str  # "A" or "B" (seeded)
    account: str = ""  # the account id on the platform being measured


def make_voters(n: int, seed: int) -> list[Voter]:
    rng = random.Random(seed)
    voters = [Voter(f"v{i:03d}", rng.choice("AB")) for i in range(n)]
    rng.shuffle(voters)  # the order in which they are released
    return voters


async def link_students(
    app: App, platform: Platform, accounts: Sequence[str], *, name: str = "Burst Student"
) -> None:
    """A generated student on the roster for each account id (``<name> 000``, …),
    each with that account on ``platform`` linked."""
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        for i, account in enumerate(accounts):
            p = Person(
                course_id=course.id,
                name=f"{name} {i:03d}",
                email=f"{name.split()[0].lower()}{i:03d}@burst.example",
                role=Role.STUDENT,
            )
            s.add(p)
            await s.flush()
            s.add(
                Identity(
                    course_id=course.id,
                    person_id=p.id,
                    platform=platform,
                    user_id=account,
                    linked_at=app.clock.now(),
                )
            )


async def add_students(app: App, plat: Platform, voters: list[Voter]) -> None:
    """The generated students, each with their account on ``plat`` linked."""
    await link_students(app, plat, [v.account for v in voters])


async def seat_battle(app: App) -> None:
    """Battle 1's sides, published by hand (a poll opens once a battle has presenters)."""
    from tests.helpers import QUIET_GROUPS, publish_groups

    await publish_groups(app, QUIET_GROUPS)


async def outbox_mark(app: App) -> int:
    async with app.db.session() as s:
        return int(await s.scalar(select(func.max(OutboxMessage.id))) or 0)


async def skipped_edits(app: App, since: int) -> int:
    """The poll's edit rows written after ``since`` that a newer one replaced."""
    async with app.db.session() as s:
        battle = await s.scalar(select(Battle).where(Battle.number == BATTLE))
        assert battle is not None
        n = await s.scalar(
            select(func.count()).where(
                OutboxMessage.edit_key == poll_key(battle),
                OutboxMessage.id > since,
                OutboxMessage.status == SKIPPED,
            )
        )
    return int(n or 0)


async def drain_outbox(app: App, settle: Callable[[], Awaitable[None]]) -> None:
    """Send what the outbox has due until nothing is pending (a coalesced edit waits up
    to a second after the previous one): the dispatcher loop's job in production."""
    assert app.core.dispatcher is not None
    deadline = time.perf_counter() + WAIT_S
    while time.perf_counter() < deadline:
        await app.core.settle()
        await settle()
        async with app.db.session() as s:
            due = await s.scalar(
                select(func.min(OutboxMessage.next_attempt_at)).where(
                    OutboxMessage.status == PENDING
                )
            )
        if due is None:
            return
        due = due if due.tzinfo else due.replace(tzinfo=UTC)
        await asyncio.sleep(max(0.0, min(1.5, (due - app.clock.now()).total_seconds())))
        await app.core.dispatcher.deliver()
    raise RuntimeError("the outbox still had pending rows after the burst")


async def expected_poll(app: App, voters: list[Voter], *, justified: bool) -> tuple[str, bool]:
    """The line the poll must show once every voter reacted (``justified``: and gave a
    reason), and whether the stored votes are exactly those."""
    counted = {"A": 0, "B": 0}
    if justified:
        for v in voters:
            counted[v.side] += 1
    pending = 0 if justified else len(voters)
    async with app.db.session() as s:
        course = await s.scalar(select(Course))
        poll = await s.scalar(
            select(BattlePoll)
            .join(Battle, Battle.id == BattlePoll.battle_id)
            .where(Battle.number == BATTLE)
        )
        assert course is not None and poll is not None
        stored = await vote_counts(s, poll)
        line = progress_line(counted, pending, rules(course))
    return line, stored == (counted, pending)


# ----------------------------------------------------------------------------- scenarios


@dataclass
class Burst:
    """What one burst got: seconds until each person's answer, the acknowledgements."""

    replies: dict[str, float] = field(default_factory=dict)
    acks: list[float] = field(default_factory=list)
    public: int = 0  # public channel messages (and non-private answers) it caused
    wrong: int = 0  # answers that did not say what they should
    paced: int = 0  # sends that waited their turn in a channel pacer (Slack's)


class Driver(Protocol):
    """One platform, its bot started, the course bound and the voters linked."""

    name: str
    app: App
    #: Whether ``limited_since`` is a model (simcord) rather than 429s the client saw.
    modelled: bool

    async def open_poll(self) -> None: ...
    async def react(self, voters: list[Voter]) -> Burst: ...
    async def justify(self, voters: list[Voter]) -> Burst: ...
    async def lookup(self, people: list[Voter]) -> Burst: ...
    def mark(self) -> Any: ...
    def edits_since(self, mark: Any) -> int: ...
    def limited_since(self, mark: Any) -> int: ...
    def poll_text(self) -> str: ...
    async def settle(self) -> None: ...


async def run_scenarios(driver: Driver, voters: list[Voter], lookups: int) -> list[Row]:
    app = driver.app
    backend = "SQLite" if app.db.backend == "sqlite" else "Postgres"
    await driver.open_poll()
    await drain_outbox(app, driver.settle)
    rows = []
    steps: list[tuple[str, Callable[[list[Voter]], Awaitable[Burst]], list[Voter], bool | None]] = [
        (f"{len(voters)} reactions", driver.react, voters, False),
        (f"{len(voters)} justifications", driver.justify, voters, True),
        (f"{lookups} × papers", driver.lookup, voters[:lookups], None),
    ]
    for scenario, act, people, justified in steps:
        print(f"  {scenario}", file=sys.stderr, flush=True)
        row = Row(backend, driver.name, scenario, len(people), modelled=driver.modelled)
        outbox, mark = await outbox_mark(app), driver.mark()
        burst = await act(people)
        await drain_outbox(app, driver.settle)
        row.replies, row.acks = list(burst.replies.values()), burst.acks
        row.limited = driver.limited_since(mark)
        row.check(burst.wrong == 0, f"{burst.wrong} answers did not say what they should")
        row.check(len(row.replies) == len(people), f"{len(people) - len(row.replies)} unanswered")
        if justified is None:  # a lookup: nothing public, and the poll is not touched
            row.public_posts = burst.public
            row.check(burst.public == 0, f"{burst.public} public messages")
            row.check(burst.paced == 0, f"{burst.paced} answers waited for a channel pacer")
        else:
            row.edits_sent = driver.edits_since(mark)
            row.edits_skipped = await skipped_edits(app, outbox)
            line, stored = await expected_poll(app, voters, justified=justified)
            row.count_ok = stored and line in flat(driver.poll_text())
            row.check(row.count_ok, f"the poll does not show {line!r}")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- terminal


class TerminalDriver:
    """The command core with the terminal shell as the outbox port; a person's answer
    is the core's reply (what the shell prints)."""

    name, modelled = "terminal", False

    def __init__(self, app: App, tmp: Path) -> None:
        from bot.shell import Shell

        self.app = app
        self.lines: list[str] = []
        self.shell = Shell(
            app,
            workspace="default",
            speaker="gedas",
            channel="battles",
            files_dir=tmp / "shell-files",
            out=self.lines.append,
        )
        self.edits: list[str] = []
        real_edit = self.shell.edit

        async def edit(course_id: int, ref: str, reply: Any) -> None:
            self.edits.append(ref)
            await real_edit(course_id, ref, reply)

        self.shell.edit = edit  # type: ignore[method-assign]
        self.poll_ref = ""

    @staticmethod
    def request(handle: str, channel: str) -> Request:
        return Request(
            Platform.TERMINAL,
            "default",
            Caller(Platform.TERMINAL, handle, handle),
            Where(channel),
        )

    async def open_poll(self) -> None:
        if not await self.shell.handle_line(f"battle open {BATTLE}"):
            raise RuntimeError("\n".join(self.lines[-5:]))
        msg = next(m for m in self.shell.messages.values() if m.reply.reactions is not None)
        self.poll = msg
        self.poll_ref = self.shell.ref(msg)

    async def _all(self, people: list[Voter], act: Callable[[Voter], Awaitable[bool]]) -> Burst:
        burst = Burst()

        async def one(v: Voter) -> None:
            t0 = time.perf_counter()
            if await act(v):
                burst.replies[v.handle] = time.perf_counter() - t0
            else:
                burst.wrong += 1

        await asyncio.gather(*(one(v) for v in people))
        return burst

    async def react(self, voters: list[Voter]) -> Burst:
        async def one(v: Voter) -> bool:
            reply = await self.app.core.handle_reaction(
                self.request(v.handle, "battles"), self.poll_ref, EMOJI[v.side], added=True
            )
            return reply is not None and ASKED in reply.text

        return await self._all(voters, one)

    async def justify(self, voters: list[Voter]) -> Burst:
        async def one(v: Voter) -> bool:
            line = f'battle vote {BATTLE} {v.side} "{justification(v.handle, v.side)}"'
            reply = await self.app.core.handle_text(self.request(v.handle, "battles"), line)
            return not reply.is_error and "counts" in reply.text

        return await self._all(voters, one)

    async def lookup(self, people: list[Voter]) -> Burst:
        posted = len(self.shell.messages)
        burst = await self._all(people, self._papers)
        # A lookup's answer is the reply to the person; anything else the shell shows
        # since (a post, a DM) went out through the outbox to a channel or person.
        burst.public = len(self.shell.messages) - posted
        return burst

    async def _papers(self, v: Voter) -> bool:
        reply = await self.app.core.handle_text(self.request(v.handle, "general"), "papers")
        return not reply.is_error and reply.ephemeral and "papers" in render_text(reply)

    def mark(self) -> int:
        return len(self.edits)

    def edits_since(self, mark: int) -> int:
        return sum(1 for ref in self.edits[mark:] if ref == self.poll_ref)

    def limited_since(self, mark: int) -> int:
        return 0  # the terminal has no rate limits

    def poll_text(self) -> str:
        return render_text(self.poll.reply)

    async def settle(self) -> None:
        return None


async def run_terminal(app: App, tmp: Path, voters: list[Voter], lookups: int) -> list[Row]:
    voters = [dataclasses.replace(v, account=v.handle) for v in voters]
    driver = TerminalDriver(app, tmp)
    await add_students(app, Platform.TERMINAL, voters)
    await seat_battle(app)
    return await run_scenarios(driver, voters, lookups)


# ----------------------------------------------------------------------------- Discord


@contextlib.contextmanager
def simcord_requests() -> Iterator[list[tuple[float, str, str, Any]]]:
    """``(when, method, path, json)`` of every REST call the bot makes to simcord
    (discord.py's HTTP client and its webhook adapter both end in simcord's router).
    ``time.perf_counter``: simcord replaces ``time.monotonic`` while its world runs."""
    from simcord.http import router

    calls: list[tuple[float, str, str, Any]] = []
    real = router.dispatch

    def dispatch(backend: Any, method: str, path: str, **kwargs: Any) -> Any:
        calls.append((time.perf_counter(), method, path, kwargs.get("json")))
        return real(backend, method, path, **kwargs)

    router.dispatch = dispatch  # type: ignore[assignment]
    try:
        yield calls
    finally:
        router.dispatch = real  # type: ignore[assignment]


def held_back(calls: list[tuple[float, str, str, Any]]) -> int:
    """The requests a bucket of Discord's global limit (50 a second) would have found
    empty; interaction callbacks and follow-ups (``/interactions``, ``/webhooks``) are
    exempt from it. discord.py would have waited for each (a 429 or its own pacing)."""
    rate = DISCORD_GLOBAL_PER_S
    tokens, last, held = rate, None, 0
    for t, _method, path, _body in calls:
        if path.startswith(("/interactions/", "/webhooks/")):
            continue
        tokens = tokens if last is None else min(rate, tokens + (t - last) * rate)
        last = t
        if tokens >= 1:
            tokens -= 1
        else:
            held += 1
    return held


def discord_text(message: Any) -> str:
    parts = [message.content or ""]
    for embed in message.embeds:
        parts += [embed.title or "", embed.description or ""]
        parts += [f"{f.name} {f.value}" for f in embed.fields]
    return flat(" ".join(p for p in parts if p))


class DiscordDriver:
    """The real discord.py client in simcord's guild; a reaction is answered by DM, a
    slash command by completing its (private) deferral."""

    name, modelled = "discord", True

    def __init__(self, app: App, world: Any, calls: list[tuple[float, str, str, Any]]) -> None:
        self.app = app
        self.w = world
        self.calls = calls
        self.battles = world.channels["battles"]
        self.general = world.channels["general"]
        self.guild_channels = {str(c.id) for c in world.channels.values()}
        self.edit_path = ""

    async def open_poll(self) -> None:
        await self.w.gedas.slash(self.battles, "admin battle open", battle=str(BATTLE))
        poll = self.battles.last_message
        if poll is None or not poll.reactions:
            raise RuntimeError("the poll was not posted with its reactions")
        self.poll = poll
        self.edit_path = f"/channels/{self.battles.id}/messages/{poll.id}"

    async def react(self, voters: list[Voter]) -> Burst:
        from tests.discord_fakes import react_together

        burst, seen = Burst(), len(self.calls)
        backend = self.w.env.backend

        def answered() -> bool:
            nonlocal seen
            dm_of = {str(backend.dm_channels.get(int(v.account))): v for v in voters}
            for t, method, path, body in self.calls[seen:]:
                parts = path.strip("/").split("/")
                v = dm_of.get(parts[1]) if method == "POST" and len(parts) == 3 else None
                if v is not None and ASKED in json.dumps(body, ensure_ascii=False):
                    burst.replies.setdefault(v.handle, t - t0)
            seen = len(self.calls)
            return len(burst.replies) >= len(voters)

        t0 = time.perf_counter()
        react_together(self.w.env, self.poll, [(int(v.account), EMOJI[v.side]) for v in voters])
        await until(answered)
        await self.settle()
        return burst

    async def _slashes(
        self,
        people: list[Voter],
        channel: Any,
        name: str,
        options: list[dict[str, object]],
        want: str,
    ) -> Burst:
        from tests.discord_fakes import slash_together

        burst, seen = Burst(), len(self.calls)
        actors = [self.w.members[v.handle] for v in people]
        t0 = time.perf_counter()
        results = await slash_together(self.w.env, actors, channel, name, options)
        by_token = {r._interaction.token: v for r, v in zip(results, people, strict=True)}

        def answered() -> bool:
            nonlocal seen
            for t, method, path, body in self.calls[seen:]:
                parts = path.strip("/").split("/")
                if parts[0] == "interactions" and parts[-1] == "callback":
                    burst.acks.append(t - t0)
                    flags = int(((body or {}).get("data") or {}).get("flags") or 0)
                    burst.public += 0 if flags & 64 else 1  # 64: only the caller sees it
                elif parts[0] == "webhooks" and len(parts) > 2 and parts[2] in by_token:
                    burst.replies.setdefault(by_token[parts[2]].handle, t - t0)
                elif method == "POST" and parts[0] == "channels" and parts[-1] == "messages":
                    burst.public += parts[1] in self.guild_channels
            seen = len(self.calls)
            return len(burst.replies) >= len(people)

        await until(answered)
        await self.settle()
        answered()
        burst.wrong = sum(
            1 for r in results if r.response is None or want not in discord_text(r.response)
        )
        return burst

    async def justify(self, voters: list[Voter]) -> Burst:
        options: list[dict[str, object]] = [
            {
                "battle": str(BATTLE),
                "side": v.side,
                "justification": justification(v.handle, v.side),
            }
            for v in voters
        ]
        return await self._slashes(voters, self.battles, "battle vote", options, "counts")

    async def lookup(self, people: list[Voter]) -> Burst:
        return await self._slashes(people, self.general, "papers", [{} for _ in people], "papers")

    def mark(self) -> int:
        return len(self.calls)

    def edits_since(self, mark: int) -> int:
        return sum(1 for _t, m, p, _b in self.calls[mark:] if m == "PATCH" and p == self.edit_path)

    def limited_since(self, mark: int) -> int:
        return held_back(self.calls[mark:])

    def poll_text(self) -> str:
        return discord_text(next(m for m in self.battles.history() if m.id == self.poll.id))

    async def settle(self) -> None:
        await self.w.env.settle(timeout=WAIT_S)


async def run_discord(app: App, tmp: Path, voters: list[Voter], lookups: int) -> list[Row]:
    from tests.discord_fakes import World, discord_world

    def prepare(world: World) -> None:
        for v in voters:
            user = world.env.create_user(v.handle, global_name=f"Student {v.handle}")
            world.members[v.handle] = world.guild.add_member(user)

    with simcord_requests() as calls:
        async with discord_world(app, prepare=prepare) as w:
            voters = [dataclasses.replace(v, account=str(w.members[v.handle].id)) for v in voters]
            await add_students(app, Platform.DISCORD, voters)
            await seat_battle(app)
            return await run_scenarios(DiscordDriver(app, w, calls), voters, lookups)


# ----------------------------------------------------------------------------- Slack


def block_texts(blocks: Any) -> str:
    """Every text of a Block Kit message, joined."""
    from tests.slack_fakes import block_strings

    return flat(" ".join(block_strings(blocks)))


class SlackDriver:
    """The production Slack app over HTTP; a reaction is answered with
    chat.postEphemeral, a slash command through its response URL."""

    name, modelled = "slack", False

    def __init__(self, app: App, bot: Any, fake: Any, url: str, http: Any) -> None:
        from tests.slack_fakes import Signer

        self.app, self.bot, self.fake, self.url, self.http = app, bot, fake, url, http
        self.signer = Signer(SLACK_SECRET)
        self.poll: dict[str, Any] = {}
        #: Channels of the posts that went through the per-channel pacer.
        self.paced: list[str] = []
        real_turn = bot.sender.pacer.turn

        def turn(channel: str) -> Any:
            self.paced.append(channel)
            return real_turn(channel)

        bot.sender.pacer.turn = turn

    async def _send(self, body: str, content_type: str) -> float:
        """POST a signed request; the seconds until the bot's HTTP 200 (its ack)."""
        t0 = time.monotonic()
        headers = self.signer.headers(body, content_type)
        async with self.http.post(self.url, data=body.encode(), headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"the bot answered HTTP {resp.status}")
        return time.monotonic() - t0

    def _command(self, text: str, user: str, channel: str) -> tuple[str, str]:
        from tests.slack_fakes import command_body

        response_url = self.fake.response_url()
        body = command_body(
            text,
            team=SLACK_TEAM,
            user=user,
            user_name=user.lower(),
            channel=channel,
            channel_name="battles" if channel == "CBATTLES" else "general",
            response_url=response_url,
            trigger_id=f"trig-{time.monotonic_ns()}-{user}",
        )
        return body, response_url

    async def open_poll(self) -> None:
        from tests.slack_fakes import FORM

        await self._send(self._command(f"battle open {BATTLE}", "UGEDAS", "CBATTLES")[0], FORM)
        self.poll = await self.fake.wait_for(
            "chat.postMessage",
            lambda a: "which paper should be accepted" in block_texts(a.get("blocks", [])),
            within=WAIT_S,
        )
        await self.fake.wait_for("reactions.add", lambda a: a["name"] == "b", within=WAIT_S)

    async def react(self, voters: list[Voter]) -> Burst:
        from tests.slack_fakes import JSON, event_body

        burst, seen, sent = Burst(), len(self.fake.calls), {}
        by_user = {v.account: v for v in voters}

        async def one(i: int, v: Voter) -> None:
            event = {
                "type": "reaction_added",
                "user": v.account,
                "reaction": v.side.lower(),  # Slack's names of 🅰️ and 🅱️: a, b
                "item_user": "UBOT",
                "item": {"type": "message", "channel": self.poll["channel"], "ts": self.poll["ts"]},
                "event_ts": f"1700000100.{i:06d}",
            }
            body = event_body(event, f"EvBurst{i:04d}", team=SLACK_TEAM)
            sent[v.handle] = time.monotonic()
            burst.acks.append(await self._send(body, JSON))

        def answered() -> bool:
            nonlocal seen
            for c in self.fake.calls[seen:]:
                v = by_user.get(str(c.args.get("user")))
                if c.method != "chat.postEphemeral" or v is None or v.handle not in sent:
                    continue
                if ASKED in block_texts(c.args.get("blocks", [])):
                    burst.replies.setdefault(v.handle, c.at - sent[v.handle])
            seen = len(self.fake.calls)
            return len(burst.replies) >= len(voters)

        await asyncio.gather(*(one(i, v) for i, v in enumerate(voters)))
        await until(answered)
        return burst

    async def _commands(
        self, people: list[Voter], channel: str, line: Callable[[Voter], str], want: str
    ) -> Burst:
        from tests.slack_fakes import FORM

        burst, sent = Burst(), {}
        posted, responses = len(self.fake.of("chat.postMessage")), len(self.fake.responses)

        async def one(v: Voter) -> None:
            body, response_url = self._command(line(v), v.account, channel)
            sent[response_url] = (v.handle, time.monotonic())
            burst.acks.append(await self._send(body, FORM))

        def answers() -> dict[str, dict[str, Any]]:
            got: dict[str, dict[str, Any]] = {}
            for r in self.fake.responses[responses:]:
                if r["_url"] in sent:
                    got.setdefault(r["_url"], r)
            return got

        await asyncio.gather(*(one(v) for v in people))
        await until(lambda: len(answers()) >= len(people))
        for url, r in answers().items():
            handle, t0 = sent[url]
            burst.replies[handle] = r["_at"] - t0
            burst.wrong += want not in block_texts(r.get("blocks")) + str(r.get("text") or "")
            burst.public += r.get("response_type") != "ephemeral"
        burst.public += len(self.fake.of("chat.postMessage")) - posted
        return burst

    async def justify(self, voters: list[Voter]) -> Burst:
        def line(v: Voter) -> str:
            return f'battle vote {BATTLE} {v.side} "{justification(v.handle, v.side)}"'

        return await self._commands(voters, "CBATTLES", line, "counts")

    async def lookup(self, people: list[Voter]) -> Burst:
        paced = len(self.paced)
        burst = await self._commands(people, "CGENERAL", lambda v: "papers", "papers")
        burst.paced = len(self.paced) - paced  # a private answer never waits for the pacer
        return burst

    def _updates(self, mark: int) -> list[Any]:
        return [
            c
            for c in self.fake.calls[mark:]
            if c.method == "chat.update" and c.args.get("ts") == self.poll["ts"]
        ]

    def mark(self) -> tuple[int, int]:
        return len(self.fake.calls), len(self.fake.limited)

    def edits_since(self, mark: tuple[int, int]) -> int:
        return len(self._updates(mark[0]))

    def limited_since(self, mark: tuple[int, int]) -> int:
        return len(self.fake.limited) - mark[1]

    def poll_text(self) -> str:
        updates = self._updates(0)
        return block_texts((updates[-1].args if updates else self.poll).get("blocks", []))

    async def settle(self) -> None:
        return None


async def run_slack(app: App, tmp: Path, voters: list[Voter], lookups: int) -> list[Row]:
    import aiohttp

    from bot.settings import SlackSettings
    from bot.slack import SlackBot
    from tests.slack_fakes import SLACK_LIMITS, FakeSlack

    channels = {
        "general": "CGENERAL",
        "announcements": "CANNOUNCE",
        "battles": "CBATTLES",
        "discussions": "CDISCUSS",
    }
    voters = [dataclasses.replace(v, account=f"U{v.handle.upper()}") for v in voters]
    async with app.db.transaction() as s:
        course_id = await s.scalar(select(Course.id))
        s.add(CourseBinding(course_id=course_id, platform=Platform.SLACK, external_id=SLACK_TEAM))
        gedas = await s.scalar(
            select(Identity.person_id).where(
                Identity.platform == Platform.TERMINAL, Identity.user_id == "gedas"
            )
        )
        s.add(
            Identity(
                course_id=course_id,
                person_id=gedas,
                platform=Platform.SLACK,
                user_id="UGEDAS",
                linked_at=app.clock.now(),
            )
        )
    await add_students(app, Platform.SLACK, voters)
    await seat_battle(app)
    fake = FakeSlack(team_id=SLACK_TEAM, channels=channels, rate_limits=SLACK_LIMITS)
    await fake.start()
    slack = SlackSettings(
        bot_token="xoxb-burst", signing_secret=SLACK_SECRET, api_url=fake.api_url, _env_file=None
    )
    bot_app = dataclasses.replace(app, settings=app.settings.model_copy(update={"slack": slack}))
    bot = SlackBot(bot_app)  # production pacing: one public post a second per channel
    try:
        await bot.start(sweep=False)
        port = await bot.start_http("127.0.0.1", 0)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            url = f"http://127.0.0.1:{port}/slack/events"
            return await run_scenarios(SlackDriver(app, bot, fake, url, http), voters, lookups)
    finally:
        await bot.stop()
        await fake.stop()


# ----------------------------------------------------------------------------- the run


RUNNERS: dict[str, Callable[[App, Path, list[Voter], int], Awaitable[list[Row]]]] = {
    "terminal": run_terminal,
    "discord": run_discord,
    "slack": run_slack,
}


@contextlib.asynccontextmanager
async def fresh_app(
    backend: str, tmp: Path, template: Path | None, name: str, pg_url: str
) -> AsyncIterator[App]:
    """A migrated database with the sample course (as the tests load it), the clock
    running from battle day."""
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            assert template is not None
            path = tmp / f"{name}.db"
            shutil.copy(template, path)
            url = f"sqlite+aiosqlite:///{path}"
        else:
            from bench.workload import postgres_database

            url = await stack.enter_async_context(postgres_database(pg_url))
        settings = Settings(
            database_url=url,
            COURSEBOT_DATA_DIR=tmp / f"{name}-data",
            COURSEBOT_COURSE_FILE=SAMPLE_COURSE,
            _env_file=None,
        )
        app = await start_app(settings, clock=ShiftedClock(BATTLE_DAY))
        try:
            yield app
        finally:
            await app.close()


def sqlite_template(tmp: Path) -> Path:
    """One migrated SQLite file, copied for each platform (as the tests do)."""
    from db.migrate import upgrade

    path = tmp / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__.split("\n")[0])
    p.add_argument(
        "--platforms",
        default=",".join(PLATFORMS),
        help="comma-separated: terminal, discord, slack (default all three)",
    )
    p.add_argument("--voters", type=int, default=60, help="students who react (default 60)")
    p.add_argument(
        "--lookups", type=int, default=50, help="students who type `papers` at once (default 50)"
    )
    p.add_argument(
        "--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    p.add_argument(
        "--pg-url",
        default=PG_ADMIN_URL,
        help="an ADMIN url; a throwaway database is created next to it and dropped",
    )
    p.add_argument("--seed", type=int, default=790, help="seed of the sides and the order")
    args = p.parse_args(argv)
    args.platforms = [x.strip() for x in args.platforms.split(",") if x.strip()]
    unknown = set(args.platforms) - set(PLATFORMS)
    if unknown:
        p.error(f"unknown platform(s): {', '.join(sorted(unknown))}")
    args.backends = [x.strip() for x in args.backends.split(",") if x.strip()]
    if not args.backends or set(args.backends) - {"sqlite", "postgres"}:
        p.error("--backends takes sqlite and/or postgres")
    if args.voters < 1 or not 1 <= args.lookups <= args.voters:
        p.error("--voters must be at least 1, and --lookups between 1 and --voters")
    return args


def machine() -> str:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    return (
        f"{platform.machine()}, {usable} usable CPU(s) of {os.cpu_count()}, "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.system()}"
    )


async def main(args: argparse.Namespace) -> int:
    from bench.workload import pg_admin

    voters = make_voters(args.voters, args.seed)
    rows: list[Row] = []
    failed: list[str] = []
    skipped: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="coursebot-burst-") as tmp_name:
        tmp = Path(tmp_name)
        for backend in args.backends:
            template = None
            if backend == "sqlite":
                template = await asyncio.to_thread(sqlite_template, tmp)
            else:
                try:
                    await pg_admin(args.pg_url, "SELECT 1")
                except Exception as exc:
                    skipped.append(f"Postgres at {args.pg_url} is not reachable ({exc!r})")
                    continue
            for name in args.platforms:
                print(f"running {name} on {backend} ...", file=sys.stderr, flush=True)
                try:
                    async with fresh_app(backend, tmp, template, name, args.pg_url) as app:
                        rows += await RUNNERS[name](app, tmp, list(voters), args.lookups)
                except Exception as exc:
                    traceback.print_exc()
                    failed.append(f"{backend} / {name}: {exc!r}")
    print()
    print(table(rows))
    print()
    sides = {s: sum(1 for v in voters if v.side == s) for s in "AB"}
    print(
        f"{args.voters} voters (seed {args.seed}: {sides['A']} for A, {sides['B']} for B), "
        f"{args.lookups} lookups; {time.perf_counter() - started:.0f} s in all."
    )
    for line in skipped:
        print(f"Skipped: {line}.")
    print(f"Machine: {machine()}.")
    print(
        "429s: what slack_sdk received from the fake's Slack limits (SLACK_LIMITS in "
        "tests/slack_fakes.py); `~N` on Discord: simcord has no rate limits, so N is the "
        "number of the bot's requests that Discord's global 50/s limit would have held back."
    )
    problems = [
        f"{r.backend} / {r.platform} / {r.scenario}: {p}" for r in rows for p in r.problems
    ] + failed
    if problems:
        print()
        print("\n".join(f"FAILED {p}" for p in problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
