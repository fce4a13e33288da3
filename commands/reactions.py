"""One reaction model for every platform (issue #20).

A message that takes reactions (a battle poll) keeps what its reactions mean, the
:class:`~commands.replies.Reactions` spec, on its ``message_refs`` row, next to the
platform's reference of the message. Whoever posts such a message records it (the
outbox dispatcher for the messages it sends, an adapter for a reply it posts itself),
and every adapter hands a reaction event to :meth:`CommandCore.handle_reaction` with the
message's reference: the core finds the record, ignores emojis the message does not
take, drops repeated events (a platform's retry or a gateway replay), and runs the
recorded action. An edit that changes a message's reactions (a closed poll takes none)
updates the record.
"""

from __future__ import annotations

import collections
import hashlib
import logging
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.replies import Reactions
from db.models import MessageRef

log = logging.getLogger("coursebot.reactions")


def spec_of(reactions: Reactions | None) -> dict[str, Any] | None:
    if reactions is None:
        return None
    return {
        "action": reactions.action,
        "args": list(reactions.args),
        "emojis": list(reactions.emojis),
        "secret": reactions.secret,
    }


def reactions_of(spec: dict[str, Any] | None) -> Reactions | None:
    if not spec:
        return None
    try:
        return Reactions(
            str(spec["action"]),
            tuple(str(e) for e in spec["emojis"]),
            tuple(str(a) for a in spec.get("args", ())),
            secret=bool(spec.get("secret", False)),
        )
    except (KeyError, TypeError):
        log.warning("unreadable reaction spec %r", spec)
        return None


def action_id(reactions: Reactions) -> str:
    """The action id a reaction runs (``battle.react:3``), the emoji being its value."""
    return ":".join((reactions.action, *reactions.args))


def ref_key(ref: str) -> str:
    """The ``message_refs`` key of a message recorded only for its reactions."""
    key = f"react:{ref}"
    if len(key) <= 100:
        return key
    return "react:" + hashlib.sha256(ref.encode()).hexdigest()[:40]


async def remember(
    session: AsyncSession,
    course_id: int,
    platform: str | None,
    ref: str,
    reactions: Reactions | None,
    *,
    key: str | None = None,
) -> None:
    """Record what ``ref``'s reactions mean (``key``: the message is also remembered
    under that key for later edits). With ``reactions`` None and no key, a message that
    takes none needs no record: nothing is written."""
    key = key or ref_key(ref)
    row = await session.scalar(
        select(MessageRef).where(MessageRef.course_id == course_id, MessageRef.key == key)
    )
    if row is None:
        if reactions is None and key == ref_key(ref):
            return
        session.add(
            MessageRef(
                course_id=course_id,
                key=key,
                ref=ref,
                platform=platform,
                reactions=spec_of(reactions),
            )
        )
        return
    row.ref = ref
    row.platform = platform or row.platform
    row.reactions = spec_of(reactions)


async def update_for_key(
    session: AsyncSession, course_id: int, key: str, reactions: Reactions | None
) -> None:
    """An edit of the message remembered under ``key``: it now takes ``reactions``."""
    row = await session.scalar(
        select(MessageRef).where(MessageRef.course_id == course_id, MessageRef.key == key)
    )
    if row is not None:
        row.reactions = spec_of(reactions)


async def lookup(
    session: AsyncSession, course_id: int, platform: str, ref: str
) -> Reactions | None:
    """What the reactions on ``ref`` mean; None when the bot does not know the message
    (never posted it, or it takes no reactions any more)."""
    rows = (
        await session.scalars(
            select(MessageRef)
            .where(
                MessageRef.course_id == course_id,
                MessageRef.ref == ref,
                or_(MessageRef.platform == platform, MessageRef.platform.is_(None)),
            )
            .order_by(MessageRef.id.desc())
        )
    ).all()
    for row in rows:
        if row.reactions:
            return reactions_of(row.reactions)
    return None


class ReactionLog:
    """The last direction seen of each (message, person, emoji): a platform never sends
    two additions (or two removals) of one reaction in a row, so a second one is a
    repeated delivery (a Slack retry, a Discord gateway replay) and is dropped.

    ``forget`` is called when the bot itself takes a reaction off (a secret ballot): the
    next addition by that person is then a new one."""

    def __init__(self, size: int = 50_000) -> None:
        self._last: collections.OrderedDict[tuple[str, ...], bool] = collections.OrderedDict()
        self._size = size

    def repeated(self, key: tuple[str, ...], added: bool) -> bool:
        last = self._last.pop(key, None)
        self._last[key] = added
        while len(self._last) > self._size:
            self._last.popitem(last=False)
        return last is added

    def forget(self, key: tuple[str, ...]) -> None:
        self._last.pop(key, None)
