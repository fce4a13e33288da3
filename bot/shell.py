"""The terminal adapter: the whole bot in a terminal, on the same core as Discord
and Slack. Interactive (history, tab completion) or scripted (one command per line
on stdin, replies on stdout).

Lines starting with ``:`` control the shell itself::

    :as bob              speak as another user (their terminal handle)
    :in battles          speak in another channel      :dm   talk to the bot privately
    :react 12 🅰️         react to message 12            :unreact 12 🅰️
    :click 12 2          press button 2 of message 12 (or give its label); a button that
                         opens a form takes its fields after it: name=value ... (or the
                         text, for a one-field form)
    :attach FILE         attach a file to the next command
    :sweep               deliver due scheduled posts now
    :advance 2d          move the pretend clock (--now) on: 90s, 15m, 2h, 2d; every post
                         due on the way goes out at its own time, in order
    :log [N]             the last N lines of the log (default 20)
    :wait 5              wait 5 seconds (scheduled posts show as they fire; on the
                         pretend clock of a scripted --now run, 5 s pass at once)
    :wait 60 jobs        wait (at most 60 s) until every GPU job is done and posted
    :who                 who and where you are          :quit
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.app import App
from bot.scheduler import ReminderSweeper
from commands.clock import FixedClock
from commands.context import Attachment, Caller, Request, Where
from commands.due import earliest
from commands.replies import Form, ReactionFate, Reply, Tone, render_text
from commands.timefmt import plain
from db.models import Course, CourseBinding, GpuJob, Identity, Person, Platform, Role

META_HELP = __doc__.split("::", 1)[1].rstrip() if __doc__ else ""


@dataclass
class ShellMessage:
    number: int
    channel: str
    reply: Reply
    reactions: dict[str, set[str]] = field(default_factory=dict)


class ShellError(Exception):
    """A mistake in a ``:`` shell command."""


class Shell:
    """One terminal session bound to one course."""

    #: The outbox port's platform: the dispatcher sends this course's rows here.
    platform = Platform.TERMINAL

    def __init__(
        self,
        app: App,
        *,
        workspace: str,
        speaker: str,
        channel: str = "general",
        files_dir: Path = Path("data/shell-files"),
        out: Callable[[str], None] = print,
    ) -> None:
        self.app = app
        self.workspace = workspace
        self.speaker = speaker
        self.channel = channel
        self.is_dm = False
        self.files_dir = files_dir
        self.out = out
        self.messages: dict[int, ShellMessage] = {}
        self._next = 1
        #: Message references are ``<session>.<number>``: numbers restart with each
        #: shell, and a reaction must never reach a message of an earlier one.
        self._session = secrets.token_hex(3)
        self._attachments: list[Attachment] = []
        self.errors = 0
        #: The course's zone, for showing the clock (set by ``resolve_workspace``'s caller).
        self.zone = "UTC"
        #: Where the log goes while the shell runs (``:log`` shows its end).
        self.log_file: Path | None = None
        app.core.outbox = self
        self.sweeper = ReminderSweeper(
            app.db,
            self,
            app.clock,
            hours_before=app.settings.reminder_hours,
            platform=Platform.TERMINAL,
        )

    # ------------------------------------------------------------------ the outbox
    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        msg = self._record(channel, reply)
        self.out(self._render(msg, header=f"#{channel} · coursebot (posted)"))
        return self.ref(msg)

    async def edit(self, course_id: int, message_ref: str, reply: Reply) -> None:
        session, _, number = message_ref.rpartition(".")
        msg = self.messages.get(int(number)) if session == self._session else None
        if msg is None:  # a message of an earlier shell: it is gone with it
            return
        before = render_text(msg.reply).splitlines()
        msg.reply = reply
        changed = [line for line in render_text(reply).splitlines() if line not in before]
        if changed:  # show only what changed, as a chat client would
            body = "\n    ".join(changed)
            self.out(f"[{msg.number}] #{msg.channel} · coursebot (edited)\n    {body}")

    async def thread(
        self,
        course_id: int,
        channel: str,
        name: str,
        reply: Reply,
        person_ids: Sequence[int] = (),
    ) -> str:
        """A thread in the terminal: a channel named ``#channel › name``."""
        async with self.app.db.session() as session:
            people = [await session.get(Person, pid) for pid in person_ids]
        where = f"{channel} › {name}"
        msg = self._record(where, reply)
        members = ", ".join(p.name for p in people if p is not None)
        header = f"#{where} · coursebot (thread opened" + (f" for {members})" if members else ")")
        self.out(self._render(msg, header=header))
        return where

    async def dm(self, course_id: int, person_id: int, reply: Reply) -> str:
        async with self.app.db.session() as session:
            person = await session.get(Person, person_id)
        msg = self._record("dm", reply)
        name = person.name if person else f"person {person_id}"
        self.out(self._render(msg, header=f"DM to {name} · coursebot"))
        return self.ref(msg)

    async def dm_account(self, course_id: int, user_id: str, reply: Reply) -> str:
        msg = self._record("dm", reply)
        self.out(self._render(msg, header=f"DM to {user_id} · coursebot"))
        return self.ref(msg)

    def ref(self, msg: ShellMessage) -> str:
        """The platform reference of a message (what ``post`` returns)."""
        return f"{self._session}.{msg.number}"

    async def advance(self, delta: timedelta, *, say: bool = True) -> int:
        """Move the pretend clock on by ``delta``. On virtual time (a scripted shell with
        ``--now``) every post that falls due on the way goes out at its own instant, in
        order, exactly as the live bot would have sent it; how many posts went out."""
        clock = self.app.clock
        if delta < timedelta(0):
            raise ShellError("time only moves forward: give a positive duration")
        if isinstance(clock, FixedClock):
            target = clock.now() + delta
            posts = 0
            for _ in range(100_000):  # a bound, not a limit anyone reaches
                nxt = earliest(
                    await self.sweeper.next_at(), await self.sweeper.dispatcher.next_due()
                )
                if nxt is None or nxt > target:
                    break
                clock.at = max(nxt, clock.at)
                posts += await self.sweeper.run_due()
                await self.sweeper.dispatcher.deliver()
            clock.at = target
            posts += await self.sweeper.run_due()
            await self.sweeper.dispatcher.deliver()
        else:
            shift = getattr(clock, "advance", None)
            if shift is None:
                raise ShellError("the clock can only be moved when started with --now")
            shift(delta)
            posts = await self.sweeper.run_due()
        if say:
            self.out(f"(clock moved to {self._local(clock.now())})")
        return posts

    def _local(self, instant: datetime) -> str:
        """An instant in the course's zone, as the shell shows the clock."""
        local = instant.astimezone(ZoneInfo(self.zone))
        return f"{local:%a %Y-%m-%d %H:%M:%S} {local.tzname()}"

    def _show_log(self, lines: int) -> None:
        path = self.log_file
        if path is None or not path.exists():
            self.out("(no log file: the log goes to the terminal's standard error)")
            return
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        self.out(f"(last {len(tail)} lines of {path})")
        self.out("\n".join(tail) if tail else "(the log is empty)")

    async def _wait_for_jobs(self, limit: float) -> None:
        """Deliver GPU progress and results until no job is waiting to run or to be
        posted (a script's way to wait for its jobs), or ``limit`` seconds pass."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        while True:
            await self.sweeper.gpu_tick()
            async with self.app.db.session() as session:
                pending = await session.scalar(
                    select(GpuJob.id).where(GpuJob.posted.is_(False)).limit(1)
                )
            if pending is None:
                return
            if loop.time() >= end:
                raise ShellError(f"GPU jobs still running after {limit:g} s")
            await asyncio.sleep(0.1)

    # ------------------------------------------------------------------ requests
    @property
    def where(self) -> Where:
        return Where(channel=None if self.is_dm else self.channel, is_dm=self.is_dm)

    def request(self) -> Request:
        attachments = tuple(self._attachments)
        self._attachments = []
        return Request(
            platform=Platform.TERMINAL,
            workspace=self.workspace,
            caller=Caller(Platform.TERMINAL, self.speaker, self.speaker),
            where=self.where,
            attachments=attachments,
        )

    @property
    def prompt(self) -> str:
        return f"{self.speaker}@{'dm' if self.is_dm else '#' + self.channel}> "

    async def handle_line(self, line: str) -> bool:
        """Run one line; return False if it failed (an error reply or a bad shell command)."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        if line.startswith(":"):
            try:
                await self._meta(line)
            except ShellError as exc:
                self.errors += 1
                self.out(f"! {exc}")
                return False
            return True
        reply = await self.app.core.handle_text(self.request(), line)
        await self._answer(reply)
        return not reply.is_error

    async def _answer(self, reply: Reply) -> None:
        """Show a command's reply; one that takes reactions is recorded in the core
        with what they mean (as the outbox records the messages it posts)."""
        msg = self._show(reply)
        if reply.reactions is not None and not reply.ephemeral:
            await self.app.core.remember_reactions(self.request(), self.ref(msg), reply.reactions)

    def _show(self, reply: Reply) -> ShellMessage:
        msg = self._record("dm" if self.is_dm else self.channel, reply)
        if reply.is_error:
            self.errors += 1
        if reply.ephemeral:
            header = f"coursebot → {self.speaker} (only you can see this)"
        else:
            header = f"{'dm' if self.is_dm else '#' + self.channel} · coursebot"
        self.out(self._render(msg, header=header))
        return msg

    def _record(self, channel: str, reply: Reply) -> ShellMessage:
        msg = ShellMessage(self._next, channel, reply)
        self.messages[msg.number] = msg
        self._next += 1
        return msg

    def _render(self, msg: ShellMessage, *, header: str) -> str:
        reply = msg.reply
        mark = {Tone.ERROR: "✗ ", Tone.SUCCESS: "✓ ", Tone.WARNING: "! "}.get(reply.tone, "")
        lines = [f"[{msg.number}] {header}"]
        body = render_text(reply)
        lines += ["    " + mark + body.replace("\n", "\n    ")] if body else []
        for i, f in enumerate(reply.files, 1):
            path = self._save(msg.number, i, f.name, f.data)
            lines.append(f"    file: {path}" + (f" ({f.description})" if f.description else ""))
        if reply.buttons:
            labels = "  ".join(
                f"[{i}] {plain(b.label)}"
                + (f" (form: {', '.join(f.name for f in b.form.fields)})" if b.form else "")
                for i, b in enumerate(reply.buttons, 1)
            )
            lines.append(f"    buttons: {labels}   (:click {msg.number} N)")
        if reply.reactions:
            lines.append(
                f"    react with: {' '.join(reply.reactions.emojis)}   (:react {msg.number} EMOJI)"
            )
            if reply.reactions.secret:
                lines.append(
                    "    (a reaction here is taken off as soon as it is recorded: "
                    "nobody else sees your pick)"
                )
        return "\n".join(lines)

    def _save(self, number: int, index: int, name: str, data: bytes) -> Path:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "file"
        path = self.files_dir / f"msg{number}-{index}-{safe}"
        path.write_bytes(data)
        return path

    # ------------------------------------------------------------------ : commands
    async def _meta(self, line: str) -> None:
        try:
            parts = shlex.split(line[1:])
        except ValueError as exc:
            raise ShellError(f"could not read that line ({exc})") from None
        if not parts:
            raise ShellError("type `:help` for the shell's own commands")
        cmd, args = parts[0].lower(), parts[1:]
        if cmd == "as":
            self._need(args, 1, ":as NAME")
            self.speaker = args[0]
            self.out(f"(now speaking as {self.speaker})")
        elif cmd == "in":
            self._need(args, 1, ":in CHANNEL")
            self.channel, self.is_dm = args[0].lstrip("#"), False
            self.out(f"(now in #{self.channel})")
        elif cmd == "dm":
            self.is_dm = True
            self.out("(now in a direct message with coursebot)")
        elif cmd in ("react", "unreact"):
            self._need(args, 2, f":{cmd} MESSAGE EMOJI")
            await self._react(self._message(args[0]), args[1], add=cmd == "react")
        elif cmd == "click":
            self._need(args, 2, ":click MESSAGE BUTTON [form values]")
            await self._click(self._message(args[0]), args[1], args[2:])
        elif cmd == "attach":
            self._need(args, 1, ":attach FILE")
            path = Path(args[0]).expanduser()
            if not path.is_file():
                raise ShellError(f"no such file: {path}")
            self._attachments.append(Attachment(path.name, path=path, size=path.stat().st_size))
            self.out(f"(attached {path.name} to your next command)")
        elif cmd == "sweep":
            posts = len(await self.sweeper.sweep()) + await self.sweeper.tick()
            if not posts:
                self.out("(nothing scheduled is due)")
        elif cmd == "wait":
            self._need(args, 1, ":wait SECONDS [jobs]")
            try:
                seconds = float(args[0])
            except ValueError:
                raise ShellError(f"`{args[0]}` is not a number of seconds") from None
            if args[1:2] == ["jobs"]:
                await self._wait_for_jobs(seconds)
            elif isinstance(self.app.clock, FixedClock):  # virtual time: it passes at once
                await self.advance(timedelta(seconds=seconds), say=False)
            else:
                await asyncio.sleep(seconds)
        elif cmd == "advance":
            self._need(args, 1, ":advance DURATION (e.g. 90s, 15m, 2h, 2d)")
            await self.advance(_duration(args[0]))
        elif cmd == "log":
            self._show_log(int(args[0]) if args and args[0].isdigit() else 20)
        elif cmd == "who":
            self.out(
                f"(speaking as {self.speaker} in {'a DM' if self.is_dm else '#' + self.channel})"
            )
        elif cmd in ("help", "h", "?"):
            self.out(META_HELP)
        elif cmd in ("quit", "q", "exit"):
            raise EOFError
        else:
            raise ShellError(f"unknown shell command `:{cmd}`; type `:help`")

    @staticmethod
    def _need(args: list[str], n: int, usage: str) -> None:
        if len(args) < n:
            raise ShellError(f"usage: {usage}")

    def _message(self, ref: str) -> ShellMessage:
        try:
            return self.messages[int(ref.lstrip("[").rstrip("]"))]
        except (ValueError, KeyError):
            raise ShellError(f"there is no message [{ref}] in this session") from None

    async def _click(self, msg: ShellMessage, which: str, rest: list[str]) -> None:
        buttons = msg.reply.buttons
        button = None
        if which.isdigit() and 1 <= int(which) <= len(buttons):
            button = buttons[int(which) - 1]
        else:
            button = next((b for b in buttons if b.label.lower() == which.lower()), None)
        if button is None:
            have = ", ".join(f"{i} ({b.label})" for i, b in enumerate(buttons, 1)) or "none"
            raise ShellError(f"message [{msg.number}] has no button `{which}`; buttons: {have}")
        if button.form is not None:
            values = self._form_values(button.form, rest)
            reply = await self.app.core.handle_form(self.request(), button.form.custom_id, values)
        else:
            reply = await self.app.core.handle_action(self.request(), button.custom_id)
        await self._answer(reply)

    @staticmethod
    def _form_values(form: Form, rest: list[str]) -> dict[str, str]:
        """A form's fields from the rest of a `:click` line: `name=value` pairs, or, for a
        one-field form, just the text."""
        names = [f.name for f in form.fields]
        if all("=" in r and r.split("=", 1)[0] in names for r in rest):
            values = dict(r.split("=", 1) for r in rest)
        elif len(form.fields) == 1:
            values = {names[0]: " ".join(rest)}
        else:
            raise ShellError(
                f"this button opens a form: give {' '.join(n + '=...' for n in names)}"
            )
        missing = [f.name for f in form.fields if f.required and not values.get(f.name)]
        if missing:
            fields = ", ".join(f"{f.name} ({f.label})" for f in form.fields)
            raise ShellError(
                f"the form `{form.title}` needs {', '.join(missing)}; its fields: {fields}"
            )
        return values

    async def _react(self, msg: ShellMessage, emoji: str, *, add: bool) -> None:
        users = msg.reactions.setdefault(emoji, set())
        if add:
            users.add(self.speaker)
        else:
            users.discard(self.speaker)
        reply = await self.app.core.handle_reaction(self.request(), self.ref(msg), emoji, added=add)
        if reply is None:
            if msg.reply.reactions is None or emoji not in msg.reply.reactions.emojis:
                self.out(f"(reacted {emoji} to [{msg.number}]; that message does not take votes)")
            return
        if reply.remove_reaction and add:
            users.discard(self.speaker)  # the terminal can take it off: it says so
            note = (
                "(your reaction was taken off the poll, so nobody else sees your pick)"
                if reply.reaction_fate is ReactionFate.HIDE
                else "(your reaction was taken off the poll)"
            )
            reply.text = "\n".join(p for p in (reply.text, note) if p)
        if not reply.silent and not reply.duplicate:
            await self._answer(reply)
        # Shown: its backup row in the outbox is released now (the next line may move
        # the clock).
        await self.app.core.answered_now(reply)


def _duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d``; a bare number is hours."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    unit = units.get(text[-1:].lower())
    number = text[:-1] if unit else text
    try:
        return timedelta(**{unit or "hours": float(number)})
    except ValueError:
        raise ShellError(f"`{text}` is not a duration: use e.g. 90s, 15m or 2h") from None


# ---------------------------------------------------------------------- running it
async def resolve_workspace(app: App, course_key: str | None) -> tuple[str, str]:
    """The terminal binding to use and a default speaker (the first instructor's handle)."""
    async with app.db.session() as session:
        q = (
            select(Course, CourseBinding.external_id)
            .join(CourseBinding)
            .where(CourseBinding.platform == Platform.TERMINAL)
        )
        if course_key:
            q = q.where(Course.key == course_key)
        row = (await session.execute(q.order_by(Course.id))).first()
        if row is None:
            which = f"course `{course_key}`" if course_key else "any course"
            raise ShellError(
                f"{which} has no terminal binding. Import a course file with "
                "`bindings: {terminal: default}`, or run `coursebot course bind KEY terminal default`."
            )
        course, workspace = row
        handle = await session.scalar(
            select(Identity.user_id)
            .join(Person)
            .where(
                Identity.course_id == course.id,
                Identity.platform == Platform.TERMINAL,
                Person.role == Role.INSTRUCTOR,
            )
            .order_by(Person.id)
        )
    return workspace, handle or "me"


async def run_script(
    shell: Shell, lines: list[str] | object, *, strict: bool, echo: bool = True
) -> int:
    await shell.sweeper.sweep()
    for raw in lines:  # type: ignore[attr-defined]
        line = raw.rstrip("\n")
        if echo and line.strip() and not line.lstrip().startswith("#"):
            shell.out(f"{shell.prompt}{line.strip()}")
        try:
            ok = await shell.handle_line(line)
        except EOFError:
            break
        if strict and not ok:
            return 1
    return 1 if strict and shell.errors else 0


async def run_interactive(shell: Shell, history: Path) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import NestedCompleter
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.patch_stdout import patch_stdout

    tree: dict[str, object] = {}
    for cmd in shell.app.core.registry:
        node = tree
        for word in cmd.path:
            node = node.setdefault(word, {})  # type: ignore[assignment]
    for meta in (
        "as",
        "in",
        "dm",
        "react",
        "unreact",
        "click",
        "attach",
        "sweep",
        "wait",
        "advance",
        "who",
        "help",
        "quit",
    ):
        tree[f":{meta}"] = None

    def to_completer(node: dict[str, object]) -> dict[str, object]:
        return {
            k: (to_completer(v) if isinstance(v, dict) and v else None) for k, v in node.items()
        }

    history.parent.mkdir(parents=True, exist_ok=True)
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(history)),
        completer=NestedCompleter.from_nested_dict(to_completer(tree)),
    )
    shell.out(
        f"coursebot shell — {shell.prompt.rstrip('> ')}. Type `help` for commands, "
        "`:help` for shell controls, Ctrl-D (or Ctrl-C on an empty line) to leave."
    )
    shell.sweeper.start(shell.app.settings.sweep_seconds)
    await shell.sweeper.sweep()
    try:
        with patch_stdout():
            while True:
                try:
                    line = await session.prompt_async(shell.prompt)
                    await shell.handle_line(line)
                except KeyboardInterrupt:
                    if session.default_buffer.text.strip():
                        continue  # Ctrl-C on a typed line clears it, as in any shell
                    break
                except EOFError:
                    break
    finally:
        await shell.sweeper.aclose()
    return 0


def stdin_is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()
