"""``ai_query`` as vectorized DuckDB functions: a whole vector of requests per call.

Whoever builds the DuckDB connection injects the data plane as an :class:`Endpoints`: ``call``
sends one request body to an endpoint (raising :class:`~modelport.errors.ModelportError`),
``describe`` says what kind of endpoint it is, and ``run`` runs a coroutine to its end from the
SQL's thread (the server's event loop, or the library's own). :func:`prepare` rewrites a statement
(``batch/sql_rewrite.py``) and registers one function per distinct call.

How a vector is sent:

- custom model: rows grouped into ``dataframe_split`` requests of up to :data:`BATCH_ROWS` rows
  (and about :data:`BATCH_BYTES` of JSON), a struct's fields being the columns. DuckDB hands a
  function 2048 rows at a time, from each of its threads: the vectors that arrive within
  :data:`COALESCE_SECONDS` of each other share a request (a model answers a few large requests
  faster than many small ones: :meth:`Statement._gather`). Nothing is decoded per row on the way
  out: a struct written field by field arrives as each row's JSON array (``batch/sql_rewrite.py``)
  and a scalar as its JSON value, both joined into the body as they are (only other objects, a
  ``MAP`` or a struct column, are decoded to find their keys). On the way back a list of numbers
  (or booleans) is cut into the rows' answers on its commas, in bulk (:func:`_wrapped`);
- chat / completions: one request per row, :data:`CONCURRENCY` in flight;
- embeddings: ``input`` lists of up to :data:`EMBED_ROWS` texts; the result is ``FLOAT[]``.

A chat call's ``response_format`` (``responseFormat``, or a task function's JSON schema) goes into
each request; ``batch/response_format.py`` says how it is built and how answers are read. A task
function's schema is dropped for an endpoint that refuses it (a 400 naming ``response_format``),
its answer then read from the free text.

A 429 or a 503 is retried with backoff, waiting what ``Retry-After`` says, for at most
:data:`RETRY_SECONDS` per request. With ``failOnError => false`` a failed multi-row request is sent
again row by row, so only the rows that fail carry an ``errorMessage``. A NULL request is a NULL
result. A refusal of the caller (401, 403) or an unknown endpoint (404) fails the query whatever
``failOnError`` says.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from modelport.batch.response_format import json_object
from modelport.batch.sql_rewrite import PREFIX, AiCall, rewrite
from modelport.errors import InvalidParameterValue, ModelportError

__all__ = [
    "CUSTOM_PARAMETERS_REFUSED",
    "CUSTOM_RESPONSE_FORMAT_REFUSED",
    "EndpointInfo",
    "Endpoints",
    "Statement",
    "info_from_openapi",
    "prepare",
]

T = TypeVar("T")
Kind = Literal["custom", "chat", "completions", "embeddings"]

BATCH_ROWS = 4096
BATCH_BYTES = 4 * 1024 * 1024
#: How long a vector waits for other threads' vectors to share its request.
COALESCE_SECONDS = 0.005
EMBED_ROWS = 64
CONCURRENCY = 16
RETRY_SECONDS = 60.0
#: What the usage and inference tables say these requests came from.
USAGE_CONTEXT = {"source": "ai_query"}
CUSTOM_PARAMETERS_REFUSED = (
    "AI_QUERY function does not support the modelParameters argument for custom model endpoint."
)
CUSTOM_RESPONSE_FORMAT_REFUSED = (
    "AI_QUERY function does not support the responseFormat argument for custom model endpoint."
)
#: Numbers the statements prepared in this process (their functions' names differ).
_STATEMENTS = itertools.count()
_FATAL = frozenset({401, 403, 404})
_TASKS: dict[str, Kind] = {
    "llm/v1/chat": "chat",
    "llm/v1/completions": "completions",
    "llm/v1/embeddings": "embeddings",
}
_SCALARS = {
    "double": "DOUBLE",
    "float": "FLOAT",
    "long": "BIGINT",
    "integer": "INTEGER",
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
    "float64": "DOUBLE",
    "float32": "FLOAT",
    "int64": "BIGINT",
    "int32": "INTEGER",
    "bool": "BOOLEAN",
    "str": "VARCHAR",
    "object": "VARCHAR",
}


@dataclass(frozen=True)
class EndpointInfo:
    kind: Kind
    #: The answer's DuckDB type from the model's output signature (custom models), if it says.
    return_type: str | None = None
    #: The model's input names (the column a scalar request is sent as).
    inputs: tuple[str, ...] = ()

    @property
    def default_type(self) -> str:
        if self.kind == "embeddings":
            return "FLOAT[]"
        return self.return_type or "VARCHAR"


@dataclass(frozen=True)
class Endpoints:
    call: Callable[[str, bytes], Awaitable[bytes]]
    describe: Callable[[str], EndpointInfo]
    run: Callable[[Coroutine[Any, Any, Any]], Any]


def _output_type(outputs: Sequence[dict[str, Any]] | None) -> str | None:
    if not outputs:
        return None

    def one(spec: dict[str, Any]) -> str | None:
        if spec.get("type") == "tensor":
            dtype = _SCALARS.get(str((spec.get("tensor-spec") or {}).get("dtype")))
            shape = (spec.get("tensor-spec") or {}).get("shape") or [-1]
            return dtype if dtype and len(shape) <= 1 else (f"{dtype}[]" if dtype else None)
        return _SCALARS.get(str(spec.get("type")))

    if len(outputs) == 1:
        return one(outputs[0])
    fields = [(o.get("name"), one(o)) for o in outputs]
    if all(n and t for n, t in fields):
        return "STRUCT(" + ", ".join(f'"{n}" {t}' for n, t in fields) + ")"
    return None


def info_from_openapi(doc: dict[str, Any]) -> EndpointInfo:
    """What an endpoint's OpenAPI document (``GET /api/2.0/serving-endpoints/{name}/openapi``) says."""
    task = _TASKS.get(str(doc.get("x-modelport-task")))
    if task is not None:
        return EndpointInfo(task)
    op = next(iter(doc.get("paths", {}).values()), {}).get("post", {})
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    split = schema.get("properties", {}).get("dataframe_split", {})
    columns = split.get("properties", {}).get("columns", {})
    names = tuple(columns.get("items", {}).get("enum") or columns.get("default") or ())
    return EndpointInfo("custom", _output_type(op.get("x-modelport-outputs")), names)


class Statement:
    """The ``ai_query`` functions of one statement on one connection, and the first error that
    failed the query (to raise it as itself rather than as DuckDB's wrapped text)."""

    def __init__(self, endpoints: Endpoints, usage_context: dict[str, Any] | None = None) -> None:
        self.endpoints = endpoints
        #: What each request's ``usage_context`` says (the usage and inference tables' column).
        self.usage_context = USAGE_CONTEXT if usage_context is None else usage_context
        self._context = orjson.dumps(self.usage_context)
        self.failure: ModelportError | None = None
        self._infos: dict[str, EndpointInfo] = {}
        #: Endpoints that refused a task function's ``response_format``: asked without it since.
        self._plain: set[str] = set()
        #: A custom-model function's vectors waiting to share a request (:meth:`_gather`).
        self._pools: dict[str, _Pool] = {}

    def info(self, endpoint: str) -> EndpointInfo:
        if endpoint not in self._infos:
            self._infos[endpoint] = self.endpoints.describe(endpoint)
        return self._infos[endpoint]

    def _fail(self, exc: ModelportError) -> ModelportError:
        if self.failure is None:
            self.failure = exc
        return exc

    # -- sending ---------------------------------------------------------------------------------
    async def _send(self, endpoint: str, body: dict[str, Any] | bytes) -> Any:
        """The decoded answer to ``body`` (a dict, or a custom model's body as built by
        :func:`_split_body`), retried on 429 and 503."""
        deadline = asyncio.get_running_loop().time() + RETRY_SECONDS
        attempt = 0
        payload = (
            body if isinstance(body, bytes) else orjson.dumps({**body, "usage_context": self.usage_context})
        )
        while True:
            try:
                return orjson.loads(await self.endpoints.call(endpoint, payload))
            except ModelportError as exc:
                if exc.status not in (429, 503):
                    raise
                wait = exc.retry_after if exc.retry_after is not None else min(8.0, 0.25 * 2**attempt)
                wait = wait + random.uniform(0, 0.1)
                if asyncio.get_running_loop().time() + wait > deadline:
                    raise
                attempt += 1
                await asyncio.sleep(wait)

    async def _batch(self, call: AiCall, info: EndpointInfo, rows: list[Any]) -> list[tuple[Any, str | None]]:
        """Answers of one embeddings request holding ``rows``."""
        data = await self._send(call.endpoint, {"input": [_text(r) for r in rows], **call.parameters})
        items = sorted(data.get("data") or [], key=lambda d: d.get("index", 0))
        _check_count(call.endpoint, len(items), len(rows))
        return [(d.get("embedding"), None) for d in items]

    async def _predict(self, call: AiCall, body: bytes, rows: int) -> list[Any]:
        """A custom model's predictions for the ``rows`` rows of ``body``."""
        answer = await self._send(call.endpoint, body)
        predictions = answer.get("predictions") if isinstance(answer, dict) else answer
        _check_count(call.endpoint, len(predictions) if isinstance(predictions, list) else -1, rows)
        return predictions  # type: ignore[no-any-return]

    async def _custom(
        self, call: AiCall, info: EndpointInfo, texts: list[str], groups: list[tuple[list[int], bytes]]
    ) -> tuple[list[list[Any] | None], dict[int, tuple[Any, str | None]]]:
        """Each group's predictions (None: the group failed and its rows were sent one by one,
        ``failOnError => false``) and those rows' answers."""
        limit = asyncio.Semaphore(CONCURRENCY)
        answered: list[list[Any] | None] = [None] * len(groups)
        alone: dict[int, tuple[Any, str | None]] = {}

        async def one(i: int) -> None:
            try:
                async with limit:
                    alone[i] = (
                        (await self._predict(call, _split_body(call, info, [texts[i]], self._context), 1))[0],
                        None,
                    )
            except ModelportError as exc:
                if exc.status in _FATAL:
                    raise self._fail(exc) from None
                alone[i] = (None, exc.message)

        async def group(g: int) -> None:
            indexes, body = groups[g]
            try:
                async with limit:
                    answered[g] = await self._predict(call, body, len(indexes))
            except ModelportError as exc:
                if call.fail_on_error or exc.status in _FATAL:
                    raise self._fail(exc) from None
                if len(indexes) == 1:
                    alone[indexes[0]] = (None, exc.message)
                else:  # find the rows that fail
                    await _all(one(i) for i in indexes)

        await _all(group(g) for g in range(len(groups)))
        return answered, alone

    async def _chat(self, call: AiCall, text: str) -> Any:
        """The first choice's text, asked with the call's ``response_format`` (a task function's
        is dropped where the endpoint refuses it with a 400 naming it)."""
        body: dict[str, Any] = {"messages": [{"role": "user", "content": text}], **call.parameters}
        fmt = call.response_format
        if fmt is not None and not (call.task and call.endpoint in self._plain):
            body["response_format"] = fmt.value
        try:
            data = await self._send(call.endpoint, body)
        except ModelportError as exc:
            refused = exc.status == 400 and "response_format" in exc.message
            if not (call.task and refused and "response_format" in body):
                raise
            self._plain.add(call.endpoint)
            del body["response_format"]
            data = await self._send(call.endpoint, body)
        return data["choices"][0]["message"]["content"]

    async def _row(self, call: AiCall, info: EndpointInfo, row: Any) -> Any:
        text = _text(row)
        if info.kind == "chat":
            return _read(call, await self._chat(call, text))
        data = await self._send(call.endpoint, {"prompt": text, **call.parameters})
        return data["choices"][0]["text"]

    async def _answers(
        self, call: AiCall, values: list[Any], sizes: list[int]
    ) -> list[tuple[Any, str | None] | None]:
        """The answer of every row of ``values`` to a chat, completions or embeddings endpoint
        (``sizes``: each row's JSON length, for batching)."""
        info = self.info(call.endpoint)
        limit = asyncio.Semaphore(CONCURRENCY)
        out: list[tuple[Any, str | None] | None] = [None] * len(values)
        present = [i for i, v in enumerate(values) if v is not None]

        async def guarded(coro: Awaitable[T]) -> T:
            async with limit:
                return await coro

        async def one(i: int) -> None:
            try:
                if info.kind in ("chat", "completions"):
                    out[i] = (await guarded(self._row(call, info, values[i])), None)
                else:
                    out[i] = (await guarded(self._batch(call, info, [values[i]])))[0]
            except ModelportError as exc:
                if call.fail_on_error or exc.status in _FATAL:
                    raise self._fail(exc) from None
                out[i] = (None, exc.message)

        async def group(indexes: list[int]) -> None:
            try:
                answers = await guarded(self._batch(call, info, [values[i] for i in indexes]))
            except ModelportError as exc:
                if call.fail_on_error or exc.status in _FATAL:
                    raise self._fail(exc) from None
                if len(indexes) == 1:
                    out[indexes[0]] = (None, exc.message)
                else:  # find the rows that fail
                    await _all(one(i) for i in indexes)
                return
            for i, answer in zip(indexes, answers, strict=True):
                out[i] = answer

        if info.kind in ("chat", "completions"):
            await _all(one(i) for i in present)
        else:
            await _all(group(g) for g in _groups(sizes, present, EMBED_ROWS))
        return out

    # -- DuckDB ----------------------------------------------------------------------------------
    def function(self, call: AiCall) -> Callable[[pa.Array], pa.Array]:
        """DuckDB's function for ``call``: a vector of requests (JSON text) in, a vector of
        ``{"result": ..., "errorMessage": ...}`` (JSON text) out."""

        def answer(requests: pa.Array) -> pa.Array:
            if isinstance(requests, pa.ChunkedArray):
                requests = requests.combine_chunks()
            texts: list[str | None] = requests.to_pylist()
            info = self.info(call.endpoint)
            if info.kind == "custom":
                return self._custom_vector(call, info, requests, texts)
            values = [None if t is None else _decoded(call, t) for t in texts]
            sizes = [0 if t is None else len(t) for t in texts]
            return _json_answers(self.endpoints.run(self._answers(call, values, sizes)))

        return answer

    def _custom_vector(
        self, call: AiCall, info: EndpointInfo, requests: pa.Array, texts: list[str | None]
    ) -> pa.Array:
        """A custom model's answers to one vector: the bodies are built here (DuckDB's thread),
        the requests sent on the endpoints' loop, the answers put together here again."""
        if requests.null_count:
            present = [i for i, t in enumerate(texts) if t is not None]
        else:
            present = list(range(len(texts)))
        part = _Part([texts[i] for i in present])  # type: ignore[misc]
        if not part.texts:
            return _json_answers([None] * len(texts))
        self._gather(call, info, part)
        if not part.alone:
            wrapped = _wrapped(part.values)
            if wrapped is not None:
                if len(present) == len(texts):
                    return wrapped
                valid = requests.is_valid().to_numpy(zero_copy_only=False)
                at = pa.array(np.cumsum(valid) - 1, pa.int64(), mask=~valid)
                return pc.take(wrapped, at)
        results: list[tuple[Any, str | None] | None] = [None] * len(texts)
        for j, i in enumerate(present):
            got = part.alone.get(j)
            results[i] = got if got is not None else (part.values[j], None)
        return _json_answers(results)

    def _gather(self, call: AiCall, info: EndpointInfo, part: _Part) -> None:
        """Answer ``part``, sent together with the vectors of DuckDB's other threads that come
        within :data:`COALESCE_SECONDS` (up to :data:`BATCH_ROWS` rows): DuckDB hands a function
        2048 rows at a time, and a model answers a few large requests faster than many small
        ones. A function only one thread has called so far sends its vectors at once."""
        pool = self._pools.setdefault(call.function, _Pool())
        taken: list[_Part] | None = None
        with pool.cond:
            pool.threads.add(threading.get_ident())
            pool.pending.append(part)
            pool.rows += len(part.texts)
            if pool.rows < BATCH_ROWS and len(pool.threads) > 1:
                pool.cond.wait_for(lambda: part.taken, COALESCE_SECONDS)
            if not part.taken:
                taken = pool.take()
        if taken is not None:
            self._send_parts(call, info, taken)
        part.done.wait()
        if part.error is not None:
            raise part.error

    def _send_parts(self, call: AiCall, info: EndpointInfo, parts: list[_Part]) -> None:
        """Send the rows of ``parts`` as few requests as :data:`BATCH_ROWS` and
        :data:`BATCH_BYTES` allow; each part gets its rows' answers (or the query's failure)."""
        try:
            texts = [t for p in parts for t in p.texts]
            present = list(range(len(texts)))
            if len(texts) <= BATCH_ROWS and sum(map(len, texts)) <= BATCH_BYTES:
                cut = [present]
            else:
                cut = _groups([len(t) for t in texts], present, BATCH_ROWS)
            groups = [(g, _split_body(call, info, [texts[i] for i in g], self._context)) for g in cut]
            answered, alone = self.endpoints.run(self._custom(call, info, texts, groups))
            if alone:
                values: list[Any] = [None] * len(texts)
                for (indexes, _), predictions in zip(groups, answered, strict=True):
                    if predictions is not None:
                        for i, prediction in zip(indexes, predictions, strict=True):
                            values[i] = prediction
            else:
                values = list(itertools.chain.from_iterable(answered))  # type: ignore[arg-type]
            start = 0
            for p in parts:
                end = start + len(p.texts)
                p.values = values[start:end]
                p.alone = {i - start: a for i, a in alone.items() if start <= i < end}
                start = end
        except BaseException as exc:  # the query fails: in every thread waiting on these rows
            for p in parts:
                p.error = exc
            raise
        finally:
            for p in parts:
                p.done.set()


@dataclass(eq=False)
class _Part:
    """One vector's non-NULL requests to a custom model, and their answers once sent."""

    texts: list[str]
    taken: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    values: list[Any] = field(default_factory=list)
    #: Rows answered alone (their group failed, ``failOnError => false``): index -> answer.
    alone: dict[int, tuple[Any, str | None]] = field(default_factory=dict)
    error: BaseException | None = None


class _Pool:
    """The vectors of one function waiting to be sent together."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pending: list[_Part] = []
        self.rows = 0
        self.threads: set[int] = set()

    def take(self) -> list[_Part]:
        """Every pending vector (call holding ``cond``)."""
        parts, self.pending, self.rows = self.pending, [], 0
        for p in parts:
            p.taken = True
        self.cond.notify_all()
        return parts


async def _all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``coros`` together; the first failure cancels the others (then the query fails)."""
    async with asyncio.TaskGroup() as tasks:
        for coro in coros:
            tasks.create_task(coro)


def _decoded(call: AiCall, text: str) -> Any:
    """A request's value (a struct written field by field arrives as the array of its values)."""
    value = orjson.loads(text)
    return dict(zip(call.columns, value, strict=True)) if call.columns else value


def _split_body(call: AiCall, info: EndpointInfo, texts: list[str], context: bytes) -> bytes:
    """The ``dataframe_split`` request of the rows whose JSON is ``texts`` (none NULL).

    A struct written field by field: its arrays are the rows as they are. Objects (a ``MAP``, a
    struct column): decoded, their keys (in order of appearance) the columns, a key a row lacks
    ``null``. Anything else: one column (the model's only input, else ``input``), each value a
    row as it is.
    """
    if call.columns:
        columns: list[str] = list(call.columns)
        data = ",".join(texts)
    elif all(t.startswith("{") for t in texts):
        rows = orjson.loads("[" + ",".join(texts) + "]")
        columns = list(dict.fromkeys(k for r in rows for k in r))
        data = orjson.dumps([[r.get(c) for c in columns] for r in rows]).decode()[1:-1]
    else:
        columns = [info.inputs[0] if len(info.inputs) == 1 else "input"]
        data = "[" + "],[".join(texts) + "]"
    return b"".join(
        (
            b'{"dataframe_split":{"columns":',
            orjson.dumps(columns),
            b',"data":[',
            data.encode(),
            b']},"usage_context":',
            context,
            b"}",
        )
    )


_PREFIX = b'{"result":'
_SUFFIX = b',"errorMessage":null}'
_COMMA = ord(",")


def _wrapped(predictions: list[Any]) -> pa.Array | None:
    """``{"result": p, "errorMessage": null}`` for each of ``predictions`` as one string vector,
    built in bulk where they are numbers, booleans or nulls: their JSON list cut on its commas.
    None for anything else (strings, lists, objects), answered row by row."""
    inner = orjson.dumps(predictions)[1:-1]
    if not predictions or b'"' in inner or b"[" in inner or b"{" in inner:
        return None
    commas = np.flatnonzero(np.frombuffer(inner, np.uint8) == _COMMA)
    if len(commas) != len(predictions) - 1:
        return None
    ends = np.append(commas, len(inner))
    lengths = np.diff(ends, prepend=-1) - 1 + len(_PREFIX) + len(_SUFFIX)
    offsets = np.zeros(len(predictions) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = _PREFIX + inner.replace(b",", _SUFFIX + _PREFIX) + _SUFFIX
    return pa.StringArray.from_buffers(len(predictions), pa.py_buffer(offsets), pa.py_buffer(data))


def _json_answers(results: Sequence[tuple[Any, str | None] | None]) -> pa.Array:
    """``{"result": ..., "errorMessage": ...}`` for each answer (None: a NULL request, NULL)."""
    answered = [
        None if r is None else orjson.dumps({"result": r[0], "errorMessage": r[1]}).decode() for r in results
    ]
    return pa.array(answered, pa.string())


def _check_count(endpoint: str, answered: int, sent: int) -> None:
    if answered != sent:
        raise ModelportError(f"Endpoint '{endpoint}' answered {max(answered, 0)} results for {sent} rows.")


def _read(call: AiCall, content: Any) -> Any:
    """A chat answer as the call's result: a task function's label or struct (from the JSON its
    schema asked for, else from the free text), ``responseFormat``'s JSON (unwrapped for the DDL
    form; parsed where ``returnType`` is not a string), else the text itself."""
    if call.fields:
        found = {str(k).lower(): v for k, v in (json_object(content) or {}).items()}
        values = [found.get(label.lower()) for label in call.fields]
        return {f: None if v is None else _text(v) for f, v in zip(call.fields, values, strict=True)}
    if call.labels:
        obj = json_object(content)
        said = obj.get("label") if obj is not None and "label" in obj else content
        return _label(said, call.labels)
    fmt = call.response_format
    if fmt is None or not fmt.is_json:
        return content
    obj = json_object(content)
    if fmt.unwrap is not None and obj is not None and fmt.unwrap in obj:
        value = obj[fmt.unwrap]
        return value if call.return_type not in (None, "VARCHAR", "TEXT") else _text(value)
    if call.return_type not in (None, "VARCHAR", "TEXT") and obj is not None:
        return obj
    return content


def _label(answer: Any, labels: Sequence[str]) -> str | None:
    """The label a task function's answer names (case, spaces and end punctuation aside), else None."""
    said = str(answer or "").strip().strip(".!\"'`*").strip().lower()
    return next((label for label in labels if label.lower() == said), None)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _groups(sizes: list[int], present: list[int], rows: int) -> list[list[int]]:
    """``present`` cut into requests of at most ``rows`` rows and about :data:`BATCH_BYTES` (the
    rows' JSON lengths as DuckDB gave them: nothing is serialised again to measure it)."""
    out: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i in present:
        cost = sizes[i]
        if current and (len(current) >= rows or size + cost > BATCH_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(i)
        size += cost
    if current:
        out.append(current)
    return out


def prepare(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    endpoints: Endpoints,
    functions_endpoint: str | None = None,
    similarity_endpoint: str | None = None,
    usage_context: dict[str, Any] | None = None,
) -> tuple[str, Statement]:
    """``sql`` rewritten for DuckDB, with its ``ai_query`` functions registered on ``con``;
    the task functions (``ai_summarize``, ...) are asked of the chat endpoint ``functions_endpoint``,
    ``ai_similarity`` of the embeddings endpoint ``similarity_endpoint``.

    Raises :class:`~modelport.errors.InvalidParameterValue` for ``modelParameters`` on a custom
    model (Databricks' message) and for calls that are not well formed. ``usage_context`` is what
    each request's ``usage_context`` says (default :data:`USAGE_CONTEXT`; a bulk job names itself).
    """
    statement = Statement(endpoints, usage_context)
    rewritten = rewrite(
        sql,
        lambda name: statement.info(name).default_type,
        functions_endpoint,
        similarity_endpoint,
        prefix=f"{PREFIX}{next(_STATEMENTS)}_",
    )
    for call in rewritten.calls:
        info = statement.info(call.endpoint)
        if info.kind == "custom" and call.model_parameters:
            raise InvalidParameterValue(CUSTOM_PARAMETERS_REFUSED)
        if call.response_format is not None and not call.task and info.kind != "chat":
            if info.kind == "custom":
                raise InvalidParameterValue(CUSTOM_RESPONSE_FORMAT_REFUSED)
            raise InvalidParameterValue(
                f"AI_QUERY function supports the responseFormat argument only for chat endpoints; "
                f"'{call.endpoint}' is a {info.kind} endpoint."
            )
        con.create_function(
            call.function,
            statement.function(call),
            ["VARCHAR"],
            "VARCHAR",
            type="arrow",
            null_handling="special",
            side_effects=True,
        )
    return rewritten.sql, statement
