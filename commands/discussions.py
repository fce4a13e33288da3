"""In-class discussions: the questions the students submitted with their critiques
become 6–8 questions the instructor compiles, then the class splits into breakout
groups, one question each, each in its own thread, with a timer that warns and calls
everyone back; ``discussion end`` posts a summary.

A discussion moves ``draft`` (questions proposed) → ``accepted`` → ``running`` →
``ended``. The groups mix people who have been together least: the groups of every
earlier discussion in the course are the pair history, and each session's groups are
planned from it and from who is actually present (commands/grouping.py).
Timer posts are computed from ``started_at`` and recorded once (as battle timers)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from itertools import combinations
from typing import TYPE_CHECKING, Annotated, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands import offload
from commands.context import Context
from commands.critiques import course_students, paper_label
from commands.due import Scope, due_registry, earliest
from commands.errors import Conflict, Forbidden, InvalidInput, NotFound
from commands.outbox import Outgoing
from commands.people import find_person
from commands.registry import Access, Complete, LongText, registry
from commands.replies import Button, Reply, Section, Table, Tone
from commands.solver import plural
from commands.timefmt import fmt_instant
from db.models import (
    Course,
    Critique,
    Discussion,
    DiscussionCheckin,
    DiscussionGroup,
    DiscussionQuestion,
    Notification,
    Paper,
    Person,
    Role,
)

if TYPE_CHECKING:
    from commands.questions import Cluster

T = TypeVar("T")

log = logging.getLogger("coursebot.discussions")

#: The timer's warning, minutes before the end.
WARN_MINUTES = 5
#: A call-back missed while the bot was down still goes out if at most this late.
GRACE = timedelta(minutes=30)
#: The longest question kept (a Discord/Slack modal holds 4000 characters).
MAX_QUESTION = 1000

DiscussionPaper = Annotated[int, Complete("paper:discussion")]

# ----------------------------------------------------------------------------- services


async def discussion_paper(session: AsyncSession, course_id: int, number: int) -> Paper:
    """A paper that has an in-class discussion (or takes critiques), or a clear error."""
    paper = await session.scalar(
        select(Paper).where(Paper.course_id == course_id, Paper.number == number)
    )
    if paper is None:
        raise NotFound(
            f"There is no paper #{number}.",
            hint="`papers discussion` lists the papers with a discussion.",
        )
    if not (paper.discussion or paper.critique):
        raise InvalidInput(
            f"Paper {paper_label(paper)} has no in-class discussion.",
            hint="`papers discussion` lists the papers that do.",
        )
    return paper


async def discussion_of(session: AsyncSession, course: Course, paper: Paper) -> Discussion:
    """The paper's discussion, created (as a draft) on first use."""
    found = await session.scalar(
        select(Discussion).where(Discussion.course_id == course.id, Discussion.paper_id == paper.id)
    )
    if found is None:
        found = Discussion(course_id=course.id, paper_id=paper.id, state="draft", minutes=30)
        session.add(found)
        await session.flush()
    return found


async def compiled(session: AsyncSession, discussion: Discussion) -> list[DiscussionQuestion]:
    return list(
        await session.scalars(
            select(DiscussionQuestion)
            .where(DiscussionQuestion.discussion_id == discussion.id)
            .order_by(DiscussionQuestion.position, DiscussionQuestion.id)
        )
    )


async def groups_of(session: AsyncSession, discussion: Discussion) -> list[DiscussionGroup]:
    return list(
        await session.scalars(
            select(DiscussionGroup)
            .where(DiscussionGroup.discussion_id == discussion.id)
            .order_by(DiscussionGroup.number)
        )
    )


async def groups_table(session: AsyncSession, groups: Sequence[DiscussionGroup]) -> Table:
    """Group, members (by name), question: for the summary and ``discussion show``."""
    ids = {m for g in groups for m in g.members}
    names = {p.id: p.name for p in await session.scalars(select(Person).where(Person.id.in_(ids)))}
    return Table(
        ["Group", "Members", "Question"],
        [
            [str(g.number), ", ".join(names.get(m, "?") for m in g.members), g.question]
            for g in groups
        ],
    )


async def submitted_questions(session: AsyncSession, paper: Paper) -> list[tuple[Critique, Person]]:
    rows = await session.execute(
        select(Critique, Person)
        .join(Person, Person.id == Critique.person_id)
        .where(Critique.paper_id == paper.id)
        .order_by(Critique.submitted_at, Critique.id)
    )
    return [(c, p) for c, p in rows if c.question.strip()]


async def pair_history(
    session: AsyncSession, course_id: int, *, exclude: int
) -> tuple[Counter[frozenset[int]], int]:
    """How often each pair of people shared a breakout group in the course's other
    discussions (held or running), and how many discussions that is."""
    from commands import grouping

    rows = (
        await session.execute(
            select(DiscussionGroup.discussion_id, DiscussionGroup.members)
            .join(Discussion, Discussion.id == DiscussionGroup.discussion_id)
            .where(
                Discussion.course_id == course_id,
                Discussion.state.in_(("running", "ended")),
                Discussion.id != exclude,
            )
        )
    ).all()
    history = grouping.pair_counts([[[int(m) for m in members]] for _, members in rows])
    return history, len({discussion for discussion, _ in rows})


@dataclass(frozen=True)
class Plan(Generic[T]):
    """What a discussion command's ``prepare`` step computed on a snapshot (clusters,
    groups), with the key of what it came from: the write uses it when the key still
    holds, else computes it again."""

    key: tuple[object, ...]
    value: T


def _question_key(
    discussion: Discussion, submitted: list[tuple[Critique, Person]], count: int
) -> tuple[object, ...]:
    return (discussion.id, tuple((c.id, c.question) for c, _ in submitted), count)


async def _cluster(
    ctx: Context, discussion: Discussion, submitted: list[tuple[Critique, Person]], count: int
) -> Plan[list[Cluster]]:
    """Group the submitted questions (TF-IDF, or sentence embeddings when installed:
    seconds) in a thread, off the event loop."""
    from commands import questions

    items = [(c.id, c.question) for c, _ in submitted]
    k_min, k_max = (count, count) if count else (6, 8)
    embed = questions.embedder(bool(ctx.config.get("question_embeddings")))
    clusters = await asyncio.to_thread(
        questions.propose, items, k_min=k_min, k_max=k_max, embed=embed
    )
    return Plan(_question_key(discussion, submitted, count), clusters)


async def propose_questions(
    ctx: Context, discussion: Discussion, submitted: list[tuple[Critique, Person]], count: int
) -> list[DiscussionQuestion]:
    """Replace the draft list with ``count`` (or 6–8) questions, one per group of
    similar submitted questions: those the command's ``prepare`` step clustered on a
    snapshot, outside the writers' queue, unless a submission changed since (then
    clustered again here)."""
    plan = ctx.prepared
    if not (isinstance(plan, Plan) and plan.key == _question_key(discussion, submitted, count)):
        plan = await _cluster(ctx, discussion, submitted, count)
    for q in await compiled(ctx.session, discussion):
        await ctx.session.delete(q)
    await ctx.session.flush()
    clusters = plan.value
    made = []
    for i, cluster in enumerate(clusters, start=1):
        row = DiscussionQuestion(
            discussion_id=discussion.id,
            position=i,
            text=cluster.text,
            sources=list(cluster.members),
        )
        ctx.session.add(row)
        made.append(row)
    discussion.state = "draft"
    discussion.accepted_at = None
    await ctx.session.flush()
    return made


async def _for_edit(ctx: Context, number: int) -> tuple[Paper, Discussion]:
    """The paper and its discussion, if its questions may still change."""
    paper = await discussion_paper(ctx.session, ctx.course.id, number)
    d = await discussion_of(ctx.session, ctx.course, paper)
    _editable(d, paper)
    return paper, d


def _editable(discussion: Discussion, paper: Paper) -> None:
    if discussion.state in ("running", "ended"):
        raise Conflict(
            f"The discussion of {paper_label(paper)} has {'started' if discussion.state == 'running' else 'ended'}; "
            "its questions can no longer change."
        )


def _clean_question(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        raise InvalidInput(
            "The question is empty.", hint="Type the question after the paper id, in quotes."
        )
    if len(text) > MAX_QUESTION:
        raise InvalidInput(
            f"The question is {len(text)} characters long; keep it under {MAX_QUESTION}."
        )
    return text


def _list_reply(
    paper: Paper, discussion: Discussion, qs: list[DiscussionQuestion], note: str = ""
) -> Reply:
    state = {
        "draft": "proposed, not yet accepted",
        "accepted": "accepted",
        "running": "in use (the groups are meeting)",
        "ended": "used",
    }[discussion.state]
    lines = [
        f"{q.position}. {q.text}"
        + (f"  _(from {len(q.sources)} similar)_" if len(q.sources) > 1 else "")
        + ("  _(edited)_" if q.edited else "")
        for q in qs
    ]
    n = paper.number
    buttons = []
    if discussion.state in ("draft", "accepted"):
        if discussion.state == "draft" and qs:
            buttons.append(Button("Accept these", "discussion.accept", (str(n),), "success"))
        buttons.append(Button("Propose again", "discussion.propose", (str(n),)))
    edits = (
        f'`discussion edit {n} <number> "text"`, `discussion add {n} "text"`, '
        f"`discussion remove {n} <number>`"
    )
    if discussion.state == "draft":
        hint = f"Change it with {edits}; then `discussion accept {n}` and `discussion start {n}`."
    else:
        hint = f"Start with `discussion start {n}` (still editable: {edits})."
    return Reply(
        title=f"Discussion questions: {paper_label(paper)} ({state})",
        text=(note + "\n" if note else "") + ("\n".join(lines) or "No questions yet."),
        sections=[Section("Next", hint)] if discussion.state in ("draft", "accepted") else [],
        buttons=buttons,
    )


# ----------------------------------------------------------------------------- timer


def _group_key(discussion: Discussion, number: int) -> str:
    return f"discussion:{discussion.id}:g{number}"


def _ends_at(discussion: Discussion) -> datetime:
    assert discussion.started_at is not None
    return discussion.started_at + timedelta(minutes=discussion.minutes)


async def due_discussion_posts(
    session: AsyncSession, now: datetime, *, course_ids: set[int] | None = None
) -> list[tuple[int, Outgoing]]:
    """The running discussions' warning (5 minutes before the end, into every group's
    thread) and call-back (at the end, into every thread and the main channel). Each
    goes out once; a warning missed while the bot was down is skipped, a call-back
    goes out late within GRACE, then is skipped."""
    q = select(Discussion).where(Discussion.state == "running")
    if course_ids is not None:
        q = q.where(Discussion.course_id.in_(course_ids))
    out: list[tuple[int, Outgoing]] = []
    for d in list(await session.scalars(q)):
        end = _ends_at(d)
        ticks = []
        if d.minutes > WARN_MINUTES:
            ticks.append(("warn", end - timedelta(minutes=WARN_MINUTES)))
        ticks.append(("end", end))
        keys = {what: f"discussion:{d.id}:{what}" for what, at in ticks if at <= now}
        if not keys:
            continue
        sent = set(
            await session.scalars(
                select(Notification.key).where(
                    Notification.course_id == d.course_id, Notification.key.in_(keys.values())
                )
            )
        )
        for what, at in ticks:
            key = keys.get(what)
            if key is None or key in sent:
                continue
            session.add(Notification(course_id=d.course_id, key=key, sent_at=now))
            late = now - at
            if late > (timedelta(seconds=30) if what == "warn" else GRACE):
                log.warning(
                    "discussion %s: the %s due %s was missed by %s (the bot was down); skipped",
                    d.id,
                    "warning" if what == "warn" else "call-back",
                    at.isoformat(),
                    late,
                )
                continue
            groups = await groups_of(session, d)
            if what == "warn":
                text = (
                    f"⏳ {WARN_MINUTES} minutes left: wrap up your answer to share with the class."
                )
            else:
                text = "⏰ Time's up! Come back to the main room to share your group's answer."
            for g in groups:
                out.append(
                    (
                        d.course_id,
                        Outgoing(
                            Reply(text=text), channel=d.channel, in_thread=_group_key(d, g.number)
                        ),
                    )
                )
            if what == "end":
                paper = await session.get(Paper, d.paper_id)
                assert paper is not None
                out.append(
                    (
                        d.course_id,
                        Outgoing(
                            Reply(
                                text=f"⏰ Discussion of {paper_label(paper)}: time's up for all "
                                f"{len(groups)} groups. Everyone back to the main room!"
                            ),
                            channel=d.channel,
                        ),
                    )
                )
    await session.flush()
    return out


# ----------------------------------------------------------------------------- commands


class PaperRef(BaseModel):
    paper: DiscussionPaper = Field(description="the paper id")


async def _plan_first_questions(ctx: Context, opts: PaperRef) -> Plan[list[Cluster]] | None:
    """`discussion questions`' slow step, on a snapshot: the first proposal, when the
    command will make one."""
    paper = await discussion_paper(ctx.session, ctx.course.id, opts.paper)
    d = await discussion_of(ctx.session, ctx.course, paper)
    submitted = await submitted_questions(ctx.session, paper)
    if await compiled(ctx.session, d) or not submitted or d.state != "draft":
        return None
    return await _cluster(ctx, d, submitted, 0)


@registry.command(
    "discussion questions",
    "Every question the students submitted for a paper, and the proposed list for the groups",
    access=Access.STAFF,
    ephemeral=True,
    topic="discussion",
    examples=("discussion questions 5",),
    prepare=_plan_first_questions,  # clustered on a snapshot, outside the writers' queue
)
async def discussion_questions(ctx: Context, opts: PaperRef) -> Reply:
    paper = await discussion_paper(ctx.session, ctx.course.id, opts.paper)
    d = await discussion_of(ctx.session, ctx.course, paper)
    submitted = await submitted_questions(ctx.session, paper)
    qs = await compiled(ctx.session, d)
    note = ""
    if not qs and submitted and d.state == "draft":
        qs = await propose_questions(ctx, d, submitted, 0)
        note = (
            f"Proposed {len(qs)} distinct questions from the {len(submitted)} submitted, "
            "one per group of similar ones:"
        )
    reply = _list_reply(paper, d, qs, note)
    number = {c.id: i for i, (c, _) in enumerate(submitted, start=1)}
    rows = [[str(number[c.id]), p.name, c.question] for c, p in submitted]
    if rows:
        reply.tables.append(Table(["#", "Student", "Submitted question"], rows))
        for q in qs:
            if len(q.sources) > 1:
                nums = ", ".join(str(number[s]) for s in q.sources if s in number)
                q_line = f"{q.position}. ← submitted {nums}"
                reply.sections.append(Section(f"Question {q.position} groups", q_line))
    else:
        reply.sections.insert(
            0,
            Section(
                "Submitted",
                "No student has submitted a question for this paper yet "
                f"(they come with `critique submit {paper.number}`).",
            ),
        )
    return reply


class ProposeOptions(BaseModel):
    paper: DiscussionPaper = Field(description="the paper id")
    count: int | None = Field(None, ge=1, le=20, description="how many questions (default 6–8)")


async def _to_propose(
    ctx: Context, opts: ProposeOptions
) -> tuple[Paper, Discussion, list[tuple[Critique, Person]]]:
    paper, d = await _for_edit(ctx, opts.paper)
    submitted = await submitted_questions(ctx.session, paper)
    if not submitted:
        raise Conflict(
            f"No student has submitted a question for {paper_label(paper)} yet.",
            hint=f'Write your own with `discussion add {paper.number} "question"`.',
        )
    return paper, d, submitted


async def _plan_proposal(ctx: Context, opts: ProposeOptions) -> Plan[list[Cluster]]:
    """`discussion propose`'s slow step, on a snapshot outside the writers' queue."""
    _, d, submitted = await _to_propose(ctx, opts)
    return await _cluster(ctx, d, submitted, opts.count or 0)


@registry.command(
    "discussion propose",
    "Propose the discussion questions again from the submitted ones (replaces the list)",
    access=Access.STAFF,
    ephemeral=True,
    topic="discussion",
    examples=("discussion propose 5", "discussion propose 5 count=7"),
    prepare=_plan_proposal,  # clustered on a snapshot, outside the writers' queue
)
async def discussion_propose(ctx: Context, opts: ProposeOptions) -> Reply:
    paper, d, submitted = await _to_propose(ctx, opts)
    qs = await propose_questions(ctx, d, submitted, opts.count or 0)
    return _list_reply(
        paper, d, qs, f"Proposed {len(qs)} questions from the {len(submitted)} submitted:"
    )


# The button runs the command as typed (`discussion propose <paper>`): clustered outside
# the writers' queue like it.
registry.command_button("discussion.propose", "discussion propose", access=Access.STAFF)


@registry.command(
    "discussion accept",
    "Accept the proposed questions for a paper's breakout groups",
    access=Access.STAFF,
    ephemeral=True,
    topic="discussion",
    examples=("discussion accept 5",),
)
async def discussion_accept(ctx: Context, opts: PaperRef) -> Reply:
    paper, d = await _for_edit(ctx, opts.paper)
    qs = await compiled(ctx.session, d)
    if not qs:
        raise Conflict(
            f"There are no questions for {paper_label(paper)} to accept.",
            hint=f"`discussion questions {paper.number}` proposes some from the submitted ones.",
        )
    d.state, d.accepted_at = "accepted", ctx.now
    reply = _list_reply(paper, d, qs, f"Accepted {len(qs)} questions.")
    reply.tone = Tone.SUCCESS
    return reply


@registry.action("discussion.accept", access=Access.STAFF)
async def discussion_accept_button(ctx: Context, args: tuple[str, ...], value: str | None) -> Reply:
    return await discussion_accept(ctx, PaperRef(paper=int(args[0])))


class EditOptions(BaseModel):
    paper: DiscussionPaper = Field(description="the paper id")
    number: int = Field(ge=1, description="the question's number in the list")
    text: Annotated[str, LongText()] = Field(description="the new wording")


async def _question(
    ctx: Context, paper_no: int, number: int
) -> tuple[Paper, Discussion, DiscussionQuestion]:
    paper, d = await _for_edit(ctx, paper_no)
    qs = await compiled(ctx.session, d)
    found = next((q for q in qs if q.position == number), None)
    if found is None:
        raise NotFound(
            f"There is no question {number} for {paper_label(paper)}"
            + (f" (the list has 1–{len(qs)})." if qs else " (the list is empty)."),
            hint=f"`discussion questions {paper.number}` shows the list.",
        )
    return paper, d, found


@registry.command(
    "discussion edit",
    "Reword one of a paper's discussion questions",
    access=Access.STAFF,
    ephemeral=True,
    topic="discussion",
    form=("text",),
    examples=('discussion edit 5 2 "Why does the fast pathway need so few channels?"',),
)
async def discussion_edit(ctx: Context, opts: EditOptions) -> Reply:
    paper, d, q = await _question(ctx, opts.paper, opts.number)
    q.text, q.edited = _clean_question(opts.text), True
    return _list_reply(paper, d, await compiled(ctx.session, d), f"Question {q.position} reworded.")


class AddOptions(BaseModel):
    paper: DiscussionPaper = Field(description="the paper id")
    text: Annotated[str, LongText()] = Field(description="the question")


@registry.command(
    "discussion add",
    "Add your own question to a paper's discussion list",
    access=Access.STAFF,
    ephemeral=True,
    topic="discussion",
    form=("text",),
    examples=('discussion add 5 "Would SlowFast work on audio?"',),
)
async def discussion_add(ctx: Context, opts: AddOptions) -> Reply:
    paper, d = await _for_edit(ctx, opts.paper)
    text = _clean_question(opts.text)
    qs = await compiled(ctx.session, d)
    ctx.session.add(
        DiscussionQuestion(
            discussion_id=d.id, position=len(qs) + 1, text=text, sources=[], edited=True
        )
    )
    await ctx.session.flush()
    return _list_reply(paper, d, await compiled(ctx.session, d), f"Added question {len(qs) + 1}.")


class RemoveOptions(BaseModel):
    paper: DiscussionPaper = Field(description="the paper id")
    number: int = Field(ge=1, description="the question's number in the list")


@registry.command(
    "discussion remove",
    "Remove a question from a paper's discussion list",
    access=Access.STAFF,
    ephemeral=True,
    topic="discussion",
    examples=("discussion remove 5 3",),
)
async def discussion_remove(ctx: Context, opts: RemoveOptions) -> Reply:
    paper, d, q = await _question(ctx, opts.paper, opts.number)
    await ctx.session.delete(q)
    await ctx.session.flush()
    qs = await compiled(ctx.session, d)
    for i, other in enumerate(qs, start=1):
        other.position = i
    return _list_reply(paper, d, qs, f"Removed question {opts.number}.")


@registry.command(
    "discussion checkin",
    'Post an "I\'m here" button; the groups are then made from those who press it',
    access=Access.STAFF,
    topic="discussion",
    examples=("discussion checkin 5",),
)
async def discussion_checkin(ctx: Context, opts: PaperRef) -> Reply:
    paper, _ = await _for_edit(ctx, opts.paper)
    return Reply(
        title=f"Discussion of {paper_label(paper)}",
        text="Breakout groups are made from the students who are here: press the button.",
        buttons=[Button("✋ I'm here", "discussion.here", (str(paper.number),), "primary")],
    )


@registry.action("discussion.here", access=Access.MEMBER)
async def discussion_here(ctx: Context, args: tuple[str, ...], value: str | None) -> Reply:
    me = ctx.me()
    if me.role is not Role.STUDENT:
        raise Forbidden("Only students check in; staff are not put in groups.")
    paper = await discussion_paper(ctx.session, ctx.course.id, int(args[0]))
    d = await discussion_of(ctx.session, ctx.course, paper)
    if d.state in ("running", "ended"):
        raise Conflict(
            f"The groups for {paper_label(paper)} are already made; ask the instructor to add you."
        )
    exists = await ctx.session.scalar(
        select(DiscussionCheckin.id).where(
            DiscussionCheckin.discussion_id == d.id, DiscussionCheckin.person_id == me.id
        )
    )
    if exists is None:
        ctx.session.add(DiscussionCheckin(discussion_id=d.id, person_id=me.id, at=ctx.now))
    return Reply(
        text=f"You're checked in for the discussion of {paper_label(paper)}.", tone=Tone.SUCCESS
    )


class StartOptions(BaseModel):
    paper: DiscussionPaper = Field(description="the paper id")
    groups: int | None = Field(
        None, ge=1, le=50, description="how many groups (default: one per question)"
    )
    minutes: int = Field(30, ge=5, le=180, description="how long the groups meet")
    absent: list[str] = Field(
        default_factory=list, description="students who are not here (email, onyen or name)"
    )


async def _present(ctx: Context, d: Discussion, absent: Sequence[str]) -> tuple[list[Person], str]:
    """The students to put in groups, and where that list came from."""
    students = await course_students(ctx.session, ctx.course.id)
    checked = set(
        await ctx.session.scalars(
            select(DiscussionCheckin.person_id).where(DiscussionCheckin.discussion_id == d.id)
        )
    )
    source = "everyone on the roster"
    if checked:
        students = [s for s in students if s.id in checked]
        source = "the students who checked in"
    gone = {(await find_person(ctx.session, ctx.course.id, who)).id for who in absent}
    if gone:
        students = [s for s in students if s.id not in gone]
        source += f", less {len(gone)} absent"
    return students, source


@dataclass(frozen=True)
class StartInputs:
    """What `discussion start` plans from, read after its checks."""

    paper: Paper
    discussion: Discussion
    questions: list[DiscussionQuestion]
    present: list[Person]
    source: str  # where the list of who is present came from
    n_groups: int
    history: Counter[frozenset[int]]  # how often each pair met in earlier groups
    held: int  # how many earlier discussions that is

    @property
    def key(self) -> tuple[object, ...]:
        """What the groups depend on: a plan for the same key is the same plan."""
        return (
            self.discussion.id,
            tuple(p.id for p in self.present),
            self.n_groups,
            tuple(sorted(self.history.items(), key=str)),
        )


async def _start_inputs(ctx: Context, opts: StartOptions) -> StartInputs:
    """What `discussion start` plans from, after its checks (each refusal says why)."""
    paper = await discussion_paper(ctx.session, ctx.course.id, opts.paper)
    d = await discussion_of(ctx.session, ctx.course, paper)
    n = paper.number
    if d.state == "running":
        raise Conflict(
            f"The discussion of {paper_label(paper)} is already running.",
            hint=f"`discussion end {n}` ends it.",
        )
    if d.state == "ended":
        raise Conflict(f"The discussion of {paper_label(paper)} was already held.")
    qs = await compiled(ctx.session, d)
    if not qs:
        raise Conflict(
            f"{paper_label(paper)} has no discussion questions yet.",
            hint=f"`discussion questions {n}` proposes them from the submitted ones; "
            f'`discussion add {n} "question"` adds your own.',
        )
    if d.state != "accepted":
        raise Conflict(
            f"The questions for {paper_label(paper)} are proposed but not accepted.",
            hint=f"Review them with `discussion questions {n}`, then `discussion accept {n}`.",
        )
    present, source = await _present(ctx, d, opts.absent)
    n_groups = opts.groups or min(len(qs), max(1, len(present) // 3))
    if not present:
        raise Conflict("No students are present to put in groups.")
    history, held = await pair_history(ctx.session, ctx.course.id, exclude=d.id)
    return StartInputs(paper, d, qs, present, source, n_groups, history, held)


async def _groups(start: StartInputs) -> list[list[int]]:
    """The groups, planned in the worker process (a quarter of a second of pure Python
    for 60 students: never on the event loop). The discussion's id seeds it: the same
    inputs give the same groups."""
    from commands import grouping

    try:
        return await offload.run(
            partial(grouping.next_groups, seed=start.discussion.id),
            [p.id for p in start.present],
            start.n_groups,
            start.history,
        )
    except grouping.GroupingError as exc:
        raise InvalidInput(str(exc), hint="Use fewer groups (`groups=N`).") from None


async def _plan_groups(ctx: Context, opts: StartOptions) -> Plan[list[list[int]]]:
    """`discussion start`'s slow step, on a read snapshot outside the writers' queue."""
    start = await _start_inputs(ctx, opts)
    return Plan(start.key, await _groups(start))


@registry.command(
    "discussion start",
    "Split the students present into breakout groups, one question and one thread each",
    access=Access.STAFF,
    topic="discussion",
    examples=(
        "discussion start 5",
        "discussion start 5 groups=6 minutes=25",
        "discussion start 5 absent=achen,bob",
    ),
    prepare=_plan_groups,  # planned on a snapshot: other commands are not held up
)
async def discussion_start(ctx: Context, opts: StartOptions) -> Reply:
    # The groups were planned on a snapshot by ``_plan_groups`` (the core runs it
    # outside the queue of writers). Checked again here, in the write: if who is
    # present or the pair history changed meanwhile, they are planned again now.
    start = await _start_inputs(ctx, opts)
    paper, d, qs, present = start.paper, start.discussion, start.questions, start.present
    source, history, held = start.source, start.history, start.held
    n = paper.number
    plan: Plan[list[list[int]]] | None = ctx.prepared
    if plan is not None and plan.key == start.key:
        planned = plan.value
    else:  # rare: someone checked in (or a discussion ended) during the planning
        log.info("discussion %s: who is present changed while planning; planned again", n)
        planned = await _groups(start)
    names = {p.id: p.name for p in present}
    d.state, d.started_at, d.minutes = "running", ctx.now, opts.minutes
    d.channel = ctx.course.channels.get("discussions") or ctx.request.where.channel or "discussions"
    end = _ends_at(d)
    rows = []
    for i, members in enumerate(planned, start=1):
        question = qs[(i - 1) % len(qs)].text
        ctx.session.add(
            DiscussionGroup(discussion_id=d.id, number=i, question=question, members=list(members))
        )
        who = ", ".join(names[m] for m in members)
        ctx.outgoing.append(
            Outgoing(
                Reply(
                    title=f"Group {i} · {paper_label(paper)}",
                    text=f"**Your question:** {question}\n**Members:** {who}\n"
                    f"You have {opts.minutes} minutes, until {fmt_instant(end, ctx.tz)}; "
                    f"I'll warn you {WARN_MINUTES} minutes before and call you back.",
                ),
                channel=d.channel,
                thread_name=f"Group {i} · paper #{n}",
                members=tuple(members),
                remember=_group_key(d, i),
            )
        )
        rows.append([str(i), who, question])
    await ctx.session.flush()
    met_before = sum(
        1 for g in planned for a, b in combinations(sorted(g), 2) if history[frozenset((a, b))] > 0
    )
    sizes = sorted({len(g) for g in planned})
    size_text = "–".join(str(s) for s in (sizes[0], sizes[-1])) if len(sizes) > 1 else str(sizes[0])
    note = ""
    if len(planned) > len(qs):
        note = " There are more groups than questions, so some groups share a question."
    elif len(planned) < len(qs):
        unused = len(qs) - len(planned)
        are = "is" if unused == 1 else "are"
        note = f" {plural(unused, 'question')} {are} not used (fewer groups than questions)."
    return Reply(
        title=f"Discussion of {paper_label(paper)}: {plural(len(planned), 'group')}",
        text=f"{plural(len(present), 'student')} ({source}) in {plural(len(planned), 'group')} of {size_text}, "
        f"each in its own thread in #{d.channel}. Time: {opts.minutes} minutes, until "
        f"{fmt_instant(end, ctx.tz)}. {plural(met_before, 'pair')} met in an earlier group; "
        f"groups are mixed by the history of {plural(held, 'earlier discussion')}.{note}",
        tables=[Table(["Group", "Members", "Question"], rows)],
        tone=Tone.SUCCESS,
    )


class EndOptions(BaseModel):
    paper: DiscussionPaper | None = Field(
        None, description="the paper id (default: the running one)"
    )


async def _running(ctx: Context, paper_no: int | None) -> tuple[Paper, Discussion]:
    if paper_no is not None:
        paper = await discussion_paper(ctx.session, ctx.course.id, paper_no)
        d = await discussion_of(ctx.session, ctx.course, paper)
        if d.state != "running":
            raise Conflict(f"The discussion of {paper_label(paper)} is not running.")
        return paper, d
    running = list(
        await ctx.session.scalars(
            select(Discussion).where(
                Discussion.course_id == ctx.course.id, Discussion.state == "running"
            )
        )
    )
    if not running:
        raise Conflict("No discussion is running.", hint="`discussion start <paper>` starts one.")
    if len(running) > 1:
        raise InvalidInput("Several discussions are running: name the paper.")
    paper = await ctx.session.get(Paper, running[0].paper_id)
    assert paper is not None
    return paper, running[0]


@registry.command(
    "discussion end",
    "End a running discussion and post its summary",
    access=Access.STAFF,
    topic="discussion",
    examples=("discussion end", "discussion end 5"),
)
async def discussion_end(ctx: Context, opts: EndOptions) -> Reply:
    paper, d = await _running(ctx, opts.paper)
    d.state, d.ended_at = "ended", ctx.now
    for what in ("warn", "end"):  # pings still to come will not go out
        key = f"discussion:{d.id}:{what}"
        if not await ctx.session.scalar(
            select(Notification.id).where(
                Notification.course_id == ctx.course.id, Notification.key == key
            )
        ):
            ctx.session.add(Notification(course_id=ctx.course.id, key=key, sent_at=ctx.now))
    groups = await groups_of(ctx.session, d)
    assert d.started_at is not None
    took = int((ctx.now - d.started_at).total_seconds() // 60)
    count = sum(len(g.members) for g in groups)
    summary = Reply(
        title=f"Discussion of {paper_label(paper)}: summary",
        text=f"{count} students in {len(groups)} groups met for {took} minutes "
        f"({fmt_instant(d.started_at, ctx.tz)} to {fmt_instant(ctx.now, ctx.tz)}; "
        f"{d.minutes} planned). Each group now shares its answer with the class.",
        tables=[await groups_table(ctx.session, groups)],
    )
    if d.channel:
        ctx.outgoing.append(Outgoing(summary, channel=d.channel))
        for g in groups:
            ctx.outgoing.append(
                Outgoing(
                    Reply(text="🏁 The discussion has ended; thank you!"),
                    channel=d.channel,
                    in_thread=_group_key(d, g.number),
                )
            )
    return Reply(
        text=f"Ended the discussion of {paper_label(paper)}; the summary is posted in #{d.channel}.",
        tone=Tone.SUCCESS,
    )


@registry.command(
    "discussion show",
    "A paper's discussion: its state, questions, groups and time left",
    access=Access.STAFF,
    ephemeral=True,
    topic="discussion",
    examples=("discussion show 5",),
)
async def discussion_show(ctx: Context, opts: PaperRef) -> Reply:
    paper = await discussion_paper(ctx.session, ctx.course.id, opts.paper)
    d = await discussion_of(ctx.session, ctx.course, paper)
    reply = _list_reply(paper, d, await compiled(ctx.session, d))
    groups = await groups_of(ctx.session, d)
    if groups:
        reply.tables.append(await groups_table(ctx.session, groups))
    if d.state == "running":
        left = _ends_at(d) - ctx.now
        reply.sections.append(Section("Time", _left(left)))
    checked = await ctx.session.scalar(
        select(DiscussionCheckin.id).where(DiscussionCheckin.discussion_id == d.id).limit(1)
    )
    if d.state in ("draft", "accepted") and checked:
        n_checked = len(
            list(
                await ctx.session.scalars(
                    select(DiscussionCheckin.id).where(DiscussionCheckin.discussion_id == d.id)
                )
            )
        )
        reply.sections.append(Section("Checked in", f"{n_checked} students"))
    return reply


def _left(delta: timedelta) -> str:
    secs = int(delta.total_seconds())
    if secs <= 0:
        return f"time's up ({-secs // 60} min over)"
    return f"{secs // 60}:{secs % 60:02d} left"


class GroupOptions(BaseModel):
    pass


@registry.command(
    "discussion group",
    "Your breakout group in the running discussion: question, members, time left",
    access=Access.MEMBER,
    ephemeral=True,
    topic="discussion",
    examples=("discussion group",),
)
async def discussion_group(ctx: Context, _: GroupOptions) -> Reply:
    me = ctx.me()
    running = list(
        await ctx.session.scalars(
            select(Discussion).where(
                Discussion.course_id == ctx.course.id, Discussion.state == "running"
            )
        )
    )
    for d in running:
        for g in await groups_of(ctx.session, d):
            if me.id in g.members:
                paper = await ctx.session.get(Paper, d.paper_id)
                assert paper is not None
                people = {
                    p.id: p.name
                    for p in await ctx.session.scalars(
                        select(Person).where(Person.id.in_(g.members))
                    )
                }
                others = ", ".join(people[m] for m in g.members if m in people)
                return Reply(
                    title=f"Your group: group {g.number} · {paper_label(paper)}",
                    text=f"**Question:** {g.question}\n**Members:** {others}\n"
                    f"{_left(_ends_at(d) - ctx.now)}. Your group's thread is in #{d.channel}.",
                )
    if running:
        return Reply(
            text="You are not in a breakout group of the running discussion; ask the instructor.",
            tone=Tone.WARNING,
        )
    return Reply(text="No discussion is running right now.")


# ------------------------------------------------------------------ due work


async def next_discussion_post(
    session: AsyncSession, now: datetime, scope: Scope
) -> datetime | None:
    """The next warning or call-back of a running discussion."""
    q = select(Discussion).where(Discussion.state == "running")
    if scope.course_ids is not None:
        q = q.where(Discussion.course_id.in_(scope.course_ids))
    best = None
    for d in await session.scalars(q):
        end = _ends_at(d)
        warn = end - timedelta(minutes=WARN_MINUTES) if d.minutes > WARN_MINUTES else None
        best = earliest(best, *(t for t in (warn, end) if t is not None and t > now))
    return best


due_registry.register_by_course("discussions", due_discussion_posts, next_discussion_post)
