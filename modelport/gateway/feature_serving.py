"""Feature-spec endpoints: the gateway answers key rows from the online store itself.

A served entity whose stored config carries a feature spec (``feature_spec``, copied in when the
config was written: :mod:`modelport.control.feature_specs`) has no replicas. Its query is
answered here, after the same pipeline as any other (authentication, CAN_QUERY, rate limits,
usage, inference table; ``gateway/pipeline.py``)::

    POST /serving-endpoints/{name}/invocations {"dataframe_records": [{"customer_id": 7}]}
    -> {"outputs": [{"customer_id": 7, "f0": 0.5, ...}]}

Rows come as ``dataframe_records``, ``dataframe_split``, or ``inputs`` / ``instances`` records
(``inputs`` may also be ``{column: [values]}``); each answer row holds the spec's included
columns in spec order (Databricks' ``include=True`` outputs), computed by
:class:`~modelport.tables.feature_lookup.FeatureEvaluator`: a missing key column or a null key
is a 400 naming it, a key with no row gets nulls then the defaults, a feature sent in the row
overrides the lookup, and a table that is not published, gone, or no longer fits the spec is a
503 naming the table and the feature (never a wrong value).

One evaluator per served entity and config version, built on its first query and dropped when
the version stops serving (:meth:`FeaturePlane.retain`). A query of at most
:data:`INLINE_ROWS` rows on the embedded store is evaluated on the event loop (a SQLite lookup
takes tens of microseconds, less than a hop to a thread); a bigger one, any on a store across
the network (PostgreSQL, Redis), and any of a spec with feature functions (code of unknown
cost), in a thread.

Key rows that found no row in a table are counted in
``modelport_feature_lookup_missing_total{endpoint, table}``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from modelport.errors import InvalidParameterValue
from modelport.gateway.exchange import Answer, Exchange
from modelport.gateway.routing import Route, ServedEntity
from modelport.metrics import Metrics
from modelport.spec.endpoint import FEATURE_SPEC_KEY

if TYPE_CHECKING:
    from modelport.tables.feature_lookup import FeatureEvaluator
    from modelport.tables.online_stores import LookupReader

__all__ = ["FAMILIES", "INLINE_ROWS", "FeaturePlane", "request_rows"]

#: The request fields that carry rows (exactly one per request).
FAMILIES = ("dataframe_records", "dataframe_split", "inputs", "instances")
#: Most rows a query may have to be evaluated on the event loop (embedded store only).
INLINE_ROWS = 16

_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _records(value: Any, family: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        raise InvalidParameterValue(
            f"'{family}' must be a list of records (one object per row, keyed by column); "
            f"got {_kind(value) if not isinstance(value, list) else 'a list of other values'}."
        )
    return value


def _split(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        raise InvalidParameterValue(
            f"'dataframe_split' must be an object with 'columns' and 'data'; got {_kind(value)}."
        )
    columns, data = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidParameterValue("'dataframe_split.columns' must be a list of column names.")
    if not isinstance(data, list):
        raise InvalidParameterValue(f"'dataframe_split.data' must be a list of rows; got {_kind(data)}.")
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise InvalidParameterValue(
                f"'dataframe_split.data' row {i} must be a list of {len(columns)} values, one per column."
            )
        rows.append(dict(zip(columns, row, strict=True)))
    return rows


def _columns(value: dict[str, Any]) -> list[dict[str, Any]]:
    """``{"inputs": {column: [values]}}`` as records."""
    lists = list(value.values())
    if not lists or not all(isinstance(v, list) for v in lists) or len({len(v) for v in lists}) != 1:
        raise InvalidParameterValue(
            "'inputs' must be a list of records, or an object of equally long column lists."
        )
    names = list(value)
    return [dict(zip(names, cells, strict=True)) for cells in zip(*lists, strict=True)]


def request_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The key rows of a feature-spec query (see the module docstring); 400 naming what is wrong."""
    present = [f for f in FAMILIES if f in doc]
    if len(present) != 1:
        found = ", ".join(present) if present else "none of them"
        raise InvalidParameterValue(
            f"A feature-spec query must have exactly one of the fields {', '.join(FAMILIES)}; found {found}."
        )
    family = present[0]
    value = doc[family]
    if family == "dataframe_split":
        rows = _split(value)
    elif family == "inputs" and isinstance(value, dict):
        rows = _columns(value)
    else:
        rows = _records(value, family)
    if not rows:
        raise InvalidParameterValue(f"'{family}' holds no rows: send at least one row of keys.")
    return rows


class _Served:
    """One served entity's evaluator, and the missing rows it has reported so far."""

    def __init__(self, evaluator: FeatureEvaluator) -> None:
        self.evaluator = evaluator
        #: Feature functions run code whose cost nobody here knows: never on the event loop.
        self.inline = not evaluator.spec.function_columns
        self.reported: dict[str, int] = {}
        self.lock = threading.Lock()

    def missing_since(self) -> dict[str, int]:
        """Rows found missing per table since the last call (counted once whatever the thread)."""
        with self.lock:
            current = dict(self.evaluator.missing_rows)
            delta = {t: n - self.reported.get(t, 0) for t, n in current.items()}
            self.reported = current
        return {t: n for t, n in delta.items() if n > 0}


class FeaturePlane:
    """Answers the feature-spec entities of every endpoint from one online store."""

    def __init__(self, location: str | Path, metrics: Metrics) -> None:
        """``location``: the online store (a path: the embedded store; a URL: PostgreSQL or Redis),
        opened on the first query."""
        self._location = location
        self._embedded = "://" not in str(location)
        self._metrics = metrics
        self._reader: LookupReader | None = None
        self._served: dict[tuple[str, int, str], _Served] = {}
        self._lock = threading.Lock()

    def reader(self) -> LookupReader:
        """The online store's reader (opened once, by whichever thread asks first)."""
        if self._reader is None:
            from modelport.tables.online_stores import open_reader

            with self._lock:
                if self._reader is None:
                    self._reader = open_reader(self._location)
        return self._reader

    def _entity(self, route: Route, entity: ServedEntity) -> _Served:
        assert route.version is not None
        key = (route.endpoint_id, route.version, entity.name)
        served = self._served.get(key)
        if served is None:
            # Imported on the first feature-spec query: the server starts without pandas.
            from modelport.tables.feature_lookup import FeatureEvaluator
            from modelport.tables.feature_spec import FeatureSpec

            spec = FeatureSpec.from_dict(entity.config[FEATURE_SPEC_KEY])
            with self._lock:
                served = self._served.get(key)
                if served is None:
                    served = self._served[key] = _Served(FeatureEvaluator(spec, self.reader))
        return served

    def retain(self, serving: Iterable[tuple[str, int]]) -> None:
        """Keep the evaluators of the (endpoint id, version) pairs that serve; drop the rest."""
        keep = set(serving)
        with self._lock:
            for key in [k for k in self._served if (k[0], k[1]) not in keep]:
                del self._served[key]

    async def answer(self, ex: Exchange, route: Route, entity: ServedEntity) -> Answer:
        """``{"outputs": [row, ...]}`` for the key rows of ``ex`` (see the module docstring)."""
        rows = request_rows(ex.data)
        served = self._entity(route, entity)
        if served.inline and self._embedded and len(rows) <= INLINE_ROWS:
            outputs = served.evaluator.records(rows)
        else:
            outputs = await asyncio.to_thread(served.evaluator.records, rows)
        self._metrics.count_missing_rows(route.name, served.missing_since())
        return Answer(orjson.dumps({"outputs": outputs}, option=_JSON), entity.name)

    def close(self) -> None:
        """Close the store's reader (a later query opens it again)."""
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
