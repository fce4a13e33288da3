"""What the bot owed and whether it arrived: the staff's view of the outbox.

``outbox`` counts this course's messages by state and lists the latest mass sends;
``outbox unreached`` names who could not be reached and why; ``outbox failed`` lists
messages that kept failing, with a button to send them again (``outbox retry``).
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import case, func, select, update

from commands.context import Context
from commands.errors import InvalidInput, NotFound
from commands.outbox import FAILED, PENDING, SENT, SKIPPED, UNREACHABLE, reply_from_json
from commands.registry import Access, registry
from commands.replies import Button, Reply, Section, Table, Tone, render_text
from commands.solver import plural
from commands.timefmt import fmt_instant
from db.models import OutboxMessage, Person

#: How many rows a listing shows (the newest).
LIMIT = 50


def _target(row: OutboxMessage, names: dict[int, str]) -> str:
    if row.person_id is not None:
        return f"DM to {names.get(row.person_id, f'person {row.person_id}')}"
    if row.channel and row.channel.startswith("@"):
        return f"DM to account {row.channel[1:]}"
    if row.edit_key:
        return f"edit of {row.edit_key}"
    if row.thread_name:
        return f"thread {row.thread_name} in #{(row.channel or '').lstrip('#')}"
    return f"#{(row.channel or row.in_thread or '?').lstrip('#')}"


def _gist(row: OutboxMessage) -> str:
    reply = reply_from_json(row.reply)
    text = (reply.text or reply.title or render_text(reply)).replace("\n", " ")
    return text[:40] + ("…" if len(text) > 40 else "")


async def _names(ctx: Context, rows: list[OutboxMessage]) -> dict[int, str]:
    ids = {r.person_id for r in rows if r.person_id is not None}
    if not ids:
        return {}
    found = await ctx.session.execute(select(Person.id, Person.name).where(Person.id.in_(ids)))
    return {pid: name for pid, name in found}


@registry.command(
    "outbox",
    "What the bot has sent, what waits and what could not be delivered",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    reads=True,
)
async def outbox_status(ctx: Context, _: BaseModel) -> Reply:
    counts: dict[str, int] = {
        status: n
        for status, n in await ctx.session.execute(
            select(OutboxMessage.status, func.count())
            .where(OutboxMessage.course_id == ctx.course.id)
            .group_by(OutboxMessage.status)
        )
    }
    fields = [
        ("Delivered", str(counts.get(SENT, 0))),
        ("Waiting to be sent", str(counts.get(PENDING, 0))),
        ("Could not be reached", str(counts.get(UNREACHABLE, 0))),
        ("Failed (kept; `outbox failed`)", str(counts.get(FAILED, 0))),
        ("Nothing to do (an edit of a message never posted)", str(counts.get(SKIPPED, 0))),
    ]
    batches = (
        await ctx.session.execute(
            select(
                OutboxMessage.batch,
                func.min(OutboxMessage.created_at),
                func.count(),
                func.sum(case((OutboxMessage.status == SENT, 1), else_=0)),
                func.sum(case((OutboxMessage.status == PENDING, 1), else_=0)),
            )
            .where(OutboxMessage.course_id == ctx.course.id, OutboxMessage.batch.is_not(None))
            .group_by(OutboxMessage.batch)
            .order_by(func.min(OutboxMessage.created_at).desc())
            .limit(10)
        )
    ).all()
    rows = [
        [
            str(batch),
            fmt_instant(when, ctx.tz),
            f"{int(sent or 0)} of {total}",
            str(int(waiting or 0)),
            str(total - int(sent or 0) - int(waiting or 0)),
        ]
        for batch, when, total, sent, waiting in batches
    ]
    return Reply(
        title="outbox",
        text="Every post and private message the bot owes is kept until it is delivered.",
        sections=[Section("", "", fields)],
        tables=[Table(["Mass send", "When", "Delivered", "Waiting", "Not reached"], rows)]
        if rows
        else [],
    )


class UnreachedOptions(BaseModel):
    batch: str | None = Field(None, description="one mass send (from `outbox`); default: all")


@registry.command(
    "outbox unreached",
    "Who could not be reached by a private message, and why",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    examples=("outbox unreached",),
    reads=True,
)
async def outbox_unreached(ctx: Context, opts: UnreachedOptions) -> Reply:
    q = select(OutboxMessage).where(
        OutboxMessage.course_id == ctx.course.id,
        OutboxMessage.status.in_((UNREACHABLE, FAILED)),
    )
    if opts.batch:
        q = q.where(OutboxMessage.batch == opts.batch)
    rows = list(await ctx.session.scalars(q.order_by(OutboxMessage.id.desc()).limit(LIMIT)))
    if opts.batch and not rows:
        exists = await ctx.session.scalar(
            select(OutboxMessage.id).where(
                OutboxMessage.course_id == ctx.course.id, OutboxMessage.batch == opts.batch
            )
        )
        if exists is None:
            raise NotFound(f"No mass send `{opts.batch}`.", hint="`outbox` lists the latest ones.")
    names = await _names(ctx, rows)
    table = [
        [
            fmt_instant(r.created_at, ctx.tz),
            _target(r, names),
            r.status,
            r.last_error or "",
            r.batch or "",
        ]
        for r in rows
    ]
    what = f"in `{opts.batch}`" if opts.batch else "(newest first)"
    return Reply(
        text=f"{plural(len(rows), 'message')} did not reach {'its' if len(rows) == 1 else 'their'} reader {what}."
        if rows
        else "Every message reached its reader.",
        tables=[Table(["When", "To", "State", "Why", "Mass send"], table)] if rows else [],
    )


@registry.command(
    "outbox failed",
    "Messages that kept failing, kept so that nothing is lost",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    reads=True,
)
async def outbox_failed(ctx: Context, _: BaseModel) -> Reply:
    rows = list(
        await ctx.session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.course_id == ctx.course.id, OutboxMessage.status == FAILED)
            .order_by(OutboxMessage.id.desc())
            .limit(LIMIT)
        )
    )
    if not rows:
        return Reply(text="No message has failed.", tone=Tone.SUCCESS)
    names = await _names(ctx, rows)
    table = [
        [str(r.id), _target(r, names), str(r.attempts), r.last_error or "", _gist(r)] for r in rows
    ]
    return Reply(
        text=f"{plural(len(rows), 'message')} failed. `outbox retry <id>` or `outbox retry all` "
        "sends " + ("it" if len(rows) == 1 else "them") + " again.",
        tables=[Table(["Id", "To", "Tries", "Last error", "Message"], table)],
        buttons=[Button("Retry all", "outbox-retry", ("all",), style="primary")],
    )


class RetryOptions(BaseModel):
    which: str = Field(description="a failed message's id (from `outbox failed`), or `all`")


async def _retry(ctx: Context, which: str) -> Reply:
    q = update(OutboxMessage).where(
        OutboxMessage.course_id == ctx.course.id, OutboxMessage.status == FAILED
    )
    if which.strip().lower() != "all":
        token = which.strip().lstrip("#")
        if not (token.isascii() and token.isdigit()) or len(token) > 18:
            raise InvalidInput(
                f"`{which}` is not a message id.",
                hint="Type `outbox retry 12` or `outbox retry all`.",
            )
        q = q.where(OutboxMessage.id == int(token))
    result = await ctx.session.execute(
        q.values(status=PENDING, attempts=0, next_attempt_at=ctx.now).execution_options(
            synchronize_session=False
        )
    )
    n = int(getattr(result, "rowcount", 0) or 0)
    if n == 0:
        raise NotFound(
            f"No failed message `{which}`.", hint="`outbox failed` lists the ones to retry."
        )
    return Reply(
        text=f"{plural(n, 'message')} will be sent again now; `outbox` shows how it went.",
        tone=Tone.SUCCESS,
    )


@registry.command(
    "outbox retry",
    "Send failed messages again",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    examples=("outbox retry all",),
)
async def outbox_retry(ctx: Context, opts: RetryOptions) -> Reply:
    return await _retry(ctx, opts.which)


@registry.action("outbox-retry", access=Access.STAFF, ephemeral=True)
async def outbox_retry_button(ctx: Context, args: tuple[str, ...], _: str | None) -> Reply:
    return await _retry(ctx, args[0] if args else "all")
