"""An inference table's rows as a monitor profiles them: one row per predicted record.

An inference (payload) table (:mod:`modelport.tables.records`) keeps each query's request and
response as JSON text. A monitor of such a table reads *unpacked* rows instead:

- **custom models** (answers ``{"predictions": [...]}``): the request's records
  (``dataframe_split``, ``dataframe_records``, ``inputs`` as records, columns or a tensor,
  ``instances``) each become a row with the model's input columns (named as the request
  names them; a tensor's items are ``input``, or ``input_0``, ``input_1``... for lists) and
  ``prediction``, the answer's item at the same place (a dict answer's keys become
  ``prediction`` (its ``prediction`` key, else the first) and ``prediction_<key>`` for the
  others; a list item is kept as JSON text). Only rows answered 200 are read.
- **LLM endpoints** (chat, completions and embeddings answers): one row per query, with
  ``prompt_length`` and ``answer_length`` (characters of the messages' or prompt's text and of
  the first choice's), ``prompt_tokens``, ``completion_tokens`` and ``total_tokens`` (the
  answer's ``usage``), ``finish_reason`` and ``guardrail_outcome`` (``blocked``, ``masked``,
  ``allowed`` or null: the guardrails' decisions); every status is read (an error row has a
  null answer) so that ``status_code`` shows the failures.

Which of the two a table holds is read from its first row answered 200 (a table of an
endpoint whose entities answer both ways is read as the first one's).

Every unpacked row also has ``timestamp`` (from ``timestamp_ms``, UTC), ``client_request_id``,
``databricks_request_id``, ``request_row`` (the record's place in its request, from 0),
``served_entity_name`` (the model id), ``status_code`` and ``execution_time_ms``. An input
column named like one of these is renamed ``input_<name>``.

Which rows are read (:func:`traffic_predicate`): live traffic only, unless the monitor's
``include_traffic`` adds shadow, replay, batch or cache-hit rows.

JSON is parsed with orjson, one query at a time. The common shape of a custom model's query,
``dataframe_split`` of distinct string columns and rows of their length, answered by as many
``predictions`` none of which is a list or a dict, takes the fast path: its rows' values are
kept as the request's lists and turned into columns once at the end (one batch per list of
columns), without a dict per record. Every other query (another format or shape, a record count
that differs from the predictions', a dict or list answer) takes the general path, record by
record. The batches are put back in the payload rows' order, and each column is typed as if all
its values went through pyarrow at once: a column whose values do not share a type is kept as
text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

__all__ = [
    "BOOKKEEPING_COLUMNS",
    "READ_COLUMNS",
    "is_inference_table",
    "payload_kind",
    "traffic_predicate",
    "unpack",
]

#: Columns of the payload table an unpacking reads.
READ_COLUMNS = (
    "client_request_id",
    "databricks_request_id",
    "timestamp_ms",
    "status_code",
    "execution_time_ms",
    "request",
    "response",
    "served_entity_name",
    "guardrails",
)
#: Columns every unpacked row has that describe the query rather than the model's data.
BOOKKEEPING_COLUMNS = (
    "timestamp",
    "client_request_id",
    "databricks_request_id",
    "request_row",
    "served_entity_name",
    "status_code",
    "execution_time_ms",
)
_TRAFFIC = {
    "shadow": "shadow_of IS NULL",
    "replay": "replay_of IS NULL",
    "batch": "batch_job_id IS NULL",
    "cache": "cache_hit IS NOT TRUE",
}
_MARKERS = ("request", "response", "timestamp_ms", "served_entity_name", "databricks_request_id")
_LLM_COLUMNS = (
    "prompt_length",
    "answer_length",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "finish_reason",
    "guardrail_outcome",
)


def is_inference_table(columns: Iterable[str]) -> bool:
    """Whether a table with these columns is an inference (payload) table."""
    names = set(columns)
    return all(c in names for c in _MARKERS)


def traffic_predicate(include: Sequence[str], kind: str = "custom") -> str:
    """The SQL predicate on payload rows a monitor reads: live traffic (no shadow, replay,
    batch or cache-hit rows but those ``include`` names) and, for custom models, status 200."""
    parts = [sql for name, sql in _TRAFFIC.items() if name not in include]
    if kind == "custom":
        parts.append("status_code = 200")
    return " AND ".join(parts) if parts else "TRUE"


def _loads(text: Any) -> Any:
    if not isinstance(text, str | bytes):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def payload_kind(responses: Iterable[Any]) -> str:
    """``custom`` or ``llm``: what the first answer that parses says (``custom`` when none does)."""
    for text in responses:
        body = _loads(text)
        if isinstance(body, dict):
            if "predictions" in body:
                return "custom"
            if "choices" in body or body.get("object") in ("list", "chat.completion", "text_completion"):
                return "llm"
    return "custom"


# ---- custom models ---------------------------------------------------------------------------------
def _tensor_row(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return item
    if isinstance(item, list):
        return {f"input_{i}": v for i, v in enumerate(item)}
    return {"input": item}


def _columnar(columns: dict[str, Any]) -> list[dict[str, Any]]:
    lists = {k: v for k, v in columns.items() if isinstance(v, list)}
    if not lists:
        return [columns]
    n = max(len(v) for v in lists.values())
    return [
        {k: (v[i] if i < len(v) else None) if k in lists else v for k, v in columns.items()} for i in range(n)
    ]


def _records(request: Any) -> list[dict[str, Any]]:
    """The records a custom-model request carries (empty when it carries none we read)."""
    if not isinstance(request, dict):
        return []
    split = request.get("dataframe_split")
    if isinstance(split, dict) and isinstance(split.get("data"), list):
        columns = split.get("columns")
        out = []
        for row in split["data"]:
            values = row if isinstance(row, list) else [row]
            names = columns if isinstance(columns, list) else [str(i) for i in range(len(values))]
            out.append(dict(zip((str(c) for c in names), values, strict=False)))
        return out
    records = request.get("dataframe_records")
    if isinstance(records, list):
        return [r if isinstance(r, dict) else _tensor_row(r) for r in records]
    if isinstance(records, dict):
        return _columnar(records)
    for key in ("inputs", "instances"):
        value = request.get(key)
        if isinstance(value, list):
            return [_tensor_row(item) for item in value]
        if isinstance(value, dict):
            return _columnar(value)
    return []


def _predictions(response: Any) -> list[Any]:
    if not isinstance(response, dict):
        return []
    value = response.get("predictions")
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return _columnar(value)
    return [] if value is None else [value]


def _prediction_fields(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        if not item:
            return {"prediction": None}
        key = "prediction" if "prediction" in item else next(iter(item))
        out = {"prediction": item[key]}
        out.update({f"prediction_{k}": v for k, v in item.items() if k != key})
        return out
    if isinstance(item, list):
        return {"prediction": orjson.dumps(item).decode()}
    return {"prediction": item}


class _Columns:
    """Columns built row by row, each padded with nulls where a row lacks it."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {}
        self.rows = 0

    def add(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            column = self.values.get(key)
            if column is None:
                column = self.values[key] = [None] * self.rows
            column.append(value)
        self.rows += 1
        if len(row) != len(self.values):
            for column in self.values.values():
                if len(column) < self.rows:
                    column.append(None)


def _arrow(values: list[Any]) -> pa.Array:
    """The values as one Arrow array: pyarrow's type, or text when they do not share one or hold
    a dict or a list (pyarrow reads these as a nested type, or refuses them among scalars)."""
    try:
        array = pa.array(values)
        if not pa.types.is_nested(array.type):
            return array
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    return pa.array(
        [None if v is None else v if isinstance(v, str) else orjson.dumps(v).decode() for v in values]
    )


def _guardrail_outcome(text: Any) -> str | None:
    decisions = _loads(text)
    if not isinstance(decisions, list) or not decisions:
        return None
    results = {d.get("result") for d in decisions if isinstance(d, dict)}
    for outcome in ("blocked", "masked", "allowed"):
        if outcome in results:
            return outcome
    return None


def _text_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_length(v) for v in value)
    if isinstance(value, dict):
        if "content" in value:
            return _text_length(value["content"])
        if value.get("type") == "text":
            return _text_length(value.get("text"))
    return 0


def _llm_fields(request: Any, response: Any, guardrails: Any) -> dict[str, Any]:
    prompt = None
    if isinstance(request, dict):
        for key in ("messages", "prompt", "input"):
            if key in request:
                prompt = _text_length(request[key])
                break
    answer = finish = None
    usage: dict[str, Any] = {}
    if isinstance(response, dict):
        choices = response.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            first = choices[0]
            message = first.get("message")
            answer = _text_length(message.get("content") if isinstance(message, dict) else first.get("text"))
            finish = first.get("finish_reason")
        if isinstance(response.get("usage"), dict):
            usage = response["usage"]
    return {
        "prompt_length": prompt,
        "answer_length": answer,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "finish_reason": finish,
        "guardrail_outcome": _guardrail_outcome(guardrails),
    }


def _column(rows: pa.Table, name: str, kind: pa.DataType, indices: pa.Array) -> pa.Array:
    """Column ``name`` of ``rows`` (nulls when absent) at ``indices``, as ``kind``."""
    if name not in rows.column_names:
        return pa.nulls(len(indices), kind)
    return rows.column(name).take(indices).combine_chunks().cast(kind)


def unpack(rows: pa.Table, kind: str) -> pa.Table:
    """Unpack payload ``rows`` (at least :data:`READ_COLUMNS`, already filtered) of a ``custom``
    or ``llm`` table into the monitor's rows (see the module docstring)."""
    batches = [b for b in _batches(rows, kind) if len(b.source)]
    if not batches:
        fields = [*BOOKKEEPING_COLUMNS, *(_LLM_COLUMNS if kind == "llm" else ("prediction",))]
        return _empty(fields)
    source = np.concatenate([b.source for b in batches])
    positions = np.concatenate([b.positions for b in batches])
    order = None
    if len(batches) > 1 or np.any(source[1:] < source[:-1]):  # DuckDB may answer out of order
        order = np.lexsort((positions, source))
    if order is not None:
        source, positions = source[order], positions[order]
    indices = pa.array(source, pa.int64())
    arrays = {
        "timestamp": _column(rows, "timestamp_ms", pa.int64(), indices).cast(pa.timestamp("ms", tz="UTC")),
        "client_request_id": _column(rows, "client_request_id", pa.string(), indices),
        "databricks_request_id": _column(rows, "databricks_request_id", pa.string(), indices),
        "request_row": pa.array(positions, pa.int64()),
        "served_entity_name": _column(rows, "served_entity_name", pa.string(), indices),
        "status_code": _column(rows, "status_code", pa.int64(), indices),
        "execution_time_ms": _column(rows, "execution_time_ms", pa.int64(), indices),
    }
    firsts: dict[str, tuple[int, int]] = {}
    for b in batches:
        for name, first in b.first.items():
            firsts[name] = min(first, firsts.get(name, first))
    for name in sorted(firsts, key=firsts.__getitem__):
        arrays[name] = _merged(name, batches, order)
    return pa.table(arrays)


class _Batch:
    """Unpacked rows of some payload rows: each row's payload row (``source``) and place in its
    request, its columns (Arrow arrays, or lists of values for the general path) and where each
    column first appears ((payload row, rank): the general path's order of columns)."""

    def __init__(
        self,
        source: np.ndarray,
        positions: np.ndarray,
        columns: dict[str, Any],
        first: dict[str, tuple[int, int]],
        *,
        fast: bool = False,
    ) -> None:
        self.source, self.positions, self.columns, self.first = source, positions, columns, first
        self.fast = fast  #: the fast path's (for the tests)

    def array(self, name: str) -> pa.Array:
        values = self.columns.get(name)
        if values is None:
            return pa.nulls(len(self.source))
        return _arrow(values) if isinstance(values, list) else values


def _merged(name: str, batches: list[_Batch], order: np.ndarray | None) -> pa.Array:
    """Column ``name`` of all the batches, in the unpacked rows' order, typed as the general path
    types it over all the values (the batches' own arrays when they share a type, else the
    values again through :func:`_arrow`)."""
    if len(batches) == 1:
        merged = batches[0].array(name)
        return merged.take(pa.array(order, pa.int64())) if order is not None else merged
    pieces = [b.array(name) for b in batches]
    types = {p.type for p in pieces if p.type != pa.null()}
    if len(types) <= 1:
        kind = types.pop() if types else pa.null()
        merged = pa.concat_arrays([p.cast(kind) for p in pieces])
    else:
        values: list[Any] = []
        for b, p in zip(batches, pieces, strict=True):
            column = b.columns.get(name)
            values.extend(column if isinstance(column, list) else p.to_pylist())
        merged = _arrow(values)
    return merged.take(pa.array(order, pa.int64())) if order is not None else merged


def _batches(rows: pa.Table, kind: str) -> list[_Batch]:
    """The payload ``rows`` unpacked: the general path's batch, then one batch per list of
    columns of the queries of the common shape (the fast path)."""
    n = rows.num_rows

    def texts(name: str) -> list[Any]:
        return rows.column(name).to_pylist() if name in rows.column_names else [None] * n

    requests, responses, guardrails = texts("request"), texts("response"), texts("guardrails")
    reserved = set(BOOKKEEPING_COLUMNS) | set(_LLM_COLUMNS)
    renamed: dict[str, str] = {}  # a request's key -> its column
    source: list[int] = []  # each unpacked row's payload row
    positions: list[int] = []  # and its place in its request
    first: dict[str, tuple[int, int]] = {}
    groups: dict[tuple[Any, ...], _SplitGroup | None] = {}
    out = _Columns()
    for i in range(n):
        request, response = _loads(requests[i]), _loads(responses[i])
        if kind == "llm":
            source.append(i)
            positions.append(0)
            row = _llm_fields(request, response, guardrails[i])
            _note_first(first, row, i)
            out.add(row)
            continue
        split = _split_query(request, response)
        if split is not None:
            columns, data, predictions = split
            try:
                group = groups[columns]
            except KeyError:
                group = groups[columns] = _split_group(columns, reserved)
            except TypeError:  # a column named by a list or a dict
                group = None
            if group is not None:
                group.add(i, data, predictions)
                continue
        predictions = _predictions(response)
        for j, record in enumerate(_records(request)):
            source.append(i)
            positions.append(j)
            row = {}
            for key, value in record.items():
                column = renamed.get(key)
                if column is None:
                    column = _input_name(key, reserved)
                    renamed[key] = column
                row[column] = value
            row.update(_prediction_fields(predictions[j] if j < len(predictions) else None))
            _note_first(first, row, i)
            out.add(row)
    general = _Batch(np.array(source, np.int64), np.array(positions, np.int64), out.values, first)
    return [general, *(g.batch() for g in groups.values() if g is not None and g.rows)]


def _split_group(columns: tuple[Any, ...], reserved: set[str]) -> _SplitGroup | None:
    """The fast path's group of the queries with these columns: None (the general path) unless
    they are distinct strings whose columns are distinct too."""
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        return None
    outputs = [_input_name(c, reserved) for c in columns]
    if len(set(outputs)) != len(outputs):
        return None
    return _SplitGroup(outputs)


def _note_first(first: dict[str, tuple[int, int]], row: dict[str, Any], i: int) -> None:
    for rank, key in enumerate(row):
        if key not in first:
            first[key] = (i, rank)


def _input_name(key: str, reserved: set[str]) -> str:
    return f"input_{key}" if key in reserved or key.startswith("prediction") else key


# ---- the fast path: dataframe_split of scalars, a flat list of predictions -------------------------
def _split_query(request: Any, response: Any) -> tuple[tuple[str, ...], list[Any], list[Any]] | None:
    """(columns, data, predictions) of a query of the common shape: a ``dataframe_split`` with a
    list of distinct string columns and rows (lists) of that length, answered by as many
    predictions, none of them a list or a dict; None for any other query."""
    if not isinstance(request, dict) or not isinstance(response, dict):
        return None
    split = request.get("dataframe_split")
    predictions = response.get("predictions")
    if not isinstance(split, dict) or not isinstance(predictions, list):
        return None
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not isinstance(data, list) or len(data) != len(predictions):
        return None
    width = len(columns)
    if not all(type(row) is list and len(row) == width for row in data):
        return None
    if any(type(item) in (dict, list) for item in predictions):
        return None
    return tuple(columns), data, predictions


class _SplitGroup:
    """The fast path's rows of the queries with one list of columns: their values kept as the
    rows' lists (transposed into columns once at the end)."""

    def __init__(self, outputs: list[str]) -> None:
        self.outputs = outputs
        self.rows: list[list[Any]] = []
        self.predictions: list[Any] = []
        self.queries: list[int] = []  # the payload rows
        self.counts: list[int] = []  # and their records

    def add(self, i: int, data: list[Any], predictions: list[Any]) -> None:
        self.rows.extend(data)
        self.predictions.extend(predictions)
        self.queries.append(i)
        self.counts.append(len(data))

    def batch(self) -> _Batch:
        counts = np.array(self.counts, np.int64)
        source = np.repeat(np.array(self.queries, np.int64), counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        names = [*self.outputs, "prediction"]
        columns = [list(c) for c in zip(*self.rows, strict=True)] if self.outputs else []
        columns.append(self.predictions)
        first = int(source[0])
        return _Batch(
            source,
            np.arange(len(source), dtype=np.int64) - starts,
            dict(zip(names, columns, strict=True)),
            {name: (first, rank) for rank, name in enumerate(names)},
            fast=True,
        )


def _empty(fields: Sequence[str]) -> pa.Table:
    types = {
        "timestamp": pa.timestamp("ms", tz="UTC"),
        "request_row": pa.int64(),
        "status_code": pa.int64(),
        "execution_time_ms": pa.int64(),
        "prompt_length": pa.int64(),
        "answer_length": pa.int64(),
        "prompt_tokens": pa.int64(),
        "completion_tokens": pa.int64(),
        "total_tokens": pa.int64(),
        "prediction": pa.float64(),
    }
    return pa.table({name: pa.array([], types.get(name, pa.string())) for name in fields})
