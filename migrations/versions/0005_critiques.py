"""critiques: one PDF + question + answer per student and paper, with a pass/fail grade

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 16:00:16.255273
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "critiques",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("submitted_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("file", sa.String(length=500), nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("grade", sa.String(length=8), nullable=True),
        sa.Column("graded_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("graded_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["courses.id"],
            name=op.f("fk_critiques_course_id_courses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["graded_by_id"],
            ["people.id"],
            name=op.f("fk_critiques_graded_by_id_people"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["paper_id"],
            ["papers.id"],
            name=op.f("fk_critiques_paper_id_papers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_critiques_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_critiques")),
        sa.UniqueConstraint("paper_id", "person_id", name=op.f("uq_critiques_paper_id_person_id")),
    )
    with op.batch_alter_table("critiques", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_critiques_course_id"), ["course_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_critiques_paper_id"), ["paper_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_critiques_person_id"), ["person_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("critiques", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_critiques_person_id"))
        batch_op.drop_index(batch_op.f("ix_critiques_paper_id"))
        batch_op.drop_index(batch_op.f("ix_critiques_course_id"))

    op.drop_table("critiques")
