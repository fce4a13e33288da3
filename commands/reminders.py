"""Deadline reminders: which posts are due now, recorded so each goes out once.

Critique deadlines are not reminded here: their own due work (``commands.critiques``)
reminds only the students who still owe one, privately, at the course file's
``reminders.critique`` times, and posts one closing message per deadline.

Registered as due work (``reminders``): the scheduler asks :func:`next_reminder` when
the next one falls due and calls :func:`due_reminders` then; each reminder has a stable
key stored in ``notifications`` in the same transaction that queues it in the outbox,
so a restart neither loses a reminder (it goes out on the next pass, within the grace
window) nor sends one twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.due import Scope, due_registry, earliest
from commands.logistics import DeadlineItem, course_deadlines
from commands.outbox import Outgoing
from commands.replies import Reply
from commands.timefmt import fmt_instant
from db.models import Course, Notification

#: A reminder missed while the bot was down still goes out if this late at most.
GRACE = timedelta(hours=2)
#: Deadline kinds whose feature reminds on its own (only those who still owe one).
OWN_REMINDERS = frozenset({"critique"})


async def reminded_deadlines(session: AsyncSession, course: Course) -> list[DeadlineItem]:
    """The course's deadlines that get the public reminder (not the critiques)."""
    return [i for i in await course_deadlines(session, course) if i.kind not in OWN_REMINDERS]


@dataclass(frozen=True)
class Post:
    """A due scheduled message: to a course channel, or to one person (``person_id``)."""

    course_id: int
    channel: str
    reply: Reply
    key: str
    person_id: int | None = None


async def due_reminders(
    session: AsyncSession, course: Course, now: datetime, hours_before: list[int]
) -> list[Post]:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(course.timezone)
    sent = set(
        await session.scalars(select(Notification.key).where(Notification.course_id == course.id))
    )
    channel = course.channels.get("announcements", "announcements")
    posts: list[Post] = []
    for item in await reminded_deadlines(session, course):
        for hours in sorted(hours_before, reverse=True):
            fire_at = item.due - timedelta(hours=hours)
            key = f"deadline:{item.kind}:{item.title}:{item.due.isoformat()}:-{hours}h"
            if key in sent or not (fire_at <= now < min(fire_at + GRACE, item.due)):
                continue
            text = (
                f"⏰ Reminder: **{item.title}** is due {fmt_instant(item.due, tz)} "
                f"(in {hours} hour{'s' * (hours != 1)})."
            )
            posts.append(Post(course.id, channel, Reply(text=text), key))
            session.add(Notification(course_id=course.id, key=key, sent_at=now))
            sent.add(key)
    posts += await _ranking_reminders(session, course, now, hours_before, sent)
    return posts


async def _ranking_reminders(
    session: AsyncSession, course: Course, now: datetime, hours_before: list[int], sent: set[str]
) -> list[Post]:
    """A private nudge to each student still missing a ranking, before the deadline."""
    from commands.rankings import missing_rankings, ranking_reminder

    due = course.ranking_deadline
    if due is None:
        return []
    posts = []
    for hours in hours_before:
        fire_at = due - timedelta(hours=hours)
        if not (fire_at <= now < min(fire_at + GRACE, due)):
            continue
        for missing in await missing_rankings(session, course):
            key = f"rankings-missing:{missing.person.id}:{due.isoformat()}:-{hours}h"
            if key in sent:
                continue
            reply = ranking_reminder(course, missing, now)
            posts.append(Post(course.id, "", reply, key, person_id=missing.person.id))
            session.add(Notification(course_id=course.id, key=key, sent_at=now))
            sent.add(key)
    return posts


# ------------------------------------------------------------------ due work


def _courses(scope: Scope):  # type: ignore[no-untyped-def]
    q = select(Course)
    if scope.course_ids is not None:
        q = q.where(Course.id.in_(scope.course_ids))
    return q


async def collect_reminders(
    session: AsyncSession, now: datetime, scope: Scope
) -> list[tuple[int, Outgoing]]:
    out: list[tuple[int, Outgoing]] = []
    for course in list(await session.scalars(_courses(scope))):
        for post in await due_reminders(session, course, now, list(scope.reminder_hours)):
            if post.person_id is not None:
                out.append((course.id, Outgoing(post.reply, person_id=post.person_id)))
            else:
                out.append((course.id, Outgoing(post.reply, channel=post.channel)))
    return out


async def next_reminder(session: AsyncSession, now: datetime, scope: Scope) -> datetime | None:
    """When the next deadline reminder (or private ranking nudge) falls due."""
    best = None
    hours = [timedelta(hours=h) for h in scope.reminder_hours]
    for course in list(await session.scalars(_courses(scope))):
        dues = [item.due for item in await reminded_deadlines(session, course)]
        if course.ranking_deadline is not None:
            dues.append(course.ranking_deadline)
        best = earliest(best, *(d - h for d in dues for h in hours if d - h > now))
    return best


due_registry.register("reminders", collect_reminders, next_reminder)
