"""``ai_query`` for Spark: a column whose values a modelport endpoint answers, with the SQL
function's semantics (``docs/batch.md``).

::

    from modelport.spark import ai_query

    scored = df.withColumn("score", ai_query("my-model", "f0", "f1", host="http://...", token="..."))

The column is an iterator pandas UDF: each Python worker iterator (one per partition) keeps one
HTTP client for all its Arrow batches. How rows are sent, as ``batch/ai_query.py`` sends them:

- custom model: rows in ``dataframe_split`` requests of up to ``batch_rows`` rows (and about
  :data:`BATCH_BYTES` of JSON), the columns (or a struct column's fields) named as the model's
  inputs; a single plain column goes as the model's only input;
- chat / completions: one request per row, ``concurrency`` in flight;
- embeddings: ``input`` lists of up to ``batch_rows`` texts, an ``ARRAY<FLOAT>`` per row.

A 429 or 503 (or no answer at all) is retried with backoff, waiting what ``Retry-After`` says, for
at most :data:`RETRY_SECONDS` per request. A NULL request (a single column that is NULL) is a NULL
result, sent nowhere. With ``fail_on_error=False`` the result is a struct ``<result,
errorMessage>`` and a failed multi-row request is sent again row by row, so only the rows that
fail carry a message; a refusal of the caller (401, 403) or an unknown endpoint (404) fails the
job whatever ``fail_on_error`` says.

pyspark is imported only when :func:`ai_query` is called, so importing this module needs no Spark.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, Union
from urllib.parse import quote

import httpx
import orjson

from modelport.config import env_value
from modelport.errors import (
    InvalidParameterValue,
    ModelportError,
    TemporarilyUnavailable,
    Unauthenticated,
    error_from_body,
)

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column
    from pyspark.sql.types import DataType

    from modelport.batch.ai_query import EndpointInfo

__all__ = ["BATCH_BYTES", "RETRY_SECONDS", "ai_query"]

T = TypeVar("T")

DEFAULT_HOST = "http://127.0.0.1:8080"
BATCH_ROWS = 256
EMBED_ROWS = 64
BATCH_BYTES = 4 * 1024 * 1024
CONCURRENCY = 16
RETRY_SECONDS = 60.0
#: What the usage and inference tables say these requests came from: ``ai_query``, as the SQL
#: function's requests, from a Spark job.
USAGE_CONTEXT = {"source": "ai_query", "client": "spark"}
_FATAL = frozenset({401, 403, 404})
_DDL_NAMES = {"VARCHAR": "STRING", "TEXT": "STRING"}
_PRIMITIVES = {"long": int, "integer": int, "short": int, "byte": int, "double": float, "float": float}


def ai_query(
    endpoint: str,
    *cols: str | Column,
    host: str | None = None,
    token: str | None = None,
    return_type: str | DataType | None = None,
    fail_on_error: bool = True,
    model_parameters: dict[str, Any] | None = None,
    batch_rows: int | None = None,
    concurrency: int = CONCURRENCY,
    timeout: float = 120.0,
) -> Column:
    """A column answered by ``endpoint`` on the modelport server at ``host`` (``MODELPORT_HOST``,
    default http://127.0.0.1:8080) with ``token`` (``MODELPORT_TOKEN``).

    ``cols``: the request. For a custom model, one column per model input (named as the input),
    or one struct column whose fields are the inputs, or one plain column sent as the model's
    only input. For chat, completions and embeddings endpoints, one column of text.

    ``return_type`` (a Spark DDL string such as ``"DOUBLE"`` or ``"STRUCT<label: STRING>"``, or a
    ``DataType``) is the result's type; without it: the model's output signature (else
    ``STRING``, a prediction's JSON when it is not a string), ``STRING`` for chat and
    completions, ``ARRAY<FLOAT>`` for embeddings. ``fail_on_error=False`` makes it
    ``STRUCT<result: <type>, errorMessage: STRING>``. ``model_parameters`` (``max_tokens``,
    ``temperature``, ...) go into each LLM request; a custom model refuses them, as Databricks'
    does. ``batch_rows``: rows per request (custom models: 256, embeddings: 64);
    ``concurrency``: requests in flight per partition.

    The endpoint is described here, on the driver (raising its error, e.g. ``EndpointNotFound``,
    at once). The token travels to the executors inside the UDF's closure.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import DataType, StringType, StructField, StructType

    # Here, on the driver only: the executors need neither DuckDB nor sqlglot (seconds per worker).
    from modelport.batch.ai_query import CUSTOM_PARAMETERS_REFUSED

    if not cols:
        raise InvalidParameterValue("ai_query needs the request: one or more columns")
    token = token or env_value("MODELPORT_TOKEN")
    if not token:
        raise Unauthenticated("no API token given: set MODELPORT_TOKEN or pass token=")
    base = (host or env_value("MODELPORT_HOST") or DEFAULT_HOST).rstrip("/")
    info = _describe(base, token, endpoint, timeout)
    if info.kind == "custom" and model_parameters:
        raise InvalidParameterValue(CUSTOM_PARAMETERS_REFUSED)
    if info.kind != "custom" and len(cols) != 1:
        raise InvalidParameterValue(f"'{endpoint}' is a {info.kind} endpoint: give one column of text.")

    if return_type is None:
        result_type = DataType.fromDDL(_ddl(info.default_type))
    elif isinstance(return_type, str):
        result_type = DataType.fromDDL(return_type)
    else:
        result_type = return_type
    out_type: DataType = result_type
    if not fail_on_error:
        out_type = StructType([StructField("result", result_type), StructField("errorMessage", StringType())])
    if len(cols) == 1:
        request = F.col(cols[0]) if isinstance(cols[0], str) else cols[0]
        missing = request.isNull()
        name = info.inputs[0] if len(info.inputs) == 1 else cols[0] if isinstance(cols[0], str) else "input"
    else:
        request, missing, name = F.struct(*cols), F.lit(False), "input"
    call = _Call(
        endpoint=endpoint,
        base=base,
        token=token,
        kind=info.kind,
        scalar_input=name,
        result_type=result_type,
        fail_on_error=fail_on_error,
        parameters=dict(model_parameters or {}),
        batch_rows=batch_rows or (EMBED_ROWS if info.kind == "embeddings" else BATCH_ROWS),
        concurrency=concurrency,
        timeout=timeout,
    )
    answered = _pandas_udf(call, out_type)(request, missing)
    # A pandas UDF cannot answer a NULL struct, only one of NULL fields: NULL in, NULL out here.
    return F.when(missing, F.lit(None)).otherwise(answered).alias("ai_query")


# -- the driver's side ---------------------------------------------------------------------------
def _describe(base: str, token: str, endpoint: str, timeout: float) -> EndpointInfo:
    from modelport.batch.ai_query import info_from_openapi

    response = httpx.get(
        f"{base}/api/2.0/serving-endpoints/{quote(endpoint, safe='')}/openapi",
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )
    if response.status_code >= 400:
        raise _error(response)
    return info_from_openapi(response.json())


def _ddl(duckdb_type: str) -> str:
    """A DuckDB type as ``EndpointInfo`` writes it (``BIGINT``, ``FLOAT[]``,
    ``STRUCT("a" DOUBLE, "b" VARCHAR)``) as a Spark DDL type."""
    text = duckdb_type.strip()
    if text.endswith("[]"):
        return f"ARRAY<{_ddl(text[:-2])}>"
    if text.upper().startswith("STRUCT(") and text.endswith(")"):
        fields = []
        for part in _top_level_split(text[len("STRUCT(") : -1]):
            found = re.fullmatch(r'\s*"((?:[^"]|"")*)"\s*(.*)', part, re.DOTALL)
            if found is None:
                raise InvalidParameterValue(f"Cannot read the model's output type {duckdb_type}.")
            name = found[1].replace('""', '"').replace("`", "``")
            fields.append(f"`{name}`: {_ddl(found[2])}")
        return f"STRUCT<{', '.join(fields)}>"
    return _DDL_NAMES.get(text.upper(), text)


def _top_level_split(text: str) -> list[str]:
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == ",":
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _pandas_udf(call: _Call, out_type: DataType) -> Callable[..., Column]:
    import pandas as pd
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import StructType

    def answer(batches: Iterator[tuple[pd.DataFrame | pd.Series, pd.Series]]) -> Iterator[Any]:
        with _Partition(call) as partition:
            for request, missing in batches:
                yield partition.answer(request, missing)

    # pyspark reads the UDF's kind from real type hints (this module's are strings), and it
    # knows typing.Union, not ``X | Y``.
    returns = pd.DataFrame if isinstance(out_type, StructType) else pd.Series
    answer.__annotations__ = {
        "batches": Iterator[tuple[Union[pd.DataFrame, pd.Series], pd.Series]],  # noqa: UP007
        "return": Iterator[returns],
    }
    return pandas_udf(answer, out_type)  # type: ignore[call-overload,no-any-return]


# -- the executors' side -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Call:
    """What the UDF needs on the executors (pickled into its closure)."""

    endpoint: str
    base: str
    token: str
    kind: str
    #: The column name a plain (non-struct) request is sent under to a custom model.
    scalar_input: str
    result_type: DataType
    fail_on_error: bool
    parameters: dict[str, Any] = field(default_factory=dict)
    batch_rows: int = BATCH_ROWS
    concurrency: int = CONCURRENCY
    timeout: float = 120.0


Answer = tuple[Any, str | None]


class _Partition:
    """One partition's HTTP client, on an event loop of its own; closed when the partition's
    batches are done (or Spark stops reading them)."""

    def __init__(self, call: _Call) -> None:
        self.call = call
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(
            base_url=call.base,
            headers={"Authorization": f"Bearer {call.token}", "Content-Type": "application/json"},
            timeout=call.timeout,
            limits=httpx.Limits(max_connections=call.concurrency),
        )
        self.path = f"/serving-endpoints/{quote(call.endpoint, safe='')}/invocations"

    def __enter__(self) -> _Partition:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.loop.run_until_complete(self.http.aclose())
        finally:
            self.loop.close()

    # -- one Arrow batch -------------------------------------------------------------------------
    def answer(self, request: pd.DataFrame | pd.Series, missing: pd.Series) -> pd.DataFrame | pd.Series:
        import pandas as pd

        skip = missing.tolist()
        if isinstance(request, pd.DataFrame):
            columns = [str(c) for c in request.columns]
            values = request.astype(object).where(request.notna(), None).values.tolist()
            rows: list[Any] = [
                None if s else dict(zip(columns, v, strict=True)) for s, v in zip(skip, values, strict=True)
            ]
        else:
            values = request.astype(object).where(request.notna(), None).tolist()
            rows = [None if s else v for s, v in zip(skip, values, strict=True)]
        answers = self.loop.run_until_complete(self._answers(rows))
        return _frame(self.call, answers)

    async def _answers(self, rows: list[Any]) -> list[Answer | None]:
        call = self.call
        limit = asyncio.Semaphore(call.concurrency)
        out: list[Answer | None] = [None] * len(rows)
        present = [i for i, r in enumerate(rows) if r is not None]

        async def guarded(coro: Awaitable[T]) -> T:
            async with limit:
                return await coro

        def failed(exc: ModelportError) -> Answer:
            if call.fail_on_error or exc.status in _FATAL:
                raise exc
            return (None, exc.message)

        async def one(i: int) -> None:
            try:
                out[i] = (await guarded(self._one(rows[i])), None)
            except ModelportError as exc:
                out[i] = failed(exc)

        async def group(indexes: list[int]) -> None:
            try:
                answers = await guarded(self._many([rows[i] for i in indexes]))
            except ModelportError as exc:
                if len(indexes) > 1 and not (call.fail_on_error or exc.status in _FATAL):
                    await _all(one(i) for i in indexes)  # find the rows that fail
                else:
                    out[indexes[0]] = failed(exc)  # raises unless this one row may fail
                return
            for i, answer in zip(indexes, answers, strict=True):
                out[i] = (answer, None)

        if call.kind in ("chat", "completions"):
            await _all(one(i) for i in present)
        else:
            await _all(group(g) for g in _groups(rows, present, call.batch_rows))
        return out

    # -- requests --------------------------------------------------------------------------------
    async def _one(self, row: Any) -> Any:
        call = self.call
        if call.kind == "chat":
            body = {"messages": [{"role": "user", "content": _text(row)}], **call.parameters}
            return (await self._send(body))["choices"][0]["message"]["content"]
        if call.kind == "completions":
            return (await self._send({"prompt": _text(row), **call.parameters}))["choices"][0]["text"]
        return (await self._many([row]))[0]

    async def _many(self, rows: list[Any]) -> list[Any]:
        """The answers of one request holding ``rows`` (custom or embeddings)."""
        call = self.call
        if call.kind == "embeddings":
            data = await self._send({"input": [_text(r) for r in rows], **call.parameters})
            items = sorted(data.get("data") or [], key=lambda d: d.get("index", 0))
            _check_count(call.endpoint, len(items), len(rows))
            return [d.get("embedding") for d in items]
        if all(isinstance(r, dict) for r in rows):
            columns = list(dict.fromkeys(k for r in rows for k in r))
            data = [[r.get(c) for c in columns] for r in rows]
        else:
            columns, data = [call.scalar_input], [[r] for r in rows]
        answer = await self._send({"dataframe_split": {"columns": columns, "data": data}})
        predictions = answer.get("predictions") if isinstance(answer, dict) else answer
        _check_count(call.endpoint, len(predictions) if isinstance(predictions, list) else -1, len(rows))
        return list(predictions)

    async def _send(self, body: dict[str, Any]) -> Any:
        """POST ``body``; a 429, a 503 or no answer is tried again (``Retry-After``, else a
        growing pause) until :data:`RETRY_SECONDS` have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_SECONDS
        payload = _dumps({**body, "usage_context": USAGE_CONTEXT})
        attempt = 0
        while True:
            try:
                try:
                    response = await self.http.post(self.path, content=payload)
                except httpx.TransportError as exc:
                    raise TemporarilyUnavailable(f"{self.call.base} did not answer: {exc!r}") from exc
                if response.status_code >= 400:
                    raise _error(response)
                return orjson.loads(response.content)
            except ModelportError as exc:
                if exc.status not in (429, 503):
                    raise
                wait = exc.retry_after if exc.retry_after is not None else min(8.0, 0.25 * 2**attempt)
                wait += random.uniform(0, 0.1)
                if loop.time() + wait > deadline:
                    raise
                attempt += 1
                await asyncio.sleep(wait)


def _frame(call: _Call, answers: list[Answer | None]) -> pd.DataFrame | pd.Series:
    """The batch's answers as pyspark wants them back: a Series, or a DataFrame for a struct."""
    import pandas as pd
    from pyspark.sql.types import StructType

    typed = [None if a is None else _typed(call, a) for a in answers]
    results = [None if a is None else a[0] for a in typed]
    if not call.fail_on_error:
        errors = [None if a is None else a[1] for a in typed]
        return pd.DataFrame({"result": pd.Series(results, dtype=object), "errorMessage": errors})
    if isinstance(call.result_type, StructType):
        names = call.result_type.names
        return pd.DataFrame(
            {n: pd.Series([None if r is None else r.get(n) for r in results], dtype=object) for n in names}
        )
    return pd.Series(results, dtype=object)


def _typed(call: _Call, answer: Answer) -> Answer:
    """``answer`` with its result as a value of the column's type; one that is not of it is
    the row's error (or the task's, with ``fail_on_error``)."""
    value, error = answer
    try:
        return (_coerce(value, call.result_type), error)
    except (TypeError, ValueError, AttributeError) as exc:
        wrong = ModelportError(
            f"Endpoint '{call.endpoint}' answered {_text(value)[:200]}, "
            f"not a {call.result_type.simpleString()}: {exc}"
        )
        if call.fail_on_error:
            raise wrong from exc
        return (None, wrong.message)


def _coerce(value: Any, kind: DataType) -> Any:
    """A JSON answer as a value of the Spark type ``kind`` (a prediction's JSON for a string)."""
    from pyspark.sql.types import ArrayType, BooleanType, StringType, StructType

    if value is None:
        return None
    if isinstance(kind, StringType):
        return _text(value)
    if isinstance(kind, StructType):
        if not isinstance(value, dict):
            raise TypeError("not an object")
        return {f.name: _coerce(value.get(f.name), f.dataType) for f in kind.fields}
    if isinstance(kind, ArrayType):
        return [_coerce(v, kind.elementType) for v in value]
    if isinstance(kind, BooleanType):
        return bool(value)
    convert = _PRIMITIVES.get(kind.typeName())
    return convert(value) if convert is not None else value


async def _all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``coros`` together; the first failure cancels the others and is raised as itself
    (not in an ``ExceptionGroup``: the Spark task fails with the endpoint's error)."""
    try:
        async with asyncio.TaskGroup() as tasks:
            for coro in coros:
                tasks.create_task(coro)
    except BaseExceptionGroup as group:
        first = _first_error(group)
        if first is None:
            raise
        raise first from None


def _first_error(group: BaseExceptionGroup[Any]) -> ModelportError | None:
    for exc in group.exceptions:
        found = _first_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if isinstance(found, ModelportError):
            return found
    return None


def _groups(rows: list[Any], present: list[int], limit: int) -> list[list[int]]:
    """``present`` cut into requests of at most ``limit`` rows and about :data:`BATCH_BYTES`."""
    out: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i in present:
        cost = len(_dumps(rows[i]))
        if current and (len(current) >= limit or size + cost > BATCH_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(i)
        size += cost
    if current:
        out.append(current)
    return out


def _check_count(endpoint: str, answered: int, sent: int) -> None:
    if answered != sent:
        raise ModelportError(f"Endpoint '{endpoint}' answered {max(answered, 0)} results for {sent} rows.")


def _error(response: httpx.Response) -> ModelportError:
    try:
        body: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = response.text
    return error_from_body(response.status_code, body, response.headers.get("retry-after"))


def _default(value: Any) -> Any:
    """What orjson cannot write itself: numpy scalars, pandas timestamps, decimals."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else _dumps(value).decode()
