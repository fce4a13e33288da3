"""``rank partner``: two students ask to present one standard paper together.

A request counts once the other student asks for the requester too; the solver then
puts the pair on one paper that both ranked (and that takes two or more presenters),
when there is one. Partners may also be written in the course file
(``course.assignment.partners``); see docs/assignment.md.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import delete, select

from commands.context import Context
from commands.errors import InvalidInput
from commands.people import find_person
from commands.rankings import deadline_for
from commands.registry import registry
from commands.replies import Reply, Tone
from commands.timefmt import fmt_instant
from db.models import PartnerRequest, Role


class PartnerOptions(BaseModel):
    student: str = Field(
        description="the student you want to present with (email, onyen or name), or "
        "`none` to withdraw your request"
    )


@registry.command(
    "rank partner",
    "Ask to present your standard paper together with another student",
    ephemeral=True,
    topic="rank",
    examples=("rank partner bob.okafor@unc.edu", "rank partner none"),
)
async def rank_partner(ctx: Context, opts: PartnerOptions) -> Reply:
    me = ctx.me()
    if me.role is not Role.STUDENT:
        raise InvalidInput("Only students present papers, so only students ask for partners.")
    deadline = await deadline_for(ctx.session, ctx.course, me.id)
    if deadline is not None and ctx.now > deadline:
        raise InvalidInput(
            f"Partner requests closed with the rankings ({fmt_instant(deadline, ctx.tz)}); "
            "nothing was changed.",
            hint="Ask the instructor, who can add partners to the course file.",
        )
    mine = await ctx.session.scalar(
        select(PartnerRequest).where(
            PartnerRequest.course_id == ctx.course.id, PartnerRequest.person_id == me.id
        )
    )
    if opts.student.strip().lower() == "none":
        if mine is None:
            return Reply(text="You have no partner request to withdraw.")
        await ctx.session.delete(mine)
        return Reply(text="Your partner request is withdrawn.", tone=Tone.SUCCESS)
    other = await find_person(ctx.session, ctx.course.id, opts.student)
    if other.id == me.id:
        raise InvalidInput("You cannot partner yourself.", hint="Type `rank partner <student>`.")
    if other.role is not Role.STUDENT:
        raise InvalidInput(f"{other.name} is not a student of the course.")
    if mine is not None:
        await ctx.session.execute(delete(PartnerRequest).where(PartnerRequest.id == mine.id))
    ctx.session.add(
        PartnerRequest(
            course_id=ctx.course.id, person_id=me.id, partner_id=other.id, created_at=ctx.now
        )
    )
    back = await ctx.session.scalar(
        select(PartnerRequest).where(
            PartnerRequest.course_id == ctx.course.id,
            PartnerRequest.person_id == other.id,
            PartnerRequest.partner_id == me.id,
        )
    )
    rule = (
        "The assignment puts you on one standard paper you both ranked (one that takes two "
        "or more presenters), if there is one."
    )
    if back is not None:
        ctx.dm(
            other.id,
            Reply(text=f"🤝 {me.name} confirmed: you are partners. {rule}", ephemeral=True),
        )
        return Reply(
            text=f"🤝 Confirmed: you and {other.name} asked for each other. {rule}",
            tone=Tone.SUCCESS,
        )
    ctx.dm(
        other.id,
        Reply(
            text=f"{me.name} would like to present a paper with you. To agree, type "
            f'`rank partner "{me.name}"`; to decline, do nothing.',
            ephemeral=True,
        ),
    )
    return Reply(
        text=f"Asked {other.name}; it counts once they ask for you too (a message on its "
        f"way to them says how). {rule}",
        tone=Tone.SUCCESS,
    )
