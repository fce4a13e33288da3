"""Event versions: what the calendar last served of each event.

An event's fingerprint is a hash of what it says (times, text, place, link, alarms).
The first time an event goes out it is version 0, stamped with that moment; when its
fingerprint changes it goes out as the next version (SEQUENCE + 1), stamped anew
(LAST-MODIFIED and DTSTAMP). A calendar app that already has the UID then updates the
event in place.

A chat download (``deadlines ics``) only reads: a change not recorded yet goes out as
the next version stamped now. The subscription feed and ``coursebot calendar export``
record what they serve, so every poll after a change sees the same version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import CalendarVersion

#: Versions are read in chunks of this many UIDs (an IN list).
CHUNK = 500


@dataclass(frozen=True)
class Version:
    sequence: int
    modified: datetime
    #: Not recorded yet (new or changed since it was last served).
    pending: bool = False


async def stored_versions(
    session: AsyncSession, course_key: str, uids: list[str]
) -> dict[str, CalendarVersion]:
    out: dict[str, CalendarVersion] = {}
    for i in range(0, len(uids), CHUNK):
        rows = await session.scalars(
            select(CalendarVersion).where(
                CalendarVersion.course_key == course_key,
                CalendarVersion.uid.in_(uids[i : i + CHUNK]),
            )
        )
        out.update({r.uid: r for r in rows})
    return out


async def versions(
    session: AsyncSession,
    course_key: str,
    fingerprints: dict[str, str],
    now: datetime,
    *,
    record: bool = False,
) -> dict[str, Version]:
    """Each UID's version for its fingerprint; with ``record``, new and changed ones
    are written (the caller's transaction commits them)."""
    stored = await stored_versions(session, course_key, list(fingerprints))
    out: dict[str, Version] = {}
    for uid, fp in fingerprints.items():
        row = stored.get(uid)
        if row is not None and row.fingerprint == fp:
            out[uid] = Version(row.sequence, row.modified_at)
            continue
        seq = 0 if row is None else row.sequence + 1
        out[uid] = Version(seq, now, pending=not record)
        if not record:
            continue  # (never touch ``row``: a read must not write)
        if row is None:
            session.add(
                CalendarVersion(
                    course_key=course_key, uid=uid, fingerprint=fp, sequence=seq, modified_at=now
                )
            )
        else:
            row.fingerprint, row.sequence, row.modified_at = fp, seq, now
    if record:
        await session.flush()
    return out
