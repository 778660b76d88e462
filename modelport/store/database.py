"""Opening the metadata database: engine set-up, SQLite pragmas, Alembic migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import NullPool

from modelport.store import schema
from modelport.store.changes import ChangeCounter
from modelport.store.endpoints import EndpointRepository
from modelport.store.events import EventRepository
from modelport.store.grants import DigestRepository, GrantRepository
from modelport.store.leases import LeaseRepository
from modelport.store.principals import PrincipalRepository
from modelport.store.processes import ProcessRepository
from modelport.store.replays import ReplayRepository
from modelport.store.replicas import ReplicaRepository
from modelport.store.rollouts import RolloutRepository
from modelport.store.secrets import SecretRepository

__all__ = ["SCHEMA_HEAD", "Database", "normalize_url", "open_database"]

_MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest migration's revision. A test checks it against Alembic's head, so a new
#: migration must update it; it lets a start-up on a current schema skip importing Alembic.
SCHEMA_HEAD = "0008"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (psycopg2 is not a dependency)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers run beside the writer; FULL makes each commit survive a kill -9 and a
    # power cut (metadata writes are rare, so the extra fsync costs nothing that matters).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Database:
    """The metadata store: one engine and the repositories built on it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.endpoints = EndpointRepository(engine)
        self.principals = PrincipalRepository(engine)
        self.secrets = SecretRepository(engine)
        self.grants = GrantRepository(engine)
        self.digests = DigestRepository(engine)
        self.leases = LeaseRepository(engine)
        self.replicas = ReplicaRepository(engine)
        self.changes = ChangeCounter(engine)
        self.processes = ProcessRepository(engine)
        self.events = EventRepository(engine)
        self.rollouts = RolloutRepository(engine)
        self.replays = ReplayRepository(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def revision(self) -> str | None:
        """The schema revision recorded in the database, None if it has none."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:
            return None

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        if self.revision() == SCHEMA_HEAD:
            return
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Servers started together on a new database take turns (the second finds the
                # schema current); a transaction lock, released at commit, works through poolers.
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('modelport-migrate'))"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def meta_get(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == key)).first()
        return None if row is None else str(row[0])

    def meta_setdefault(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless one is there; return what is stored."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(schema.meta).values(key=key, value=value))
            return value
        except IntegrityError:
            stored = self.meta_get(key)
            assert stored is not None
            return stored

    def meta_set(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing what is there."""
        with self.engine.begin() as conn:
            if not conn.execute(
                update(schema.meta).where(schema.meta.c.key == key).values(value=value)
            ).rowcount:
                conn.execute(insert(schema.meta).values(key=key, value=value))

    def close(self) -> None:
        self.engine.dispose()


def open_database(url: str, *, migrate: bool = True) -> Database:
    """Connect to ``url`` (``sqlite:///path`` or ``postgresql://...``) and migrate the schema."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, poolclass=NullPool, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        # No server-side prepared statements (psycopg prepares a query after 5 runs): through a
        # transaction-mode pooler (PgBouncer before 1.21) the next run may land on a server
        # connection that lacks it, or has one of the same name ("_pg3_0 already exists").
        # The store's queries are short and few; planning them each time costs little.
        engine = create_engine(
            url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args={"prepare_threshold": None}
        )
    db = Database(engine)
    if migrate:
        db.migrate()
    return db
