"""Alembic migrations for coursebot (shipped with the package)."""
