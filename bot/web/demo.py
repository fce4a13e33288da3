"""A semester in progress for the desk's tests, screenshots and benchmark: the sample
course (optionally with many generated students) with rankings, a published assignment
and a proposal that differs from it, critiques (on time, late, graded), a closed battle
poll with its justifications, discussions, GPU jobs with a result image, grades and
audit entries. Written straight to the database, as the commands would have left it.
"""

from __future__ import annotations

import random
import struct
import zlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.app import App
from commands.critiques import storage_path
from db.models import (
    Assignment,
    AssignmentRun,
    AuditEntry,
    Battle,
    BattlePoll,
    BattleVote,
    Course,
    Critique,
    Discussion,
    DiscussionGroup,
    DiscussionQuestion,
    GpuJob,
    GpuJobFile,
    GradeEntry,
    Identity,
    Paper,
    Person,
    Platform,
    Ranking,
    RankingChoice,
    RankKind,
    Role,
    Slot,
)

#: Thursday Sep 14 2023, 10 AM in New York: battle 1 was yesterday, #13 is due next week.
DEMO_NOW = datetime(2023, 9, 14, 14, 0, tzinfo=UTC)

#: The smallest PDF a browser opens (one empty page).
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def png(width: int = 256, height: int = 160) -> bytes:
    """A small gradient PNG (a GPU job's "result image")."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x % 256, (y * 3) % 256, 160))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _greedy(
    rng: random.Random,
    people: list[Person],
    prefs: dict[int, list[int]],
    papers: list[int],
    cap: int,
) -> dict[int, int]:
    count = dict.fromkeys(papers, 0)
    out = {}
    for p in people:
        choice = next((n for n in prefs[p.id] if count[n] < cap), None)
        if choice is None:
            choice = min(papers, key=lambda n: (count[n], rng.random()))
        count[choice] += 1
        out[p.id] = choice
    return out


async def populate(app: App, *, extra_students: int = 0, seed: int = 1) -> None:
    """Fill the (first) course: see the module's docstring."""
    rng = random.Random(seed)
    now = DEMO_NOW
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course).order_by(Course.id).limit(1))
        assert course is not None
        for i in range(extra_students):
            p = Person(
                course_id=course.id,
                name=f"Student {i + 1:03d}",
                email=f"s{i + 1:03d}@demo.example",
                role=Role.STUDENT,
                onyen=f"s{i + 1:03d}",
            )
            s.add(p)
            await s.flush()
            s.add(
                Identity(
                    course_id=course.id,
                    person_id=p.id,
                    platform=Platform.TERMINAL,
                    user_id=f"s{i + 1:03d}",
                    linked_at=now,
                )
            )
        people = list(
            await s.scalars(
                select(Person).where(Person.course_id == course.id).order_by(Person.name)
            )
        )
        students = [p for p in people if p.role is Role.STUDENT]
        staff = next(p for p in people if p.role is Role.INSTRUCTOR)
        papers = {
            p.number: p for p in await s.scalars(select(Paper).where(Paper.course_id == course.id))
        }
        standard = sorted(n for n, p in papers.items() if p.slot in (Slot.MIN30, Slot.MIN45))
        battle = sorted(n for n, p in papers.items() if p.slot is Slot.BATTLE)

        # Rankings: everyone but the last two ranked both kinds.
        prefs: dict[RankKind, dict[int, list[int]]] = {RankKind.STANDARD: {}, RankKind.BATTLE: {}}
        for i, p in enumerate(students):
            for kind, pool, n in ((RankKind.STANDARD, standard, 7), (RankKind.BATTLE, battle, 3)):
                prefs[kind][p.id] = rng.sample(pool, n)
                if i >= len(students) - 2:
                    continue
                r = Ranking(
                    course_id=course.id,
                    person_id=p.id,
                    kind=kind,
                    submitted_at=datetime(2023, 8, 26, 12, tzinfo=UTC) + timedelta(minutes=i),
                )
                s.add(r)
                await s.flush()
                for rank, number in enumerate(prefs[kind][p.id], 1):
                    s.add(RankingChoice(ranking_id=r.id, rank=rank, paper_id=papers[number].id))

        # The published assignment, and a proposal that moves two students.
        std_cap = max(course.max_presenters, -(-len(students) // len(standard)))
        bat_cap = max(course.battle_group_max, -(-len(students) // len(battle)))
        # A generated class of hundreds: papers take as many presenters as it needs.
        course.max_presenters, course.battle_group_max = std_cap, bat_cap
        rows = {
            RankKind.STANDARD: _greedy(rng, students, prefs[RankKind.STANDARD], standard, std_cap),
            RankKind.BATTLE: _greedy(rng, students, prefs[RankKind.BATTLE], battle, bat_cap),
        }
        proposal = {k: dict(v) for k, v in rows.items()}
        a, b = students[0].id, students[1].id
        std = proposal[RankKind.STANDARD]
        std[a], std[b] = std[b], std[a]
        for published, assignment in ((True, rows), (False, proposal)):
            for kind_rows in assignment.values():
                for person_id, number in kind_rows.items():
                    s.add(
                        Assignment(
                            course_id=course.id,
                            paper_id=papers[number].id,
                            person_id=person_id,
                            published=published,
                        )
                    )
        s.add(
            AssignmentRun(
                course_id=course.id,
                created_at=now - timedelta(days=20),
                seed=0,
                summary={},
                published_at=now - timedelta(days=19),
            )
        )
        s.add(AssignmentRun(course_id=course.id, created_at=now, seed=7, summary={}))

        # Critiques of #5 (graded), #6 (some late, half graded), #13 (coming in).
        for number, share, late_every, graded in (
            (5, 0.9, 0, 1.0),
            (6, 0.8, 5, 0.5),
            (13, 0.4, 0, 0.0),
        ):
            paper = papers[number]
            due = datetime(
                paper.class_date.year, paper.class_date.month, paper.class_date.day, 17, tzinfo=UTC
            )
            for i, p in enumerate(students[: int(len(students) * share)]):
                late = bool(late_every) and i % late_every == 4
                path = storage_path(app.settings.data_dir, course, paper, p)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(PDF)
                s.add(
                    Critique(
                        course_id=course.id,
                        paper_id=paper.id,
                        person_id=p.id,
                        submitted_at=due
                        + (timedelta(hours=3) if late else -timedelta(hours=20 - i % 12)),
                        file=str(path.relative_to(app.settings.data_dir)),
                        original_name=f"critique-{number}.pdf",
                        size=len(PDF),
                        question=f"Why does #{number} work better on long clips? (asked by {p.name})",
                        answer="Because the temporal context it models is longer than the "
                        "clip length used in training, as its ablations show in detail. "
                        * (1 + i % 3),
                        grade=("pass" if i % 9 else "fail")
                        if i < int(len(students) * share * graded)
                        else None,
                        graded_at=now if i < int(len(students) * share * graded) else None,
                        graded_by_id=staff.id if i < int(len(students) * share * graded) else None,
                    )
                )

        # Battle 1 happened yesterday; its poll is closed with every justification.
        b1 = await s.scalar(select(Battle).where(Battle.course_id == course.id, Battle.number == 1))
        assert b1 is not None
        poll = BattlePoll(
            course_id=course.id,
            battle_id=b1.id,
            channel="battles",
            opened_at=now - timedelta(hours=20),
            closes_at=now - timedelta(hours=19),
            closed_at=now - timedelta(hours=19),
        )
        s.add(poll)
        await s.flush()
        for i, p in enumerate(students[6:]):
            s.add(
                BattleVote(
                    poll_id=poll.id,
                    person_id=p.id,
                    side="A" if i % 3 else "B",
                    justification=f"{p.name}: the shift trick is simpler and the ablation is convincing."
                    if i % 7
                    else None,
                    updated_at=now - timedelta(hours=19, minutes=30 - i % 20),
                )
            )

        # Discussions: #6 ended with groups, #13 accepted.
        for number, state in ((6, "ended"), (13, "accepted")):
            d = Discussion(
                course_id=course.id,
                paper_id=papers[number].id,
                state=state,
                accepted_at=now - timedelta(days=1),
                channel="discussions",
                started_at=now - timedelta(days=8) if state == "ended" else None,
                minutes=30,
                ended_at=now - timedelta(days=8) + timedelta(minutes=30)
                if state == "ended"
                else None,
            )
            s.add(d)
            await s.flush()
            for pos in range(1, 4):
                s.add(
                    DiscussionQuestion(
                        discussion_id=d.id,
                        position=pos,
                        text=f"Question {pos} about #{number}: what would break first at 10x the frames?",
                        sources=[],
                    )
                )
            if state == "ended":
                for g in range(1, 5):
                    s.add(
                        DiscussionGroup(
                            discussion_id=d.id,
                            number=g,
                            question=f"Question {1 + g % 3} about #{number}",
                            members=[p.id for p in students[g - 1 :: 4]],
                        )
                    )

        # GPU: one running, two waiting, one done with an image.
        for i, (state, demo) in enumerate(
            (
                ("succeeded", "conv2d"),
                ("running", "cnn"),
                ("queued", "classify"),
                ("queued", "conv2d"),
            )
        ):
            job = GpuJob(
                course_id=course.id,
                person_id=students[i].id,
                demo=demo,
                params={},
                state=state,
                channel="",
                created_at=now - timedelta(minutes=30 - i),
                started_at=now - timedelta(minutes=20) if state != "queued" else None,
                finished_at=now - timedelta(minutes=10) if state == "succeeded" else None,
                heartbeat_at=now - timedelta(seconds=5) if state == "running" else None,
                worker="gpu-host-1:worker-0" if state == "running" else None,
                progress=1.0 if state == "succeeded" else 0.4 if state == "running" else 0.0,
                result_text="Filtered the sample image with a 3×3 edge kernel."
                if state == "succeeded"
                else None,
                posted=state == "succeeded",
            )
            s.add(job)
            await s.flush()
            if state == "succeeded":
                s.add(
                    GpuJobFile(
                        job_id=job.id,
                        role="output",
                        name="edges.png",
                        content_type="image/png",
                        data=png(),
                        created_at=now,
                    )
                )

        # Grades and the audit log.
        for i, p in enumerate(students):
            s.add(
                GradeEntry(
                    course_id=course.id,
                    person_id=p.id,
                    component="participation",
                    points=80 + i % 20,
                    set_by=staff.id,
                    updated_at=now,
                )
            )
            if i < 5:
                s.add(
                    AuditEntry(
                        course_id=course.id,
                        at=now - timedelta(hours=i),
                        actor_id=staff.id,
                        actor=staff.name,
                        kind="grade.set",
                        subject_id=p.id,
                        subject=p.name,
                        summary=f"participation: {80 + i % 20}",
                        before={"points": None},
                        after={"points": 80 + i % 20},
                        reason="first half of the term" if i % 2 else None,
                    )
                )
