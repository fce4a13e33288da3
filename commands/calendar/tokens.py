"""Calendar subscription links: ``/cal/<token>.ics``, one per person.

The token is a random secret (256 bits) shown once; only its SHA-256 is stored, as
for the desk's sign-in links (:mod:`commands.dashboard`). A person has at most one
live link: a new one revokes the old. Revoked links stay (with when and by whom) and
are never served again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from commands.dashboard import new_token, token_hash
from db.models import CalendarToken, Course, Person, Role

#: What a token looks like (``secrets.token_urlsafe``): anything else is not looked up.
TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def looks_like_token(token: str) -> bool:
    return 20 <= len(token) <= 100 and set(token) <= TOKEN_CHARS


async def revoke_tokens(
    session: AsyncSession, person_id: int, now: datetime, *, by_id: int | None
) -> int:
    """End the person's live link(s); how many there were."""
    result = await session.execute(
        update(CalendarToken)
        .where(CalendarToken.person_id == person_id, CalendarToken.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by_id=by_id)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def issue_token(session: AsyncSession, course_id: int, person_id: int, now: datetime) -> str:
    """A new link's secret (shown once); the person's earlier link stops working."""
    await revoke_tokens(session, person_id, now, by_id=person_id)
    token = new_token()
    session.add(
        CalendarToken(
            token_hash=token_hash(token), course_id=course_id, person_id=person_id, created_at=now
        )
    )
    await session.flush()
    return token


async def live_since(session: AsyncSession, person_id: int) -> datetime | None:
    """When the person's live link was made, if they have one."""
    return await session.scalar(
        select(CalendarToken.created_at).where(
            CalendarToken.person_id == person_id, CalendarToken.revoked_at.is_(None)
        )
    )


async def subscriber(session: AsyncSession, token: str) -> tuple[Course, Person] | None:
    """The course and person of a live link; None for an unknown or revoked one, or a
    person who left the course. Only reads."""
    if not looks_like_token(token):
        return None
    row = await session.execute(
        select(Course, Person)
        .join(CalendarToken, CalendarToken.course_id == Course.id)
        .join(Person, Person.id == CalendarToken.person_id)
        .where(
            CalendarToken.token_hash == token_hash(token),
            CalendarToken.revoked_at.is_(None),
            Person.course_id == Course.id,
        )
    )
    found = row.first()
    if found is None or found[1].role is Role.WITHDRAWN:
        return None
    return found[0], found[1]
