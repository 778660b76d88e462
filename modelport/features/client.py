"""``FeatureEngineeringClient``: feature tables, training sets and feature-aware models, over REST.

The methods mirror Databricks' ``databricks.feature_engineering.FeatureEngineeringClient`` where
they make sense here, and talk to the server's ``/api/2.0/feature-engineering/tables`` routes with
httpx. Rows travel as Arrow IPC streams, at most :data:`MAX_CHUNK_BYTES` per request: a larger
write is sent in several requests (an ``overwrite`` becomes an overwrite with the first chunk and
merges of the rest, so a table that is not unique on its keys across chunks keeps the last row).

Every non-2xx answer is raised as the :mod:`modelport.errors` class its ``error_code`` names; a
refused connection is :class:`~modelport.errors.TemporarilyUnavailable` and a timeout
:class:`~modelport.errors.DeadlineExceeded`: the transport is the SDK's
(:class:`modelport.client.sdk.ModelportClient`), whose feature-table methods this wraps.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Literal

import httpx
import pandas as pd
import pyarrow as pa

from modelport.client.sdk import ARROW_STREAM, ModelportClient
from modelport.errors import (
    InvalidParameterValue,
    ModelportError,
)
from modelport.features.entities import FeatureFunction, FeatureLookup, FeatureTable, feature_table_name
from modelport.features.feature_specs import FeatureSpecInfo, serving_spec
from modelport.features.functions import definition_of
from modelport.features.training import TrainingSet, build_feature_spec, resolve_functions, resolve_lookups
from modelport.tables.feature_functions import FunctionDef, function_name
from modelport.tables.names import split_name
from modelport.tables.online_store import PUBLISH_MODES

__all__ = [
    "ARROW_STREAM",
    "MAX_CHUNK_BYTES",
    "FeatureEngineeringClient",
    "ipc_chunks",
    "to_arrow",
]

#: Largest Arrow IPC body one write request carries.
MAX_CHUNK_BYTES = 8 * 1024 * 1024


# --- Arrow -----------------------------------------------------------------------------------------


def _normal_type(typ: pa.DataType) -> pa.DataType:
    # Delta keeps timestamps in microseconds, UTC; pandas 3 strings arrive as large_string.
    if pa.types.is_timestamp(typ):
        return pa.timestamp("us", tz="UTC")
    if pa.types.is_large_string(typ):
        return pa.string()
    if pa.types.is_large_binary(typ):
        return pa.binary()
    return typ


def to_arrow(data: pd.DataFrame | pa.Table) -> pa.Table:
    """``data`` as an Arrow table the server stores as is: no pandas index, timestamps in
    microseconds UTC (naive ones taken as UTC), plain strings."""
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pd.DataFrame):
        try:
            table = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidParameterValue(f"Cannot convert the DataFrame to Arrow: {exc}") from None
    else:
        raise InvalidParameterValue(
            f"Expected a pandas DataFrame or a pyarrow Table; got {type(data).__name__}."
        )
    table = table.replace_schema_metadata(None)
    schema = pa.schema([pa.field(f.name, _normal_type(f.type), nullable=f.nullable) for f in table.schema])
    # Unsafe only in dropping nanoseconds, which Delta cannot keep.
    return table.cast(schema, safe=False) if schema != table.schema else table


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def ipc_chunks(table: pa.Table, limit: int = MAX_CHUNK_BYTES) -> Iterator[bytes]:
    """Arrow IPC streams of consecutive row ranges of ``table``, each at most ``limit`` bytes
    (a single row larger than that is sent alone); an empty table gives one empty stream."""
    if table.num_rows == 0:
        yield _ipc(table)
        return
    per_row = max(1, table.nbytes // table.num_rows)
    rows = max(1, int(limit * 0.9) // per_row)
    start = 0
    while start < table.num_rows:
        count = min(rows, table.num_rows - start)
        body = _ipc(table.slice(start, count))
        while len(body) > limit and count > 1:
            count //= 2
            body = _ipc(table.slice(start, count))
        yield body
        start += count


def _schema_columns(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(_normal_type(f.type))} for f in schema]


def _as_names(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


# --- the client --------------------------------------------------------------------------------------


class FeatureEngineeringClient:
    """A connection to one modelport server's feature tables, with one bearer token.

    ``host`` and ``token`` default to ``MODELPORT_HOST`` and ``MODELPORT_TOKEN``. The client
    holds an ``httpx.Client``; release it with :meth:`close` or a ``with`` block.
    """

    def __init__(
        self,
        host: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._api = ModelportClient(host, token, timeout=timeout, transport=transport)
        self.host = self._api.host

    def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        self._api.close()

    def __enter__(self) -> FeatureEngineeringClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def create_table(
        self,
        name: str,
        primary_keys: str | list[str],
        df: pd.DataFrame | pa.Table | None = None,
        *,
        schema: pa.Schema | list[dict[str, Any]] | None = None,
        timestamp_keys: str | list[str] | None = None,
        description: str | None = None,
    ) -> FeatureTable:
        """Create feature table ``name`` with ``schema`` (an Arrow schema or ``[{"name", "type"}]``),
        or the schema of ``df``, and write ``df`` into it when given.

        ``timestamp_keys`` may also be listed among ``primary_keys`` (Unity Catalog's way).
        """
        data = to_arrow(df) if df is not None else None
        if schema is None:
            if data is None:
                raise InvalidParameterValue("create_table needs df or schema.")
            columns = _schema_columns(data.schema)
        elif isinstance(schema, pa.Schema):
            columns = _schema_columns(schema)
        else:
            columns = [{"name": c["name"], "type": str(c["type"])} for c in schema]
        body = {
            "name": feature_table_name(name),
            "primary_keys": _as_names(primary_keys),
            "timestamp_keys": _as_names(timestamp_keys),
            "description": description or "",
            "columns": columns,
        }
        info = self._api.create_feature_table(body)
        if data is not None:
            return self.write_table(name, data, mode="merge")
        return FeatureTable.from_json(info)

    def write_table(
        self, name: str, df: pd.DataFrame | pa.Table, mode: Literal["merge", "overwrite"] = "merge"
    ) -> FeatureTable:
        """Upsert ``df`` into the table on its keys (``merge``), or replace every row (``overwrite``)."""
        if mode not in ("merge", "overwrite"):
            raise InvalidParameterValue(f"mode must be 'merge' or 'overwrite'; got {mode!r}.")
        info: Any = {}
        chunk_mode = mode
        for body in ipc_chunks(to_arrow(df)):
            info = self._api.write_feature_table(feature_table_name(name), body, chunk_mode)
            chunk_mode = "merge"
        return FeatureTable.from_json(info)

    def read_table(self, name: str, *, version: int | None = None) -> pd.DataFrame:
        """The table's rows (at Delta ``version`` when given) as a pandas DataFrame."""
        return self._read_arrow(name, version).to_pandas()

    def _read_arrow(self, name: str, version: int | None = None) -> pa.Table:
        content = self._api.read_feature_table(feature_table_name(name), version)
        try:
            return pa.ipc.open_stream(content).read_all()
        except pa.ArrowInvalid as exc:
            raise ModelportError(
                f"the server sent table {name!r} in a form that is not Arrow IPC: {exc}"
            ) from exc

    def get_table(self, name: str) -> FeatureTable:
        """The table's keys, columns, version, freshness and online state."""
        return FeatureTable.from_json(self._api.get_feature_table(feature_table_name(name)))

    def list_tables(self) -> list[FeatureTable]:
        """Every feature table the caller may read."""
        return [FeatureTable.from_json(t) for t in self._api.list_feature_tables()]

    def drop_table(self, name: str) -> None:
        """Drop the Delta table and its online copy."""
        self._api.drop_feature_table(feature_table_name(name))

    def publish_table(self, name: str, mode: str = "snapshot") -> dict[str, Any]:
        """Publish the table to the server's online store; returns the online state.

        ``snapshot`` and ``triggered`` publish the current version once; ``continuous`` also
        follows new versions until the table is published again with another mode.
        """
        mode = mode.lower() if isinstance(mode, str) else mode
        if mode not in PUBLISH_MODES:
            raise InvalidParameterValue(f"mode must be one of {list(PUBLISH_MODES)}; got {mode!r}.")
        return self._api.publish_feature_table(feature_table_name(name), mode)

    def lookup(
        self, name: str, keys: list[dict[str, Any]], features: list[str] | None = None
    ) -> list[dict[str, Any] | None]:
        """Rows of the online store by primary key (``None`` for a key without a row)."""
        return self._api.lookup_features(feature_table_name(name), keys, features)

    # ---- functions ------------------------------------------------------------------------------
    def create_function(self, name: str, func: Any, *, description: str | None = None) -> FunctionDef:
        """Register the plain Python function ``func`` as feature function ``name``
        (``catalog.schema.function``; admins only, as its code runs in modelport's processes).

        Its source is read with :mod:`inspect`, the modules it uses are imported for it, and its
        parameter and result types come from its annotations (``int``, ``float``, ``str``,
        ``bool``): see :mod:`modelport.features.functions` for what is refused. ``description``
        defaults to its docstring. Returns the stored definition."""
        definition = definition_of(name, func, description)
        return FunctionDef.from_dict(self._api.create_feature_function(definition.to_dict()))

    def get_function(self, name: str) -> FunctionDef:
        """The definition of feature function ``name``."""
        return FunctionDef.from_dict(self._api.get_feature_function(function_name(name)))

    def list_functions(self) -> list[FunctionDef]:
        """Every registered feature function."""
        return [FunctionDef.from_dict(f) for f in self._api.list_feature_functions()]

    def delete_function(self, name: str) -> None:
        """Delete feature function ``name`` (admins); models logged with it keep their copy."""
        self._api.delete_feature_function(function_name(name))

    # ---- training sets and models -------------------------------------------------------------
    def create_training_set(
        self,
        df: pd.DataFrame | pa.Table,
        feature_lookups: Sequence[FeatureLookup],
        label: str | list[str] | None,
        exclude_columns: list[str] | None = None,
    ) -> TrainingSet:
        """A training set: ``df`` joined with the features of the ``FeatureLookup`` objects of
        ``feature_lookups`` (point-in-time where a lookup has a ``timestamp_lookup_key``), then
        completed with the outputs of its ``FeatureFunction`` objects, in their order. The tables
        are read by ``load_df()``, at the versions they have now; the functions' definitions are
        read now, and the spec (so the logged model) carries them."""
        for item in feature_lookups:
            if not isinstance(item, FeatureLookup | FeatureFunction):
                raise InvalidParameterValue(
                    "feature_lookups must hold FeatureLookup or FeatureFunction objects; got "
                    f"{type(item).__name__}."
                )
        functions = [f for f in feature_lookups if isinstance(f, FeatureFunction)]
        lookups = [lk for lk in feature_lookups if isinstance(lk, FeatureLookup)]
        frame = df.to_pandas() if isinstance(df, pa.Table) else df
        if not isinstance(frame, pd.DataFrame):
            raise InvalidParameterValue(f"df must be a pandas DataFrame; got {type(df).__name__}.")
        if frame.columns.duplicated().any():
            duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise InvalidParameterValue(f"The DataFrame has duplicate columns: {duplicated}.")
        labels = _as_names(label)
        for name in labels:
            if name not in frame.columns:
                raise InvalidParameterValue(f"Label column '{name}' is not a column of the DataFrame.")
        exclude = list(exclude_columns or [])
        tables = {t: self.get_table(t) for t in dict.fromkeys(lookup.table_name for lookup in lookups)}
        names = [str(c) for c in frame.columns]
        resolved = resolve_lookups(lookups, tables, names, labels)
        definitions = {n: self.get_function(n) for n in dict.fromkeys(f.udf_name for f in functions)}
        computed = resolve_functions(functions, definitions, names, resolved, labels)
        versions = {name: table.version for name, table in tables.items()}
        spec = build_feature_spec(
            frame, resolved, labels, exclude, versions, client_version=_client_version(), functions=computed
        )
        return TrainingSet(frame, resolved, labels, spec, self._read_for_training, versions)

    def _read_for_training(self, name: str, version: int | None) -> pd.DataFrame:
        return self._read_arrow(name, version).to_pandas()

    def log_model(
        self,
        model: Any,
        artifact_path: str,
        *,
        flavor: ModuleType | str,
        training_set: TrainingSet,
        registered_model_name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Log ``model`` so that serving it looks its features up: Databricks' layout.

        The raw model is saved with ``flavor`` (a module such as ``mlflow.sklearn``, or its name
        ``"sklearn"``; ``kwargs`` go to its ``save_model``) into ``<tmp>/feature_store/raw_model``,
        the spec into ``<tmp>/feature_store/feature_spec.yaml``, and the whole is logged with
        ``mlflow.pyfunc.log_model(loader_module="modelport.features.mlflow_model")``. The input
        signature comes from the spec: source columns required, features optional. Returns
        MLflow's ``ModelInfo``.
        """
        import mlflow.pyfunc

        from modelport.features import mlflow_model

        flavor_module = _flavor(flavor)
        workdir = Path(tempfile.mkdtemp(prefix="modelport-feature-model-"))
        try:
            data_path = mlflow_model.save_feature_store_dir(
                workdir, model, flavor_module, training_set.feature_spec, **kwargs
            )
            return mlflow.pyfunc.log_model(
                name=artifact_path,
                loader_module=mlflow_model.__name__,
                data_path=str(data_path),
                signature=mlflow_model.signature_for(training_set.feature_spec, training_set.label_types()),
                pip_requirements=mlflow_model.raw_model_requirements(data_path),
                registered_model_name=registered_model_name,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    # ---- feature specs --------------------------------------------------------------------------
    def create_feature_spec(
        self,
        name: str,
        features: Sequence[FeatureLookup | FeatureFunction],
        exclude_columns: list[str] | None = None,
    ) -> FeatureSpecInfo:
        """Create feature spec ``name`` (``catalog.schema.spec``) for feature-serving endpoints:
        an endpoint whose served entity is ``{"entity_name": name}`` answers key rows with the
        features of the ``FeatureLookup`` objects of ``features``, looked up in the online store,
        and the outputs of its ``FeatureFunction`` objects (see
        :mod:`modelport.features.feature_specs`). ``exclude_columns`` leaves outputs out.

        The features are typed by their tables as they are now, the functions' definitions are
        the registered ones; the caller needs SELECT on each table and owns the spec."""
        items = list(features)
        lookups = [f for f in items if isinstance(f, FeatureLookup)]
        functions = [f for f in items if isinstance(f, FeatureFunction)]
        tables = {t: self.get_table(t) for t in dict.fromkeys(lookup.table_name for lookup in lookups)}
        definitions = {n: self.get_function(n) for n in dict.fromkeys(f.udf_name for f in functions)}
        spec = serving_spec(
            items, tables, exclude_columns or [], client_version=_client_version(), definitions=definitions
        )
        body = self._api.create_feature_spec(_spec_name(name), spec.to_dict())
        return FeatureSpecInfo.from_json(body)

    def get_feature_spec(self, name: str) -> FeatureSpecInfo:
        """The feature spec ``name``: its tables, inputs, outputs and the spec itself."""
        return FeatureSpecInfo.from_json(self._api.get_feature_spec(_spec_name(name)))

    def list_feature_specs(self) -> list[FeatureSpecInfo]:
        """The feature specs the caller may read (owned, or SELECT on every table they read)."""
        return [FeatureSpecInfo.from_json(s) for s in self._api.list_feature_specs()]

    def delete_feature_spec(self, name: str) -> None:
        """Delete a feature spec (its owner or an admin); refused while an endpoint serves it."""
        self._api.delete_feature_spec(_spec_name(name))


def _spec_name(name: str) -> str:
    if not isinstance(name, str):
        raise InvalidParameterValue(f"name must be a string catalog.schema.name; got {name!r}.")
    return ".".join(split_name(name))


def _flavor(flavor: ModuleType | str) -> ModuleType:
    if isinstance(flavor, str):
        try:
            return importlib.import_module(flavor if "." in flavor else f"mlflow.{flavor}")
        except ImportError:
            raise InvalidParameterValue(f"Unknown MLflow flavor {flavor!r}.") from None
    if not hasattr(flavor, "save_model"):
        raise InvalidParameterValue(f"flavor {flavor!r} has no save_model (pass e.g. mlflow.sklearn).")
    return flavor


def _client_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"modelport-{version('modelport')}"
    except PackageNotFoundError:
        return "modelport"
