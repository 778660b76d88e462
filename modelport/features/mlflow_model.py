"""Models that carry their features: written by ``log_model``, loaded by MLflow in a replica.

Layout (Databricks')::

    <model>/MLmodel                       python_function.loader_module: modelport.features.mlflow_model
    <model>/data/feature_store/feature_spec.yaml
    <model>/data/feature_store/raw_model/ the model as its own flavor saved it

:func:`_load_pyfunc` is what MLflow calls; the :class:`FeatureLookupModel` it returns applies the
runtime rules of Databricks' lookup client (``databricks/feature_store/mlflow_model.py``) before
calling the raw model:

1. every source column of the spec is required, an excluded one too; a missing one is an
   :class:`~modelport.errors.InvalidParameterValue` naming it; so is a column given twice;
2. a null in a lookup key column is an ``InvalidParameterValue`` naming the column;
3. a feature column present in the request overrides the lookup: fully (no null in it: not looked
   up at all) or per cell (its nulls are looked up);
4. features are looked up in the online store (``MODELPORT_ONLINE_STORE``), one
   :meth:`~modelport.tables.online_store.OnlineReader.lookup` per table per call, whatever the
   number of rows; with a ``timestamp_lookup_key`` the request's value of that column is the
   point in time (the latest row at or before it, within the table's lookback window);
5. a key with no row gives nulls, which the spec's defaults then fill;
6. the raw model receives the spec's included columns, in the spec's order.

A table that is not published, or published without a feature the spec reads, is the online
store's :class:`~modelport.errors.TemporarilyUnavailable` naming the table (and the feature), as
is a published value whose type no longer fits the feature: never a wrong value.
"""

from __future__ import annotations

import datetime
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pyarrow as pa

from modelport.config import env_value
from modelport.errors import InvalidParameterValue, TemporarilyUnavailable
from modelport.features.spec import FeatureColumn, FeatureSpec, arrow_type
from modelport.features.training import fill_defaults, utc_times
from modelport.tables.online_store import OnlineReader

__all__ = [
    "FEATURE_STORE_DIR",
    "ONLINE_STORE_ENV",
    "RAW_MODEL_DIR",
    "FeatureLookupModel",
    "raw_model_requirements",
    "save_feature_store_dir",
    "signature_for",
]

#: The folder under the MLflow model's ``data/`` (Databricks' MODEL_DATA_PATH_ROOT).
FEATURE_STORE_DIR = "feature_store"
#: The raw model's folder inside it (Databricks' RAW_MODEL_FOLDER, "SHOULD NEVER CHANGE").
RAW_MODEL_DIR = "raw_model"
#: Where a replica finds the online store file; set by the server in every replica's environment.
ONLINE_STORE_ENV = "MODELPORT_ONLINE_STORE"

# Spark SQL type -> MLflow signature type (Databricks' signature_utils.SUPPORTED_TYPE_MAP, plus tinyint).
_MLFLOW_TYPES = {
    "tinyint": "integer",
    "smallint": "integer",
    "int": "integer",
    "bigint": "long",
    "float": "float",
    "double": "double",
    "boolean": "boolean",
    "string": "string",
    "binary": "binary",
    "date": "datetime",
    "timestamp": "datetime",
    "timestamp_ntz": "datetime",
}


# --- writing -------------------------------------------------------------------------------------


def save_feature_store_dir(
    workdir: str | Path, model: Any, flavor: ModuleType, spec: FeatureSpec, **kwargs: Any
) -> Path:
    """Write ``<workdir>/feature_store/{raw_model/, feature_spec.yaml}``; returns that folder.

    ``kwargs`` go to ``flavor.save_model`` (e.g. ``signature`` or ``input_example`` of the raw model).
    """
    data_path = Path(workdir) / FEATURE_STORE_DIR
    data_path.mkdir(parents=True, exist_ok=False)
    flavor.save_model(model, path=str(data_path / RAW_MODEL_DIR), **kwargs)
    spec.save(data_path)
    return data_path


def raw_model_requirements(data_path: str | Path) -> list[str] | None:
    """The raw model's pip requirements (its ``requirements.txt``), or ``None`` if it has none."""
    path = Path(data_path) / RAW_MODEL_DIR / "requirements.txt"
    if not path.is_file():
        return None
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def signature_for(spec: FeatureSpec, label_types: dict[str, str | None] | None = None) -> Any:
    """The model's MLflow signature, as Databricks derives it from the spec: source columns are
    required inputs, features optional ones (so that a request may override them); outputs are
    the labels. ``None`` when a source column's type has no MLflow equivalent."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    inputs = []
    for source in spec.source_columns:
        kind = _MLFLOW_TYPES.get(source.data_type or "")
        if kind is None:
            return None
        inputs.append(ColSpec(DataType[kind], source.name, required=True))
    for feature in spec.feature_columns:
        kind = _MLFLOW_TYPES.get(feature.data_type or "")
        if kind is not None and feature.include:
            inputs.append(ColSpec(DataType[kind], feature.output_name, required=False))
    outputs = None
    labels = label_types or {}
    if labels and all(_MLFLOW_TYPES.get(t or "") for t in labels.values()):
        outputs = Schema([ColSpec(DataType[_MLFLOW_TYPES[str(t)]], name) for name, t in labels.items()])
    return ModelSignature(inputs=Schema(inputs), outputs=outputs)


# --- serving -------------------------------------------------------------------------------------


def _load_pyfunc(data_path: str) -> FeatureLookupModel:
    """MLflow's entry point: ``data_path`` is the model's ``data/feature_store`` folder."""
    import mlflow.pyfunc

    spec = FeatureSpec.load(data_path)
    raw_model = mlflow.pyfunc.load_model(str(Path(data_path) / RAW_MODEL_DIR))
    return FeatureLookupModel(spec, raw_model)


class FeatureLookupModel:
    """The pyfunc model of a feature-aware model: looks features up, then calls the raw model.

    ``reader`` is the online store to look features up in; without one, the store named by
    ``MODELPORT_ONLINE_STORE`` is opened on the first ``predict`` (so that loading needs no
    store). Safe to call from several threads.
    """

    def __init__(self, spec: FeatureSpec, raw_model: Any, reader: OnlineReader | None = None) -> None:
        self.spec = spec
        self.raw_model = raw_model
        self._reader = reader
        self._reader_lock = threading.Lock()
        features = [f for f in spec.feature_columns if f.include]
        self._features = features
        self._by_table: dict[str, list[FeatureColumn]] = {}
        for feature in features:
            self._by_table.setdefault(feature.table_name, []).append(feature)
        self._lookback_ms: dict[str, int | None] = {}
        for table in spec.tables:
            window = table.lookback_window
            self._lookback_ms[table.table_name] = None if window is None else round(window * 1000)
        self._required = spec.required_columns
        self._unique = set(self._required) | {f.output_name for f in features}

    @property
    def raw_flavors(self) -> list[str]:
        """The raw model's MLflow flavors: modelport's replica batches requests of a model whose
        raw model treats rows independently (``entities/custom.py``), lookups included (one
        round trip per table for the whole batch)."""
        metadata = getattr(self.raw_model, "metadata", None)
        return list(getattr(metadata, "flavors", None) or ())

    # ---- the online store -------------------------------------------------------------------------
    def _online(self) -> OnlineReader:
        if self._reader is None:
            with self._reader_lock:
                if self._reader is None:
                    path = env_value(ONLINE_STORE_ENV)
                    if not path:
                        raise TemporarilyUnavailable(
                            "This model looks its features up in modelport's online store, but "
                            f"{ONLINE_STORE_ENV} is not set: serve it with modelport."
                        )
                    self._reader = OnlineReader(Path(path))
        return self._reader

    # ---- predict ---------------------------------------------------------------------------------
    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """The raw model's prediction for ``model_input`` completed with its features."""
        frame = self.augment(model_input)
        if params:
            return self.raw_model.predict(frame, params=params)
        return self.raw_model.predict(frame)

    def augment(self, model_input: Any) -> pd.DataFrame:
        """What the raw model receives for ``model_input``: the spec's included columns in order."""
        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        self._validate(df)
        full = {
            f.output_name
            for f in self._features
            if f.output_name in df.columns and df[f.output_name].notna().all()
        }
        looked_up: dict[str, pd.Series] = {}
        for table, features in self._by_table.items():
            wanted = [f for f in features if f.output_name not in full]
            if wanted:
                looked_up.update(self._lookup_table(table, wanted, df))
        columns: dict[str, pd.Series] = {}
        for column in self.spec.columns:
            if not column.include:
                continue
            name = column.output_name
            if isinstance(column, FeatureColumn) and name not in full:
                value = looked_up[name]
                columns[name] = df[name].combine_first(value) if name in df.columns else value
            else:
                columns[name] = df[name]
        return pd.DataFrame(columns, index=df.index)

    def _validate(self, df: pd.DataFrame) -> None:
        duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()] if c in self._unique})
        if duplicated:
            raise InvalidParameterValue(
                f"Input has duplicate columns: {duplicated}. These column names must be unique: "
                f"{sorted(self._unique)}."
            )
        missing = [c for c in self._required if c not in df.columns]
        if missing:
            raise InvalidParameterValue(
                f"Input is missing columns {missing}. The following columns are required: {self._required}."
            )
        null_keys = [k for k in self.spec.lookup_key_columns if df[k].isna().any()]
        if null_keys:
            raise InvalidParameterValue(
                f"Failed to lookup feature values due to null values for lookup_key columns {null_keys}. "
                f"The following columns cannot contain null values: {self.spec.lookup_key_columns}."
            )

    def _lookup_table(
        self, table: str, features: list[FeatureColumn], df: pd.DataFrame
    ) -> dict[str, pd.Series]:
        """One lookup for every (lookup key, timestamp key) group of ``table``'s features."""
        groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[FeatureColumn]] = {}
        for feature in features:
            groups.setdefault((feature.lookup_key, feature.timestamp_lookup_key), []).append(feature)
        keys: list[tuple[Any, ...]] = []
        as_of: list[int | None] = []
        for key_columns, ts_columns in groups:
            keys.extend(zip(*(df[k].tolist() for k in key_columns), strict=True))
            as_of.extend(_epoch_ms(df[ts_columns[0]]) if ts_columns else [None] * len(df))
        names = list(dict.fromkeys(f.feature_name for f in features))
        timed = any(ts for _, ts in groups)
        rows = self._online().lookup(
            table,
            keys,
            names,
            as_of_ms=as_of if timed else None,
            lookback_ms=self._lookback_ms.get(table) if timed else None,
        )
        out: dict[str, pd.Series] = {}
        n = len(df)
        for i, group in enumerate(groups.values()):
            part = rows[i * n : (i + 1) * n]
            for feature in group:
                values = [None if row is None else row.get(feature.feature_name) for row in part]
                column = _column(values, feature, table, df.index)
                out[feature.output_name] = fill_defaults(column, feature.default, feature.data_type)
        return out


def _epoch_ms(values: pd.Series) -> list[int | None]:
    try:
        times = utc_times(values)
    except (ValueError, TypeError):
        raise InvalidParameterValue(f"Column '{values.name}' must hold timestamps.") from None
    return [None if pd.isna(t) else t.value // 1_000_000 for t in times]


def _column(values: list[Any], feature: FeatureColumn, table: str, index: pd.Index) -> pd.Series:
    """A feature's looked-up values as the column a training set would hold (Arrow's pandas types)."""
    kind = feature.data_type or ""
    try:
        if kind in ("timestamp", "timestamp_ntz"):
            times = pd.to_datetime(pd.Series(values, index=index, dtype=object), utc=True).dt.as_unit("us")
            return times if kind == "timestamp" else times.dt.tz_localize(None)
        if kind == "date":
            dates = [v if v is None else datetime.date.fromisoformat(v) for v in values]
            return pd.Series(dates, index=index, dtype=object)
        typ = arrow_type(kind)
        array = pa.array(values, type=typ) if typ is not None else pa.array(values)
        series = array.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError, TypeError):
        raise TemporarilyUnavailable(
            f"Feature '{feature.feature_name}' of table '{table}' in the online store no longer has the "
            f"type the model was trained with ({feature.data_type})."
        ) from None
    series.index = index
    return series
