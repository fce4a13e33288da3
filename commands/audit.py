"""The audit log: every staff action that changes someone else's record is appended here
(who, when, what, before and after, an optional reason), in the same transaction as the
change itself. Nothing deletes from it.

Services call :func:`record`; instructors read it with ``audit`` (see the command below).
"""

from __future__ import annotations

from typing import Any

from commands.context import Context
from db.models import AuditEntry, Person


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of ``value`` (dates and enums become text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    return str(value)


def record(
    ctx: Context,
    kind: str,
    *,
    subject: Person | None = None,
    summary: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEntry:
    """Append one entry for the caller's action of ``kind`` (``grade.set``,
    ``critique.grade``, ``assign.publish``, …) on ``subject`` (None: course-wide).
    It is written with the command's transaction, so a refused command leaves none."""
    actor = ctx.person
    entry = AuditEntry(
        course_id=ctx.course.id,
        at=ctx.now,
        actor_id=actor.id if actor else None,
        actor=actor.name if actor else f"{ctx.caller.platform.value}:{ctx.caller.user_id}",
        kind=kind,
        subject_id=subject.id if subject else None,
        subject=subject.name if subject else "",
        summary=summary,
        before=_plain(before or {}),
        after=_plain(after or {}),
        reason=(reason or None),
    )
    ctx.session.add(entry)
    return entry
