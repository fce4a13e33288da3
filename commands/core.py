"""The dispatcher: finds the course and the caller, parses options, checks the role,
runs the handler in one transaction, and maps every error to a reply.

Known errors (:class:`CourseBotError`) become their own message; anything else is
logged with a short id the user can quote, and the transaction is rolled back, so
nothing stored changes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from commands import reactions
from commands.clock import Clock, SystemClock
from commands.context import Context, Request
from commands.due import due_registry
from commands.errors import CourseBotError, Forbidden, NoCourse, PreparedStale, UsageError
from commands.outbox import (
    Dispatcher,
    Outbox,
    Outgoing,
    count_batch,
    describe_batch,
    enqueue,
    undelivered_posts,
    wake_all,
)
from commands.parsing import list_items, parse_tokens, split_line, validate
from commands.reactions import ReactionLog
from commands.registry import Access, Command, Registry
from commands.replies import Form, Reactions, Reply, Section
from commands.share import offer_share
from commands.text import forged_id, safe_message
from db.models import Course, CourseBinding, Identity, Person, ProcessedEvent
from db.session import Database

log = logging.getLogger("coursebot.core")

UNEXPECTED = (
    "Something went wrong on our side and nothing was changed. "
    "If it happens again, tell your instructor and quote error id `{id}`."
)


#: The answer to a button, form or reaction id that is unknown, outdated or malformed.
STALE = "That button is no longer active. Run the command again."

#: How often a command's ``prepare`` step runs when the data changed while it ran; on
#: the last attempt the handler keeps what was prepared (and says what changed), so the
#: slow work never runs while holding the write queue and the command always ends. Once
#: more catches a ranking that arrived during the solve; while a class keeps ranking,
#: every further solve is overtaken too and only keeps a core busy.
PREPARE_ATTEMPTS = 2

CONFLICT = (
    "Someone changed the same thing at the same moment, so nothing was saved. "
    "Please run the command again."
)


#: The Postgres channel on which a committed command wakes the leading replica.
WAKE_CHANNEL = "coursebot_wake"

#: How many times a command runs when concurrent writes collide.
ATTEMPTS = 3

#: What a command button's argument may be (it becomes a word of the command line).
PLAIN_WORD = re.compile(r"[\w.@-]{1,100}")

#: Reactions' answers sent by the adapters are confirmed together this often (one
#: write for a burst of voters, not one each).
CONFIRM_EVERY = 0.2


def new_error_id() -> str:
    return secrets.token_hex(4)


class CommandCore:
    """Platform-neutral entry point that every adapter calls."""

    def __init__(
        self,
        db: Database,
        registry: Registry,
        *,
        clock: Clock | None = None,
        data_dir: Path = Path("data"),
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.db = db
        #: Deployment options handlers read (``question_embeddings``), from the settings.
        self.config: dict[str, Any] = dict(config or {})
        self.registry = registry
        self.clock = clock or SystemClock()
        self.data_dir = data_dir
        # A fair (FIFO) limit on commands in flight, sized to the connection pool, so a
        # burst queues in order instead of starving in the pool.
        self._slots = asyncio.Semaphore(db.max_concurrency)
        #: Sends the outbox rows; set with :attr:`outbox` by each adapter at start.
        self.dispatcher: Dispatcher | None = None
        #: Edits sent after the reply (a poll's count), so the person who acted never
        #: waits for them; :meth:`settle` waits for them (tests, shutdown).
        self._after: set[asyncio.Task[int]] = set()
        #: Event ids of lookups answered lately: a lookup does not write, so a retried
        #: delivery of one (Slack retries after 3 s) is recognised here, in memory.
        self._recent_reads: collections.OrderedDict[tuple[str, str], None] = (
            collections.OrderedDict()
        )
        #: The last direction of each reaction seen: a repeated event is dropped.
        self.reaction_log = ReactionLog()
        #: Held outbox rows whose answers the adapters sent (see :meth:`answered`).
        self._answered: dict[int, str | None] = {}
        self._confirming: asyncio.Task[None] | None = None

    @property
    def outbox(self) -> Outbox | None:
        """Where queued posts and DMs go; each adapter sets itself here at start."""
        return self.dispatcher.outbox if self.dispatcher else None

    @outbox.setter
    def outbox(self, outbox: Outbox | None) -> None:
        self.dispatcher = Dispatcher(self.db, outbox, self.clock) if outbox else None

    # -- entry points -------------------------------------------------------------
    async def handle_text(self, request: Request, line: str) -> Reply:
        """A typed line: ``rank standard 1 2 3`` (terminal, Slack subcommand text)."""

        async def parse() -> tuple[Command, BaseModel]:
            cmd, rest = self.registry.match(split_line(line))
            return cmd, parse_tokens(cmd, rest)

        return await self._run(request, parse)

    async def handle(self, request: Request, name: str, options: Mapping[str, Any]) -> Reply:
        """A command with already-typed options (Discord app commands, modals)."""

        async def parse() -> tuple[Command, BaseModel]:
            try:
                cmd = self.registry.get(name)
            except KeyError:
                raise UsageError(f"Unknown command `{name}`. Type `help`.") from None
            clean = {k: v for k, v in options.items() if v is not None}
            for spec in cmd.specs:
                # A list typed into one text box (a Discord option, a modal field).
                if spec.many and isinstance(clean.get(spec.name), str):
                    clean[spec.name] = list_items(spec, clean[spec.name])
            return cmd, validate(cmd, clean)

        return await self._run(request, parse)

    async def handle_form(
        self, request: Request, custom_id: str, values: Mapping[str, Any]
    ) -> Reply:
        """A submitted form (modal): its command runs with the fixed and typed options."""
        try:
            if forged_id(custom_id):
                raise ValueError(custom_id)
            command, fixed = Form.parse_custom_id(custom_id)
        except ValueError:  # a malformed or crafted id
            return Reply.error(STALE)
        return await self.handle(request, command, {**fixed, **values})

    async def handle_action(
        self, request: Request, custom_id: str, value: str | None = None, *, backup: bool = False
    ) -> Reply:
        """A button press (``value`` None) or a reaction (``value`` the emoji; a removal
        is ``"-"`` + the emoji). ``backup``: a private answer to an action that changed
        something is also written to the outbox, held (see :attr:`Reply.backup`)."""
        if forged_id(custom_id, value):
            return Reply.error(STALE)
        name, *args = custom_id.split(":")
        action = self.registry.actions.get(name)
        if action is None:
            return Reply.error(STALE)
        if action.runs is not None:
            # A button for a command: run exactly as if it were typed (its own access
            # check, its slow step on a snapshot outside the writers' queue), its
            # arguments (a paper number) as plain words after it.
            if value is not None or not all(PLAIN_WORD.fullmatch(a) for a in args):
                return Reply.error(STALE)
            return await self.handle_text(request, " ".join((action.runs, *args)))
        handler = action.handler
        assert handler is not None

        async def call(ctx: Context) -> Reply:
            if not action.access.allows(ctx.person):
                raise self._forbidden(action.access, ctx.person)
            try:
                reply = await handler(ctx, tuple(args), value)
            except (ValueError, LookupError, TypeError, OverflowError):
                # Arguments the bot never wrote (a crafted or outdated id): int("x"),
                # a missing part. Logged, so a real bug still shows.
                log.warning("malformed action id %r", custom_id, exc_info=True)
                raise UsageError(STALE) from None
            reply.ephemeral = reply.ephemeral or action.ephemeral
            if (
                backup
                and self.dispatcher is not None
                and reply.ephemeral
                and reply.says_something
                and ctx.session.info.get("wrote")
            ):
                # A reaction has no interaction to answer, and nobody would notice a
                # lost answer: the answer is owed with the change it reports.
                account = (request.platform.value, request.caller.user_id)
                ctx.outgoing.append(Outgoing(reply, account=account, held=True))
            return reply

        return await self._guarded(request, call)

    async def handle_reaction(
        self,
        request: Request,
        message_ref: str,
        emoji: str,
        *,
        added: bool,
        match: Callable[[str, tuple[str, ...]], str | None] | None = None,
        removable: bool = True,
    ) -> Reply | None:
        """A reaction added to (or taken off) the message ``message_ref`` (the reference
        the adapter's ``post`` returned for it). None: nothing to do or to say (the bot
        does not know the message, it takes no such emoji, or the event is a repeat).
        Otherwise the recorded action's reply; its ``reaction_fate`` says what the
        adapter should do with the reaction, where the platform lets it.

        ``match`` turns a platform's name for the reaction (Slack's ``a``) into one of
        the message's emojis (or None); by default the emoji must be one of them.
        ``removable``: whether the adapter can take a reaction off (Slack cannot: the
        reaction stays, so its next addition can only be a repeated event)."""
        async with self.db.read() as session:
            course_id = await session.scalar(
                select(CourseBinding.course_id).where(
                    CourseBinding.platform == request.platform,
                    CourseBinding.external_id == request.workspace,
                )
            )
            spec = (
                await reactions.lookup(session, course_id, request.platform.value, message_ref)
                if course_id is not None
                else None
            )
        if spec is None:
            log.info("a reaction on message %s, which takes none that the bot knows", message_ref)
            return None
        found = match(emoji, spec.emojis) if match is not None else emoji
        if found is None or found not in spec.emojis:
            return None
        emoji = found
        key = (request.platform.value, message_ref, request.caller.user_id, emoji)
        if self.reaction_log.repeated(key, added):
            log.info("repeated reaction event %r ignored", key)
            return None
        reply = await self.handle_action(
            request, reactions.action_id(spec), emoji if added else f"-{emoji}", backup=True
        )
        if reply.remove_reaction and added and removable:
            self.reaction_log.forget(key)  # the adapter takes it off
        return reply

    async def remember_reactions(
        self, request: Request, message_ref: str, spec: Reactions | None
    ) -> None:
        """An adapter posted a reply that takes reactions itself (not through the
        outbox): record what they mean, so its reactions are routed like any other."""
        if spec is None:
            return
        async with self.db.transaction() as session:
            course_id = await session.scalar(
                select(CourseBinding.course_id).where(
                    CourseBinding.platform == request.platform,
                    CourseBinding.external_id == request.workspace,
                )
            )
            if course_id is not None:
                await reactions.remember(
                    session, course_id, request.platform.value, message_ref, spec
                )

    # -- internals ----------------------------------------------------------------------
    async def _run(
        self, request: Request, parse: Callable[[], Awaitable[tuple[Command, BaseModel]]]
    ) -> Reply:
        try:
            cmd, opts = await parse()
        except CourseBotError as err:
            return Reply.error(safe_message(str(err)))

        if cmd.prepare is None:
            return await self._guarded(request, self._call(cmd, opts, None), read_only=cmd.reads)
        prepare, check = cmd.prepare, cmd.check
        if request.event_id and await self._handled_before(request):
            # A platform's retry, or a restart's recovery, of a command that already
            # committed: said so before any slow work (which might refuse it now).
            return Reply(duplicate=True, ephemeral=True)
        for attempt in range(1, PREPARE_ATTEMPTS + 1):
            prepared: list[Any] = []

            async def first(ctx: Context, prepared: list[Any] = prepared) -> Reply:
                if not cmd.access.allows(ctx.person):
                    raise self._forbidden(cmd.access, ctx.person, cmd)
                prepared.append(await prepare(ctx, opts))
                return Reply()

            # The slow part runs on a read snapshot, outside the queue of writers.
            early = await self._guarded(
                replace(request, event_id=None), first, read_only=True, snapshot=True
            )
            if early.is_error:
                return early
            final = attempt == PREPARE_ATTEMPTS
            try:
                if check is not None:
                    # Still true of the data? Checked on a fresh snapshot, also outside
                    # the queue, so a stale result never holds the writers.
                    async def verify(
                        ctx: Context, prepared: list[Any] = prepared, final: bool = final
                    ) -> Reply:
                        prepared[0] = await check(ctx, opts, prepared[0], final)
                        return Reply()

                    late = await self._guarded(
                        replace(request, event_id=None), verify, read_only=True, snapshot=True
                    )
                    if late.is_error:
                        return late
                return await self._guarded(
                    request, self._call(cmd, opts, prepared[0], final=final), read_only=cmd.reads
                )
            except PreparedStale:
                log.info("`%s`: the data changed while it was prepared; again", cmd.name)
        raise AssertionError("unreachable: the last attempt never raises PreparedStale")

    def _call(
        self, cmd: Command, opts: BaseModel, prepared: Any, *, final: bool = True
    ) -> Callable[[Context], Awaitable[Reply]]:
        async def call(ctx: Context) -> Reply:
            if not cmd.access.allows(ctx.person):
                raise self._forbidden(cmd.access, ctx.person, cmd)
            ctx.prepared = prepared
            ctx.prepared_final = final
            reply = await cmd.handler(ctx, opts)
            reply.ephemeral = reply.ephemeral or cmd.ephemeral
            if cmd.share and not reply.is_error and ctx.request.where.channel:
                offer_share(reply, cmd, opts)
            return reply

        # A lookup only reads: on SQLite it runs beside the one writer (WAL), not
        # behind it in the queue; a repeated delivery of one simply answers again.
        return call

    async def _guarded(
        self,
        request: Request,
        call: Callable[[Context], Awaitable[Reply]],
        *,
        read_only: bool = False,
        snapshot: bool = False,
    ) -> Reply:
        queue = self._slots
        if snapshot or (read_only and self.db.backend == "sqlite"):
            # A lookup on SQLite runs beside the writer (WAL). A slow step on a snapshot
            # (the solver, an instructor's) takes no turn from the others: it holds its
            # own connection for seconds while the solver runs.
            queue = contextlib.nullcontext()  # type: ignore[assignment]
        try:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    tx = self.db.read(snapshot=snapshot) if read_only else self.db.transaction()
                    async with queue, tx as session:
                        ctx = await self.context(session, request)
                        if request.event_id and (
                            self._seen_read(request)
                            if read_only
                            else await self._seen(session, request)
                        ):
                            return Reply(duplicate=True, ephemeral=True)
                        session.info["wrote"] = False  # the event record is not a change
                        reply = await call(ctx)
                        # What the command owes others is written with its change.
                        holder = self.dispatcher.token if self.dispatcher else None
                        rows = enqueue(session, ctx.course.id, ctx.outgoing, ctx.now, holder=holder)
                        await session.flush()
                        # A held row backs the answer the adapter sends itself.
                        held = [row.id for row in rows if row.claimed_by is not None]
                        rows = [row for row in rows if row.claimed_by is None]
                        # Edits (a poll's running count) go out after the reply, and
                        # the dispatcher coalesces them: the caller never waits for one.
                        row_ids = [row.id for row in rows if row.edit_key is None]
                        edits = [row.id for row in rows if row.edit_key is not None]
                        changed = bool(session.info.get("wrote"))
                        if changed and read_only:
                            # A command declared read-only wrote (a bug): it still
                            # commits (SQLite took the write lock when it wrote).
                            log.error("read-only command wrote to the database: %r", request)
                        if changed and self.db.backend == "postgresql":
                            # Delivered at commit: the leading replica's scheduler looks again.
                            await session.execute(text(f"NOTIFY {WAKE_CHANNEL}"))
                    break
                except IntegrityError:
                    # A concurrent write won a race (two votes of one student at once):
                    # the transaction rolled back; run the command again on fresh state.
                    log.info("conflicting write (attempt %d) for %r", attempt, request)
                    if attempt == ATTEMPTS:
                        return Reply.error(CONFLICT)
            if held:
                reply.backup = held[0]
            await self.deliver(row_ids, reply)
            if edits and self.dispatcher is not None:
                task = asyncio.create_task(self.dispatcher.deliver(edits))
                self._after.add(task)
                task.add_done_callback(self._after.discard)
            if changed or edits:  # a timer, a GPU job, an edit: the scheduler looks again
                wake_all()
            return reply
        except PreparedStale:
            raise  # the caller prepares again (see _run)
        except CourseBotError as err:
            # A message may quote what the user typed: never let it display reversed.
            return Reply.error(safe_message(str(err)))
        except Exception:
            err_id = new_error_id()
            log.exception("unexpected error %s handling %r", err_id, request)
            return Reply.error(UNEXPECTED.format(id=err_id), error_id=err_id)

    def _seen_read(self, request: Request) -> bool:
        """A lookup's event id seen lately by this process (a retried delivery)."""
        assert request.event_id is not None
        key = (request.platform.value, request.event_id)
        if key in self._recent_reads:
            log.info("duplicate %s event %s ignored", *key)
            return True
        self._recent_reads[key] = None
        while len(self._recent_reads) > 10_000:
            self._recent_reads.popitem(last=False)
        return False

    async def _handled_before(self, request: Request) -> bool:
        """Whether the event id is already recorded (read only: the write records it)."""
        async with self.db.read() as session:
            found = await session.scalar(
                select(ProcessedEvent.id).where(
                    ProcessedEvent.platform == request.platform,
                    ProcessedEvent.event_id == request.event_id,
                )
            )
        if found is not None:
            log.info("duplicate %s event %s ignored", request.platform.value, request.event_id)
        return found is not None

    async def _seen(self, session: AsyncSession, request: Request) -> bool:
        """Record the event id; True if it was handled before (a retry or a duplicate)."""
        assert request.event_id is not None
        try:
            async with session.begin_nested():
                session.add(
                    ProcessedEvent(
                        platform=request.platform,
                        event_id=request.event_id,
                        created_at=self.clock.now(),
                    )
                )
        except IntegrityError:
            log.info("duplicate %s event %s ignored", request.platform.value, request.event_id)
            return True
        return False

    async def close(self, grace: float = 5.0) -> None:
        """Let the edits queued after replies and the answers' confirmations finish (at
        most ``grace`` seconds), then stop the rest: an edit not sent stays pending in the
        outbox for the next start (an answer not confirmed is sent again then)."""
        tasks: list[asyncio.Task[Any]] = [*self._after, *filter(None, [self._confirming])]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def settle(self) -> None:
        """Wait for the edits commands queued after their replies (a deferred one stays
        for the dispatcher's loop) and for the answers' confirmations."""
        while self._after or self._confirming is not None:
            await asyncio.gather(
                *list(self._after), *filter(None, [self._confirming]), return_exceptions=True
            )

    def answered(self, reply: Reply, *, unreachable: str | None = None) -> None:
        """The adapter has sent a reaction's answer (``unreachable``: it could not, and
        why: DMs closed). Its held outbox row is released in a batch shortly after;
        a crash before that sends the answer once more after the restart (at most one
        duplicate per crash, as for every outbox message)."""
        if reply.backup is None:
            return
        self._answered[reply.backup] = unreachable
        reply.backup = None
        if self._confirming is None:
            self._confirming = asyncio.create_task(self._confirm())

    async def answered_now(self, reply: Reply) -> None:
        """:meth:`answered`, released at once rather than in the next batch (the
        terminal: it answers one person at a time, and its next line may move a virtual
        clock past the row's lease)."""
        if reply.backup is not None:
            self._answered[reply.backup] = None
            reply.backup = None
        await self._release_answered()

    async def _release_answered(self) -> None:
        outcomes, self._answered = self._answered, {}
        if not outcomes or self.dispatcher is None:
            return
        try:
            await self.dispatcher.release_held(outcomes)
        except Exception:
            # Left held: the lease runs out and the dispatcher sends them again.
            log.warning("could not confirm %d answer(s)", len(outcomes), exc_info=True)

    async def _confirm(self) -> None:
        try:
            while self._answered:
                await asyncio.sleep(CONFIRM_EVERY)  # a burst of voters: one write
                await self._release_answered()
        finally:
            self._confirming = None

    async def deliver(self, row_ids: list[int], reply: Reply) -> None:
        """Send the outbox rows the command wrote, now that it committed (rows that
        must wait are left to the dispatcher's loop), and complete a reply that reports
        a mass send with the real count."""
        if not row_ids:
            return
        if self.dispatcher is None:
            log.warning("no outbox yet: %d message(s) wait in the outbox", len(row_ids))
        else:
            try:
                await self.dispatcher.deliver(row_ids)
            except Exception:  # the rows stay pending; the dispatcher's loop retries
                log.exception("sending a command's messages failed; they stay queued")
        async with self.db.session() as session:
            if reply.delivery is not None:
                count = await count_batch(session, reply.delivery.batch)
                text = describe_batch(count, what=reply.delivery.what, hint=reply.delivery.hint)
                reply.sections.append(Section("Delivery", text))
            late = await undelivered_posts(session, row_ids)
        if late and not reply.is_error:
            reply.sections.append(
                Section(
                    "Not delivered",
                    "; ".join(late) + ". What can still go out is kept and sent again "
                    "automatically (`outbox` shows it to staff).",
                )
            )

    async def context(self, session: AsyncSession, request: Request) -> Context:
        course, person = await self.resolve(session, request)
        return Context(
            session=session,
            course=course,
            person=person,
            request=request,
            now=self.clock.now(),
            registry=self.registry,
            data_dir=self.data_dir,
            config=self.config,
        )

    @staticmethod
    async def resolve(session: AsyncSession, request: Request) -> tuple[Course, Person | None]:
        """The course bound to the request's space and the caller's roster entry (one query)."""
        identity = and_(
            Identity.course_id == Course.id,
            Identity.platform == request.caller.platform,
            Identity.user_id == request.caller.user_id,
        )
        row = (
            await session.execute(
                select(Course, Person)
                .join(CourseBinding, CourseBinding.course_id == Course.id)
                .outerjoin(Identity, identity)
                .outerjoin(Person, Person.id == Identity.person_id)
                .where(
                    CourseBinding.platform == request.platform,
                    CourseBinding.external_id == request.workspace,
                )
            )
        ).first()
        if row is None:
            raise NoCourse(
                f"This {request.platform.value} space (`{request.workspace}`) is not connected to a "
                "course yet.",
                hint="An instructor can connect it with "
                f"`coursebot course bind <course-key> {request.platform.value} {request.workspace}`.",
            )
        return row[0], row[1]

    @staticmethod
    def _forbidden(
        access: Access, person: Person | None, cmd: Command | None = None
    ) -> CourseBotError:
        what = f"`{cmd.name}`" if cmd else "That"
        if person is None:
            return Forbidden(
                f"{what} is for registered {access.label}.",
                hint="Type `register <your email>` to link your account to the roster first.",
            )
        return Forbidden(
            f"{what} is only for {access.label}; you are registered as a {person.role.value}."
        )


#: How long a handled event id is kept: platforms retry within minutes (Slack) and an
#: interaction lives 15 minutes (Discord), so a day is ample.
EVENT_MEMORY = timedelta(days=1)


async def prune_events(session: AsyncSession, now: datetime) -> int:
    """Forget event ids handled more than EVENT_MEMORY ago; how many were removed."""
    result = await session.execute(
        delete(ProcessedEvent).where(ProcessedEvent.created_at < now - EVENT_MEMORY)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def _prune_events(session: AsyncSession, now: datetime, scope: object) -> list:  # type: ignore[type-arg]
    await prune_events(session, now)  # retries of old events are over
    return []


async def _never(session: AsyncSession, now: datetime, scope: object) -> None:
    return None


due_registry.register("event-memory", _prune_events, _never)
