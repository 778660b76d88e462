"""Moving a single-machine installation to PostgreSQL and a shared artifacts folder (``modelport migrate``).

What moves, from a data directory whose servers are stopped:

- **The store**: every row of every table of :mod:`modelport.store.schema` (ids, the ``meta`` rows
  with the workspace id and the secrets key check, hashed tokens, encrypted secrets as they are),
  in foreign-key order, into the target database's ``public`` schema. The state of processes
  (``leases``, ``replicas``, ``replica_wakes``, ``processes``) is not moved: none of them survives.
- **The embedded registry**: every row of MLflow's tables in ``<data-dir>/mlflow.db`` into the
  target's schema :data:`~modelport.config.MLFLOW_SCHEMA`. MLflow has no export between
  databases that keeps ids (``mlflow-export-import`` recreates experiments and runs through the
  REST API with new ids, and the artifact folders are named by those ids), so rows are copied
  table by table, each side first brought to MLflow's current schema by MLflow's own migrations
  (the source on a copy): both then have the same tables and columns, which is checked.
  Locations that name the old artifacts folder itself (``file:`` URIs, absolute paths) are
  rewritten to the new one; the usual ``mlflow-artifacts:/...`` ones are relative to the
  artifacts root and stay as they are.
- **The artifacts**: ``<data-dir>/artifacts`` is copied to ``--artifacts-root`` (when given),
  links as links. Sealed folders and content digests need no rewriting: both are found from
  the registry's rows and the artifacts root at start.

Guarantees: the source is never changed (its databases are read through copies made with
SQLite's backup API); the data directory is held (the spool's lock) for the whole run, so no
server starts on it meanwhile; a target that holds modelport or registry data is refused; all
rows are written in one transaction, after the artifacts were copied and compared, so a failed
run leaves the target's tables empty and may be run again. Afterwards the row counts of every
table, the digest of the artifacts on both sides, each registered version's files against its
recorded digest, and the secrets against the configured key are checked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import JSON, Column, Connection, MetaData, Table, create_engine, func, inspect, select, text
from sqlalchemy import column as raw_column
from sqlalchemy import table as raw_table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import sqltypes

from modelport.config import MLFLOW_SCHEMA, Settings
from modelport.control.cipher import KEY_FILE, SecretsKeyError, load_cipher
from modelport.entities.model_digest import digest_of
from modelport.errors import (
    InvalidParameterValue,
    InvalidState,
    ModelportError,
    ResourceConflict,
    ResourceDoesNotExist,
    TemporarilyUnavailable,
)
from modelport.store import Database, open_database
from modelport.store import schema as store_schema
from modelport.store.database import normalize_url
from modelport.store.leases import RECONCILER_LEASE
from modelport.tables.spool import Spool

__all__ = ["MigrationSummary", "migrate"]

#: Store tables that hold the state of running processes: not moved.
RUNTIME_TABLES = frozenset({"leases", "replicas", "replica_wakes", "processes"})
#: Store tables whose rows the migrations create: an empty target may hold them.
SEEDED_TABLES = frozenset({"store_changes"})
#: Registry tables with rows in a registry nobody used yet (MLflow's migrations and its
#: Default experiment make them).
_REGISTRY_USED = ("runs", "registered_models", "model_versions", "logged_models")
_BATCH = 500

Report = Callable[[str], None]


@dataclass
class MigrationSummary:
    """What a run moved and checked."""

    store_rows: dict[str, int] = field(default_factory=dict)
    registry_rows: dict[str, int] = field(default_factory=dict)
    locations_rewritten: int = 0
    artifact_files: int = 0
    artifacts_digest: str | None = None
    digests_checked: int = 0
    secrets_checked: int = 0


def _shown(url: str) -> str:
    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True)
    except Exception:  # not a URL: only what follows its last '@', so no credentials are shown
        return url.rsplit("@", 1)[-1]


def _first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]


# ---- holding the data directory, reading the source through copies ------------------------------
@contextlib.contextmanager
def _held(settings: Settings) -> Iterator[None]:
    """Hold the data directory as a server does (its spool's lock) for the whole run."""
    spool = Spool(settings.spool_path)
    try:
        spool.open()
    except InvalidState:
        raise ResourceConflict(
            f"the data directory {settings.data_path} is in use by a modelport server; stop it "
            "(and every server on it) before migrating."
        ) from None
    try:
        yield
    finally:
        spool.close()


def _snapshot(database: Path, folder: Path) -> Path:
    """A consistent copy of the SQLite database ``database`` (its WAL included) in ``folder``."""
    copy = folder / database.name
    source = sqlite3.connect(f"file:{quote(str(database))}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return copy


def _upgrade_registry_copy(url: str) -> str:
    """Bring a copy of an MLflow database to MLflow's current schema; return its revision."""
    from mlflow.store.db.utils import _get_schema_version, _upgrade_db  # what `mlflow db upgrade` runs

    engine = create_engine(url, poolclass=NullPool)
    try:
        _upgrade_db(engine)
        return str(_get_schema_version(engine))
    finally:
        engine.dispose()


# ---- checks of the target ------------------------------------------------------------------------
def _count(conn: Connection, table: Table | Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _check_target(db: Database, *, store_rows: bool, registry_url: str) -> None:
    """Refuse a target that a server is using or that holds modelport or registry data."""
    with db.engine.connect() as conn:
        present = set(inspect(conn).get_table_names())
        registry_tables = set(inspect(conn).get_table_names(schema=MLFLOW_SCHEMA))
    if "leases" in present:
        lease = db.leases.current(RECONCILER_LEASE)
        if lease is not None and not lease.expired:
            raise ResourceConflict(
                f"a modelport server ({lease.holder}) holds the reconciler lease on the target "
                "database; stop every server that uses it before migrating."
            )
    if store_rows:
        with db.engine.connect() as conn:
            held = {
                t.name: n
                for t in store_schema.metadata.sorted_tables
                if t.name in present
                and t.name not in SEEDED_TABLES | RUNTIME_TABLES
                and (n := _count(conn, t))
            }
        if held:
            found = ", ".join(f"{n} in {name}" for name, n in held.items())
            raise ResourceConflict(
                f"the target database already holds modelport data ({found}); migrate into an empty database."
            )
    if registry_tables:
        engine = create_engine(registry_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                used = {
                    name: n
                    for name in _REGISTRY_USED
                    if name in registry_tables and (n := _count(conn, raw_table(name)))
                }
                if "experiments" in registry_tables:
                    other = text("SELECT count(*) FROM experiments WHERE experiment_id <> 0")
                    if n := int(conn.execute(other).scalar_one()):
                        used["experiments"] = n
        finally:
            engine.dispose()
        if used:
            found = ", ".join(f"{n} in {name}" for name, n in used.items())
            raise ResourceConflict(
                f"the target database's schema {MLFLOW_SCHEMA} already holds a registry ({found}); "
                "migrate into an empty database."
            )


# ---- copying rows ----------------------------------------------------------------------------------
def _insert_type(kind: Any) -> Any:
    # JSON columns: a SQL NULL stays NULL and a JSON null stays JSON null (see _coerce).
    return JSON(none_as_null=True) if isinstance(kind, sqltypes.JSON) else kind


def _coerce(value: Any, kind: Any) -> Any:
    """A value as SQLite returns it, as the target column's type takes it."""
    if value is None:
        return None
    if isinstance(kind, sqltypes.JSON):
        parsed = json.loads(value) if isinstance(value, str | bytes) else value
        return JSON.NULL if parsed is None else parsed
    if isinstance(kind, sqltypes.Boolean):
        return value.strip().lower() in ("1", "t", "true") if isinstance(value, str) else bool(value)
    if isinstance(kind, sqltypes.DateTime) and isinstance(value, str):
        return datetime.datetime.fromisoformat(value)
    if isinstance(kind, sqltypes.Date) and isinstance(value, str):
        return datetime.date.fromisoformat(value[:10])
    if isinstance(kind, sqltypes.LargeBinary) and not isinstance(value, bytes):
        return value.encode() if isinstance(value, str) else bytes(value)
    if isinstance(kind, sqltypes.String) and not isinstance(value, str):
        return value.decode() if isinstance(value, bytes) else str(value)
    return value


def _copy_table(
    source: Connection, target: Connection, into: Table, rewrite: Callable[[str], str] | None = None
) -> tuple[int, int]:
    """Copy every row of the source's table of ``into``'s name into ``into``; (rows, rewritten)."""
    names = [c.name for c in into.columns]
    found = {c["name"] for c in inspect(source).get_columns(into.name)}
    if found != set(names):
        raise InvalidState(
            f"table {into.name} has other columns in the source ({', '.join(sorted(found ^ set(names)))} "
            "differ) although both sides were migrated to the same schema; nothing was written."
        )
    writer = Table(
        into.name,
        MetaData(),
        *(Column(c.name, _insert_type(c.type)) for c in into.columns),
        schema=into.schema,
    )
    kinds = {c.name: c.type for c in into.columns}
    strings = [n for n in names if isinstance(kinds[n], sqltypes.String)]
    rows = rewritten = 0
    result = source.execute(select(*(raw_column(n) for n in names)).select_from(raw_table(into.name)))
    while batch := result.fetchmany(_BATCH):
        values = [{n: _coerce(v, kinds[n]) for n, v in zip(names, row, strict=True)} for row in batch]
        if rewrite is not None:
            for value in values:
                for name in strings:
                    if isinstance(value[name], str) and (new := rewrite(value[name])) != value[name]:
                        value[name] = new
                        rewritten += 1
        target.execute(writer.insert(), values)
        rows += len(values)
    return rows, rewritten


def _reset_sequences(conn: Connection, schema_name: str) -> None:
    """Move each serial column's sequence past the ids that were inserted with their values."""
    found = conn.execute(
        text(
            "SELECT table_name, column_name, pg_get_serial_sequence(format('%I.%I', table_schema, "
            "table_name), column_name) FROM information_schema.columns WHERE table_schema = :s "
            "AND (column_default LIKE 'nextval(%' OR is_identity = 'YES')"
        ),
        {"s": schema_name},
    ).all()
    for table_name, column_name, sequence in found:
        if sequence is None:
            continue
        conn.execute(
            text(
                f'SELECT setval(:seq, COALESCE((SELECT max("{column_name}") FROM '
                f'"{schema_name}"."{table_name}"), 0) + 1, false)'
            ),
            {"seq": sequence},
        )


def _prefix_rewriter(old: Path, new: Path) -> Callable[[str], str]:
    forms = [(f"file://{old}", f"file://{new}"), (f"file:{old}", f"file:{new}"), (str(old), str(new))]

    def rewrite(value: str) -> str:
        for before, after in forms:
            if value == before or value.startswith(before + "/"):
                return after + value[len(before) :]
        return value

    return rewrite


# ---- the artifacts ----------------------------------------------------------------------------------
def _copy_artifacts(source: Path, target: Path, report: Report, summary: MigrationSummary) -> None:
    """Copy the artifacts folder (links as links) and compare the digests of both sides."""
    digest = digest_of(source)
    if target.exists() and any(target.iterdir()):
        if digest_of(target) != digest:
            raise ResourceConflict(
                f"--artifacts-root {target} is not empty and does not hold a copy of {source}; "
                "give an empty folder (or one that does not exist)."
            )
        report(f"artifacts  {target} holds a copy of {source} already ({digest})")
    else:
        report(f"artifacts  copying {source} to {target} ...")
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
        copied = digest_of(target)
        if copied != digest:
            raise ModelportError(
                f"the copy of the artifacts in {target} differs from {source} ({copied} != {digest}); "
                "nothing was written to the database."
            )
    summary.artifact_files = sum(1 for p in target.rglob("*") if p.is_file() or p.is_symlink())
    summary.artifacts_digest = digest
    report(f"artifacts  {summary.artifact_files} files, digest {digest} on both sides")


# ---- the checks afterwards ----------------------------------------------------------------------------
def _check_digests(db: Database, registry_url: str, artifacts: Path, report: Report) -> int:
    """Compare each registered version's files, found through the moved registry, with its digest."""
    versions = sorted(db.digests.versions())
    if not versions:
        return 0
    from modelport.entities.registry import ModelRegistry

    registry = ModelRegistry(registry_url, artifact_destination=artifacts)
    for name, version in versions:
        recorded = db.digests.get(name, version)
        assert recorded is not None
        try:
            folder = registry.local_path(registry.storage_uri(name, str(version)))
        except Exception as exc:  # a version whose source is gone (it was before the move)
            report(f"warning    model '{name}' version {version}: files not found ({_first_line(exc)})")
            continue
        if folder is None:
            continue
        if not folder.is_dir():
            raise ModelportError(f"model '{name}' version {version}: no folder at {folder} after the move.")
        if digest_of(folder) != recorded[0]:
            report(
                f"warning    model '{name}' version {version}: its files differ from the digest "
                "recorded at registration (as they did before the move: the copy is exact); "
                "servers refuse to load it"
            )
    return len(versions)


def _check_secrets(source: Settings, snapshot: Database, db: Database, report: Report) -> int:
    """Decrypt every moved secret with the key the source's servers use."""
    with db.engine.connect() as conn:
        values = [row[0] for row in conn.execute(select(store_schema.secrets.c.value))]
    key_file = source.data_path / KEY_FILE
    if not source.secrets_key and not key_file.exists():
        if values:
            report("warning    no secrets key here (MODELPORT_SECRETS_KEY, secrets.key): secrets not checked")
        return 0
    try:
        cipher = load_cipher(source.secrets_key, source.data_path, snapshot)
    except SecretsKeyError as exc:
        raise ModelportError(f"the secrets cannot be checked: {exc}") from None
    failed = sum(1 for value in values if cipher.try_decrypt(bytes(value)) is None)
    if failed:
        raise ModelportError(
            f"{failed} of {len(values)} moved secrets do not decrypt with the configured key."
        )
    if not source.secrets_key:
        report(
            f"note       secrets are encrypted with the key in {key_file}: give every server on the "
            "new store that key (MODELPORT_SECRETS_KEY), or they refuse to start"
        )
    return len(values)


# ---- the whole run ---------------------------------------------------------------------------------
def migrate(source: Settings, to: str, artifacts_root: str = "", report: Report = print) -> MigrationSummary:
    """Move the installation ``source`` describes (its data directory; its store, the data
    directory's SQLite unless ``source.store`` says otherwise) to the PostgreSQL database ``to``
    and the artifacts folder ``artifacts_root`` (empty: they stay in the data directory). When
    ``source.store`` is ``to`` already, only the registry and the artifacts move.

    Blocking; ``report`` gets one line per step. Raises :class:`ModelportError` subclasses:
    ``ResourceConflict`` when a server holds the data directory or the target holds data,
    ``InvalidParameterValue`` for a target that is not PostgreSQL or an artifacts folder inside
    the old one, ``ResourceDoesNotExist`` when there is no store to move,
    ``TemporarilyUnavailable`` when the target cannot be reached.
    """
    target = dataclasses.replace(source, store=to, artifacts_root=artifacts_root)
    if not target.store_is_postgresql:
        raise InvalidParameterValue(
            f"--to must be a PostgreSQL URL (postgresql://user@host:5432/db), not {_shown(to)}."
        )
    same_store = source.store_is_postgresql and normalize_url(source.store) == normalize_url(to)
    if source.store and not same_store and not source.store.startswith("sqlite"):
        raise InvalidParameterValue(
            f"the store {_shown(source.store)} is a PostgreSQL database already: copy it with "
            "pg_dump, or give --to the same URL to move only the registry and the artifacts."
        )
    store_file = None if same_store else Path(source.store_url.split("///", 1)[-1])
    if store_file is not None and not store_file.is_file():
        raise ResourceDoesNotExist(f"no modelport store at {store_file}: nothing to migrate (--data-dir?).")
    old, new = source.data_path / "artifacts", target.artifacts_path
    if old != new and (new.is_relative_to(old) or old.is_relative_to(new)):
        raise InvalidParameterValue(f"--artifacts-root {new} must be neither inside {old} nor above it.")
    with _held(source), tempfile.TemporaryDirectory(prefix="modelport-migrate-") as tmp:
        report(f"migrating  {source.data_path} to {_shown(to)}")
        db = open_database(to, migrate=False)
        try:
            try:
                with db.engine.connect():
                    pass
            except DBAPIError as exc:
                raise TemporarilyUnavailable(f"cannot connect to {_shown(to)}: {_first_line(exc)}") from None
            _check_target(db, store_rows=not same_store, registry_url=target.mlflow_backend_uri)
            return _Migration(source, target, db, Path(tmp), store_file, report).run()
        except SQLAlchemyError as exc:
            raise ModelportError(f"the migration failed, nothing was written: {_first_line(exc)}") from None
        finally:
            db.close()


class _Migration:
    """One run, once the target was checked: prepare both sides, copy, write, check."""

    def __init__(
        self,
        source: Settings,
        target: Settings,
        db: Database,
        tmp: Path,
        store_file: Path | None,
        report: Report,
    ) -> None:
        self.source = source
        self.target = target
        self.db = db
        self.tmp = tmp
        self.store_file = store_file  # None: the store is the target already
        self.report = report
        self.summary = MigrationSummary()
        self.old_artifacts = source.data_path / "artifacts"
        self.new_artifacts = target.artifacts_path

    def run(self) -> MigrationSummary:
        # Both stores at this release's schema: the source's copy, and the target (where it is
        # the source too, this is the upgrade its first start would make).
        self.db.migrate()
        if self.store_file is not None:
            snapshot = open_database(f"sqlite:///{_snapshot(self.store_file, self.tmp)}")
        else:
            snapshot = open_database(self.source.store_url, migrate=False)
        try:
            registry = self._prepare_registry()
            rewrite = self._move_artifacts()
            registry_engine = create_engine(registry, poolclass=NullPool) if registry else None
            try:
                self._write(snapshot, registry_engine, rewrite)
                self._check_counts(snapshot, registry_engine)
            finally:
                if registry_engine is not None:
                    registry_engine.dispose()
            summary = self.summary
            if registry is not None:
                summary.digests_checked = _check_digests(
                    self.db, self.target.mlflow_backend_uri, self.new_artifacts, self.report
                )
            summary.secrets_checked = _check_secrets(self.source, snapshot, self.db, self.report)
        finally:
            snapshot.close()
        self.report(
            f"checked    row counts of {len(summary.store_rows)} store and {len(summary.registry_rows)} "
            f"registry tables, {summary.digests_checked} model version digests, "
            f"{summary.secrets_checked} secrets"
        )
        return summary

    def _prepare_registry(self) -> str | None:
        """A copy of the registry at MLflow's current schema, and the target's schema at the
        same; the copy's URL (None when the data directory has no registry)."""
        registry_file = self.source.data_path / "mlflow.db"
        if not registry_file.is_file():
            self.report(f"registry   no {registry_file.name} in the data directory: nothing to move")
            return None
        from modelport.entities.registry_database import prepare_postgresql

        url = f"sqlite:///{_snapshot(registry_file, self.tmp)}"
        revision = _upgrade_registry_copy(url)
        prepare_postgresql(self.target.mlflow_backend_uri)
        with self.db.engine.connect() as conn:
            found = conn.execute(text(f'SELECT version_num FROM "{MLFLOW_SCHEMA}".alembic_version'))
            target_revision = found.scalar()
        if target_revision != revision:
            raise InvalidState(
                f"the registry's schema is at MLflow revision {target_revision} in the target and "
                f"{revision} in the source; nothing was written."
            )
        return url

    def _move_artifacts(self) -> Callable[[str], str] | None:
        """Copy the artifacts (when they move); the rewriting of locations that name the old folder."""
        old, new = self.old_artifacts, self.new_artifacts
        if old == new:
            self.report(
                f"artifacts  stay in {old}: only a server on this data directory finds them "
                "(--artifacts-root moves them to a folder every server reaches)"
            )
            return None
        if not old.is_dir():
            self.report(f"artifacts  no {old}: nothing to copy")
            return None
        _copy_artifacts(old, new, self.report, self.summary)
        return _prefix_rewriter(old, new)

    def _write(self, snapshot: Database, registry: Any, rewrite: Callable[[str], str] | None) -> None:
        """Every row in one transaction: a failure leaves the target's tables as they were."""
        summary, report = self.summary, self.report
        with self.db.engine.begin() as conn:
            if self.store_file is not None:
                tables = [t for t in store_schema.metadata.sorted_tables if t.name not in RUNTIME_TABLES]
                for table in reversed(tables):  # the rows the migrations made
                    conn.execute(table.delete())
                with snapshot.engine.connect() as src:
                    for table in tables:
                        summary.store_rows[table.name], _ = _copy_table(src, conn, table)
                        report(f"store      {table.name:<28} {summary.store_rows[table.name]:>8} rows")
                _reset_sequences(conn, "public")
            if registry is None:
                return
            found = MetaData()
            found.reflect(conn, schema=MLFLOW_SCHEMA)
            tables = [t for t in found.sorted_tables if t.name != "alembic_version"]
            for table in reversed(tables):  # the Default experiment and what MLflow's migrations made
                conn.execute(table.delete())
            with registry.connect() as src:
                for table in tables:
                    rows, rewritten = _copy_table(src, conn, table, rewrite)
                    summary.registry_rows[table.name] = rows
                    summary.locations_rewritten += rewritten
                    if rows:
                        report(f"registry   {table.name:<28} {rows:>8} rows")
            empty = sum(1 for n in summary.registry_rows.values() if not n)
            rewritten = summary.locations_rewritten
            report(f"registry   {empty} more tables, empty; {rewritten} locations rewritten")
            _reset_sequences(conn, MLFLOW_SCHEMA)

    def _check_counts(self, snapshot: Database, registry: Any) -> None:
        """Count every moved table again on both sides, after the commit."""
        pairs: list[tuple[str, int, int, int]] = []
        with self.db.engine.connect() as conn, snapshot.engine.connect() as src:
            for name, rows in self.summary.store_rows.items():
                pairs.append((name, _count(src, raw_table(name)), _count(conn, raw_table(name)), rows))
        if registry is not None:
            moved = create_engine(self.target.mlflow_backend_uri, poolclass=NullPool)
            try:
                with moved.connect() as conn, registry.connect() as src:
                    for name, rows in self.summary.registry_rows.items():
                        before, after = _count(src, raw_table(name)), _count(conn, raw_table(name))
                        pairs.append((f"registry {name}", before, after, rows))
            finally:
                moved.dispose()
        wrong = [
            f"{name} ({before} -> {after})"
            for name, before, after, rows in pairs
            if not before == after == rows
        ]
        if wrong:
            raise ModelportError(f"row counts differ after the move: {', '.join(wrong)}.")
