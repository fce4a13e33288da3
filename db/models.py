"""The course data model.

Every row belongs to a course (``course_id``), so one deployment can serve several
courses at once; a course is reached from a chat platform through its bindings
(a Discord guild, a Slack workspace, a terminal session).

Instants are stored in UTC (:class:`db.types.UTCDateTime`); wall-clock times of
the course (class start, critique deadline) are stored as local times and read in
the course's IANA timezone, so they keep their meaning across DST.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Time,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: UTCDateTime,
    }


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
    )


class Role(enum.StrEnum):
    INSTRUCTOR = "instructor"
    TA = "ta"
    STUDENT = "student"
    #: A student who left the course (``people drop``): kept for the record (grades,
    #: critiques), no longer pinged, ranked, assigned or counted.
    WITHDRAWN = "withdrawn"


class Degree(enum.StrEnum):
    BA = "BA"
    BS = "BS"
    MS = "MS"
    PHD = "PhD"


class Slot(enum.StrEnum):
    MIN30 = "30"
    MIN45 = "45"
    BATTLE = "battle"
    INSTRUCTOR = "instructor"

    @property
    def label(self) -> str:
        return {
            "30": "30-min presentation",
            "45": "45-min presentation",
            "battle": "paper battle (20 min)",
            "instructor": "instructor-presented",
        }[self.value]


class Platform(enum.StrEnum):
    TERMINAL = "terminal"
    DISCORD = "discord"
    SLACK = "slack"


class Course(Base):
    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    term: Mapped[str] = mapped_column(String(64), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="America/New_York")
    class_days: Mapped[list[Any]] = mapped_column(default=list)
    class_start: Mapped[time | None] = mapped_column(Time())
    class_end: Mapped[time | None] = mapped_column(Time())
    critique_deadline: Mapped[time] = mapped_column(Time(), default=time(13, 0))
    ranking_deadline: Mapped[datetime | None]
    standard_choices: Mapped[int] = mapped_column(Integer, default=7)
    battle_choices: Mapped[int] = mapped_column(Integer, default=3)
    max_presenters: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    battle_group_min: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    battle_group_max: Mapped[int] = mapped_column(Integer, default=4, server_default="4")
    #: Paper-battle rules: phase minutes, warnings, justification length (see coursefile).
    battle_rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: GPU queue rules set by the instructor: paused, queued_cap, per-student limits.
    gpu_rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    website: Mapped[str | None] = mapped_column(String(500))
    office_hours_url: Mapped[str | None] = mapped_column(String(500))
    office_hours_note: Mapped[str | None] = mapped_column(Text)
    grading: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The assignment's rules (``course.assignment`` in the course file, people as
    #: roster emails): presenter limits per slot, coverage, notice, partners, conflicts.
    assign_rules: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    channels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    no_class: Mapped[list[Any]] = mapped_column(default=list)
    #: The meetings as a syllabus describes them (issue #19, as the course file has them,
    #: JSON): first_day, last_day, breaks, sessions with agendas, office_hours_slots,
    #: talk_rules. Read with ``commands.coursefile.Syllabus``.
    syllabus: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")

    bindings: Mapped[list[CourseBinding]] = relationship(
        back_populates="course", cascade="all, delete-orphan"
    )


class CourseBinding(Base):
    """Where a course lives: a Discord guild, a Slack workspace, a terminal session."""

    __tablename__ = "course_bindings"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    platform: Mapped[Platform] = mapped_column(_enum(Platform, "platform"))
    external_id: Mapped[str] = mapped_column(String(100))
    #: The course's channels on this platform, by id (issue #20): channel key →
    #: ``{"id": platform id, "from": what it was resolved from}``; ``from`` is the course
    #: file's name or id for the key, or ``"bind"`` when staff bound the id by hand. A
    #: name is resolved once, when the adapter starts; a renamed channel keeps its id.
    channels: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")

    course: Mapped[Course] = relationship(back_populates="bindings")


class Person(Base):
    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("course_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), default=Role.STUDENT)
    degree: Mapped[Degree | None] = mapped_column(_enum(Degree, "degree"))
    year: Mapped[int | None]
    sis_id: Mapped[str | None] = mapped_column(String(64))
    onyen: Mapped[str | None] = mapped_column(String(64))
    canvas_id: Mapped[str | None] = mapped_column(String(64))
    section: Mapped[str | None] = mapped_column(String(100))
    #: Given and family names, when known (Canvas exports and sorting use them; the
    #: display ``name`` may differ).
    given_name: Mapped[str | None] = mapped_column(String(100))
    family_name: Mapped[str | None] = mapped_column(String(100))
    #: Other addresses that are this person's (a personal address on their Slack
    #: profile, login@domain next to first.last@domain): ``register`` accepts them.
    email_aliases: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")

    identities: Mapped[list[Identity]] = relationship(
        back_populates="person", cascade="all, delete-orphan"
    )

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.INSTRUCTOR, Role.TA)


class Identity(Base):
    """A chat account linked to a roster entry (one per platform and person)."""

    __tablename__ = "identities"
    __table_args__ = (
        UniqueConstraint("course_id", "platform", "user_id"),
        UniqueConstraint("person_id", "platform"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    platform: Mapped[Platform] = mapped_column(_enum(Platform, "platform"))
    user_id: Mapped[str] = mapped_column(String(100))
    display_name: Mapped[str | None] = mapped_column(String(200))
    linked_at: Mapped[datetime]

    person: Mapped[Person] = relationship(back_populates="identities")


class Paper(Base):
    __tablename__ = "papers"
    __table_args__ = (UniqueConstraint("course_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    title: Mapped[str] = mapped_column(String(500))
    authors: Mapped[str] = mapped_column(Text, default="")
    venue: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(500))
    class_date: Mapped[date | None] = mapped_column(Date())
    slot: Mapped[Slot] = mapped_column(_enum(Slot, "slot"))
    critique: Mapped[bool] = mapped_column(Boolean, default=False)
    discussion: Mapped[bool] = mapped_column(Boolean, default=False)


class Battle(Base):
    __tablename__ = "battles"
    __table_args__ = (UniqueConstraint("course_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    paper_a_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"))
    paper_b_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"))
    class_date: Mapped[date | None] = mapped_column(Date())
    #: The course file's id when it is not a plain number (``B4``); ``number`` is its digits.
    label: Mapped[str | None] = mapped_column(String(32))
    theme: Mapped[str | None] = mapped_column(String(200))
    #: When the battle starts on its day (local time); None: with the class.
    start_time: Mapped[time | None] = mapped_column(Time())
    #: This battle's own phases (``[{key, title, minutes, side}]``); None: the course's.
    phases: Mapped[list[Any] | None] = mapped_column(JSON)

    paper_a: Mapped[Paper] = relationship(foreign_keys=[paper_a_id])
    paper_b: Mapped[Paper] = relationship(foreign_keys=[paper_b_id])


class Milestone(Base):
    """A project milestone: presentation days and a write-up deadline."""

    __tablename__ = "milestones"
    __table_args__ = (UniqueConstraint("course_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    presentations: Mapped[list[Any]] = mapped_column(default=list)
    due: Mapped[datetime | None]
    weight: Mapped[int | None]


class Deadline(Base):
    """Any other dated obligation (rankings, a survey, ...)."""

    __tablename__ = "deadlines"
    __table_args__ = (UniqueConstraint("course_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    due: Mapped[datetime]


class Notification(Base):
    """A scheduled post that went out, so a restart never sends it twice."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("course_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    sent_at: Mapped[datetime]


class Assignment(Base):
    """A student presenting a paper (a standard paper, or one side of a battle).

    Filled by the assignment solver (proposed), then published by the instructor;
    the schedule and ``papers unassigned`` read it.
    """

    __tablename__ = "assignments"
    # The published assignment and a new proposal live side by side until it is published.
    __table_args__ = (UniqueConstraint("paper_id", "person_id", "published"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    #: ``assign keep``: the next proposal keeps this student on this paper.
    kept: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class PartnerRequest(Base):
    """``rank partner``: a student asks to present their standard paper with another;
    a request is confirmed when the other asks for them too."""

    __tablename__ = "partner_requests"
    __table_args__ = (UniqueConstraint("course_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]


class RankKind(enum.StrEnum):
    STANDARD = "standard"
    BATTLE = "battle"


class Ranking(Base):
    """A student's ranked list of one kind; a resubmission replaces it."""

    __tablename__ = "rankings"
    __table_args__ = (UniqueConstraint("person_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    kind: Mapped[RankKind] = mapped_column(_enum(RankKind, "rank_kind"))
    submitted_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16), default="chat")

    choices: Mapped[list[RankingChoice]] = relationship(
        back_populates="ranking",
        cascade="all, delete-orphan",
        order_by="RankingChoice.rank",
    )


class RankingChoice(Base):
    __tablename__ = "ranking_choices"
    __table_args__ = (
        UniqueConstraint("ranking_id", "rank"),
        UniqueConstraint("ranking_id", "paper_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"))
    rank: Mapped[int]
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"))

    ranking: Mapped[Ranking] = relationship(back_populates="choices")
    paper: Mapped[Paper] = relationship()


class Extension(Base):
    """A personal extension of a course deadline (``key`` e.g. ``rankings``)."""

    __tablename__ = "extensions"
    __table_args__ = (UniqueConstraint("person_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime]


class AssignmentRun(Base):
    """One computed proposal: its seed, summary and when it was published."""

    __tablename__ = "assignment_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    seed: Mapped[int]
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    published_at: Mapped[datetime | None]


class ProcessedEvent(Base):
    """A platform event (interaction, Slack event id) already handled: retries and
    duplicate deliveries are recognised by it and never act twice."""

    __tablename__ = "processed_events"
    __table_args__ = (UniqueConstraint("platform", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[Platform] = mapped_column(_enum(Platform, "platform"))
    event_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class BattlePoll(Base):
    """The vote after a paper battle: open, then closed with a result."""

    __tablename__ = "battle_polls"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    battle_id: Mapped[int] = mapped_column(
        ForeignKey("battles.id", ondelete="CASCADE"), unique=True
    )
    channel: Mapped[str] = mapped_column(String(100))
    opened_at: Mapped[datetime]
    closes_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class BattleVote(Base):
    """One student's vote: a side, counted only once it has a justification."""

    __tablename__ = "battle_votes"
    __table_args__ = (UniqueConstraint("poll_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    poll_id: Mapped[int] = mapped_column(
        ForeignKey("battle_polls.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    side: Mapped[str] = mapped_column(String(1))
    justification: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class BattleTimer(Base):
    """A strict timer (a battle phase, a talk, an agenda item; ``commands.timers``); its
    ticks are computed from ``started_at``, so it keeps running across restarts."""

    __tablename__ = "battle_timers"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    #: The battle a phase belongs to (None: a talk or an agenda item).
    battle_id: Mapped[int | None] = mapped_column(ForeignKey("battles.id", ondelete="CASCADE"))
    phase: Mapped[str] = mapped_column(String(16))  # a battle phase's key; "" otherwise
    channel: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    seconds: Mapped[int]
    stopped_at: Mapped[datetime | None]
    #: What is timed (``battle:1``, ``paper:5``, ``agenda:2023-09-13:2``): a new timer
    #: for the same subject replaces the running one.
    subject: Mapped[str | None] = mapped_column(String(100), index=True)
    #: How the ticks name it ("Battle 1, side A presents").
    title: Mapped[str | None] = mapped_column(String(200))
    #: Minutes before the end that warn, and the overrun step, fixed when it started.
    warnings: Mapped[list[Any] | None] = mapped_column(JSON)
    overrun_seconds: Mapped[int | None]


class MessageRef(Base):
    """A message the bot posted under a key (a poll), so it can be edited later; and
    every message that takes reactions, with what its reactions mean (issue #20: the
    one record every adapter routes a reaction through)."""

    __tablename__ = "message_refs"
    __table_args__ = (
        UniqueConstraint("course_id", "key"),
        Index("ix_message_refs_ref", "course_id", "ref"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(100))
    #: The platform's reference (``<channel>:<message>``), as the adapter's ``post`` gave it.
    ref: Mapped[str] = mapped_column(String(200))
    platform: Mapped[str | None] = mapped_column(String(16))
    #: What the message's reactions do (the fields of :class:`commands.replies.Reactions`);
    #: None: reactions on it mean nothing (a closed poll).
    reactions: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# ----------------------------------------------------------------------------- projects,
# grades and announcements (issue #9)


class Project(Base):
    """A course project group (2-3 members; a solo project needs the instructor's
    approval). ``track`` is ``graduate`` or ``undergraduate``."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("course_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    track: Mapped[str] = mapped_column(String(16), default="graduate")
    solo_approved: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class ProjectMember(Base):
    """A student in a project group; one group per student in a course."""

    __tablename__ = "project_members"
    __table_args__ = (UniqueConstraint("course_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    joined_at: Mapped[datetime]


class LookingForGroup(Base):
    """A student's post on the looking-for-group board."""

    __tablename__ = "lfg_posts"
    __table_args__ = (UniqueConstraint("course_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    interests: Mapped[str] = mapped_column(Text, default="")
    posted_at: Mapped[datetime]


class ProjectInstance(Base):
    """Undergraduate track: one success or failure instance of an application."""

    __tablename__ = "project_instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    application: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure
    description: Mapped[str] = mapped_column(Text)
    added_by: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    added_at: Mapped[datetime]


class ProjectSubmission(Base):
    """A group's write-up for a milestone; a resubmission replaces it."""

    __tablename__ = "project_submissions"
    __table_args__ = (UniqueConstraint("project_id", "milestone_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    milestone_id: Mapped[int] = mapped_column(ForeignKey("milestones.id", ondelete="CASCADE"))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    path: Mapped[str] = mapped_column(String(500))
    size: Mapped[int]
    submitted_at: Mapped[datetime]
    late: Mapped[bool] = mapped_column(Boolean, default=False)


class GradeEntry(Base):
    """A recorded grade of one component (a key of ``course.grading``), out of 100."""

    __tablename__ = "grade_entries"
    __table_args__ = (UniqueConstraint("person_id", "component"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    component: Mapped[str] = mapped_column(String(64))
    points: Mapped[float]
    set_by: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime]


class Announcement(Base):
    """An announcement, posted now or at ``post_at``; ``sent_at`` records that it went
    out (so a restart never sends it twice)."""

    __tablename__ = "announcements"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    post_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]


class Critique(Base):
    """A student's critique of a paper: the PDF (a file under the data directory) with one
    discussion question and its answer; a resubmission replaces it. Late or on time is
    computed from ``submitted_at`` and the paper's current deadline, so moving a class
    date re-marks it. ``grade`` is ``pass``, ``fail`` or unset."""

    __tablename__ = "critiques"
    __table_args__ = (UniqueConstraint("paper_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    submitted_at: Mapped[datetime]
    file: Mapped[str] = mapped_column(String(500))  # relative to the data directory
    original_name: Mapped[str] = mapped_column(String(255), default="")
    size: Mapped[int]
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    grade: Mapped[str | None] = mapped_column(String(8))
    graded_at: Mapped[datetime | None]
    graded_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))


class GpuJob(Base):
    """A demo job on the GPU queue: the single source of truth for its state.

    ``state``: queued → running → succeeded | failed | cancelled | expired. The worker
    claims a queued job, beats ``heartbeat_at`` while it runs, and writes the result;
    the bot edits the progress message and posts the result (``posted``) once."""

    __tablename__ = "gpu_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    demo: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    channel: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(100))
    progress: Mapped[float] = mapped_column(default=0.0)
    note: Mapped[str] = mapped_column(String(200), default="")
    shown_progress: Mapped[float] = mapped_column(default=-1.0)
    result_text: Mapped[str | None] = mapped_column(Text)
    result_files: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    posted: Mapped[bool] = mapped_column(Boolean, default=False)


class Discussion(Base):
    """The in-class discussion of a paper: the instructor's compiled questions
    (``draft`` until accepted), then one breakout session (``running`` → ``ended``).
    Its timer posts are computed from ``started_at`` + ``minutes``, so a restart
    resumes them; the groups it made are the pair history later sessions mix against."""

    __tablename__ = "discussions"
    __table_args__ = (UniqueConstraint("course_id", "paper_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="draft")  # draft|accepted|running|ended
    accepted_at: Mapped[datetime | None]
    channel: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime | None]
    minutes: Mapped[int] = mapped_column(Integer, default=30)
    ended_at: Mapped[datetime | None]


class DiscussionQuestion(Base):
    """One question of a discussion's compiled list: proposed from a group of similar
    submitted questions (``sources``: their critique ids) or written by the staff."""

    __tablename__ = "discussion_questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    discussion_id: Mapped[int] = mapped_column(
        ForeignKey("discussions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    sources: Mapped[list[Any]] = mapped_column(default=list)
    edited: Mapped[bool] = mapped_column(Boolean, default=False)


class DiscussionGroup(Base):
    """A breakout group of a running or ended discussion: its members and question. Its
    thread's reference is remembered as the message ref ``discussion:<id>:g<number>``."""

    __tablename__ = "discussion_groups"
    __table_args__ = (UniqueConstraint("discussion_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    discussion_id: Mapped[int] = mapped_column(
        ForeignKey("discussions.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int]
    question: Mapped[str] = mapped_column(Text)
    members: Mapped[list[Any]] = mapped_column(default=list)  # person ids


class DiscussionCheckin(Base):
    """A student who said "I'm here" before a discussion started (attendance)."""

    __tablename__ = "discussion_checkins"
    __table_args__ = (UniqueConstraint("discussion_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    discussion_id: Mapped[int] = mapped_column(
        ForeignKey("discussions.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    at: Mapped[datetime]


class GpuJobFile(Base):
    """A GPU job's file, kept in the database so that a worker on another host reads its
    input and returns its result images without a shared folder: ``input`` (the
    student's attachment, referred to from the job's params as ``db:<id>``) or
    ``output`` (a result image the bot posts)."""

    __tablename__ = "gpu_job_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("gpu_jobs.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(8))  # input | output
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100), default="application/octet-stream")
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


# ----------------------------------------------------------------------------- trust and
# delivery (issues #15, #16)


class OutboxMessage(Base):
    """A message the bot owes someone, written in the transaction of the change that
    causes it (the transactional outbox) and sent by the dispatcher afterwards.

    ``status``: pending → sent | unreachable (the person cannot be reached there: no
    linked account, DMs closed) | failed (kept failing; shown to staff with a retry).
    ``batch`` groups a mass send (an assignment publish) so its delivery can be counted.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: The dispatcher sending it right now (its lease runs to ``next_attempt_at``).
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    #: The platform's reference of what was posted (``<channel>:<message>``).
    ref: Mapped[str | None] = mapped_column(String(200))
    batch: Mapped[str | None] = mapped_column(String(64), index=True)
    #: What to send: the fields of :class:`commands.outbox.Outgoing`, the reply as JSON.
    channel: Mapped[str | None] = mapped_column(String(200))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    remember: Mapped[str | None] = mapped_column(String(100))
    edit_key: Mapped[str | None] = mapped_column(String(100))
    #: An edit whose content is rendered when it is sent (``name:arg`` of a refresher
    #: registered in :mod:`commands.outbox`): a poll's count is never stale.
    refresh: Mapped[str | None] = mapped_column(String(200))
    thread_name: Mapped[str | None] = mapped_column(String(200))
    members: Mapped[list[Any]] = mapped_column(default=list)
    in_thread: Mapped[str | None] = mapped_column(String(100))
    reply: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AuditEntry(Base):
    """One staff action that changed someone else's record: append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    #: Who acted (None: the CLI or the bot itself) and their name at the time.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(200))
    #: What kind of change: ``grade.set``, ``critique.grade``, ``assign.publish``, …
    kind: Mapped[str] = mapped_column(String(40), index=True)
    #: Whose record changed (None for course-wide changes) and their name at the time.
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(String(200), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[dict[str, Any]] = mapped_column(default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str | None] = mapped_column(Text)


# ------------------------------------------------------------------------ registration
# (issue #15: a chat account is linked to a roster entry only with proof)


class RegistrationCode(Base):
    """The one-time code mailed to a roster address for one chat account (one row per
    account: a new request replaces the code but keeps the count of wrong tries).

    Only a salted hash of the code is stored. ``locked_until``: too many wrong tries."""

    __tablename__ = "registration_codes"
    __table_args__ = (UniqueConstraint("course_id", "platform", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    platform: Mapped[Platform] = mapped_column(_enum(Platform, "platform"))
    user_id: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    #: ``salt$sha256(salt:code)``; empty once the code is used up or voided by a lock.
    code_hash: Mapped[str] = mapped_column(String(200), default="")
    sent_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]


class RegistrationRequest(Base):
    """A chat account's request to be linked to a roster entry, for staff to decide
    (where no verified email and no mail server are available).

    ``status``: pending → approved | denied | withdrawn (the account asked again)."""

    __tablename__ = "registration_requests"
    __table_args__ = (Index("ix_registration_requests_open", "course_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    platform: Mapped[Platform] = mapped_column(_enum(Platform, "platform"))
    user_id: Mapped[str] = mapped_column(String(100))
    display_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_at: Mapped[datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)


class InboxEntry(Base):
    """A command the platform delivered and the bot acknowledged, written *before* the
    acknowledgement: done when it has run and its answer was handed over; after a crash
    it is run on restart or its sender is told it was not (never silence)."""

    __tablename__ = "inbox"
    __table_args__ = (UniqueConstraint("platform", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[Platform] = mapped_column(_enum(Platform, "platform"))
    event_id: Mapped[str] = mapped_column(String(200))
    #: What arrived: ``command`` (a slash command), with the platform's payload.
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime]
    done_at: Mapped[datetime | None] = mapped_column(index=True)


# ------------------------------------------------------------------ the instructor's desk
# (issue #23: a web dashboard served by the bot, signed in from chat)


class WebLink(Base):
    """A link the bot handed out in chat: ``signin`` (one use, valid minutes) opens a web
    session. (Calendar links were ``calendar`` rows here until migration 0021 moved them
    to :class:`CalendarToken`.)

    Only the SHA-256 of the link's secret is stored. The link acts as the chat account
    that asked for it (``platform``, ``workspace``, ``user_id``): each use resolves that
    account through the roster again, as the command core does for every command."""

    __tablename__ = "web_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="signin")  # signin
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    platform: Mapped[Platform] = mapped_column(_enum(Platform, "platform"))
    workspace: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    #: When a sign-in link was used (it never works twice).
    used_at: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in browser: the cookie's secret (hashed), its CSRF token, and the chat
    account it acts as. Ends at ``expires_at`` or when signed out (``ended_at``)."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf: Mapped[str] = mapped_column(String(64))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    platform: Mapped[Platform] = mapped_column(_enum(Platform, "platform"))
    workspace: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


# ----------------------------------------------------------------------------- GPU workers
# (issue #21)


class GpuWorker(Base):
    """A GPU worker process as it reports itself: where it runs (host, pid, device, the
    Slurm job holding it), whether it is idle or running a job, when it was last seen
    and, under Slurm, when its allocation ends. Estimates ("starting now") and
    ``coursebot slurm status`` read it; ``state``: idle | busy | stopping | stopped."""

    __tablename__ = "gpu_workers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    host: Mapped[str] = mapped_column(String(200), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    device: Mapped[str] = mapped_column(String(32), default="")
    #: The GPU's memory (0: the CPU, or not known yet): demos too big for it are refused.
    memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    slurm_job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16), default="idle")
    job_id: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]
    jobs_run: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str] = mapped_column(String(200), default="")


from sqlalchemy import CheckConstraint  # noqa: E402  (appended with issue #21)

#: The job state machine's states, checked by the database too (migration 0017; the
#: enum is ``gpu_queue.jobs.JobState``).
GPU_JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "expired")
GpuJob.__table__.append_constraint(  # type: ignore[attr-defined]
    CheckConstraint(f"state IN {GPU_JOB_STATES!r}", name="state")
)


# (issue #19)


class CritiqueMark(Base):
    """A staff decision about a critique that was never submitted: ``missing`` (counted
    as 0) or ``excused`` (not counted). Presenters of a paper are excused from critiquing
    it without a mark. A graded submission wins over a mark."""

    __tablename__ = "critique_marks"
    __table_args__ = (UniqueConstraint("paper_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    mark: Mapped[str] = mapped_column(String(16))  # missing | excused
    set_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    set_at: Mapped[datetime]
    #: Why (``critique excuse`` requires one); shown to the student.
    reason: Mapped[str | None] = mapped_column(String(500))


# (issue #19 point 6: the first lecture's introductions)


class Introduction(Base):
    """A student's introduction (``intro``): the name they go by (None: the roster's),
    what excites them in computer vision and AI, and why they take the course; their
    degree and year are the roster entry's (:class:`Person`). Seen by the student and
    the staff; other students see only the name and a short ``excites`` on the project
    board (``project lfg``). Running ``intro`` again updates it."""

    __tablename__ = "introductions"
    __table_args__ = (UniqueConstraint("person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(100))
    excites: Mapped[str] = mapped_column(Text)
    why: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


# (issue #19 point 4: calendars that stay current)


class CalendarToken(Base):
    """A person's calendar subscription link (``calendar link``): the secret in the URL
    ``/cal/<token>.ics`` that calendar apps poll. Only its SHA-256 is stored. A person
    has at most one live link: a new one revokes the old; ``calendar revoke`` (the
    person, or staff for anyone) ends it, and a revoked link is never served again."""

    __tablename__ = "calendar_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))


class CalendarVersion(Base):
    """What the calendar last served of one event: its content's fingerprint, its
    SEQUENCE and when that content first went out (LAST-MODIFIED and DTSTAMP). A
    changed fingerprint gets the next sequence, so subscribers update the event they
    have instead of adding one.

    Keyed by the course's *key* and the event's UID (both stable across re-imports),
    not by row ids: a course deleted and imported again keeps its events' history, and
    its sequences never go back."""

    __tablename__ = "calendar_versions"
    __table_args__ = (UniqueConstraint("course_key", "uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_key: Mapped[str] = mapped_column(String(64))
    uid: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    modified_at: Mapped[datetime]


# (issue #19, point 3: the gradebook)


class ProjectGrade(Base):
    """A project group's grade for a milestone, out of 100, shared by the members it was
    given to (``members``: their person ids when it was set, so someone who joins or
    leaves later keeps what they earned); a member may have an adjustment."""

    __tablename__ = "project_grades"
    __table_args__ = (UniqueConstraint("project_id", "milestone_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    milestone_id: Mapped[int] = mapped_column(ForeignKey("milestones.id", ondelete="CASCADE"))
    points: Mapped[float]
    members: Mapped[list[Any]] = mapped_column(default=list)
    set_by: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime]


class GradeAdjustment(Base):
    """One student's adjustment (+/- points) of their group's grade for a milestone, with
    the reason (shown to them)."""

    __tablename__ = "grade_adjustments"
    __table_args__ = (UniqueConstraint("person_id", "milestone_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    milestone_id: Mapped[int] = mapped_column(ForeignKey("milestones.id", ondelete="CASCADE"))
    points: Mapped[float]
    reason: Mapped[str] = mapped_column(Text)
    set_by: Mapped[int | None] = mapped_column(ForeignKey("people.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime]
