"""The inbox: what a platform delivered and the bot acknowledged, kept until it ran.

Slack wants an acknowledgement within 3 s and Discord a deferral within 3 s, and the bot
runs the command after it; a process that dies in between used to lose the command
without a word. Now the command (a Slack slash command, button press or form submission;
a Discord slash command, button, form or picker submission) is written here *before* the
acknowledgement and marked done once its answer was handed over. At start, an adapter
asks for the entries left unfinished by a stopped process and runs them again (the
core's event-id record keeps a command that did commit from acting twice: it is answered
"went through") or, when too much time has passed for an answer to reach the sender
where they asked, tells them by direct message what became of it.

An entry keeps only what running it again needs. What lets the bot answer in the
sender's place (Discord's interaction token, Slack's response URL) is removed from it
once it is done (``forget``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from db.models import InboxEntry, Platform, ProcessedEvent
from db.session import Database

log = logging.getLogger("coursebot.inbox")


async def receive(
    db: Database,
    platform: Platform,
    event_id: str,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Keep what arrived, before it is acknowledged; False if it was already kept (a
    retry of the same delivery)."""
    try:
        async with db.transaction() as session:
            session.add(
                InboxEntry(
                    platform=platform,
                    event_id=event_id,
                    kind=kind,
                    payload=payload,
                    received_at=now,
                )
            )
    except IntegrityError:
        return False
    return True


async def done(
    db: Database,
    platform: Platform,
    event_id: str,
    now: datetime,
    *,
    forget: Sequence[str] = (),
) -> None:
    """The command ran and its answer was handed over. ``forget``: payload keys that
    are of no use once it is done and must not be kept (a token, a response URL)."""
    async with db.transaction() as session:
        if not forget:
            await session.execute(
                update(InboxEntry)
                .where(InboxEntry.platform == platform, InboxEntry.event_id == event_id)
                .values(done_at=now)
                .execution_options(synchronize_session=False)
            )
            return
        entry = await session.scalar(
            select(InboxEntry).where(
                InboxEntry.platform == platform, InboxEntry.event_id == event_id
            )
        )
        if entry is not None:
            entry.done_at = now
            entry.payload = {k: v for k, v in entry.payload.items() if k not in forget}


def went_through(what: str) -> str:
    """The answer to a command that committed just before a restart cut it off."""
    return (
        f"Your {what} went through just before the bot restarted, so its answer may not "
        "have reached you. Nothing needs to be done again."
    )


def not_run(what: str, again: str = "Please try again.") -> str:
    """What the sender of a command that never ran is told, with what to do."""
    return f"Your {what} was not run: the bot restarted before it could. {again}"


async def unfinished(
    db: Database, platform: Platform, before: datetime
) -> list[tuple[InboxEntry, bool]]:
    """Entries received before ``before`` (by a process that has stopped) and never
    done, oldest first, each with whether its command did commit (its event id is in
    ``processed_events``)."""
    async with db.session() as session:
        rows = list(
            await session.scalars(
                select(InboxEntry)
                .where(
                    InboxEntry.platform == platform,
                    InboxEntry.done_at.is_(None),
                    InboxEntry.received_at < before,
                )
                .order_by(InboxEntry.id)
            )
        )
        ran = set(
            await session.scalars(
                select(ProcessedEvent.event_id).where(
                    ProcessedEvent.platform == platform,
                    ProcessedEvent.event_id.in_([r.event_id for r in rows]),
                )
            )
        )
    return [(row, row.event_id in ran) for row in rows]
