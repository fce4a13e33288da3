"""The audit log: every staff action that changes someone else's record is appended here
(who, when, what, before and after, an optional reason), in the same transaction as the
change itself. Nothing deletes from it.

Services call :func:`record`; instructors read it with ``audit`` (see the command below).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import Select, func, or_, select

from commands.context import Context
from commands.errors import InvalidInput, NotFound
from commands.exports import csv_text
from commands.registry import Access, registry
from commands.replies import Button, FileOut, Reply, Section
from commands.solver import plural
from commands.timefmt import plain
from db.models import AuditEntry, Person

#: The optional ``reason=`` of a staff command that changes someone's record; it is kept
#: with the command's audit entry.
Reason = Annotated[
    str | None,
    Field(max_length=500, description="why (kept in the audit log)"),
]


def local_iso(instant: datetime, tz: ZoneInfo) -> str:
    """An instant as ISO text in the course's zone, with its offset (for before/after)."""
    return instant.astimezone(tz).isoformat(timespec="minutes")


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
        summary=plain(summary),  # stored text: instants in the course's zone
        before=_plain(before or {}),
        after=_plain(after or {}),
        reason=(reason or "").strip() or None,
    )
    ctx.session.add(entry)
    return entry


# ----------------------------------------------------------------------------- reading it

#: Entries per page of ``audit``.
PAGE_SIZE = 15
#: The longest summary, change or reason ``audit`` shows (the CSV has everything).
CELL = 300


def query(course_id: int, *, person_id: int | None = None, kind: str | None = None) -> Select:  # type: ignore[type-arg]
    """The course's entries, newest first; with ``person_id`` those about or by that
    person, with ``kind`` those whose kind starts with it (``grade`` → ``grade.set``)."""
    q = select(AuditEntry).where(AuditEntry.course_id == course_id)
    if person_id is not None:
        q = q.where(or_(AuditEntry.subject_id == person_id, AuditEntry.actor_id == person_id))
    if kind:
        q = q.where(func.lower(AuditEntry.kind).startswith(kind.strip().lower(), autoescape=True))
    return q.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())


def _show(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def change_text(before: dict[str, Any], after: dict[str, Any]) -> str:
    """``points: 80 → 92``: the values that changed (keys equal on both sides are the
    context, already in the summary)."""
    parts = []
    for key in dict.fromkeys([*before, *after]):
        b, a = before.get(key), after.get(key)
        if key in before and key in after and a == b:
            continue
        parts.append(f"{key}: {_show(b)} → {_show(a)}")
    return "; ".join(parts)


def _cut(text: str, n: int = CELL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _local(instant: datetime, tz: ZoneInfo) -> str:
    local = instant.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def entry_section(entry: AuditEntry, tz: ZoneInfo) -> Section:
    """One entry: ``when · kind · whose`` over the summary, who acted, the change and
    the reason."""
    fields = [("By", entry.actor)]
    change = change_text(entry.before or {}, entry.after or {})
    if change:
        fields.append(("Change", _cut(change)))
    if entry.reason:
        fields.append(("Reason", _cut(entry.reason)))
    return Section(
        f"{_local(entry.at, tz)} · {entry.kind} · {entry.subject or '(course)'}",
        _cut(entry.summary),
        fields,
    )


async def _filters(
    ctx: Context, person: str | None, kind: str | None
) -> tuple[Person | None, str | None]:
    """The person and kind to filter by. A lone word that names nobody but starts a
    kind in the log (``audit grade``) is taken as the kind."""
    from commands.people import find_person  # people may record entries too: no cycle

    if person is None:
        return None, kind
    try:
        return await find_person(ctx.session, ctx.course.id, person), kind
    except NotFound:
        if kind is None:
            prefix = person.strip().lower()
            known = await ctx.session.scalar(
                select(AuditEntry.id)
                .where(
                    AuditEntry.course_id == ctx.course.id,
                    func.lower(AuditEntry.kind).startswith(prefix, autoescape=True),
                )
                .limit(1)
            )
            if known is not None:
                return None, prefix
        raise


class AuditOptions(BaseModel):
    person: str | None = Field(
        None, description="only entries about or by this person (email, onyen or name)"
    )
    kind: str | None = Field(
        None, description="only kinds that start with this: grade, critique, assign.swap, …"
    )
    page: int = Field(1, ge=1, description="page of the list (newest first)")


@registry.command(
    "audit",
    "The audit log: staff changes to students' records, newest first",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="roster",
    examples=("audit", "audit alice", "audit kind=grade", "audit bob kind=critique page=2"),
    reads=True,
)
async def audit(ctx: Context, opts: AuditOptions) -> Reply:
    who, kind = await _filters(ctx, opts.person, opts.kind)
    return await audit_page(ctx, who.id if who else None, kind, opts.page)


async def audit_page(ctx: Context, person_id: int | None, kind: str | None, page: int) -> Reply:
    q = query(ctx.course.id, person_id=person_id, kind=kind)
    total = await ctx.session.scalar(select(func.count()).select_from(q.order_by(None).subquery()))
    total = int(total or 0)
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    if page > pages:
        raise InvalidInput(
            f"There {'is' if pages == 1 else 'are'} only {plural(pages, 'page')} of entries."
        )
    rows = list(await ctx.session.scalars(q.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)))
    person = await ctx.session.get(Person, person_id) if person_id is not None else None
    filters = [f"about or by {person.name}"] if person else []
    if kind:
        filters.append(f"kind `{kind}…`")
    where = f" ({', '.join(filters)})" if filters else ""
    if not rows:
        return Reply(
            title="Audit log",
            text=f"No entries{where}. Staff changes to grades, critiques, assignments, "
            "deadlines, battle polls, the GPU queue and projects are recorded here.",
        )
    first = (page - 1) * PAGE_SIZE + 1
    sections = [entry_section(e, ctx.tz) for e in rows]
    args = (str(person_id or ""), (kind or "").replace(":", ""))
    buttons = []
    if page > 1:
        buttons.append(Button("◀ Newer", "audit.page", (*args, str(page - 1))))
    if page < pages:
        buttons.append(Button("Older ▶", "audit.page", (*args, str(page + 1))))
    return Reply(
        title="Audit log",
        text=f"Entries {first}-{first + len(rows) - 1} of {total}{where}, newest first "
        f"(page {page} of {pages}). `audit export` has them all as CSV.",
        sections=sections,
        buttons=buttons,
        ephemeral=True,
    )


@registry.action("audit.page", access=Access.INSTRUCTOR)
async def audit_page_button(ctx: Context, args: tuple[str, ...], _value: str | None) -> Reply:
    person, kind, page = args
    return await audit_page(ctx, int(person) if person else None, kind or None, int(page))


#: The columns of ``audit export``.
CSV_COLUMNS = (
    "id",
    "at",
    "at_utc",
    "actor",
    "kind",
    "subject",
    "summary",
    "before",
    "after",
    "reason",
)


class ExportOptions(BaseModel):
    person: str | None = Field(None, description="only entries about or by this person")
    kind: str | None = Field(None, description="only kinds that start with this")


@registry.command(
    "audit export",
    "The whole audit log (or the filtered part) as CSV",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="roster",
    examples=("audit export", "audit export kind=grade"),
    reads=True,
)
async def audit_export(ctx: Context, opts: ExportOptions) -> Reply:
    who, kind = await _filters(ctx, opts.person, opts.kind)
    q = query(ctx.course.id, person_id=who.id if who else None, kind=kind)
    rows = []
    for e in await ctx.session.scalars(q):
        rows.append(
            [
                e.id,
                e.at.astimezone(ctx.tz).isoformat(timespec="seconds"),
                e.at.astimezone(ZoneInfo("UTC")).isoformat(timespec="seconds"),
                e.actor,
                e.kind,
                e.subject,
                e.summary,
                json.dumps(e.before or {}, ensure_ascii=False, sort_keys=True),
                json.dumps(e.after or {}, ensure_ascii=False, sort_keys=True),
                e.reason or "",
            ]
        )
    what = "filtered " if who or kind else ""
    return Reply(
        text=f"{len(rows)} {what}audit entries, newest first.",
        files=[
            FileOut(
                f"{ctx.course.key}-audit.csv",
                csv_text(CSV_COLUMNS, rows).encode(),
                "text/csv",
                "audit log",
            )
        ],
        ephemeral=True,
    )
