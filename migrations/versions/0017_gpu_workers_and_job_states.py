"""gpu workers and job states: the workers' own rows; gpu_jobs.state checked (issue #21)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "expired")


def upgrade() -> None:
    op.create_table(
        "gpu_workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=False),
        sa.Column("memory_mib", sa.Integer(), nullable=False),
        sa.Column("slurm_job_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("started_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("jobs_run", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpu_workers")),
        sa.UniqueConstraint("name", name=op.f("uq_gpu_workers_name")),
    )
    with op.batch_alter_table("gpu_workers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gpu_workers_seen_at"), ["seen_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_gpu_workers_slurm_job_id"), ["slurm_job_id"], unique=False
        )
    # Rows written before the state machine hold only these values; anything else would
    # be a bug, and the constraint keeps it out from now on.
    with op.batch_alter_table("gpu_jobs", schema=None) as batch_op:
        batch_op.create_check_constraint(op.f("ck_gpu_jobs_state"), f"state IN {STATES!r}")


def downgrade() -> None:
    with op.batch_alter_table("gpu_jobs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_gpu_jobs_state"), type_="check")
    with op.batch_alter_table("gpu_workers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gpu_workers_slurm_job_id"))
        batch_op.drop_index(batch_op.f("ix_gpu_workers_seen_at"))
    op.drop_table("gpu_workers")
