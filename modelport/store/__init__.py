"""Desired state: SQLAlchemy tables, repositories and Alembic migrations (SQLite, PostgreSQL)."""

from modelport.store.database import Database, open_database

__all__ = ["Database", "open_database"]
