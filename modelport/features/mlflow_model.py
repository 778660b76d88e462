"""Models that carry their features: written by ``log_model``, loaded by MLflow in a replica.

Layout (Databricks')::

    <model>/MLmodel                       python_function.loader_module: modelport.features.mlflow_model
    <model>/data/feature_store/feature_spec.yaml
    <model>/data/feature_store/raw_model/ the model as its own flavor saved it

:func:`_load_pyfunc` is what MLflow calls; the :class:`FeatureLookupModel` it returns evaluates
the spec with :class:`~modelport.tables.feature_lookup.FeatureEvaluator` (the rules of
Databricks' lookup client: required and key columns, one lookup per table per call in the online
store named by ``MODELPORT_ONLINE_STORE``, defaults, overrides, feature functions) and hands the
raw model the spec's included columns, in the spec's order, with a training set's dtypes.
The spec carries the definitions of its feature functions, so serving never asks the server.
After each predict, :meth:`FeatureLookupModel.last_input` hands the replica what the raw model
received and which keys found no row, for the gateway's inference table and metrics.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from modelport.config import env_value
from modelport.errors import TemporarilyUnavailable
from modelport.tables.feature_lookup import FeatureEvaluator
from modelport.tables.feature_spec import FeatureSpec
from modelport.tables.online_stores import LookupReader, open_reader

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
    required inputs, features and function outputs optional ones (so that a request may override
    them); outputs are the labels. ``None`` when a source column's type has no MLflow equivalent."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    inputs = []
    for source in spec.source_columns:
        kind = _MLFLOW_TYPES.get(source.data_type or "")
        if kind is None:
            return None
        inputs.append(ColSpec(DataType[kind], source.name, required=True))
    for column in [*spec.feature_columns, *spec.function_columns]:
        kind = _MLFLOW_TYPES.get(column.data_type or "")
        if kind is not None and column.include:
            inputs.append(ColSpec(DataType[kind], column.output_name, required=False))
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
    """The pyfunc model of a feature-aware model: evaluates its feature spec, then calls the raw
    model.

    ``reader`` is the online store to look features up in; without one, the store named by
    ``MODELPORT_ONLINE_STORE`` is opened on the first ``predict``
    (:func:`modelport.tables.online_stores.open_reader`, so that loading needs no store). The
    rules are :class:`~modelport.tables.feature_lookup.FeatureEvaluator`'s. Safe to call from
    several threads.
    """

    def __init__(self, spec: FeatureSpec, raw_model: Any, reader: LookupReader | None = None) -> None:
        self.spec = spec
        self.raw_model = raw_model
        self.evaluator = FeatureEvaluator(spec, reader if reader is not None else _open_online_store)
        self._last = threading.local()

    @property
    def raw_flavors(self) -> list[str]:
        """The raw model's MLflow flavors: modelport's replica batches requests of a model whose
        raw model treats rows independently (``entities/custom.py``), lookups included (one
        round trip per table for the whole batch)."""
        metadata = getattr(self.raw_model, "metadata", None)
        return list(getattr(metadata, "flavors", None) or ())

    # ---- predict ---------------------------------------------------------------------------------
    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """The raw model's prediction for ``model_input`` completed with its features. What the
        raw model received is kept for :meth:`last_input`, in the calling thread."""
        last = self._last
        last.value = None
        missed: dict[str, list[int]] = {}
        frame = self.augment(model_input, missed)
        last.value = (frame, missed)
        if params:
            return self.raw_model.predict(frame, params=params)
        return self.raw_model.predict(frame)

    def augment(self, model_input: Any, missed: dict[str, list[int]] | None = None) -> pd.DataFrame:
        """What the raw model receives for ``model_input``: the spec's included columns in order
        (``missed``: as :meth:`FeatureEvaluator.frame` says)."""
        df = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.evaluator.frame(df, missed)

    def last_input(self) -> tuple[pd.DataFrame, dict[str, list[int]]] | None:
        """What the last :meth:`predict` of this thread gave the raw model, and per table the
        positions of the rows whose key found no row; once (``None`` after, or when that predict
        failed before calling the raw model). The replica reads it after each predict to tell
        the gateway (``entities/custom.py``: :meth:`CustomModel.lookups`)."""
        value: tuple[pd.DataFrame, dict[str, list[int]]] | None = getattr(self._last, "value", None)
        self._last.value = None
        return value


def _open_online_store() -> LookupReader:
    location = env_value(ONLINE_STORE_ENV)
    if not location:
        raise TemporarilyUnavailable(
            "This model looks its features up in modelport's online store, but "
            f"{ONLINE_STORE_ENV} is not set: serve it with modelport."
        )
    return open_reader(location)
