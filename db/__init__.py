"""Database layer: SQLAlchemy 2.0 typed models, async sessions, Alembic migrations."""
