"""One strict timer for everything timed in class: a battle's phases (``battle timer``,
in :mod:`commands.battles`), a talk (``talk timer <paper>``) and any item of a session's
agenda (``agenda timer <n>``).

A timer is a row (``battle_timers``): what it times (``subject``: ``battle:1``,
``paper:5``, ``agenda:2023-09-13:2``), how its posts name it (``title``), when it
started, how long it runs, and the warnings and overrun step it started with. Its posts
are computed from those, never stored ahead, so a restart resumes it exactly: a warning
``w`` minutes before the end, "time's up", then "over time +m:ss" every step until it is
stopped or runs :data:`MAX_OVERRUN` over. A new timer for the same subject replaces the
running one (the next phase of a battle). Each post goes out once (``notifications``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.context import Context
from commands.coursefile import AgendaItem, BattleRules, Syllabus
from commands.due import Scope, due_registry, earliest
from commands.errors import Conflict, InvalidInput, NotFound
from commands.logistics import agenda_title, battles_by_number, course_calendar, presenters
from commands.outbox import Outgoing
from commands.registry import Access, Complete, registry
from commands.replies import Reply, Section, Table
from commands.timefmt import fmt_day, fmt_time
from db.models import Battle, BattleTimer, Course, Notification, Paper, Slot

#: A timer nobody stops ends itself this long after its end, with a note.
MAX_OVERRUN = timedelta(minutes=15)
#: A warning missed by more than this (the bot was down) is skipped, not posted late.
STALE_WARNING = timedelta(seconds=30)
Day = date  # an alias, for options named `date`
#: Minutes of a standard talk, from the paper's slot.
SLOT_MINUTES = {Slot.MIN30: 30, Slot.MIN45: 45}

# ----------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class TimerRules:
    """Minutes before the end that warn, and the overrun step in seconds."""

    warnings: tuple[int, ...] = (5, 1)
    overrun_every_seconds: int = 30


@dataclass(frozen=True)
class Tick:
    key: str
    at: datetime
    text: str


def rules_of(timer: BattleTimer, course: Course) -> TimerRules:
    """The rules the timer started with (rows from before they were stored: the course's
    battle rules, which timed every timer then)."""
    if timer.warnings is not None and timer.overrun_seconds is not None:
        return TimerRules(tuple(int(w) for w in timer.warnings), timer.overrun_seconds)
    r = BattleRules.model_validate(course.battle_rules or {})
    return TimerRules(tuple(r.warnings), r.overrun_every_seconds)


def end_of(timer: BattleTimer) -> datetime:
    return timer.started_at + timedelta(seconds=timer.seconds)


def timer_ticks(timer: BattleTimer, rules: TimerRules, title: str) -> list[Tick]:
    """Every post a timer makes, up to MAX_OVERRUN past its end (computed, not stored,
    so a restart resumes it exactly)."""
    end = end_of(timer)
    ticks = [
        Tick(
            f"timer:{timer.id}:warn{w}",
            end - timedelta(minutes=w),
            f"⏳ {title}: {w} minute{'s' * (w != 1)} left.",
        )
        for w in sorted(rules.warnings, reverse=True)
        if timedelta(minutes=w) < timedelta(seconds=timer.seconds)
    ]
    ticks.append(Tick(f"timer:{timer.id}:up", end, f"⏰ {title}: time's up!"))
    step = timedelta(seconds=rules.overrun_every_seconds)
    k = 1
    while step * k <= MAX_OVERRUN:
        over = step * k
        ticks.append(
            Tick(f"timer:{timer.id}:over{k}", end + over, f"🔴 {title}: over time +{mmss(over)}")
        )
        k += 1
    return ticks


def mmss(delta: timedelta) -> str:
    m, s = divmod(int(delta.total_seconds()), 60)
    return f"{m}:{s:02d}"


def clock(delta: timedelta) -> str:
    """``-4:30 left`` / ``+1:00 over``."""
    s = int(delta.total_seconds())
    sign = "-" if s >= 0 else "+"
    m, sec = divmod(abs(s), 60)
    return f"{sign}{m}:{sec:02d} {'left' if s >= 0 else 'over'}"


async def running_timers(
    session: AsyncSession, course_id: int, subject: str | None = None
) -> list[BattleTimer]:
    """The course's running timers (of one subject), oldest first."""
    q = select(BattleTimer).where(
        BattleTimer.course_id == course_id, BattleTimer.stopped_at.is_(None)
    )
    if subject is not None:
        q = q.where(BattleTimer.subject == subject)
    return list(await session.scalars(q.order_by(BattleTimer.started_at, BattleTimer.id)))


async def stop_timers(
    session: AsyncSession, course_id: int, subject: str, now: datetime
) -> list[BattleTimer]:
    """Stop the subject's running timers; return them."""
    running = await running_timers(session, course_id, subject)
    for t in running:
        t.stopped_at = now
    return running


async def start_timer(
    session: AsyncSession,
    course: Course,
    *,
    subject: str,
    title: str,
    minutes: int,
    channel: str,
    now: datetime,
    rules: TimerRules,
    battle_id: int | None = None,
    phase: str = "",
) -> BattleTimer:
    """Start a timer (replacing the subject's running one)."""
    await stop_timers(session, course.id, subject, now)
    timer = BattleTimer(
        course_id=course.id,
        battle_id=battle_id,
        phase=phase,
        channel=channel,
        started_at=now,
        seconds=minutes * 60,
        subject=subject,
        title=title,
        warnings=list(rules.warnings),
        overrun_seconds=rules.overrun_every_seconds,
    )
    session.add(timer)
    await session.flush()
    return timer


def started_text(what: str, minutes: int, rules: TimerRules) -> str:
    warn = ", ".join(f"{w} min" for w in rules.warnings if w < minutes)
    warned = f"warnings at {warn}, then" if warn else "then"
    return f"⏱ {what}. {minutes}:00 starts now; {warned} the overrun is counted."


def stopped_text(timer: BattleTimer, now: datetime) -> str:
    used = now - timer.started_at
    return (
        f"⏹ {timer.title or 'Timer'}: stopped after {mmss(used)} "
        f"(of {mmss(timedelta(seconds=timer.seconds))})."
    )


async def due_timer_posts(
    session: AsyncSession, now: datetime, *, course_ids: set[int] | None = None
) -> list[tuple[int, Outgoing]]:
    """Timer posts that are due now, for every course; each is recorded so it goes out
    once. Missed warnings (the bot was down) are skipped; a missed "time's up" goes out
    late; of missed overrun ticks only the latest."""
    out: list[tuple[int, Outgoing]] = []
    q = select(BattleTimer).where(BattleTimer.stopped_at.is_(None))
    if course_ids is not None:
        q = q.where(BattleTimer.course_id.in_(course_ids))
    courses: dict[int, Course] = {}
    for timer in list(await session.scalars(q.order_by(BattleTimer.id))):
        course = courses.get(timer.course_id) or await session.get(Course, timer.course_id)
        assert course is not None
        courses[course.id] = course
        title = timer.title or "Timer"
        sent = set(
            await session.scalars(
                select(Notification.key).where(
                    Notification.course_id == course.id,
                    Notification.key.like(f"timer:{timer.id}:%"),
                )
            )
        )
        ticks = [
            t
            for t in timer_ticks(timer, rules_of(timer, course), title)
            if t.at <= now and t.key not in sent
        ]
        chosen = [t for t in ticks if not (":warn" in t.key and now - t.at > STALE_WARNING)]
        overs = [t for t in chosen if ":over" in t.key]
        chosen = [t for t in chosen if ":over" not in t.key] + overs[-1:]
        for t in ticks:  # record skipped ones too, so they never go out later
            session.add(Notification(course_id=course.id, key=t.key, sent_at=now))
        for t in chosen:
            out.append((course.id, Outgoing(Reply(text=t.text), channel=timer.channel)))
        if now >= end_of(timer) + MAX_OVERRUN:
            timer.stopped_at = now
            note = f"⏹ {title}: timer stopped after {int(MAX_OVERRUN.total_seconds() // 60)} minutes over."
            out.append((course.id, Outgoing(Reply(text=note), channel=timer.channel)))
    await session.flush()
    return out


async def next_timer_post(session: AsyncSession, now: datetime, scope: Scope) -> datetime | None:
    """The next warning, "time's up", overrun tick or self-stop of a running timer."""
    q = select(BattleTimer).where(BattleTimer.stopped_at.is_(None))
    if scope.course_ids is not None:
        q = q.where(BattleTimer.course_id.in_(scope.course_ids))
    best = None
    courses: dict[int, Course] = {}
    for timer in await session.scalars(q):
        course = courses.get(timer.course_id) or await session.get(Course, timer.course_id)
        assert course is not None
        courses[course.id] = course
        stop = end_of(timer) + MAX_OVERRUN
        ahead = [t.at for t in timer_ticks(timer, rules_of(timer, course), "") if t.at > now]
        best = earliest(best, *ahead, stop if stop > now else None)
    return best


due_registry.register_by_course("timers", due_timer_posts, next_timer_post)


def talk_rules(course: Course) -> TimerRules:
    r = Syllabus.of(course).talk_rules
    return TimerRules(tuple(r.warnings), r.overrun_every_seconds)


def timer_channel(ctx: Context, key: str = "general") -> str:
    """Where a timer posts: where it was started, else the course's channel ``key``."""
    return ctx.request.where.channel or ctx.course.channels.get(key, key)


# ----------------------------------------------------------------------------- talks


async def _paper(ctx: Context, number: int) -> Paper:
    paper = await ctx.session.scalar(
        select(Paper).where(Paper.course_id == ctx.course.id, Paper.number == number)
    )
    if paper is None:
        raise NotFound(f"There is no paper #{number}.", hint="`papers` lists them.")
    return paper


async def _agenda_item_for(ctx: Context, paper: Paper) -> AgendaItem | None:
    """The talk of ``paper`` in its day's agenda, if the course file times it."""
    if paper.class_date is None:
        return None
    entry = Syllabus.of(ctx.course).session_on(paper.class_date)
    items = entry.agenda if entry else []
    return next((i for i in items if i.paper == paper.number and i.kind == "talk"), None)


async def _talk(
    ctx: Context, paper: Paper, minutes: int | None, subject: str | None = None
) -> Reply:
    """Start the strict timer of ``paper``'s talk."""
    if paper.slot is Slot.BATTLE:
        from commands.battles import battle_name, phases_of

        battle = await ctx.session.scalar(
            select(Battle).where(
                Battle.course_id == ctx.course.id,
                (Battle.paper_a_id == paper.id) | (Battle.paper_b_id == paper.id),
            )
        )
        if battle is None:
            raise InvalidInput(f"#{paper.number} is a battle paper in no battle: nothing to time.")
        n = battle_name(battle)
        keys = " | ".join(p.key for p in phases_of(ctx.course, battle))
        raise InvalidInput(
            f"#{paper.number} is a battle paper: battle {n} is timed phase by phase.",
            hint=f"`battle timer {n} <{keys}>`.",
        )
    item = await _agenda_item_for(ctx, paper)
    minutes = minutes or (item.minutes if item else None) or SLOT_MINUTES.get(paper.slot)
    if minutes is None:
        raise InvalidInput(
            f"#{paper.number} is presented by the instructor and has no slot length.",
            hint=f"Say how long: `talk timer {paper.number} minutes=60`.",
        )
    names = (await presenters(ctx.session, ctx.course.id)).get(paper.id, [])
    title = f"Talk #{paper.number} {_short(paper.title)}"
    rules = talk_rules(ctx.course)
    await start_timer(
        ctx.session,
        ctx.course,
        subject=subject or f"paper:{paper.number}",
        title=title,
        minutes=minutes,
        channel=timer_channel(ctx),
        now=ctx.now,
        rules=rules,
    )
    by = f" ({', '.join(names)})" if names else ""
    return Reply(text=started_text(f"{title}{by}", minutes, rules))


def _short(title: str, n: int = 48) -> str:
    return title if len(title) <= n else title[: n - 1].rstrip() + "…"


class TalkTimerOptions(BaseModel):
    paper: Annotated[int, Complete("paper")] = Field(ge=1, description="the paper presented")
    action: Literal["start", "stop"] = Field("start", description="start (default) or stop")
    minutes: int | None = Field(
        None, ge=1, le=300, description="how long (default: the agenda's, or the slot's 30/45)"
    )


@registry.command(
    "talk timer",
    "Time a paper's talk strictly (30/45 min from its slot), or stop it",
    access=Access.STAFF,
    topic="talks",
    examples=("talk timer 5", "talk timer 7 minutes=25", "talk timer 5 stop"),
)
async def talk_timer(ctx: Context, opts: TalkTimerOptions) -> Reply:
    paper = await _paper(ctx, opts.paper)
    subject = f"paper:{paper.number}"
    if opts.action == "stop":
        stopped = await stop_timers(ctx.session, ctx.course.id, subject, ctx.now)
        if not stopped:
            raise Conflict(f"No timer is running for the talk of #{paper.number}.")
        return Reply(text=stopped_text(stopped[0], ctx.now))
    return await _talk(ctx, paper, opts.minutes)


# ----------------------------------------------------------------------------- agendas


class AgendaOptions(BaseModel):
    date: Day | None = Field(None, description="the class day (default: today, else the next)")


async def _session_day(ctx: Context, day: date | None) -> date:
    cal = await course_calendar(ctx.session, ctx.course)
    if day is not None:
        if cal.on(day) is None:
            raise NotFound(
                f"There is no class on {fmt_day(day)}.", hint="`schedule` shows the class days."
            )
        return day
    today = ctx.today()
    ahead = [m.day for m in cal.meetings if m.day >= today]
    if not ahead:
        raise NotFound("There are no more classes.", hint="`agenda date=2023-09-13` for one.")
    return ahead[0]


@registry.command(
    "agenda",
    "A class day's agenda with its times (today's, or the next class)",
    access=Access.ANYONE,
    share=True,
    topic="course",
    examples=("agenda", "agenda 2023-08-30"),
)
async def agenda(ctx: Context, opts: AgendaOptions) -> Reply:
    from commands.logistics import agenda_lines

    day = await _session_day(ctx, opts.date)
    cal = await course_calendar(ctx.session, ctx.course)
    meeting = cal.on(day)
    assert meeting is not None
    papers = {
        p.number: p
        for p in await ctx.session.scalars(
            select(Paper).where(Paper.course_id == ctx.course.id, Paper.class_date == day)
        )
    }
    when = ""
    if meeting.start and meeting.end:
        when = f", {fmt_time(meeting.start)}–{fmt_time(meeting.end)}"
    title = f"{fmt_day(day)}{when}" + (f": {meeting.title}" if meeting.title else "")
    if not meeting.agenda:
        listed = "\n".join(f"#{p.number} {p.title}" for p in papers.values())
        return Reply(
            title=title,
            text="No timed agenda for this day in the course file."
            + (f"\nOn the day:\n{listed}" if listed else ""),
        )
    battles = await battles_by_number(ctx.session, ctx.course.id)
    rows = [line.split(". ", 1) for line in agenda_lines(meeting, papers, battles)]
    staff = ctx.person is not None and ctx.person.is_staff
    hint = f"`agenda timer <n> date={day.isoformat()}` times an item." if staff else ""
    return Reply(
        title=title,
        text=hint,
        tables=[Table(["#", "Item"], [[n, rest] for n, rest in rows])],
    )


class AgendaTimerOptions(BaseModel):
    item: int = Field(ge=1, description="the item's number in `agenda`")
    action: Literal["start", "stop"] = Field("start", description="start (default) or stop")
    date: Day | None = Field(None, description="the class day (default: today, else the next)")


@registry.command(
    "agenda timer",
    "Time an item of a class day's agenda strictly, or stop it",
    access=Access.STAFF,
    topic="course",
    examples=("agenda timer 1", "agenda timer 2 date=2023-08-30", "agenda timer 2 stop"),
)
async def agenda_timer(ctx: Context, opts: AgendaTimerOptions) -> Reply:
    day = await _session_day(ctx, opts.date)
    entry = Syllabus.of(ctx.course).session_on(day)
    items = entry.agenda if entry else []
    if not items:
        raise NotFound(
            f"{fmt_day(day)} has no timed agenda in the course file.",
            hint="Add `agenda:` to its session in `sessions:`; `talk timer <paper>` times a talk.",
        )
    if opts.item > len(items):
        raise InvalidInput(
            f"The agenda of {fmt_day(day)} has {len(items)} items; `agenda` lists them."
        )
    item = items[opts.item - 1]
    subject = f"agenda:{day.isoformat()}:{opts.item}"
    if item.kind == "talk" and item.paper is not None:
        subject = f"paper:{item.paper}"  # the same timer as `talk timer <paper>`
    if opts.action == "stop":
        stopped = await stop_timers(ctx.session, ctx.course.id, subject, ctx.now)
        if not stopped:
            raise Conflict(f"No timer is running for item {opts.item} of {fmt_day(day)}.")
        return Reply(text=stopped_text(stopped[0], ctx.now))
    if item.kind == "battle":
        from commands.battles import battle_name, battle_on, phases_of

        battle = await battle_on(ctx.session, ctx.course, item.battle, day)
        if battle is not None:
            keys = " | ".join(p.key for p in phases_of(ctx.course, battle))
            n = battle_name(battle)
            raise InvalidInput(
                f"Item {opts.item} is battle {n}: it is timed phase by phase.",
                hint=f"`battle timer {n} <{keys}>`.",
            )
    if item.kind == "talk" and item.paper is not None:
        paper = await _paper(ctx, item.paper)
        return await _talk(ctx, paper, item.minutes)
    rules = talk_rules(ctx.course)
    papers = {}
    if item.paper is not None:
        p = await _paper(ctx, item.paper)
        papers[p.number] = p
    title = agenda_title(item, papers, await battles_by_number(ctx.session, ctx.course.id))
    await start_timer(
        ctx.session,
        ctx.course,
        subject=subject,
        title=title,
        minutes=item.minutes,
        channel=timer_channel(ctx),
        now=ctx.now,
        rules=rules,
    )
    return Reply(text=started_text(title, item.minutes, rules))


@registry.command(
    "timers",
    "The strict timers running now and their time left",
    access=Access.STAFF,
    ephemeral=True,
    topic="course",
    reads=True,
)
async def timers(ctx: Context, _: BaseModel) -> Reply:
    running = await running_timers(ctx.session, ctx.course.id)
    if not running:
        return Reply(text="No timer is running.")
    rows = [
        [t.title or t.subject or "Timer", f"#{t.channel}", clock(end_of(t) - ctx.now)]
        for t in running
    ]
    return Reply(
        title="Running timers",
        tables=[Table(["What", "Where", "Time"], rows)],
        sections=[Section("", "Stop one with the command that started it and `stop`.")],
    )
