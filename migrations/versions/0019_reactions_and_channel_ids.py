"""one reaction model and channels bound by id (issue #20): a message that takes
reactions keeps its reaction spec on its message_refs row (with the platform), and each
course binding keeps the platform ids of the course's channels

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("message_refs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("platform", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("reactions", sa.JSON(), nullable=True))
        batch_op.create_index("ix_message_refs_ref", ["course_id", "ref"], unique=False)

    with op.batch_alter_table("course_bindings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channels", sa.JSON(), server_default="{}", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("course_bindings", schema=None) as batch_op:
        batch_op.drop_column("channels")

    with op.batch_alter_table("message_refs", schema=None) as batch_op:
        batch_op.drop_index("ix_message_refs_ref")
        batch_op.drop_column("reactions")
        batch_op.drop_column("platform")
