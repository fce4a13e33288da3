"""The outbox: how everything the bot says on its own (posts, DMs, edits, threads)
reaches a platform, without ever being lost.

A handler or a due-work provider queues :class:`Outgoing` items; :func:`enqueue` writes
them as ``outbox`` rows *in the same transaction* as the state change that causes them
(the transactional outbox pattern), so a crash at any instant either loses both or
keeps both. The :class:`Dispatcher` then sends the rows through the :class:`Outbox` port
that each adapter implements (the terminal prints; Discord and Slack post), records the
platform's message reference, and marks each row ``sent``, ``unreachable`` (the person
cannot be reached there: no linked account, DMs closed) or, after retries with backoff,
``failed`` (kept, shown to staff by ``outbox failed``, sent again by ``outbox retry``).

A crash between the platform's answer and the commit that marks the row sent means the
row is sent again after the restart: at most one duplicate per crash, never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import secrets
import socket
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from pydantic import TypeAdapter
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from commands import reactions
from commands.replies import Reply
from db.models import CourseBinding, MessageRef, OutboxMessage, Person, Platform
from db.session import Database

if TYPE_CHECKING:
    from commands.clock import Clock

log = logging.getLogger("coursebot.outbox")


# ----------------------------------------------------------------------------- the port


class Unreachable(Exception):
    """The recipient cannot be reached there, for good: no linked account on this
    platform, DMs closed. ``str()`` says why, in words staff can read."""


class Gone(Exception):
    """The target no longer exists (a deleted channel or message): retrying cannot help."""


class RetryLater(Exception):
    """The platform asked us to slow down (429, Discord's anti-spam 40003) or is down
    (5xx): send again after ``after`` seconds."""

    def __init__(self, reason: str, after: float = 5.0) -> None:
        super().__init__(reason)
        self.after = after


class Outbox(Protocol):
    """What each adapter implements. A method raises :class:`Unreachable`,
    :class:`Gone` or :class:`RetryLater` when it knows why it could not deliver;
    any other exception counts as a failure that is retried with backoff."""

    platform: Platform

    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        """Post to a channel of the course; return a message reference."""
        ...

    async def edit(self, course_id: int, message_ref: str, reply: Reply) -> None: ...

    async def dm(self, course_id: int, person_id: int, reply: Reply) -> str:
        """A private message to a person's linked account here; return its reference.
        Raises :class:`Unreachable` when they have none or do not accept DMs."""
        ...

    async def dm_account(self, course_id: int, user_id: str, reply: Reply) -> str:
        """A private message to one chat account of this platform (linked or not)."""
        ...

    async def thread(
        self,
        course_id: int,
        channel: str,
        name: str,
        reply: Reply,
        person_ids: Sequence[int] = (),
    ) -> str:
        """Open a thread named ``name`` under a course channel (a Discord thread, a Slack
        message thread), post ``reply`` in it and bring ``person_ids`` in; return what
        :meth:`post` takes as ``channel`` to post into the thread later."""
        ...

    # Optional: ``async def recorded(self, course_id: int, ref: str, reply: Reply) -> None``
    # is called once a posted message's reference (and what its reactions mean) is
    # committed, to finish the message (Slack adds a poll's reaction choices then).


@dataclass(frozen=True)
class Outgoing:
    """A message to send once the transaction that decided it has committed: to a course
    channel (``channel``), privately to a person (``person_id``), or as an edit of the
    message posted earlier under ``edit_key``. ``remember`` stores the posted message's
    reference under that key, so it can be edited later (a poll's running count).

    With ``thread_name`` the message opens a thread under ``channel`` for ``members``
    (a breakout group), and ``remember`` keeps the thread; ``in_thread`` posts into the
    thread remembered under that key."""

    reply: Reply
    channel: str | None = None
    person_id: int | None = None
    remember: str | None = None
    edit_key: str | None = None
    thread_name: str | None = None
    members: tuple[int, ...] = ()
    in_thread: str | None = None
    #: A DM to this chat account (``(platform, user id)``) rather than to a person's
    #: linked accounts: someone whose link was just removed, a registration request.
    account: tuple[str, str] | None = None
    #: Mass sends (an assignment publish) share a batch id so their delivery is counted.
    batch: str | None = None
    #: For an edit: ``(refresher, arg)`` renders the message when it is sent (see
    #: :func:`register_refresher`), so coalesced edits always end on the current state.
    refresh: tuple[str, str] | None = None
    #: The adapter sends this one itself, at once, right after the commit (the answer
    #: to a reaction, worded for what the platform could do with it): the row is
    #: written held by this process's dispatcher and is only the safety net, sent by
    #: the dispatcher if the adapter never confirms it (a crash; a lease that ran out).
    held: bool = False


# ----------------------------------------------------------------------------- rows

_REPLY = TypeAdapter(Reply)


def reply_to_json(reply: Reply) -> dict[str, object]:
    """A reply as JSON (files as base64), to store in an outbox row."""
    return json.loads(_REPLY.dump_json(reply))  # type: ignore[no-any-return]


def reply_from_json(data: dict[str, object]) -> Reply:
    return _REPLY.validate_json(json.dumps(data))


def new_batch(kind: str) -> str:
    """An id for a mass send (``assignment-3f9a…``), so its delivery can be counted."""
    return f"{kind}-{secrets.token_hex(6)}"


PENDING, SENT, UNREACHABLE, FAILED, SKIPPED = "pending", "sent", "unreachable", "failed", "skipped"

#: A row that failed this many times is kept as ``failed`` (visible to staff).
MAX_ATTEMPTS = 10
#: The longest wait between two tries.
MAX_BACKOFF = timedelta(minutes=5)
#: How long a dispatcher holds a row it is sending before another may take it.
LEASE = timedelta(seconds=30)
#: At most one edit of a message this often (a poll under a burst of votes): pending
#: edits of one message are coalesced into the newest, sent once the gap has passed.
EDIT_GAP = timedelta(seconds=1)

#: Renders an edit's current content when it is sent: ``(session, course id, arg)`` ->
#: the reply, or None when there is nothing to show any more (the poll closed).
Refresher = Callable[[AsyncSession, int, str], Awaitable["Reply | None"]]
_REFRESHERS: dict[str, Refresher] = {}


def register_refresher(name: str) -> Callable[[Refresher], Refresher]:
    """Declare how to render the edits sent with ``Outgoing(refresh=(name, arg))``."""

    def decorate(fn: Refresher) -> Refresher:
        _REFRESHERS[name] = fn
        return fn

    return decorate


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2**attempts), MAX_BACKOFF)


def enqueue(
    session: AsyncSession,
    course_id: int,
    items: Iterable[Outgoing],
    now: datetime,
    *,
    holder: str | None = None,
) -> list[OutboxMessage]:
    """Write ``items`` as outbox rows in ``session``'s transaction (flushed with it).
    A ``held`` item is written claimed by ``holder`` (a dispatcher's token) for one
    lease; without a holder it is an ordinary row."""
    rows = []
    for out in items:
        held = out.held and holder is not None
        row = OutboxMessage(
            course_id=course_id,
            created_at=now,
            status=PENDING,
            next_attempt_at=now + LEASE if held else now,
            claimed_by=holder if held else None,
            attempts=0,
            batch=out.batch,
            channel=out.channel,
            person_id=out.person_id,
            remember=out.remember,
            edit_key=out.edit_key,
            thread_name=out.thread_name,
            members=list(out.members),
            in_thread=out.in_thread,
            reply=reply_to_json(out.reply),
            refresh=f"{out.refresh[0]}:{out.refresh[1]}" if out.refresh else None,
        )
        if out.account is not None:
            # The account travels in ``channel`` as ``@platform:user``.
            row.channel = f"@{out.account[0]}:{out.account[1]}"
        session.add(row)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- sending

#: The outbox row being sent, for adapters whose platform deduplicates a retried send
#: by a key of ours (Discord: the message nonce with ``enforce_nonce``).
DELIVERY: contextvars.ContextVar[int | None] = contextvars.ContextVar("delivery", default=None)


def delivery_nonce(part: int = 0) -> str | None:
    """A nonce for part ``part`` of the message of the outbox row being sent (None
    outside the dispatcher): the same on every try, so Discord keeps one copy."""
    row = DELIVERY.get()
    return None if row is None else f"cb{row}.{part}"


class _Waker(Protocol):
    def kick(self) -> None: ...


#: This process's dispatchers and schedulers, so that a change can wake them all.
_WAKERS: weakref.WeakSet[_Waker] = weakref.WeakSet()  # type: ignore[type-var]


def register_waker(waker: _Waker) -> None:
    _WAKERS.add(waker)


def wake_all() -> None:
    """Something changed (rows became due, a timer started): every dispatcher and
    scheduler of this process looks again now."""
    for waker in list(_WAKERS):
        waker.kick()


class Dispatcher:
    """Sends outbox rows through one adapter's :class:`Outbox`.

    One dispatcher per process. Rows are sent in the order they were written (an edit
    after the post it edits); each is claimed with a short lease first, so two
    processes never send the same row at once. ``deliver(ids)`` sends a command's own
    rows right after its commit (the caller's reply can then count them);
    :meth:`run` sends the rest (scheduled posts, retries) as they fall due."""

    def __init__(self, db: Database, outbox: Outbox, clock: Clock) -> None:
        self.db = db
        self.outbox = outbox
        self.clock = clock
        self.platform: Platform | None = getattr(outbox, "platform", None)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        #: Written on the rows this dispatcher is sending (its lease).
        self.token = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"
        register_waker(self)

    async def release_stale(self) -> int:
        """At start: rows a dead process was sending when it stopped are due again
        now (each may have reached its reader just before the crash: at most one
        duplicate per crash, never a loss). Only for the one process that dispatches."""
        async with self.db.transaction() as session:
            result = await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.status == PENDING,
                    OutboxMessage.claimed_by.is_not(None),
                    OutboxMessage.claimed_by != self.token,
                )
                .values(claimed_by=None, next_attempt_at=self.clock.now())
                .execution_options(synchronize_session=False)
            )
        n = int(getattr(result, "rowcount", 0) or 0)
        if n:
            log.warning("%d message(s) were being sent when the bot stopped: sending again", n)
        return n

    def kick(self) -> None:
        """Rows were written: look for due ones now."""
        self._wake.set()

    async def release_held(self, outcomes: dict[int, str | None]) -> None:
        """The adapter answered with held rows' messages itself: each row id is done,
        delivered (None) or not (why: the reader cannot be reached there). Only rows
        still pending and held by this process are touched (one a restarted process
        released is its dispatcher's now). The clock is not asked whether the lease
        ran out: a virtual clock (a scripted shell's ``:advance``) may jump past it."""
        now = self.clock.now()
        reached = [i for i, why in outcomes.items() if why is None]
        async with self.db.transaction() as session:
            mine = (
                OutboxMessage.status == PENDING,
                OutboxMessage.claimed_by == self.token,
            )
            if reached:
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(reached), *mine)
                    .values(status=SENT, sent_at=now, claimed_by=None)
                    .execution_options(synchronize_session=False)
                )
            for row_id, why in outcomes.items():
                if why is not None:
                    await session.execute(
                        update(OutboxMessage)
                        .where(OutboxMessage.id == row_id, *mine)
                        .values(status=UNREACHABLE, sent_at=now, claimed_by=None, last_error=why)
                        .execution_options(synchronize_session=False)
                    )

    async def deliver(self, ids: Sequence[int] | None = None) -> int:
        """Send the given rows (or every due row of this platform's courses); how many
        reached a final state (sent, unreachable, skipped, failed)."""
        async with self._lock:
            now = self.clock.now()
            async with self.db.session() as session:
                q = select(OutboxMessage.id).where(OutboxMessage.status == PENDING)
                if ids is not None:
                    if not ids:
                        return 0
                    q = q.where(OutboxMessage.id.in_(list(ids)))
                else:
                    q = q.where(OutboxMessage.next_attempt_at <= now)
                    if self.platform is not None:
                        q = q.where(
                            OutboxMessage.course_id.in_(
                                select(CourseBinding.course_id).where(
                                    CourseBinding.platform == self.platform
                                )
                            )
                        )
                todo = list(await session.scalars(q.order_by(OutboxMessage.id).limit(500)))
            done = 0
            for row_id in todo:
                done += await self._send_one(row_id)
            return done

    async def next_due(self) -> datetime | None:
        async with self.db.session() as session:
            return await session.scalar(
                select(OutboxMessage.next_attempt_at)
                .where(OutboxMessage.status == PENDING)
                .order_by(OutboxMessage.next_attempt_at)
                .limit(1)
            )

    async def run(self, *, idle: float = 30.0) -> None:
        """Send due rows until cancelled: sleep until the next row falls due (at most
        ``idle`` seconds), woken at once by :meth:`kick`."""
        while True:
            try:
                await self.deliver()
                nxt = await self.next_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the outbox dispatcher hit an error; trying again shortly")
                nxt = None
            wait = idle
            if nxt is not None:
                wait = min(idle, max(0.05, (nxt - self.clock.now()).total_seconds()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _claim(self, row_id: int) -> OutboxMessage | None:
        """Take the row for LEASE (None if it is no longer pending or someone has it)."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            row = await session.get(OutboxMessage, row_id)
            if row is None or row.status != PENDING:
                return None
            if row.next_attempt_at > now:  # another dispatcher holds it, or it waits
                return None
            result = await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == row_id,
                    OutboxMessage.status == PENDING,
                    OutboxMessage.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + LEASE, claimed_by=self.token)
                .execution_options(synchronize_session=False)
            )
            if not getattr(result, "rowcount", 1):
                return None
            session.expunge(row)
            return row

    async def _send_one(self, row_id: int) -> int:
        row = await self._claim(row_id)
        if row is None:
            return 0
        status, ref, error, wait = SENT, None, None, None
        token = DELIVERY.set(row.id)  # a platform that dedupes (Discord's nonce) keys on it
        sent: Reply | None = None
        try:
            ref, sent = await self._send(row)
        except _Defer as exc:
            return await self._settle(
                row, PENDING, None, str(exc), exc.after, count=False, until=exc.until
            )
        except Unreachable as exc:
            status, error = UNREACHABLE, str(exc) or "cannot be reached"
        except Gone as exc:
            status, error = FAILED, str(exc) or "the target no longer exists"
        except _Skip as exc:
            status, error = SKIPPED, str(exc)
        except RetryLater as exc:
            status, error, wait = PENDING, str(exc), exc.after
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not deliver outbox row %s: %r", row.id, exc)
            status, error = PENDING, f"{type(exc).__name__}: {exc}"[:500]
        finally:
            DELIVERY.reset(token)
        if status is PENDING and wait is None:
            wait = backoff(row.attempts + 1).total_seconds()
        return await self._settle(row, status, ref, error, wait, sent=sent)

    async def _settle(
        self,
        row: OutboxMessage,
        status: str,
        ref: str | None,
        error: str | None,
        wait: float | None,
        *,
        count: bool = True,
        sent: Reply | None = None,
        until: datetime | None = None,
    ) -> int:
        now = self.clock.now()
        attempts = row.attempts + (1 if count else 0)
        if status == PENDING and attempts >= MAX_ATTEMPTS:
            status = FAILED
            log.error("outbox row %s failed %d times (%s): kept for staff", row.id, attempts, error)
        values: dict[str, object] = {
            "status": status,
            "attempts": attempts,
            "last_error": error,
            "claimed_by": None,
        }
        if status == PENDING:
            # An edit gap ends at a fixed instant, however long this attempt took.
            values["next_attempt_at"] = until or now + timedelta(seconds=wait or 1.0)
        else:
            values["sent_at"] = now
            values["ref"] = ref
        async with self.db.transaction() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if status == SENT and ref:
                await self._record(session, row, ref, sent)
        if status == SENT and ref and sent is not None and row.edit_key is None:
            await self._after_record(row, ref, sent)
        if status == PENDING:
            self.kick()
        return 0 if status == PENDING else 1

    async def _after_record(self, row: OutboxMessage, ref: str, sent: Reply) -> None:
        """A port may finish a message once it is recorded (its optional ``recorded``:
        Slack adds a poll's reaction choices only then, so no reaction can arrive
        before the record that routes it). A failure there is logged; the row is sent."""
        finish = getattr(self.outbox, "recorded", None)
        if finish is None:
            return
        try:
            await finish(row.course_id, ref, sent)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("finishing outbox row %s after its record failed", row.id, exc_info=True)

    async def _send(self, row: OutboxMessage) -> tuple[str | None, Reply]:
        """Send the row; the platform's reference and the reply that went out."""
        reply = reply_from_json(row.reply)
        course_id = row.course_id
        if row.edit_key is not None:
            target = await self._recall_or_wait(row, row.edit_key)
            fresh = await self._coalesce(row, row.edit_key)
            if fresh is not None:
                reply = fresh
            await self.outbox.edit(course_id, target, reply)
            return target, reply
        if row.in_thread is not None:
            try:
                target = await self._recall_or_wait(row, row.in_thread)
            except _Skip:
                if row.channel is None:
                    raise
                target = row.channel  # the thread was never opened: say it in the channel
            return await self.outbox.post(course_id, target, reply), reply
        if row.channel is not None and row.channel.startswith("@"):
            platform, _, user = row.channel[1:].partition(":")
            if self.platform is not None and platform != self.platform.value:
                raise Unreachable(f"a {platform} account, and this is {self.platform.value}")
            return await self.outbox.dm_account(course_id, user, reply), reply
        if row.person_id is not None:
            return await self.outbox.dm(course_id, row.person_id, reply), reply
        if row.channel is None:
            raise _Skip("nowhere to send it")
        if row.thread_name is not None:
            ref = await self.outbox.thread(
                course_id, row.channel, row.thread_name, reply, tuple(row.members or ())
            )
            return ref, reply
        return await self.outbox.post(course_id, row.channel, reply), reply

    async def _coalesce(self, row: OutboxMessage, key: str) -> Reply | None:
        """An edit that a newer edit of the same message replaces is skipped;
        one that comes sooner than EDIT_GAP after the last edit waits for it; an edit
        with a refresher is rendered now (None: send the stored reply)."""
        now = self.clock.now()
        async with self.db.session() as session:
            # A newer edit waiting, or already sent (this one was retried, or released
            # after a crash), makes this one stale: it must never land after it.
            newer = await session.scalar(
                select(OutboxMessage.id).where(
                    OutboxMessage.course_id == row.course_id,
                    OutboxMessage.edit_key == key,
                    OutboxMessage.status.in_((PENDING, SENT)),
                    OutboxMessage.id > row.id,
                )
            )
            if newer is not None:
                raise _Skip(f"replaced by the newer edit {newer}")
            last = await session.scalar(
                select(func.max(OutboxMessage.sent_at)).where(
                    OutboxMessage.course_id == row.course_id,
                    OutboxMessage.edit_key == key,
                    OutboxMessage.status == SENT,
                )
            )
            if last is not None and now - last < EDIT_GAP:
                raise _Defer(
                    "waits a moment after the last edit",
                    after=max(0.05, (last + EDIT_GAP - now).total_seconds()),
                    until=last + EDIT_GAP,
                )
            if row.refresh is None:
                return None
            name, _, arg = row.refresh.partition(":")
            render = _REFRESHERS.get(name)
            if render is None:
                log.warning("no refresher %r for outbox row %s: sending it as stored", name, row.id)
                return None
            fresh = await render(session, row.course_id, arg)
        if fresh is None:
            raise _Skip("nothing to show any more")
        return fresh

    async def _recall_or_wait(self, row: OutboxMessage, key: str) -> str:
        """The reference remembered under ``key``; if the message that will carry it is
        still waiting to be sent, this row waits too; if there is none, it is skipped."""
        async with self.db.session() as session:
            ref = await session.scalar(
                select(MessageRef.ref).where(
                    MessageRef.course_id == row.course_id, MessageRef.key == key
                )
            )
            if ref is not None:
                return ref
            earlier = await session.scalar(
                select(OutboxMessage.id).where(
                    OutboxMessage.course_id == row.course_id,
                    OutboxMessage.remember == key,
                    OutboxMessage.status == PENDING,
                    OutboxMessage.id < row.id,
                )
            )
        if earlier is not None:
            raise _Defer(f"waits for message {earlier}", after=1.0)
        raise _Skip(f"no message was posted under {key!r}")

    async def _record(
        self, session: AsyncSession, row: OutboxMessage, ref: str, sent: Reply | None
    ) -> None:
        """Remember what was posted: under the row's key (for later edits), and with
        what its reactions mean (the one record every adapter routes reactions by)."""
        spec = sent.reactions if sent is not None else None
        platform = self.platform.value if self.platform is not None else None
        if row.edit_key is not None:
            await reactions.update_for_key(session, row.course_id, row.edit_key, spec)
        elif row.remember:
            await reactions.remember(session, row.course_id, platform, ref, spec, key=row.remember)
        elif spec is not None:
            await reactions.remember(session, row.course_id, platform, ref, spec)


class _Defer(RetryLater):
    """Not a failure: the row waits for an earlier one (no attempt is counted), for
    ``after`` seconds or until the instant ``until`` (the end of an edit gap)."""

    def __init__(self, reason: str, after: float = 5.0, until: datetime | None = None) -> None:
        super().__init__(reason, after)
        self.until = until


class _Skip(Exception):
    """Nothing to do (an edit of a message that was never posted)."""


# ----------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class BatchCount:
    total: int
    delivered: int
    pending: int
    #: (name, why) of everyone not reached, unreachable or failed.
    missed: list[tuple[str, str]]


async def count_batch(session: AsyncSession, batch: str) -> BatchCount:
    rows = (
        await session.execute(
            select(
                OutboxMessage.status, OutboxMessage.last_error, Person.name, OutboxMessage.channel
            )
            .outerjoin(Person, Person.id == OutboxMessage.person_id)
            .where(OutboxMessage.batch == batch)
            .order_by(Person.name)
        )
    ).all()
    delivered = sum(1 for s, *_ in rows if s == SENT)
    pending = sum(1 for s, *_ in rows if s == PENDING)

    def who(name: str | None, channel: str | None) -> str:
        if name:
            return name
        if channel and channel.startswith("@"):  # a DM to one account: "@platform:user"
            platform, _, user = channel[1:].partition(":")
            return f"the {platform} account {user}"
        return f"#{channel}" if channel else "a channel"

    missed = [
        (who(name, channel), err or status)
        for status, err, name, channel in rows
        if status in (UNREACHABLE, FAILED, SKIPPED)
    ]
    return BatchCount(len(rows), delivered, pending, missed)


def describe_batch(count: BatchCount, *, what: str = "messages", hint: str = "") -> str:
    """ "22 of 25 delivered; 3 could not be reached: …" (true at the moment it is said)."""
    text = f"{count.delivered} of {count.total} {what} delivered"
    if count.pending:
        text += f"; {count.pending} not sent yet (they are retried; `outbox` shows the final count)"
    if count.missed:
        people = "; ".join(f"{name} ({why})" for name, why in count.missed)
        text += f"; {len(count.missed)} could not be reached: {people}"
        if hint:
            text += f". {hint.rstrip('.')}"
    return text + "."


async def undelivered_posts(session: AsyncSession, row_ids: Sequence[int]) -> list[str]:
    """What among ``row_ids`` did not go out (yet): channel posts ("the post to
    #announcements (why)") and single private messages ("the private message to Zoe
    Williams (why)"); the messages of a mass send are counted by their batch instead."""
    rows = (
        await session.execute(
            select(
                OutboxMessage.channel,
                OutboxMessage.status,
                OutboxMessage.last_error,
                Person.name,
            )
            .outerjoin(Person, Person.id == OutboxMessage.person_id)
            .where(
                OutboxMessage.id.in_(list(row_ids)),
                OutboxMessage.status.in_((PENDING, FAILED, UNREACHABLE)),
                OutboxMessage.edit_key.is_(None),
                OutboxMessage.batch.is_(None),
            )
        )
    ).all()
    out = []
    for channel, status, error, name in rows:
        why = error or status
        if name is not None:
            out.append(f"the private message to {name} ({why})")
        elif channel and channel.startswith("@"):
            out.append(f"the private message to {channel[1:]} ({why})")
        elif channel:
            out.append(f"the post to #{channel.lstrip('#')} ({why})")
    return out
