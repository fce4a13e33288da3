"""``people drop``: a student leaves the course. Their record stays (grades, critiques,
the audit log) under the role ``withdrawn``, so nothing pings, ranks, assigns or counts
them any more; their seats in the assignment are freed, and the instructor is offered a
repair that moves as few others as possible (``assign changes=minimal``)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import delete, or_, select

from commands.assignment.store import rows_of
from commands.audit import Reason, record
from commands.context import Context
from commands.errors import InvalidInput
from commands.people import find_person
from commands.registry import Access, registry
from commands.replies import Button, Reply, Tone
from db.models import Assignment, Paper, PartnerRequest, Role


class DropOptions(BaseModel):
    student: str = Field(description="the student who left (email, onyen or name)")
    reason: Reason = None


@registry.command(
    "people drop",
    "A student left the course: stop pinging them and free their presentation seats",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="people",
    examples=("people drop alice", 'people drop bob reason="withdrew on 10/02"'),
)
async def people_drop(ctx: Context, opts: DropOptions) -> Reply:
    person = await find_person(ctx.session, ctx.course.id, opts.student, list_matches=True)
    if person.role is Role.WITHDRAWN:
        return Reply(text=f"{person.name} has already left the course.")
    if person.role is not Role.STUDENT:
        raise InvalidInput(
            f"{person.name} is staff, not a student; only students are dropped.",
            hint="Change staff in the course file.",
        )
    seats = await ctx.session.execute(
        select(Paper.number, Assignment.published)
        .join(Assignment, Assignment.paper_id == Paper.id)
        .where(Assignment.course_id == ctx.course.id, Assignment.person_id == person.id)
    )
    published = sorted({n for n, pub in seats if pub})
    await ctx.session.execute(
        delete(Assignment).where(
            Assignment.course_id == ctx.course.id, Assignment.person_id == person.id
        )
    )
    await ctx.session.execute(
        delete(PartnerRequest).where(
            PartnerRequest.course_id == ctx.course.id,
            or_(PartnerRequest.person_id == person.id, PartnerRequest.partner_id == person.id),
        )
    )
    person.role = Role.WITHDRAWN
    record(
        ctx,
        "people.drop",
        subject=person,
        summary=f"{person.name} left the course",
        before={"role": "student", "papers": published},
        after={"role": "withdrawn"},
        reason=opts.reason,
    )
    text = (
        f"{person.name} is marked as having left the course: no more reminders, and they "
        "are no longer counted in rankings, critiques or the assignment. Their grades and "
        "submissions stay on record."
    )
    buttons = []
    if published:
        left = await rows_of(ctx.session, ctx.course.id, published=True)
        short = []
        for number in published:
            have = sum(1 for kind_rows in left.values() for n in kind_rows.values() if n == number)
            short.append(f"#{number} (now {have} presenter{'s' * (have != 1)})")
        text += (
            f" Their published seats are freed: {', '.join(short)}. `assign changes=minimal` "
            "proposes a repair that moves as few others as possible; nothing changes for "
            "students until you publish it."
        )
        buttons.append(Button("Propose a repair", "assign-repair", style="primary"))
    return Reply(text=text, tone=Tone.SUCCESS, buttons=buttons)


# The button runs the command as typed, so the solver runs outside the write transaction.
registry.command_button("assign-repair", "assign changes=minimal", access=Access.INSTRUCTOR)


class RestoreOptions(BaseModel):
    student: str = Field(description="a student who was dropped (email, onyen or name)")
    reason: Reason = None


@registry.command(
    "people restore",
    "Undo `people drop`: the student is back in the course",
    access=Access.INSTRUCTOR,
    ephemeral=True,
    topic="people",
)
async def people_restore(ctx: Context, opts: RestoreOptions) -> Reply:
    person = await find_person(ctx.session, ctx.course.id, opts.student, list_matches=True)
    if person.role is not Role.WITHDRAWN:
        return Reply(text=f"{person.name} has not left the course; nothing to restore.")
    person.role = Role.STUDENT
    record(
        ctx,
        "people.restore",
        subject=person,
        summary=f"{person.name} is back in the course",
        before={"role": "withdrawn"},
        after={"role": "student"},
        reason=opts.reason,
    )
    return Reply(
        text=f"{person.name} is a student of the course again. They have no presentation "
        "until the assignment is computed and published again (`assign changes=minimal`).",
        tone=Tone.SUCCESS,
    )
