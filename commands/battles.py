"""Paper battles: strict presentation timers, and the vote that follows — a reaction
poll where a vote counts only with a justification.

The course's ``battle_rules.ballot`` says how secret it is. ``secret`` (the default):
until the poll closes nobody, staff included, can read a side or a justification; the
poll and ``battle status`` show only progress (how many voted, how many justified), and
a reaction is answered with ``ReactionFate.HIDE`` so the adapter takes it off where the
platform lets it (Discord) and says so truthfully where it cannot (Slack). ``open``:
reactions stay and the poll shows live counts per side. Justifications are read only
after the poll closes in both."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.audit import local_iso, record
from commands.charts import bar_png
from commands.context import Context
from commands.coursefile import BattleRules, PhaseEntry, battle_number
from commands.due import Scope, due_registry
from commands.errors import Conflict, Forbidden, InvalidInput, NotFound
from commands.exports import table_files
from commands.outbox import Outgoing, register_refresher
from commands.registry import Access, Complete, LongText, Ref, registry
from commands.replies import (
    Button,
    FileOut,
    Form,
    FormField,
    ReactionFate,
    Reactions,
    Reply,
    Section,
    Tone,
)
from commands.solver import plural
from commands.text import MAX_ID, shown, visible_length, whole_number
from commands.timefmt import fmt_day, fmt_instant, fmt_time
from commands.timers import (
    TimerRules,
    clock,
    start_timer,
    started_text,
    stop_timers,
    stopped_text,
    timer_channel,
)
from db.models import (
    Assignment,
    Battle,
    BattlePoll,
    BattleTimer,
    BattleVote,
    Course,
    Paper,
    Person,
    Role,
)

EMOJI = {"A": "🅰️", "B": "🅱️"}
SIDE_OF = {"🅰️": "A", "🅰": "A", "🅱️": "B", "🅱": "B", "a": "A", "b": "B"}
Side = Literal["A", "B"]

# ----------------------------------------------------------------------------- services


def rules(course: Course) -> BattleRules:
    return BattleRules.model_validate(course.battle_rules or {})


@dataclass
class BattleView:
    battle: Battle
    a: Paper
    b: Paper
    groups: dict[str, list[Person]]

    def paper(self, side: str) -> Paper:
        return self.a if side == "A" else self.b

    @property
    def name(self) -> str:
        """How replies name the battle (:func:`battle_name`): ``B4``, or ``4``."""
        return battle_name(self.battle)

    @property
    def presenter_ids(self) -> set[int]:
        return {p.id for g in self.groups.values() for p in g}

    def label(self, side: str) -> str:
        p = self.paper(side)
        return f"{EMOJI[side]} #{p.number} {p.title}"

    def require_running(self, doing: str) -> None:
        """A battle runs when the published assignment gives both sides presenters;
        timing or polling one that does not would be a show with nobody on stage."""
        empty = [s for s in ("A", "B") if not self.groups[s]]
        if empty:
            which = " and ".join(f"side {s} (#{self.paper(s).number})" for s in empty)
            raise Conflict(
                f"Battle {self.name} is not running: {which} "
                f"{'have' if len(empty) > 1 else 'has'} no presenters in the published "
                f"assignment, so there is nothing to {doing}.",
                hint="`assign show` lists the battles that run; give it sides with "
                "`assign set <student> <paper>`, or compute and publish the assignment again.",
            )


# ------------------------------------------------------------------ naming a battle
#
# Every command, button, reaction and form names a battle the way the bot prints it: its
# number (`4`, or `#4`) or its id in the course file (`B4`, in any case). One reader
# (:func:`read_battle_ref`, the options' :data:`BattleRef`) checks what was typed, and
# one lookup (:func:`resolve_battle`) finds the battle or names the ones there are.

#: A battle id of the course file that is not a plain number: letters, then digits.
_BATTLE_LABEL = re.compile(r"[A-Za-z][A-Za-z_-]*[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
#: The longest battle id (the ``battles.label`` column).
LABEL_MAX = 32
BATTLE_REF_KIND = "a battle's number or id, like 4 or B4"
#: The description of every option that names a battle (help, Discord, docs).
BATTLE_OPTION = "the battle: its number or its id (4, B4)"


def battle_name(battle: Battle) -> str:
    """How the bot names a battle: its id in the course file (``B4``), else its number."""
    return battle.label or str(battle.number)


def read_battle_ref(value: object, what: str = "`battle`") -> int | str:
    """What names a battle: its number (``4``, ``#4``; an already-typed int) → the number,
    under the number rules of docs/input.md (ASCII digits, 1 to MAX_ID); an id like
    ``B4`` → the id as typed (:func:`resolve_battle` matches it in any case). Anything
    else is :class:`InvalidInput` naming what was given."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput(f"{what} must be {BATTLE_REF_KIND} (you gave `{shown(value)}`).")
    if not isinstance(value, str):
        return whole_number(value, what=what, low=1, high=MAX_ID)
    text = value.strip()
    if not text:
        raise InvalidInput(f"{what} is empty: give {BATTLE_REF_KIND}.")
    if _BATTLE_LABEL.fullmatch(text):
        if len(text) > LABEL_MAX:
            raise InvalidInput(
                f"{what} is {len(text):,} characters long; a battle id has at most {LABEL_MAX}."
            )
        return text
    number = text.removeprefix("#")  # `#4`, as a paper's number is printed
    if not _DIGITS.fullmatch(number):
        raise InvalidInput(
            f"{what} must be a whole number written with the digits 0-9 only, or a battle's "
            f"id like `B4` (you gave `{shown(value)}`)."
        )
    return whole_number(number, what=what, low=1, high=MAX_ID)


def _battle_ref(value: object) -> int | str:
    return read_battle_ref(value)


#: An option that names a battle (``4``, ``#4``, ``B4``): read by :func:`read_battle_ref`
#: whatever the platform (a Discord string option that autocompletes), found by
#: :func:`resolve_battle`.
BattleRef = Annotated[
    int | str,
    BeforeValidator(_battle_ref),
    Complete("battle"),
    Ref(read_battle_ref),
]


async def resolve_battle(session: AsyncSession, course: Course, ref: int | str) -> Battle:
    """The course's battle that ``ref`` names (see :func:`read_battle_ref`), else
    :class:`NotFound` naming the battles there are."""
    if not isinstance(ref, int):
        ref = read_battle_ref(ref)
    q = select(Battle).where(Battle.course_id == course.id)
    if isinstance(ref, int):
        q = q.where(Battle.number == ref)
    else:
        q = q.where(func.lower(Battle.label) == ref.lower())
    battle = await session.scalar(q)
    if battle is not None:
        return battle
    names = [
        battle_name(b)
        for b in await session.scalars(
            select(Battle).where(Battle.course_id == course.id).order_by(Battle.number)
        )
    ]
    if not names:
        raise NotFound(
            "This course has no paper battles.",
            hint="They are listed under `battles:` in the course file.",
        )
    raise NotFound(
        f"`{shown(str(ref))}` is not a battle of this course.",
        hint=f"Its battles: {', '.join(names)} (by number or id); `schedule --all` shows them.",
    )


async def battle_choices(
    session: AsyncSession, course_id: int, current: str, limit: int = 25
) -> list[tuple[str, str]]:
    """Autocomplete for an option that names a battle: ``(label, value)`` pairs, the
    value what the bot prints for it (``B4`` or ``4``), the label with its papers
    (``Battle B4: #19 VideoMAE… vs #20 MAE…``). What was typed matches the id or the
    number (exactly, then as a prefix) or a paper's title, in that order."""
    low = current.strip().lower().lstrip("#")
    rows = await session.execute(
        select(Battle, Paper)
        .join(Paper, Paper.id.in_((Battle.paper_a_id, Battle.paper_b_id)))
        .where(Battle.course_id == course_id)
        .order_by(Battle.number, Paper.id == Battle.paper_b_id)
    )
    sides: dict[int, tuple[Battle, list[Paper]]] = {}
    for battle, paper in rows:
        sides.setdefault(battle.id, (battle, []))[1].append(paper)
    ranked: list[tuple[int, int, str, str]] = []
    for battle, papers in sides.values():
        name = battle_name(battle)
        vs = " vs ".join(f"#{p.number} {p.title}" for p in papers)
        keys = (name.lower(), str(battle.number))
        if not low or low in keys:
            score = 0
        elif any(k.startswith(low) for k in keys):
            score = 1
        elif low in vs.lower():
            score = 2
        else:
            continue
        label = f"Battle {name}: {vs}"
        ranked.append((score, battle.number, label[:99] + "…" if len(label) > 100 else label, name))
    return [(label, name) for _, _, label, name in sorted(ranked)[:limit]]


async def load_battle(session: AsyncSession, course: Course, ref: int | str) -> BattleView:
    """The battle ``ref`` names (:func:`resolve_battle`), its papers and published sides."""
    battle = await resolve_battle(session, course, ref)
    a = await session.get(Paper, battle.paper_a_id)
    b = await session.get(Paper, battle.paper_b_id)
    assert a is not None and b is not None
    groups: dict[str, list[Person]] = {"A": [], "B": []}
    rows = await session.execute(
        select(Assignment.paper_id, Person)
        .join(Person, Person.id == Assignment.person_id)
        .where(
            Assignment.paper_id.in_([a.id, b.id]),
            Assignment.published.is_(True),
        )
        .order_by(Person.name)
    )
    for paper_id, person in rows:
        groups["A" if paper_id == a.id else "B"].append(person)
    return BattleView(battle, a, b, groups)


async def poll_of(session: AsyncSession, battle: Battle) -> BattlePoll | None:
    return await session.scalar(select(BattlePoll).where(BattlePoll.battle_id == battle.id))


async def vote_counts(session: AsyncSession, poll: BattlePoll) -> tuple[dict[str, int], int]:
    """Counted votes per side (with a justification) and how many are pending. Sides are
    for the results and an open ballot's live count, never shown by a secret one before
    the poll closes."""
    counted = {"A": 0, "B": 0}
    pending = 0
    rows = await session.execute(
        select(BattleVote.side, BattleVote.justification.is_(None), func.count())
        .where(BattleVote.poll_id == poll.id)
        .group_by(BattleVote.side, BattleVote.justification.is_(None))
    )
    for side, is_pending, n in rows:
        if is_pending:
            pending += n
        else:
            counted[side] += n
    return counted, pending


async def eligible_voters(session: AsyncSession, course: Course, view: BattleView) -> list[Person]:
    people = await session.scalars(
        select(Person)
        .where(Person.course_id == course.id, Person.role == Role.STUDENT)
        .order_by(Person.name)
    )
    return [p for p in people if p.id not in view.presenter_ids]


def poll_key(battle: Battle) -> str:
    return f"poll:{battle.id}"


def secret(rules_: BattleRules) -> bool:
    return rules_.ballot == "secret"


def progress_line(counted: dict[str, int], pending: int, rules_: BattleRules) -> str:
    """What the open poll shows of the votes: a secret ballot only how many voted and how
    many of those gave a justification; an open one the live count per side."""
    total = counted["A"] + counted["B"]
    if secret(rules_):
        return f"Votes so far: {total + pending}; {total} with a justification (counted)."
    waiting = f"; {pending} more waiting for a justification" if pending else ""
    return (
        f"Live count (votes with a justification): {EMOJI['A']} {counted['A']} · "
        f"{EMOJI['B']} {counted['B']}{waiting}."
    )


def poll_reply(
    view: BattleView,
    counted: dict[str, int],
    pending: int,
    *,
    rules_: BattleRules,
    closed: bool = False,
) -> Reply:
    """The poll as everyone sees it: the two papers, how to vote, who can see what, and
    the progress the ballot allows (see :func:`progress_line`). Each adapter adds what a
    reaction shows on its platform (``Reactions.secret``). Its buttons and reactions carry
    the battle's number (what posted polls have always carried); its words, its name."""
    n, number = view.name, str(view.battle.number)
    if closed:
        total = counted["A"] + counted["B"]
        return Reply(
            title=f"Battle {n}: the poll is closed",
            text=f"{view.label('A')}\nvs.\n{view.label('B')}\n{total} votes. "
            f"See the results with `battle show {n}`.",
        )
    min_len = rules_.justification_min
    buttons = [
        Button(
            f"Vote {EMOJI[side]} #{view.paper(side).number}",
            style="primary",
            form=Form(
                f"Vote for {side}",
                "battle vote",
                (
                    FormField(
                        "justification",
                        f"Why #{view.paper(side).number} should be accepted",
                        long=True,
                        min_length=min_len,
                    ),
                ),
                (("battle", number), ("side", side)),
            ),
        )
        for side in ("A", "B")
    ]
    how = (
        f"Vote with a Vote button below, or react with {EMOJI['A']} or {EMOJI['B']}, and give a "
        f"justification of at least {min_len} characters: a vote counts only with one. A "
        "reaction alone is pending: the bot asks you privately for the reason, and if that "
        "request does not reach you, press the Vote button for your side. You can change "
        f"your vote until the poll closes; `battle withdraw {n}` takes it back."
    )
    if secret(rules_):
        who = (
            "🔒 Secret ballot: until the poll closes the bot shows nobody, staff included, who "
            "voted for which paper or why; only the number of votes is shown."
        )
    else:
        who = (
            "👁 Open ballot: reactions stay on the poll for everyone to see, and the count per "
            "paper is live. Justifications are read only after the poll closes."
        )
    return Reply(
        title=f"Battle {n}: which paper should be accepted?",
        text=f"{view.label('A')}\nvs.\n{view.label('B')}\n{how}\n{who}\n"
        + progress_line(counted, pending, rules_),
        buttons=buttons,
        reactions=Reactions(
            "battle.react", (EMOJI["A"], EMOJI["B"]), (number,), secret=secret(rules_)
        ),
    )


async def _refresh_poll(ctx: Context, view: BattleView, poll: BattlePoll) -> None:
    """The poll's running count is edited in: rendered when the edit is sent, so that a
    burst of votes costs one edit a second or so and always ends on the real count."""
    counted, pending = await vote_counts(ctx.session, poll)
    ctx.outgoing.append(
        Outgoing(
            poll_reply(view, counted, pending, rules_=rules(ctx.course)),
            edit_key=poll_key(view.battle),
            refresh=("battle-poll", str(view.battle.number)),
        )
    )


@register_refresher("battle-poll")
async def _render_poll(session: AsyncSession, course_id: int, number: str) -> Reply | None:
    course = await session.get(Course, course_id)
    if course is None:
        return None
    view = await load_battle(session, course, int(number))
    poll = await poll_of(session, view.battle)
    if poll is None or poll.closed_at is not None:
        return None  # the close edit says the last word
    counted, pending = await vote_counts(session, poll)
    return poll_reply(view, counted, pending, rules_=rules(course))


async def _voter(ctx: Context, view: BattleView) -> tuple[Person, BattlePoll]:
    me = ctx.me()
    poll = await poll_of(ctx.session, view.battle)
    n = view.name
    if poll is None:
        raise Conflict(f"The poll for battle {n} is not open yet.")
    if poll.closed_at is not None:
        raise Conflict(f"The poll for battle {n} is closed; your vote was not recorded.")
    if me.role is not Role.STUDENT:
        raise Forbidden("Instructors and TAs do not vote in paper battles.")
    if me.id in view.presenter_ids:
        raise Forbidden(f"You present in battle {n}, so you do not vote in it.")
    return me, poll


async def my_vote(session: AsyncSession, poll: BattlePoll, person_id: int) -> BattleVote | None:
    """The person's vote, row-locked until the transaction ends (``FOR UPDATE`` on
    Postgres; SQLite's ``BEGIN IMMEDIATE`` already serialises writers). Two changes of one
    vote at once (a reaction and a justified vote) then apply one after the other, each on
    what the other committed: without the lock, a reaction's "clear the reason" could
    overwrite a justification committed a moment earlier, under a reply that said
    "counts"."""
    return await session.scalar(
        select(BattleVote)
        .where(BattleVote.poll_id == poll.id, BattleVote.person_id == person_id)
        .with_for_update()
    )


async def record_vote(
    ctx: Context, view: BattleView, side: str, justification: str | None
) -> tuple[BattlePoll, bool]:
    """Store (or change) the caller's vote; return the poll and whether it now counts."""
    me, poll = await _voter(ctx, view)
    vote = await my_vote(ctx.session, poll, me.id)
    if vote is None:
        # Two first votes at once: one insert wins, the other hits the unique constraint
        # and the core runs it again, when it finds (and locks) the winner's row.
        vote = BattleVote(poll_id=poll.id, person_id=me.id, side=side, updated_at=ctx.now)
        ctx.session.add(vote)
    elif vote.side != side and justification is None:
        vote.justification = None  # a reason for the other paper does not carry over
    vote.side = side
    vote.updated_at = ctx.now
    if justification is not None:
        vote.justification = justification
    await ctx.session.flush()
    await _refresh_poll(ctx, view, poll)
    return poll, vote.justification is not None


async def close_poll(
    session: AsyncSession, course: Course, view: BattleView, poll: BattlePoll, now: datetime
) -> tuple[Reply, list[Outgoing]]:
    """Close the poll: the results post (public) and the edit of the poll message."""
    poll.closed_at = now
    counted, pending = await vote_counts(session, poll)
    eligible = len(await eligible_voters(session, course, view))
    total = counted["A"] + counted["B"]
    n = view.name
    if counted["A"] == counted["B"]:
        verdict = f"It's a tie, {counted['A']}–{counted['B']}."
    else:
        win = "A" if counted["A"] > counted["B"] else "B"
        verdict = (
            f"The winner is {view.label(win)}, {max(counted.values())}–{min(counted.values())}."
        )
    turnout = (
        f"{total} of {eligible} eligible students voted ({100 * total / eligible:.0f}%)."
        if eligible
        else ""
    )
    if pending:
        turnout += f" {plural(pending, 'vote')} without a justification did not count."
    chart = bar_png(
        [f"A: #{view.a.number} {view.a.title}", f"B: #{view.b.number} {view.b.title}"],
        [counted["A"], counted["B"]],
        title=f"Battle {n}: votes",
        ylabel="Votes",
        note=turnout,
    )
    results = Reply(
        title=f"Battle {n} results",
        text=f"{verdict}\n{view.label('A')}: {counted['A']}\n{view.label('B')}: {counted['B']}\n{turnout}",
        files=[
            FileOut(
                f"battle-{n}-results.png",
                chart,
                "image/png",
                f"Bar chart of battle {n}'s counted votes: side A (#{view.a.number}) "
                f"{counted['A']}, side B (#{view.b.number}) {counted['B']}.",
            )
        ],
        tone=Tone.SUCCESS,
    )
    closed = poll_reply(view, counted, pending, rules_=rules(course), closed=True)
    return results, [
        Outgoing(results, channel=poll.channel),
        Outgoing(closed, edit_key=poll_key(view.battle)),
    ]


# ------------------------------------------------------------------ timers (commands.timers)


def phases_of(course: Course, battle: Battle) -> list[PhaseEntry]:
    """The battle's format: its own phases, else the course's (default: side A, side B,
    3 reasons, rebuttal)."""
    if battle.phases:
        return [PhaseEntry.model_validate(p) for p in battle.phases]
    return rules(course).phase_list()


def format_text(phases: Sequence[PhaseEntry]) -> str:
    """A battle's format on one line, with what `battle timer` takes for each phase:
    ``side A presents, 20 min (`a`) → … → rebuttal, 5 min (`rebuttal`); 50 min in all``."""
    steps = " → ".join(f"{p.title}, {p.minutes} min (`{p.key}`)" for p in phases)
    return f"{steps}; {sum(p.minutes for p in phases)} min in all"


def battle_subject(battle: Battle) -> str:
    return f"battle:{battle.number}"


async def battle_on(
    session: AsyncSession, course: Course, ref: int | str | None, day: date
) -> Battle | None:
    """The battle ``ref`` names (a number or a label), else the one on ``day``."""
    q = select(Battle).where(Battle.course_id == course.id)
    if ref is not None:
        q = q.where(Battle.number == battle_number(ref))
    else:
        q = q.where(Battle.class_date == day)
    return await session.scalar(q.order_by(Battle.number).limit(1))


async def due_battle_posts(
    session: AsyncSession, now: datetime, *, course_ids: set[int] | None = None
) -> list[tuple[int, Outgoing]]:
    """Polls that close by themselves now, for every course (their timers' posts are
    :func:`commands.timers.due_timer_posts`)."""
    out: list[tuple[int, Outgoing]] = []
    pq = select(BattlePoll).where(BattlePoll.closed_at.is_(None), BattlePoll.closes_at <= now)
    if course_ids is not None:
        pq = pq.where(BattlePoll.course_id.in_(course_ids))
    courses: dict[int, Course] = {}
    polls = await session.scalars(pq)
    for poll in polls:
        course = courses.get(poll.course_id) or await session.get(Course, poll.course_id)
        assert course is not None
        courses[course.id] = course
        battle = await session.get(Battle, poll.battle_id)
        assert battle is not None
        view = await load_battle(session, course, battle.number)
        _, items = await close_poll(session, course, view, poll, now)
        out += [(course.id, item) for item in items]
    await session.flush()
    return out


# ----------------------------------------------------------------------------- commands


class BattleOptions(BaseModel):
    battle: BattleRef = Field(description=BATTLE_OPTION)


@registry.command(
    "battle show",
    "A battle's papers, groups, theme, date, format and state",
    access=Access.ANYONE,
    topic="battle",
    examples=("battle show 1",),
    reads=True,
)
async def battle_show(ctx: Context, opts: BattleOptions) -> Reply:
    view = await load_battle(ctx.session, ctx.course, opts.battle)
    battle = view.battle
    poll = await poll_of(ctx.session, battle)
    fields = []
    if battle.theme:
        fields.append(("Theme", battle.theme))
    when = fmt_day(battle.class_date) if battle.class_date else "not set"
    if battle.start_time:
        when += f", starts at {fmt_time(battle.start_time)}"
    fields.append(("Date", when))
    fields.append(("Format", format_text(phases_of(ctx.course, battle))))
    for side in ("A", "B"):
        names = ", ".join(p.name for p in view.groups[side]) or "not assigned yet"
        fields.append((view.label(side), names))
    if poll is None:
        state = "the poll is not open yet"
    elif poll.closed_at is None:
        counted, pending = await vote_counts(ctx.session, poll)
        r = rules(ctx.course)
        state = f"the poll is open ({r.ballot} ballot): {sum(counted.values())} votes so far"
        if not secret(r):
            state += f" ({EMOJI['A']} {counted['A']} · {EMOJI['B']} {counted['B']})"
        if pending:
            state += f", {pending} waiting for a justification"
        if poll.closes_at:
            state += f"; it closes {fmt_instant(poll.closes_at, ctx.tz)}"
    else:
        counted, _ = await vote_counts(ctx.session, poll)
        win = (
            "a tie"
            if counted["A"] == counted["B"]
            else f"won by {EMOJI['A' if counted['A'] > counted['B'] else 'B']}"
        )
        state = f"closed, {win}: A {counted['A']}, B {counted['B']}"
    running = await ctx.session.scalar(
        select(BattleTimer).where(
            BattleTimer.battle_id == view.battle.id, BattleTimer.stopped_at.is_(None)
        )
    )
    if running:
        left = running.started_at + timedelta(seconds=running.seconds) - ctx.now
        phase = next(
            (p.title for p in phases_of(ctx.course, view.battle) if p.key == running.phase),
            running.phase,
        )
        state += f"; timer running: {phase} ({clock(left)})"
    fields.append(("State", state))
    return Reply(title=f"Battle {view.name}", sections=[Section("", "", fields)])


class TimerOptions(BaseModel):
    battle: BattleRef = Field(description=BATTLE_OPTION)
    phase: str = Field(
        max_length=16,
        description="a phase of its format (default: a, b, reasons, rebuttal), or stop",
    )


@registry.command(
    "battle timer",
    "Start a strict timer for a battle's phase (a, b, reasons, rebuttal) or stop it",
    access=Access.STAFF,
    topic="battle",
    examples=("battle timer 1 a", "battle timer 1 stop"),
)
async def battle_timer(ctx: Context, opts: TimerOptions) -> Reply:
    view = await load_battle(ctx.session, ctx.course, opts.battle)
    battle = view.battle
    n = view.name
    key = opts.phase.strip().lower()
    subject = battle_subject(battle)
    if key == "stop":
        stopped = await stop_timers(ctx.session, ctx.course.id, subject, ctx.now)
        if not stopped:
            raise Conflict(f"No timer is running for battle {n}.")
        return Reply(text=stopped_text(stopped[0], ctx.now))
    phases = phases_of(ctx.course, battle)
    phase = next((p for p in phases if p.key == key), None)
    if phase is None:
        raise InvalidInput(
            f"`{shown(opts.phase)}` is not a phase of battle {n}.",
            hint=f"Its phases: {', '.join(f'`{p.key}` ({p.title})' for p in phases)}; or `stop`.",
        )
    view.require_running("time")
    r = rules(ctx.course)
    timer_rules = TimerRules(tuple(r.warnings), r.overrun_every_seconds)
    title = f"Battle {n}, {phase.title}"
    await start_timer(
        ctx.session,
        ctx.course,
        subject=subject,
        title=title,
        minutes=phase.minutes,
        channel=timer_channel(ctx, "battles"),
        now=ctx.now,
        rules=timer_rules,
        battle_id=battle.id,
        phase=phase.key,
    )
    what = title
    if phase.side is not None:
        names = ", ".join(p.name for p in view.groups[phase.side])
        what += f": {view.label(phase.side)}" + (f" ({names})" if names else "")
    return Reply(text=started_text(what, phase.minutes, timer_rules))


class OpenOptions(BaseModel):
    battle: BattleRef = Field(description=BATTLE_OPTION)
    minutes: int | None = Field(
        None, ge=1, le=7 * 24 * 60, description="close it by itself after this many minutes"
    )


@registry.command(
    "battle open",
    "Open the vote for a battle",
    access=Access.STAFF,
    ephemeral=True,
    topic="battle",
    examples=("battle open 1", "battle open 1 minutes=10"),
)
async def battle_open(ctx: Context, opts: OpenOptions) -> Reply:
    view = await load_battle(ctx.session, ctx.course, opts.battle)
    n = view.name
    poll = await poll_of(ctx.session, view.battle)
    if poll is not None:
        state = "closed" if poll.closed_at else "already open"
        raise Conflict(f"The poll for battle {n} is {state}.", hint=f"`battle show {n}` shows it.")
    view.require_running("vote on")
    channel = ctx.request.where.channel or ctx.course.channels.get("battles", "battles")
    closes_at = ctx.now + timedelta(minutes=opts.minutes) if opts.minutes else None
    poll = BattlePoll(
        course_id=ctx.course.id,
        battle_id=view.battle.id,
        channel=channel,
        opened_at=ctx.now,
        closes_at=closes_at,
    )
    ctx.session.add(poll)
    await ctx.session.flush()
    record(
        ctx,
        "battle.open",
        summary=f"battle {n} poll opened in #{channel}",
        before={"battle": view.battle.number, "poll": None},
        after={
            "battle": view.battle.number,
            "poll": "open",
            "closes_at": local_iso(closes_at, ctx.tz) if closes_at else None,
        },
    )
    ctx.post_remembered(
        channel,
        poll_key(view.battle),
        poll_reply(view, {"A": 0, "B": 0}, 0, rules_=rules(ctx.course)),
    )
    closes = (
        f" It closes {fmt_instant(closes_at, ctx.tz)}."
        if closes_at
        else f" Close it with `battle close {n}`."
    )
    # Where it was typed (a platform's channel id there: "here" reads better), or the
    # course's battles channel.
    where = "here" if ctx.request.where.channel else f"in #{channel.lstrip('#')}"
    return Reply(text=f"The poll for battle {n} is open {where}.{closes}", tone=Tone.SUCCESS)


class VoteOptions(BaseModel):
    battle: BattleRef = Field(description=BATTLE_OPTION)
    side: Annotated[str, Field(description="A or B")]
    justification: Annotated[str, LongText()] = Field(
        description="why that paper should be accepted"
    )


@registry.command(
    "battle vote",
    "Vote in a battle poll, with your justification",
    ephemeral=True,
    topic="battle",
    form=("justification",),
    examples=('battle vote 1 A "Their ablations are far more convincing."',),
)
async def battle_vote(ctx: Context, opts: VoteOptions) -> Reply:
    side = SIDE_OF.get(opts.side.strip().lower(), opts.side.strip().upper())
    if side not in ("A", "B"):
        raise InvalidInput(f"`{shown(opts.side)}` is not a side: vote A or B.")
    view = await load_battle(ctx.session, ctx.course, opts.battle)
    text = " ".join(opts.justification.split())
    need = rules(ctx.course).justification_min
    if (seen := visible_length(text)) < need:  # zero-width characters do not count
        raise InvalidInput(
            f"A justification needs at least {need} characters (yours has {seen}); "
            "your vote was not changed.",
            hint="Say why that paper should be accepted.",
        )
    await record_vote(ctx, view, side, text)
    return Reply(
        text=f"Your vote for {view.label(side)} counts. " + _who_sees(ctx), tone=Tone.SUCCESS
    )


def _who_sees(ctx: Context) -> str:
    """One line on who can see a vote, for the replies to the voter."""
    if secret(rules(ctx.course)):
        return (
            "You can change it until the poll closes; until then the bot shows nobody, staff "
            "included, your side or your reason."
        )
    return (
        "You can change it until the poll closes. It is in the poll's live count (open "
        "ballot); your reason is read only after the poll closes."
    )


@registry.action("battle.react", access=Access.ANYONE)
async def battle_react(ctx: Context, args: tuple[str, ...], value: str | None) -> Reply:
    """A reaction on a poll: add → a pending vote (or a changed one) and a private request
    for the reason. On a secret ballot every reaction is answered with
    ``ReactionFate.HIDE`` (the adapter takes it off where it can) and removing one changes
    nothing (the bot's own removal, or a Slack user hiding theirs); on an open ballot
    removing it withdraws the vote. Reactions that cannot count get ``REFUSE``. What
    happened to the reaction is worded by the adapter, which knows what it could do."""
    view = await load_battle(ctx.session, ctx.course, read_battle_ref(args[0]))
    n = view.name
    rules_ = rules(ctx.course)
    emoji = (value or "").removeprefix("-")
    removing = bool(value and value.startswith("-"))
    side = SIDE_OF.get(emoji)
    if removing:
        if ctx.person is None or side is None or secret(rules_):
            return Reply(silent=True)
        poll = await poll_of(ctx.session, view.battle)
        if poll is None or poll.closed_at is not None:
            return Reply(silent=True)
        vote = await my_vote(ctx.session, poll, ctx.person.id)
        if vote is None or vote.side != side:
            return Reply(silent=True)
        await ctx.session.delete(vote)
        await ctx.session.flush()
        await _refresh_poll(ctx, view, poll)
        return Reply(text=f"Your vote in battle {n} was withdrawn. React again to vote.")
    if side is None:
        return Reply(
            text=f"Only {EMOJI['A']} and {EMOJI['B']} count as votes in battle {n}.",
            reaction_fate=ReactionFate.REFUSE,
        )
    try:
        _, counts = await record_vote(ctx, view, side, None)
    except (Conflict, Forbidden) as exc:
        return Reply(text=str(exc), tone=Tone.WARNING, reaction_fate=ReactionFate.REFUSE)
    fate = ReactionFate.HIDE if secret(rules_) else ReactionFate.STAYS
    if counts:
        return Reply(
            text=f"Your vote for {view.label(side)} counts (your justification stands). "
            + _who_sees(ctx),
            tone=Tone.SUCCESS,
            reaction_fate=fate,
        )
    form = ctx.registry.get("battle vote").form_spec(
        {"battle": str(view.battle.number), "side": side}
    )
    return Reply(
        text=f"You picked {view.label(side)}. Your vote counts once you say why "
        f"(at least {rules_.justification_min} characters): press the button below, or the "
        f"Vote button for your side on the poll.",
        buttons=[Button("Give your justification", style="primary", form=form)],
        tone=Tone.WARNING,
        reaction_fate=fate,
    )


@registry.command(
    "battle withdraw",
    "Take back your vote in a battle poll",
    ephemeral=True,
    topic="battle",
    examples=("battle withdraw 1",),
)
async def battle_withdraw(ctx: Context, opts: BattleOptions) -> Reply:
    view = await load_battle(ctx.session, ctx.course, opts.battle)
    me, poll = await _voter(ctx, view)
    vote = await my_vote(ctx.session, poll, me.id)
    n = view.name
    if vote is None:
        raise Conflict(f"You have no vote in battle {n} to withdraw.")
    await ctx.session.delete(vote)
    await ctx.session.flush()
    await _refresh_poll(ctx, view, poll)
    return Reply(
        text=f"Your vote in battle {n} was withdrawn. Vote again any time before the poll closes.",
        tone=Tone.SUCCESS,
    )


@registry.command(
    "battle close",
    "Close a battle's vote and announce the result",
    access=Access.STAFF,
    ephemeral=True,
    topic="battle",
)
async def battle_close(ctx: Context, opts: BattleOptions) -> Reply:
    view = await load_battle(ctx.session, ctx.course, opts.battle)
    poll = await poll_of(ctx.session, view.battle)
    n = view.name
    if poll is None:
        raise Conflict(
            f"The poll for battle {n} was never opened.", hint=f"Open it with `battle open {n}`."
        )
    if poll.closed_at is not None:
        raise Conflict(
            f"The poll for battle {n} is already closed.", hint=f"`battle show {n}` has the result."
        )
    results, items = await close_poll(ctx.session, ctx.course, view, poll, ctx.now)
    ctx.outgoing.extend(items)
    record(
        ctx,
        "battle.close",
        summary=f"battle {n} poll closed",
        before={"battle": view.battle.number, "poll": "open"},
        after={"battle": view.battle.number, "poll": "closed"},
    )
    return Reply(
        text=f"Closed; the result was posted in #{poll.channel}.\n{results.text}", tone=Tone.SUCCESS
    )


async def _opened(ctx: Context, ref: int | str) -> tuple[BattleView, BattlePoll]:
    """A battle and its poll, or a clear refusal if the poll was never opened."""
    view = await load_battle(ctx.session, ctx.course, ref)
    poll = await poll_of(ctx.session, view.battle)
    if poll is None:
        raise Conflict(
            f"The poll for battle {view.name} was never opened.",
            hint=f"Open it with `battle open {view.name}`.",
        )
    return view, poll


@registry.command(
    "battle status",
    "Voting progress of a battle (counts only, no sides)",
    access=Access.STAFF,
    ephemeral=True,
    topic="battle",
    reads=True,
)
async def battle_status(ctx: Context, opts: BattleOptions) -> Reply:
    """Progress only: who has voted and who still owes a reason, never a side (the
    poll's own count per side is public on an open ballot; this stays side-free)."""
    view, poll = await _opened(ctx, opts.battle)
    voters = {
        v.person_id: v
        for v in await ctx.session.scalars(select(BattleVote).where(BattleVote.poll_id == poll.id))
    }
    eligible = await eligible_voters(ctx.session, ctx.course, view)
    counted = [p for p in eligible if p.id in voters and voters[p.id].justification]
    pending = [p for p in eligible if p.id in voters and not voters[p.id].justification]
    missing = [p for p in eligible if p.id not in voters]
    n = view.name
    text = (
        f"{len(counted) + len(pending)} of {len(eligible)} eligible students have voted: "
        f"{len(counted)} with a justification (counted), {len(pending)} still owe one."
    )
    if poll.closed_at is None and secret(rules(ctx.course)):
        text += (
            "\nSecret ballot: sides and justifications stay sealed until the poll closes, for "
            f"staff too; `battle export {n}` has them after `battle close {n}`."
        )
    return Reply(
        title=f"Battle {n}: voting progress",
        text=text,
        sections=[
            Section("Waiting for a justification", ", ".join(p.name for p in pending) or "nobody"),
            Section("Not voted", ", ".join(p.name for p in missing) or "nobody"),
        ],
    )


@registry.command(
    "battle export",
    "Every vote of a closed battle poll with its justification (CSV and Markdown)",
    access=Access.STAFF,
    ephemeral=True,
    topic="battle",
    reads=True,
)
async def battle_export(ctx: Context, opts: BattleOptions) -> Reply:
    view, poll = await _opened(ctx, opts.battle)
    n = view.name
    if poll.closed_at is None:
        raise Conflict(
            f"The poll for battle {n} is still open: sides and justifications stay sealed "
            "until it closes, for staff too.",
            hint=f"`battle status {n}` shows the progress; `battle close {n}` closes it.",
        )
    rows = await ctx.session.execute(
        select(
            Person.name,
            Person.email,
            BattleVote.side,
            BattleVote.justification,
            BattleVote.updated_at,
        )
        .join(Person, Person.id == BattleVote.person_id)
        .where(BattleVote.poll_id == poll.id)
        .order_by(Person.name)
    )
    table = [
        [
            name,
            email,
            side,
            f"#{view.paper(side).number}",
            "yes" if why else "no (pending)",
            why or "",
            fmt_instant(at, ctx.tz),
        ]
        for name, email, side, why, at in rows
    ]
    return Reply(text=f"{len(table)} votes in battle {n}.", files=_export(n, table))


def _export(name: str, rows: Sequence[Sequence[str]]) -> list[FileOut]:
    header = ["Student", "Email", "Side", "Paper", "Counted", "Justification", "Voted at"]
    return table_files(f"battle-{name}-votes", header, rows)


# ------------------------------------------------------------------ due work


async def next_battle_post(session: AsyncSession, now: datetime, scope: Scope) -> datetime | None:
    """The next poll that closes by itself (timers: :mod:`commands.timers`)."""
    pq = select(func.min(BattlePoll.closes_at)).where(
        BattlePoll.closed_at.is_(None), BattlePoll.closes_at > now
    )
    if scope.course_ids is not None:
        pq = pq.where(BattlePoll.course_id.in_(scope.course_ids))
    return await session.scalar(pq)


due_registry.register_by_course("battles", due_battle_posts, next_battle_post)
