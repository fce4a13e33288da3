"""the course as it really runs (issue #19): the syllabus on courses, given and family
names, battle labels/themes/start times/phases, one timers engine, critique marks

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Titles of the fixed battle phases before phases came from the course file.
OLD_PHASES = {
    "a": "side A presents",
    "b": "side B presents",
    "reasons": "3 reasons",
    "rebuttal": "rebuttal",
}


def upgrade() -> None:
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("syllabus", sa.JSON(), server_default="{}", nullable=False))

    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.add_column(sa.Column("given_name", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("family_name", sa.String(length=100), nullable=True))

    with op.batch_alter_table("battles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("theme", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("start_time", sa.Time(), nullable=True))
        batch_op.add_column(sa.Column("phases", sa.JSON(), nullable=True))

    # One engine times battle phases, talks and agenda items: the timer says what it
    # times (subject) and how its posts name it (title).
    with op.batch_alter_table("battle_timers", schema=None) as batch_op:
        batch_op.alter_column("battle_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("subject", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("title", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("warnings", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("overrun_seconds", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_battle_timers_subject"), ["subject"], unique=False)
    number = "(SELECT battles.number FROM battles WHERE battles.id = battle_timers.battle_id)"
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in OLD_PHASES.items())
    op.execute(
        f"UPDATE battle_timers SET subject = 'battle:' || CAST({number} AS VARCHAR), "
        f"title = 'Battle ' || CAST({number} AS VARCHAR) || ', ' || "
        f"CASE phase {cases} ELSE phase END WHERE battle_id IS NOT NULL"
    )

    op.create_table(
        "critique_marks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("mark", sa.String(length=16), nullable=False),
        sa.Column("set_by_id", sa.Integer(), nullable=True),
        sa.Column("set_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["courses.id"],
            name=op.f("fk_critique_marks_course_id_courses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["paper_id"],
            ["papers.id"],
            name=op.f("fk_critique_marks_paper_id_papers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_critique_marks_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["set_by_id"],
            ["people.id"],
            name=op.f("fk_critique_marks_set_by_id_people"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_critique_marks")),
        sa.UniqueConstraint(
            "paper_id", "person_id", name=op.f("uq_critique_marks_paper_id_person_id")
        ),
    )
    with op.batch_alter_table("critique_marks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_critique_marks_course_id"), ["course_id"])
        batch_op.create_index(batch_op.f("ix_critique_marks_paper_id"), ["paper_id"])
        batch_op.create_index(batch_op.f("ix_critique_marks_person_id"), ["person_id"])


def downgrade() -> None:
    with op.batch_alter_table("critique_marks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_critique_marks_person_id"))
        batch_op.drop_index(batch_op.f("ix_critique_marks_paper_id"))
        batch_op.drop_index(batch_op.f("ix_critique_marks_course_id"))
    op.drop_table("critique_marks")

    # Timers of talks and agenda items have no battle: they go with the engine.
    op.execute("DELETE FROM battle_timers WHERE battle_id IS NULL")
    with op.batch_alter_table("battle_timers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_battle_timers_subject"))
        batch_op.drop_column("overrun_seconds")
        batch_op.drop_column("warnings")
        batch_op.drop_column("title")
        batch_op.drop_column("subject")
        batch_op.alter_column("battle_id", existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table("battles", schema=None) as batch_op:
        batch_op.drop_column("phases")
        batch_op.drop_column("start_time")
        batch_op.drop_column("theme")
        batch_op.drop_column("label")

    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_column("family_name")
        batch_op.drop_column("given_name")

    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_column("syllabus")
