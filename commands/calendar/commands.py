"""The calendar's commands: ``deadlines ics`` (a file to import), ``calendar link`` (a
private subscription URL that calendar apps poll) and ``calendar revoke``."""

from __future__ import annotations

from pydantic import BaseModel, Field

from commands.audit import Reason, record
from commands.calendar.ics import build_calendar
from commands.calendar.tokens import issue_token, revoke_tokens
from commands.context import Context
from commands.dashboard import NOT_SERVED
from commands.errors import Conflict, Forbidden
from commands.people import find_person
from commands.registry import Access, registry
from commands.replies import FileOut, Reply, Section, Tone

SUBSCRIBE_HOW = (
    "Google Calendar (on a computer): Other calendars → + → From URL, paste it, Add "
    "calendar.\n"
    "Apple Calendar: File → New Calendar Subscription… (iPhone: Settings → Calendar → "
    "Accounts → Add Account → Other → Add Subscribed Calendar).\n"
    "Outlook: Add calendar → Subscribe from web."
)


def feed_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/cal/{token}.ics"


@registry.command(
    "deadlines ics",
    "The course calendar (classes, deadlines, your presentations) as an .ics file",
    access=Access.ANYONE,
    ephemeral=True,
    topic="course",
    reads=True,
)
async def deadlines_ics(ctx: Context, _: BaseModel) -> Reply:
    cal = await build_calendar(ctx.session, ctx.course, ctx.person, ctx.now)
    mine = " and your presentations" if ctx.person is not None else ""
    stay = (
        " It is a copy of today's calendar; `calendar link` gives a subscription that "
        "stays current."
        if ctx.person is not None
        else ""
    )
    return Reply(
        f"The course calendar: class sessions, deadlines (with alarms){mine}. Import it "
        f"into your calendar app; times are {ctx.course.timezone}.{stay}",
        files=[FileOut(cal.name, cal.data, "text/calendar")],
    )


@registry.command(
    "calendar link",
    "A private link that keeps your calendar app up to date with the course",
    access=Access.MEMBER,
    ephemeral=True,
    topic="course",
)
async def calendar_link(ctx: Context, _: BaseModel) -> Reply:
    me = ctx.me()
    base = str(ctx.config.get("web_url") or "")
    if not base:
        raise Conflict(
            NOT_SERVED[0].replace("there is no link", "there is no calendar link"),
            hint=NOT_SERVED[1] + " `deadlines ics` gives a file to import meanwhile.",
        )
    replaced = await revoke_tokens(ctx.session, me.id, ctx.now, by_id=me.id)
    token = await issue_token(ctx.session, ctx.course.id, me.id, ctx.now)
    note = "Your previous calendar link stopped working. " if replaced else ""
    return Reply(
        title="Your calendar subscription",
        text=feed_url(base, token),
        sections=[
            Section(
                "",
                "Subscribe to it in your calendar app: class sessions, every deadline (with "
                "alarms a day and an hour before) and your own presentations, kept current "
                "as the course changes.",
            ),
            Section("How", SUBSCRIBE_HOW),
            Section(
                "Keep it private",
                f"{note}Anyone with this link sees your calendar. `calendar revoke` turns it "
                "off; `calendar link` again makes a new one (and ends this one).",
            ),
        ],
        ephemeral=True,
    )


class RevokeOptions(BaseModel):
    person: str | None = Field(None, description="someone's link (staff only); yours by default")
    reason: Reason = None


@registry.command(
    "calendar revoke",
    "Turn off a calendar subscription link (yours; staff: anyone's)",
    access=Access.MEMBER,
    ephemeral=True,
    topic="course",
    examples=("calendar revoke", "calendar revoke alice.chen@unc.edu"),
)
async def calendar_revoke(ctx: Context, opts: RevokeOptions) -> Reply:
    me = ctx.me()
    who = me
    if opts.person:
        if not me.is_staff:
            raise Forbidden(
                "You can only turn off your own calendar link: `calendar revoke`.",
            )
        who = await find_person(ctx.session, ctx.course.id, opts.person, list_matches=True)
    n = await revoke_tokens(ctx.session, who.id, ctx.now, by_id=me.id)
    mine = who.id == me.id
    if not n:
        return Reply(
            ("You have" if mine else f"{who.name} has") + " no calendar link to turn off.",
            tone=Tone.INFO,
        )
    if not mine:
        record(
            ctx,
            "calendar.revoke",
            subject=who,
            summary=f"turned off {who.name}'s calendar link",
            reason=opts.reason,
        )
        ctx.dm(
            who.id,
            Reply(
                "Your calendar subscription link was turned off by the course staff; calendar "
                "apps subscribed to it stop updating. `calendar link` makes a new one."
            ),
        )
        return Reply(
            f"Turned off {who.name}'s calendar link; they were told privately.",
            tone=Tone.SUCCESS,
        )
    return Reply(
        "Your calendar link is off: calendar apps subscribed to it stop updating. "
        "`calendar link` makes a new one.",
        tone=Tone.SUCCESS,
    )
