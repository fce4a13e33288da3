"""calendar tokens and event versions (issue #19 point 4): personal subscription links
to a calendar feed (only their hashes), revocable; and what the calendar last served of
each event (fingerprint, SEQUENCE, LAST-MODIFIED), so subscribed calendars update
events instead of duplicating them.

The desk's calendar links (``web_links`` of kind ``calendar``, migration 0016) move
here: both store the SHA-256 of the same secret, so a live link keeps working; the old
rows are marked used (and pruned a day later). A downgrade gives the links that came
from there back to ``web_links``; links made after the upgrade have no chat account to
go back with and end.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_web_links = sa.table(
    "web_links",
    sa.column("token_hash", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("course_id", sa.Integer()),
    sa.column("person_id", sa.Integer()),
    sa.column("created_at", db.types.UTCDateTime()),
    sa.column("used_at", db.types.UTCDateTime()),
)
_tokens = sa.table(
    "calendar_tokens",
    sa.column("token_hash", sa.String()),
    sa.column("course_id", sa.Integer()),
    sa.column("person_id", sa.Integer()),
    sa.column("created_at", db.types.UTCDateTime()),
    sa.column("revoked_at", db.types.UTCDateTime()),
)


def upgrade() -> None:
    op.create_table(
        "calendar_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("course_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("created_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["course_id"],
            ["courses.id"],
            name=op.f("fk_calendar_tokens_course_id_courses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_calendar_tokens_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by_id"],
            ["people.id"],
            name=op.f("fk_calendar_tokens_revoked_by_id_people"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_calendar_tokens_token_hash")),
    )
    with op.batch_alter_table("calendar_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_calendar_tokens_course_id"), ["course_id"])
        batch_op.create_index(batch_op.f("ix_calendar_tokens_person_id"), ["person_id"])

    op.create_table(
        "calendar_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("course_key", sa.String(length=64), nullable=False),
        sa.Column("uid", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("modified_at", db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_versions")),
        sa.UniqueConstraint("course_key", "uid", name=op.f("uq_calendar_versions_course_key_uid")),
    )

    # The desk's live calendar links become calendar tokens (the same secrets' hashes).
    now = datetime.now(UTC)
    live = sa.and_(_web_links.c.kind == "calendar", _web_links.c.used_at.is_(None))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            _web_links.c.token_hash,
            _web_links.c.course_id,
            _web_links.c.person_id,
            _web_links.c.created_at,
        ).where(live)
    ).all()
    if rows:
        bind.execute(sa.insert(_tokens), [dict(r._mapping) for r in rows])
        bind.execute(sa.update(_web_links).where(live).values(used_at=now))


def downgrade() -> None:
    bind = op.get_bind()
    live = [
        r.token_hash
        for r in bind.execute(sa.select(_tokens.c.token_hash).where(_tokens.c.revoked_at.is_(None)))
    ]
    if live:
        bind.execute(
            sa.update(_web_links)
            .where(_web_links.c.kind == "calendar", _web_links.c.token_hash.in_(live))
            .values(used_at=None)
        )
    op.drop_table("calendar_versions")
    with op.batch_alter_table("calendar_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calendar_tokens_person_id"))
        batch_op.drop_index(batch_op.f("ix_calendar_tokens_course_id"))
    op.drop_table("calendar_tokens")
