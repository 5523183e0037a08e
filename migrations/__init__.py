"""Alembic migrations: one chain for PostgreSQL and SQLite (batch mode keeps ALTERs portable)."""
