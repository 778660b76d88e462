"""Custom models: an MLflow pyfunc model, and the request and response formats it serves.

What belongs here is everything that depends on the model and on the JSON formats of
compat-api.md §B.2 and §B.3, and nothing about processes or sockets:

* parsing a request body into a :class:`ModelInput` (pure functions, one per input family:
  ``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, plus the unified LLM
  body that MLflow's scoring server accepts);
* :class:`CustomModel`, which loads the model, builds what ``predict`` receives, combines
  several frame inputs into one (for the batcher in ``runtime/batching.py``), predicts and
  renders ``{"predictions": ...}`` the way ``mlflow models serve`` does;
* the translation of MLflow's exceptions into our errors, done once, in :meth:`CustomModel.run`;
* what a model that looks its features up did for each request (:meth:`CustomModel.lookups`:
  keys without a row, and the rows its raw model received), split per request of a batch.

Client mistakes raise :class:`~modelport.errors.BadRequest` subclasses; anything the model
raises otherwise becomes a plain :class:`~modelport.errors.ModelportError` (``INTERNAL_ERROR``)
whose message is ``"<ExceptionType>: <message>"``, except one of ours (a model modelport wrote,
such as the feature lookup of ``modelport/features/mlflow_model.py``), which keeps its status.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel, load_model
from mlflow.types.schema import DataType, Schema
from mlflow.utils.proto_json_utils import (
    cast_df_types_according_to_schema,
    dataframe_from_parsed_json,
    parse_tf_serving_input,
)

from modelport.errors import BadRequest, InvalidParameterValue, MalformedRequest, ModelportError

__all__ = [
    "BATCH_FLAVORS",
    "FAMILIES",
    "CustomModel",
    "FrameRows",
    "Lookups",
    "ModelInput",
    "SignatureInfo",
    "decode_body",
    "frame_from_records",
    "frame_from_split",
    "parse_family",
    "parse_inputs",
    "parse_instances",
    "parse_request",
    "predictions_json",
    "render_json",
]

#: Flavors whose pyfunc ``predict`` treats rows independently, so that rows of several
#: requests may be predicted together and the output split back by position.
BATCH_FLAVORS = frozenset({"sklearn", "xgboost", "lightgbm", "catboost", "keras", "pytorch", "onnx"})
FAMILIES = ("dataframe_split", "dataframe_records", "instances", "inputs")
_LLM_KEYS = ("messages", "prompt", "input")
_IGNORED_KEYS = frozenset({"client_request_id", "usage_context"})
_CLIENT_MLFLOW_CODES = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST"})
_MAX_MESSAGE = 1000
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
# The type of a cell, as far as it decides a pandas column dtype: ints and floats mix into
# float64 in a frame of several requests exactly as within one request, other mixes don't.
_CELL_KINDS: dict[type, str] = {int: "n", float: "n", bool: "b", str: "s", type(None): "0"}


@dataclass(frozen=True, slots=True)
class SignatureInfo:
    """What parsing needs to know about the model's signature (computed once at load)."""

    schema: Schema | None = None
    #: Tensor-based signature (``TensorSpec`` inputs): inputs become numpy arrays.
    tensor: bool = False
    #: Column-based with names, every column a plain ``DataType`` (no arrays, objects, maps).
    plain_columns: bool = False
    #: The signature comes from type hints: the body must carry ``inputs``, passed as is.
    type_hints: bool = False
    #: Names of the params the signature declares; ``None`` when it declares no params.
    params: frozenset[str] | None = None
    #: Set when every input is a named ``double`` column: their names.
    float_columns: frozenset[str] | None = None

    @classmethod
    def of(cls, model: PyFuncModel) -> SignatureInfo:
        meta = model.metadata
        schema = meta.get_input_schema()
        tensor = schema is not None and schema.is_tensor_spec()
        plain = (
            schema is not None
            and not tensor
            and schema.has_input_names()
            and all(isinstance(spec.type, DataType) for spec in schema.inputs)
        )
        params_schema = meta.get_params_schema()
        params = frozenset(p.name for p in params_schema.params) if params_schema is not None else None
        floats = None
        if plain and schema is not None and all(spec.type == DataType.double for spec in schema.inputs):
            floats = frozenset(str(name) for name in schema.input_names())
        return cls(schema, tensor, plain, bool(meta._is_signature_from_type_hint()), params, floats)


_NO_SIGNATURE = SignatureInfo()


@dataclass(slots=True)
class FrameRows:
    """A DataFrame input kept as JSON rows, so that several can become one frame cheaply.

    ``rows`` holds lists (``orient="split"``), dicts that all have the keys ``columns`` in
    that order (``"records"``), or, for ``"columns"``, the column lists themselves.
    """

    columns: tuple[Any, ...]
    rows: list[Any]
    orient: str
    index: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.rows[0]) if self.orient == "columns" else len(self.rows)

    def row_lists(self) -> list[list[Any]]:
        if self.orient == "split":
            return self.rows
        if self.orient == "records":
            return [list(r.values()) for r in self.rows]
        return [list(r) for r in zip(*self.rows, strict=True)]

    def first_row(self) -> list[Any]:
        if not len(self):
            return []
        if self.orient == "split":
            return list(self.rows[0])
        if self.orient == "records":
            return list(self.rows[0].values())
        return [col[0] for col in self.rows]


@dataclass(slots=True, eq=False)
class ModelInput:
    """One parsed request: what to predict, with which params, and how to render it.

    ``frame`` is set for DataFrame inputs (then ``data`` is ``None`` and the frame is built
    when predicting); ``key`` is set when the frame may be combined with others having the
    same key (same columns, same cell kinds in the first row, no params).
    """

    family: str
    data: Any = None
    frame: FrameRows | None = None
    params: dict[str, Any] | None = None
    key: Hashable | None = None
    rows: int = 0
    #: ``False`` for unified LLM bodies, whose prediction is sent without the wrapper.
    wrap: bool = True
    #: The endpoint records its queries (an inference table): a model that completes its input
    #: (a feature-aware model) gives back what its raw model received (:class:`Lookups`).
    keep_input: bool = False


@dataclass(slots=True)
class Lookups:
    """What a model that looks features up (``modelport/features/mlflow_model.py``) did for one
    request, for the gateway (``runtime/protocol.py``'s answer trailer).

    ``missing`` counts, per table, the request's keys that found no row (tables without such a
    key are left out). ``request`` is the request as the raw model received it,
    ``{"dataframe_records": [...]}`` (with the request's ``params``) as JSON, when the request
    asked for it (:attr:`ModelInput.keep_input`); ``None`` otherwise.
    """

    missing: dict[str, int]
    request: bytes | None = None


# --- parsing ---------------------------------------------------------------------------------


def decode_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; :class:`MalformedRequest` otherwise."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        # Python clients (mlflow, requests' json=) write NaN and Infinity, which orjson refuses.
        try:
            value = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise MalformedRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedRequest(
            f"The request body must be a JSON object with one of the fields {', '.join(FAMILIES)}; "
            f"got a JSON {_json_type(value)}."
        )
    return value


def parse_request(body: bytes, sig: SignatureInfo) -> ModelInput:
    """Parse a request body (compat-api.md §B.2) for a model with signature ``sig``.

    Raises :class:`MalformedRequest` for a body that is not a JSON object, and
    :class:`BadRequest` / :class:`InvalidParameterValue` naming the field that is wrong.
    """
    doc = decode_body(body)
    present = [f for f in FAMILIES if f in doc]
    params = _params(doc.get("params"), sig)
    if len(present) != 1:
        if not present and any(k in doc for k in _LLM_KEYS):
            return _llm_input(doc, sig)
        found = ", ".join(present) if present else "none of them"
        raise BadRequest(
            f"The request must have exactly one of the fields {', '.join(FAMILIES)}; found {found}."
        )
    return parse_family(present[0], doc[present[0]], params, sig)


def parse_family(family: str, value: Any, params: dict[str, Any] | None, sig: SignatureInfo) -> ModelInput:
    """Parse the value of input field ``family`` (one of :data:`FAMILIES`)."""
    if sig.type_hints:
        if family != "inputs":
            raise InvalidParameterValue(
                "This model's signature comes from type hints: send the input in the 'inputs' field."
            )
        return ModelInput(family, data=value, params=params)
    if family == "dataframe_split":
        return _frame_input(family, split_rows(value), params)
    if family == "dataframe_records":
        return _frame_input(family, records_rows(value, family), params)
    if family == "instances":
        if not isinstance(value, list):
            raise InvalidParameterValue(f"'instances' must be a list of rows; got a {_json_type(value)}.")
        if not sig.tensor and value and all(isinstance(r, dict) for r in value):
            return _frame_input(family, records_rows(value, family), params)
        return ModelInput(family, data=value, params=params)
    if sig.plain_columns and isinstance(value, dict):
        columns = columns_rows(value)
        if columns is not None:
            return _frame_input(family, columns, params)
    return ModelInput(family, data=value, params=params)


def split_rows(value: Any) -> FrameRows | dict[str, Any]:
    """Check a ``dataframe_split`` value; rows that may be combined come back as :class:`FrameRows`."""
    if not isinstance(value, dict):
        raise InvalidParameterValue(
            "'dataframe_split' must be an object with 'columns', 'data' and optionally 'index'; "
            f"got a {_json_type(value)}."
        )
    if extra := [k for k in value if k not in ("columns", "data", "index")]:
        raise InvalidParameterValue(
            f"'dataframe_split' has unexpected fields {extra}: "
            "only 'columns', 'data' and 'index' are allowed."
        )
    data = value.get("data")
    if not isinstance(data, list):
        raise InvalidParameterValue(f"'dataframe_split.data' must be a list of rows; got {_json_type(data)}.")
    columns = value.get("columns")
    if columns is not None and not isinstance(columns, list):
        raise InvalidParameterValue(f"'dataframe_split.columns' must be a list; got {_json_type(columns)}.")
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise InvalidParameterValue(
            f"'dataframe_split.index' must be a list with one label per row ({len(data)})."
        )
    if columns is None or not all(isinstance(row, list) for row in data):
        return value
    width = len(columns)
    for i, row in enumerate(data):
        if len(row) != width:
            raise InvalidParameterValue(
                f"'dataframe_split.data' row {i} has {len(row)} values but there are {width} columns."
            )
    try:
        key = tuple(columns)
        hash(key)
    except TypeError:
        return value
    return FrameRows(key, data, "split", index)


def records_rows(value: Any, family: str = "dataframe_records") -> FrameRows | list[Any]:
    """Check a list of records; records with the same keys in the same order become :class:`FrameRows`."""
    if not isinstance(value, list):
        raise InvalidParameterValue(f"'{family}' must be a list of records; got a {_json_type(value)}.")
    if not value or not isinstance(value[0], dict):
        return value
    columns = tuple(value[0])
    for record in value:
        if not isinstance(record, dict) or tuple(record) != columns:
            return value
    return FrameRows(columns, value, "records")


def columns_rows(value: dict[str, Any]) -> FrameRows | None:
    """An ``inputs`` object of equal-length column lists as :class:`FrameRows`, else ``None``."""
    columns = list(value.values())
    if not columns or not all(isinstance(c, list) for c in columns):
        return None
    n = len(columns[0])
    if n == 0 or any(len(c) != n for c in columns) or all(isinstance(x, str) for x in columns[0]):
        # Strings are left to MLflow's conversion (numpy arrays typed from the signature), which
        # handles string and binary columns in ways the plain frame would not.
        return None
    return FrameRows(tuple(value), columns, "columns")


def frame_from_split(value: Any, sig: SignatureInfo = _NO_SIGNATURE) -> pd.DataFrame:
    """A ``dataframe_split`` value as a DataFrame, cast to the signature's column types."""
    checked = split_rows(value)
    if isinstance(checked, FrameRows):
        return frame_of([checked], sig)
    return _mlflow_frame(checked, "split", sig.schema)


def frame_from_records(value: Any, sig: SignatureInfo = _NO_SIGNATURE) -> pd.DataFrame:
    """A ``dataframe_records`` value as a DataFrame, cast to the signature's column types."""
    checked = records_rows(value)
    if isinstance(checked, FrameRows):
        return frame_of([checked], sig)
    return _mlflow_frame(checked, "records", sig.schema)


def parse_instances(value: Any, sig: SignatureInfo) -> Any:
    """An ``instances`` value as ``predict`` receives it (DataFrame, numpy array or dict of arrays)."""
    return _model_data(parse_family("instances", value, None, sig), sig)


def parse_inputs(value: Any, sig: SignatureInfo) -> Any:
    """An ``inputs`` value as ``predict`` receives it (DataFrame, numpy array or dict of arrays)."""
    return _model_data(parse_family("inputs", value, None, sig), sig)


def frame_of(parts: Sequence[FrameRows], sig: SignatureInfo) -> pd.DataFrame:
    """One DataFrame holding the rows of ``parts`` in order (all have the same columns), cast
    to the signature's column types as MLflow's scoring server casts them."""
    first = parts[0]
    index: list[Any] | None = None
    if any(p.index is not None for p in parts):
        index = []
        for part in parts:
            index.extend(part.index if part.index is not None else range(len(part)))
    if len(parts) == 1 and first.orient == "columns":
        frame = pd.DataFrame(dict(zip(first.columns, first.rows, strict=True)))
    else:
        rows: list[Any] = []
        for part in parts:
            rows.extend(part.row_lists())
        fast = _float_frame(first.columns, rows, index, sig)
        if fast is not None:
            return fast
        try:
            frame = pd.DataFrame(data=rows, columns=list(first.columns), index=index)
        except Exception as exc:
            raise InvalidParameterValue(f"The rows do not form a valid table: {exc}") from None
    if sig.schema is not None:
        frame = _cast(frame, sig.schema)
    return frame


def _float_frame(
    columns: tuple[Any, ...], rows: list[list[Any]], index: list[Any] | None, sig: SignatureInfo
) -> pd.DataFrame | None:
    """The frame of a table of numbers, built in one go, or ``None`` when that may differ.

    With an all-``double`` signature, ints and floats give what ``pd.DataFrame(rows)`` and
    MLflow's ``astype(float64)`` per column give; without a signature only floats do (a
    column of ints would stay int64). Several times faster than the general path.
    """
    if len(set(columns)) != len(columns):
        return None
    if sig.schema is None:
        numbers: tuple[type, ...] = (float,)
    elif sig.float_columns is not None and sig.float_columns.issuperset(columns):
        numbers = (float, int)
    else:
        return None
    for row in rows:
        for value in row:
            if type(value) not in numbers:
                return None
    try:
        array = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    except (OverflowError, ValueError):
        return None
    return pd.DataFrame(array, columns=list(columns), index=index, copy=False)


def _cast(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """MLflow's cast to the signature, skipping columns that already have the right dtype."""
    if schema.has_input_names() and not schema.is_tensor_spec() and frame.columns.is_unique:
        dtypes = frame.dtypes
        todo = []
        for spec in schema.inputs:
            if spec.name not in dtypes.index:
                continue
            kind = spec.type
            if (
                isinstance(kind, DataType)
                and kind not in (DataType.binary, DataType.datetime)
                and dtypes[spec.name] == kind.to_pandas()
            ):
                continue
            todo.append(spec)
        if not todo:
            return frame
        if len(todo) < len(schema.inputs):
            schema = Schema(todo)
    try:
        cast: pd.DataFrame = cast_df_types_according_to_schema(frame, schema)
    except MlflowException as exc:
        raise _client_error(exc) from None
    return cast


def _frame_input(
    family: str, checked: FrameRows | dict[str, Any] | list[Any], params: dict[str, Any] | None
) -> ModelInput:
    if not isinstance(checked, FrameRows):
        return ModelInput(family, data=checked, params=params)
    key: Hashable | None = None
    if params is None:
        key = (checked.columns, tuple(_CELL_KINDS.get(type(v), "o") for v in checked.first_row()))
    return ModelInput(family, frame=checked, params=params, key=key, rows=len(checked))


def _llm_input(doc: dict[str, Any], sig: SignatureInfo) -> ModelInput:
    # MLflow's scoring server passes unified LLM bodies (chat, completions, embeddings) as they
    # are, minus the params its signature declares, and returns the prediction unwrapped.
    names = sig.params or frozenset()
    data = {k: v for k, v in doc.items() if k not in names and k not in _IGNORED_KEYS}
    params = {k: v for k, v in doc.items() if k in names} or None
    return ModelInput("llm", data=data, params=params, wrap=False)


def _params(value: Any, sig: SignatureInfo) -> dict[str, Any] | None:
    if value is None or sig.params is None:
        # Without a params schema MLflow ignores params; dropping them keeps the request batchable.
        return None
    if not isinstance(value, dict):
        raise InvalidParameterValue(f"'params' must be an object; got a {_json_type(value)}.")
    return value or None


def _mlflow_frame(value: Any, orient: str, schema: Schema | None) -> pd.DataFrame:
    try:
        frame: pd.DataFrame = dataframe_from_parsed_json(value, pandas_orient=orient, schema=schema)
    except MlflowException as exc:
        raise _client_error(exc) from None
    return frame


def _model_data(inp: ModelInput, sig: SignatureInfo) -> Any:
    """What ``predict`` receives for ``inp``; may raise client errors."""
    if inp.frame is not None:
        return frame_of([inp.frame], sig)
    if inp.family == "dataframe_split":
        return _mlflow_frame(inp.data, "split", sig.schema)
    if inp.family == "dataframe_records" or (
        # Records with different keys: still a frame (MLflow would make a dict of arrays).
        inp.family == "instances"
        and not sig.tensor
        and inp.data
        and all(isinstance(r, dict) for r in inp.data)
    ):
        return _mlflow_frame(inp.data, "records", sig.schema)
    if inp.family in ("instances", "inputs") and not sig.type_hints:
        try:
            return parse_tf_serving_input({inp.family: inp.data}, schema=sig.schema)
        except MlflowException as exc:
            raise _client_error(exc) from None
    return inp.data


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else type(value).__name__


# --- errors ----------------------------------------------------------------------------------


def _client_error(exc: MlflowException, schema: Schema | None = None) -> BadRequest:
    message = exc.message
    # PyFuncModel wraps schema errors as "Failed to enforce schema of data '<whole input>' with
    # schema '<schema>'. Error: <what is wrong>": keep only what is wrong.
    marker = f" with schema '{schema}'. Error: " if schema is not None else None
    if marker and message.startswith("Failed to enforce schema of data") and marker in message:
        message = "Input does not match the model signature: " + message.split(marker, 1)[1]
    elif message.startswith("Invalid input. "):
        message = message[len("Invalid input. ") :]
    return InvalidParameterValue(_clip(message))


def _server_error(exc: BaseException) -> ModelportError:
    text = exc.message if isinstance(exc, MlflowException) else str(exc)
    return ModelportError(_clip(f"{type(exc).__name__}: {text}"))


def _clip(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


# --- rendering -------------------------------------------------------------------------------


def predictions_json(output: Any) -> bytes:
    """``{"predictions": ...}`` as ``mlflow models serve`` renders ``output`` (NaN → null)."""
    return orjson.dumps({"predictions": _jsonable(output)}, default=_default, option=_JSON_OPTIONS)


def render_json(output: Any) -> bytes:
    """``output`` alone as JSON (unified LLM bodies are answered without the wrapper)."""
    return orjson.dumps(_jsonable(output), default=_default, option=_JSON_OPTIONS)


def _jsonable(output: Any) -> Any:
    # As mlflow.utils.proto_json_utils._get_jsonable_obj: frames and series become records.
    if isinstance(output, pd.DataFrame):
        return output.to_dict(orient="records")
    if isinstance(output, pd.Series):
        return pd.DataFrame(output).to_dict(orient="records")
    return output


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as dicts of its cells (a column at a time: several times faster than
    ``to_dict(orient="records")``); cells orjson cannot write are left to :func:`_default`."""
    names = [str(name) for name in frame.columns]
    columns = [column.tolist() for _, column in frame.items()]
    return [dict(zip(names, cells, strict=True)) for cells in zip(*columns, strict=True)]


def _request_json(rows: list[dict[str, Any]], params: dict[str, Any] | None) -> bytes | None:
    """``{"dataframe_records": rows}`` (and ``params``) as JSON; ``None`` if a cell cannot be
    written (the answer is sent all the same, the record keeps the request as sent)."""
    request: dict[str, Any] = {"dataframe_records": rows}
    if params:
        request["params"] = params
    try:
        return orjson.dumps(request, default=_default, option=_JSON_OPTIONS)
    except (TypeError, ValueError, orjson.JSONEncodeError):
        return None


def _default(obj: Any) -> Any:
    """What orjson cannot write itself; mirrors MLflow's ``NumpyEncoder``."""
    if isinstance(obj, np.ndarray):  # object or string arrays, non-contiguous arrays
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (pd.DataFrame, pd.Series)):
        return _jsonable(obj)
    if isinstance(obj, (bytes, bytearray)):
        return base64.encodebytes(obj).decode("ascii")
    if obj is pd.NaT or obj is pd.NA:
        return None
    if isinstance(obj, (pd.Timestamp, datetime.date, datetime.time)):
        return obj.isoformat()
    if hasattr(obj, "model_dump"):  # pydantic models
        return obj.model_dump()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


# --- the model -------------------------------------------------------------------------------


class CustomModel:
    """A loaded MLflow pyfunc model and how to serve it.

    Not thread-safe in the sense of concurrent ``predict`` calls: the worker calls
    :meth:`run`, :meth:`predict` and :meth:`combine` from one predict thread at a time.
    Parsing (:meth:`parse`) is pure and may run anywhere.
    """

    def __init__(self, model: PyFuncModel) -> None:
        self.model = model
        self.flavors: list[str] = list(model.metadata.flavors)
        self.signature = SignatureInfo.of(model)
        #: Rows of several requests may be predicted together (see :data:`BATCH_FLAVORS`); a
        #: model that wraps another (a feature-aware model: ``modelport/features/mlflow_model.py``)
        #: names the wrapped model's flavors in ``raw_flavors``.
        impl = getattr(model, "_model_impl", None)
        wrapped = getattr(impl, "raw_flavors", None) or ()
        self.batch_capable = bool(BATCH_FLAVORS.intersection([*self.flavors, *wrapped]))
        self._predict = model.predict
        #: A model that completes its input says what its raw model received (``last_input``);
        #: ``None`` for every other model, which :meth:`lookups` then costs nothing.
        self._last_input: Callable[[], tuple[pd.DataFrame, dict[str, list[int]]] | None] | None = getattr(
            impl, "last_input", None
        )

    @classmethod
    def load(cls, path: str) -> CustomModel:
        """Load the model in folder ``path`` (holding ``MLmodel``); MLflow's errors propagate."""
        return cls(load_model(path))

    def parse(self, body: bytes) -> ModelInput:
        """Parse a request body; raises :class:`BadRequest` subclasses for bad input."""
        return parse_request(body, self.signature)

    def prepare(self, inp: ModelInput) -> Any:
        """What ``predict`` receives for one request; raises :class:`BadRequest` subclasses."""
        return _model_data(inp, self.signature)

    def combine(self, inputs: Sequence[ModelInput]) -> pd.DataFrame:
        """One frame with the rows of ``inputs`` (all have the same ``key``), in order."""
        frames = [inp.frame for inp in inputs if inp.frame is not None]
        if len(frames) != len(inputs):
            raise ValueError("only frame inputs can be combined")
        return frame_of(frames, self.signature)

    def run(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Call the model's ``predict``; translate what it raises into our errors."""
        try:
            if params is None:
                return self._predict(data)
            return self._predict(data, params=params)
        except MlflowException as exc:
            if exc.error_code in _CLIENT_MLFLOW_CODES:
                raise _client_error(exc, self.signature.schema) from None
            raise _server_error(exc) from exc
        except ModelportError:
            raise  # ours, raised by a model modelport wrote (feature lookup): its own status
        except Exception as exc:
            raise _server_error(exc) from exc

    def render(self, output: Any, wrap: bool = True) -> bytes:
        """The response body for ``output``; an unserialisable output is a server error."""
        try:
            return predictions_json(output) if wrap else render_json(output)
        except (TypeError, ValueError, orjson.JSONEncodeError) as exc:
            raise _server_error(exc) from exc

    def predict(self, inp: ModelInput) -> bytes:
        """Predict one request alone and return the response body."""
        return self.render(self.run(self.prepare(inp), inp.params), inp.wrap)

    def lookups(self, inputs: Sequence[ModelInput]) -> list[Lookups] | None:
        """What the model looked up for each of ``inputs`` in the last :meth:`run` of this
        thread, which predicted them (together, in order): ``None`` for a model that looks
        nothing up, or when that run gave no frame whose rows are those of ``inputs``.
        Call it once, right after the run."""
        if self._last_input is None:
            return None
        last = self._last_input()
        if last is None:
            return None
        frame, missed = last
        counts = [len(frame)] if len(inputs) == 1 else [inp.rows for inp in inputs]
        if sum(counts) != len(frame):
            return None
        rows = _records(frame) if any(inp.keep_input for inp in inputs) else None
        found: list[Lookups] = []
        start = 0
        for inp, n in zip(inputs, counts, strict=True):
            stop = start + n
            missing = {}
            for table, positions in missed.items():
                count = sum(1 for i in positions if start <= i < stop)
                if count:
                    missing[table] = count
            request = None
            if inp.keep_input and rows is not None:
                request = _request_json(rows[start:stop], inp.params)
            found.append(Lookups(missing, request))
            start = stop
        return found
