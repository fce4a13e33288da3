"""Remembered answers of the slowest read commands (``assign show``: the solver's instance,
statistics and two charts, about half a second for 300 students).

An answer is reused only while a fingerprint of everything the command reads is
unchanged: the whole rows of the course, its roster, papers, battles, rankings with their
choices, partner requests, the assignment, the latest run, and the day. The fingerprint takes
a few small queries; any change to those rows (from chat, the web, the CLI or another
replica) gives a new fingerprint and a fresh answer. A memo of a pure read, never a
second source of truth.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.replies import Reply
from db.models import (
    Assignment,
    AssignmentRun,
    Battle,
    Course,
    Paper,
    PartnerRequest,
    Person,
    Ranking,
    RankingChoice,
)

#: How many answers are kept (a few per course: the staff view, each student's own).
SIZE = 256


def _all(model: type) -> list[object]:
    """Every column of a model's table: a column added later is in the fingerprint too."""
    return list(model.__table__.columns)  # type: ignore[attr-defined]


async def assignment_fingerprint(session: AsyncSession, course: Course, today: date) -> str:
    """A digest of every row the assignment commands read for ``course`` (whole rows)."""
    cid = course.id
    digest = hashlib.sha256(today.isoformat().encode())
    for q in (
        select(*_all(Course)).where(Course.id == cid),
        select(*_all(Person)).where(Person.course_id == cid),
        select(*_all(Paper)).where(Paper.course_id == cid),
        select(*_all(Battle)).where(Battle.course_id == cid),
        select(*_all(Ranking)).where(Ranking.course_id == cid),
        select(*_all(RankingChoice))
        .join(Ranking, Ranking.id == RankingChoice.ranking_id)
        .where(Ranking.course_id == cid),
        select(*_all(PartnerRequest)).where(PartnerRequest.course_id == cid),
        select(*_all(Assignment)).where(Assignment.course_id == cid),
        select(*_all(AssignmentRun))
        .where(AssignmentRun.course_id == cid)
        .order_by(AssignmentRun.id.desc())
        .limit(1),
    ):
        rows = sorted((tuple(r) for r in (await session.execute(q)).all()), key=lambda r: r[0])
        digest.update(json.dumps(rows, default=str, sort_keys=True).encode())
    return digest.hexdigest()


class Memo:
    """Answers by (what was asked, fingerprint); least recently used dropped first."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[object, ...], Reply] = OrderedDict()
        self.hits = 0

    def get(self, key: tuple[object, ...]) -> Reply | None:
        reply = self._items.get(key)
        if reply is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return reply

    def put(self, key: tuple[object, ...], reply: Reply) -> None:
        if reply.is_error:  # a refusal or a failure is never remembered
            return
        self._items[key] = reply
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
