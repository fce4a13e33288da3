"""a gradebook that is right (issue #19, point 3): project grades per group and
milestone, each member's adjustments, and the reason a critique was excused

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _course_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["course_id"],
        ["courses.id"],
        name=op.f(f"fk_{table}_course_id_courses"),
        ondelete="CASCADE",
    )


def _set_by_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["set_by"], ["people.id"], name=op.f(f"fk_{table}_set_by_people"), ondelete="SET NULL"
    )


def _milestone_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["milestone_id"],
        ["milestones.id"],
        name=op.f(f"fk_{table}_milestone_id_milestones"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "project_grades",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("milestone_id", sa.Integer(), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("set_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", db.types.UTCDateTime(timezone=True), nullable=False),
        _course_fk("project_grades"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_grades_project_id_projects"),
            ondelete="CASCADE",
        ),
        _milestone_fk("project_grades"),
        _set_by_fk("project_grades"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_grades")),
        sa.UniqueConstraint(
            "project_id", "milestone_id", name=op.f("uq_project_grades_project_id_milestone_id")
        ),
    )
    with op.batch_alter_table("project_grades", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_project_grades_course_id"), ["course_id"])
        batch_op.create_index(batch_op.f("ix_project_grades_project_id"), ["project_id"])

    op.create_table(
        "grade_adjustments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("milestone_id", sa.Integer(), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", db.types.UTCDateTime(timezone=True), nullable=False),
        _course_fk("grade_adjustments"),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_grade_adjustments_person_id_people"),
            ondelete="CASCADE",
        ),
        _milestone_fk("grade_adjustments"),
        _set_by_fk("grade_adjustments"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grade_adjustments")),
        sa.UniqueConstraint(
            "person_id", "milestone_id", name=op.f("uq_grade_adjustments_person_id_milestone_id")
        ),
    )
    with op.batch_alter_table("grade_adjustments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grade_adjustments_course_id"), ["course_id"])

    with op.batch_alter_table("critique_marks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("critique_marks", schema=None) as batch_op:
        batch_op.drop_column("reason")

    with op.batch_alter_table("grade_adjustments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grade_adjustments_course_id"))
    op.drop_table("grade_adjustments")

    with op.batch_alter_table("project_grades", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_grades_project_id"))
        batch_op.drop_index(batch_op.f("ix_project_grades_course_id"))
    op.drop_table("project_grades")
