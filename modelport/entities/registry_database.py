"""The embedded MLflow registry's tables in PostgreSQL: their schema, created once for all servers.

With a PostgreSQL store (``--store postgresql://...``) the embedded registry keeps its tables in
the schema :data:`~modelport.config.MLFLOW_SCHEMA` of the same database, selected through the
connection's ``search_path`` (``Settings.mlflow_backend_uri``): MLflow's SQLAlchemy stores and
its Alembic migrations only ever see that schema, so its ``alembic_version`` (and its own
``secrets`` and ``endpoints`` tables) never meet modelport's, in ``public``.

:func:`prepare_postgresql` creates the schema and MLflow's tables under a transaction-level
advisory lock: servers that start together on a fresh database do it one at a time, and the
lock needs no session state (it works through a transaction-mode connection pooler).
"""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from modelport.config import MLFLOW_SCHEMA
from modelport.errors import ModelportError

__all__ = ["REGISTRY_LOCK_KEY", "has_registry_tables", "prepare_postgresql"]

#: The advisory-lock key that serializes creating and migrating the registry's schema
#: (an arbitrary constant: ``'mlflow_sch'`` read as a number).
REGISTRY_LOCK_KEY = 0x6D6C_666C_6F77_5F73


def has_registry_tables(url: str) -> bool:
    """Whether the PostgreSQL database of ``url`` holds MLflow's tables in the registry's schema."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return "experiments" in inspect(conn).get_table_names(schema=MLFLOW_SCHEMA)
    finally:
        engine.dispose()


def prepare_postgresql(url: str) -> None:
    """Create the registry's schema and MLflow's tables in it (migrated to MLflow's head) unless
    they are there; idempotent, and safe when several servers run it at once (blocking)."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    engine = create_engine(url, poolclass=NullPool)
    try:
        # The lock is held by this transaction while the schema is made on other connections
        # (committed at once, so that MLflow's own connections see it), and released at its end.
        with engine.begin() as lock:
            lock.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": REGISTRY_LOCK_KEY})
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{MLFLOW_SCHEMA}"'))
                schema = conn.execute(text("SELECT current_schema()")).scalar()
            if schema != MLFLOW_SCHEMA:
                # A pooler that drops the connection's options would let MLflow into public.
                raise ModelportError(
                    f"the embedded registry's connections use the schema {schema}, not "
                    f"{MLFLOW_SCHEMA}: the search_path of the URL's options was not applied (a "
                    "connection pooler in between must pass it: PgBouncer's track_extra_parameters "
                    "= search_path)."
                )
            # Building the stores creates and migrates the tables (and the Default experiment).
            for store in (TrackingStore(url, "mlflow-artifacts:/"), RegistryStore(url)):
                store.engine.dispose()
    finally:
        engine.dispose()
