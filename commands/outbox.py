"""The outbox port: how the core's posts, DMs, scheduled reminders, GPU results and
timers reach a platform. The domain defines it; each adapter implements it (the
terminal prints; Discord and Slack post)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select

from commands.replies import Reply
from db.models import MessageRef
from db.session import Database

log = logging.getLogger("coursebot.outbox")


class Outbox(Protocol):
    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        """Post to a channel of the course; return a message reference."""
        ...

    async def edit(self, course_id: int, message_ref: str, reply: Reply) -> None: ...

    async def dm(self, course_id: int, person_id: int, reply: Reply) -> str: ...

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


async def send(db: Database, outbox: Outbox | None, course_id: int, items: list[Outgoing]) -> None:
    """Deliver ``items`` through ``outbox``; a failure is logged and never raised."""
    for out in items:
        if outbox is None:
            log.warning("no outbox: dropped a message for %s", out.channel or out.person_id)
            continue
        try:
            if out.edit_key is not None:
                ref = await recall(db, course_id, out.edit_key)
                if ref is not None:
                    await outbox.edit(course_id, ref, out.reply)
            elif out.in_thread is not None:
                ref = await recall(db, course_id, out.in_thread)
                if ref is not None:
                    await outbox.post(course_id, ref, out.reply)
                elif out.channel is not None:  # the thread was never opened: say it here
                    await outbox.post(course_id, out.channel, out.reply)
            elif out.person_id is not None:
                await outbox.dm(course_id, out.person_id, out.reply)
            elif out.channel is not None:
                if out.thread_name is not None:
                    ref = await outbox.thread(
                        course_id, out.channel, out.thread_name, out.reply, out.members
                    )
                else:
                    ref = await outbox.post(course_id, out.channel, out.reply)
                if out.remember:
                    await _remember(db, course_id, out.remember, ref)
        except Exception:
            log.exception("could not deliver a message to %s", out.channel or out.person_id)


async def recall(db: Database, course_id: int, key: str) -> str | None:
    """The message or thread reference remembered under ``key``, if any."""
    async with db.session() as session:
        return await session.scalar(
            select(MessageRef.ref).where(MessageRef.course_id == course_id, MessageRef.key == key)
        )


async def _remember(db: Database, course_id: int, key: str, ref: str) -> None:
    async with db.transaction() as session:
        row = await session.scalar(
            select(MessageRef).where(MessageRef.course_id == course_id, MessageRef.key == key)
        )
        if row is None:
            session.add(MessageRef(course_id=course_id, key=key, ref=ref))
        else:
            row.ref = ref
