"""procrastinate's schema (the scale-out GPU queue), on Postgres only

The GPU job rows (``gpu_jobs``) stay the single source of truth; procrastinate only
carries "run job <id>" to workers on GPU hosts (``gpu_queue/procrastinate_app.py``).
This revision installs the schema that the installed procrastinate (3.x) ships
(``procrastinate/sql/schema.sql``), in the same transaction as Alembic's bookkeeping.
On SQLite it does nothing: the embedded worker claims rows directly there.

A later procrastinate release that changes its schema gets its own revision applying
that release's files from ``procrastinate/sql/migrations``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Drops every object whose name starts with ``procrastinate_`` (tables, functions, types).
_DROP = r"""
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT tablename FROM pg_tables
             WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate\_%'
    LOOP EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename); END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\_%'
    LOOP EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.sig); END LOOP;
    FOR r IN SELECT t.typname FROM pg_type t
             JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\_%'
               AND t.typtype IN ('e', 'c')
    LOOP EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname); END LOOP;
END
$$;
"""


def _run_script(sql: str) -> None:
    """Run a multi-statement script on the migration's connection (and transaction).

    asyncpg prepares each ``execute`` with parameters, which allows one statement only;
    its plain ``Connection.execute(script)`` takes a whole script, so the raw driver
    connection runs it (awaited from Alembic's synchronous context by SQLAlchemy)."""
    from sqlalchemy.util import await_only

    bind = op.get_bind()
    raw = bind.connection.dbapi_connection
    driver = getattr(raw, "driver_connection", None)
    if driver is not None and bind.dialect.driver == "asyncpg":
        # The SQLAlchemy adapter opens its transaction lazily: make sure it is open, so
        # the script runs inside Alembic's transaction.
        bind.exec_driver_sql("SELECT 1")
        await_only(driver.execute(sql))
    else:  # a synchronous driver (psycopg) runs scripts as one statement
        bind.exec_driver_sql(sql.replace("%", "%%"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: the GPU queue claims rows directly
    from procrastinate.schema import SchemaManager

    _run_script(SchemaManager.get_schema())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _run_script(_DROP)
