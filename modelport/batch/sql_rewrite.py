"""Databricks SQL with ``ai_query`` calls rewritten into DuckDB SQL, before DuckDB sees it.

DuckDB's Python functions take no named arguments and their result type is fixed when they are
registered, while ``ai_query``'s ``returnType`` decides the type of each call. So each
``ai_query(...)`` call (named form ``endpoint => ..., request => ...`` or positional
``ai_query(endpoint, request[, returnType])``) becomes a call of a function registered for its
``(endpoint, returnType, failOnError, modelParameters)``, taking the request as JSON text and
answering JSON text that DuckDB casts to the result type::

    ai_query('e', named_struct('a', x), returnType => 'DOUBLE')
    -> (__modelport_ai_query_0(to_json({'a': x}))::JSON::STRUCT(result DOUBLE, errorMessage VARCHAR)).result

With ``failOnError => false`` the struct itself is the result (``result``, ``errorMessage``).
``named_struct`` becomes a DuckDB struct (sqlglot). A request written as a struct of named fields
(``named_struct(...)``, ``struct(x AS a, ...)``) is passed as the JSON array of its values
(``json_array(...)``), its names kept in :attr:`AiCall.columns`: the rows of a custom model's
``dataframe_split`` as they are sent, with nothing to decode or rename per row. Statements that
do not mention ``ai_query`` are returned unchanged (the SQL route takes DuckDB SQL; only
statements calling ``ai_query`` are read as Databricks SQL). ``endpoint``, ``returnType``,
``failOnError`` and ``modelParameters`` must be constants (literals; ``named_struct`` of literals
for the parameters), as in Databricks.

Given the endpoints to use, the task functions (``ai_summarize``, ``ai_classify``, ... in
:data:`TASK_FUNCTIONS`) become ``ai_query`` calls of a chat endpoint with a fixed instruction
before the text, and ``ai_similarity(a, b)`` the cosine similarity of two embeddings. Those that
answer a label (``ai_classify``, ``ai_analyze_sentiment``) or a struct (``ai_extract``) also carry
a JSON schema for the answer (``batch/response_format.py``), as does a call's ``responseFormat``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

from modelport.batch import response_format
from modelport.batch.response_format import ResponseFormat
from modelport.errors import InvalidParameterValue

__all__ = ["TASK_FUNCTIONS", "AiCall", "Rewritten", "duckdb_type", "rewrite"]

PREFIX = "__modelport_ai_query_"
_ARGS = ("endpoint", "request", "returnType", "failOnError", "modelParameters", "responseFormat")
_MENTION = re.compile(r"\bai_query\b", re.I)
SENTIMENTS = ("positive", "negative", "neutral", "mixed")


@dataclass(frozen=True)
class AiCall:
    """One distinct ``ai_query`` of the statement: the function that answers it."""

    function: str
    endpoint: str
    #: The result's DuckDB type (``returnType`` translated; None: the endpoint decides).
    return_type: str | None
    fail_on_error: bool
    model_parameters: tuple[tuple[str, Any], ...] = ()
    #: A task function's labels: the answer is the label it names, else NULL.
    labels: tuple[str, ...] = ()
    #: The OpenAI ``response_format`` sent with each chat request (``responseFormat``, or the
    #: JSON schema of a task function's answer).
    response_format: ResponseFormat | None = None
    #: ``ai_extract``'s labels: the answer is a struct with one string per label.
    fields: tuple[str, ...] = ()
    #: The field names of a request written as a struct of named fields: the function then takes
    #: the JSON array of the values (``json_array(...)``) rather than the struct's JSON object.
    columns: tuple[str, ...] = ()

    @property
    def task(self) -> bool:
        """A task function's call: its answer is read even where the endpoint ignores or refuses
        ``response_format`` (it is then sent again without it)."""
        return bool(self.labels or self.fields)

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.model_parameters)


@dataclass
class Rewritten:
    sql: str
    calls: list[AiCall] = field(default_factory=list)


def duckdb_type(databricks_type: str) -> str:
    """A Databricks type name (``DOUBLE``, ``ARRAY<FLOAT>``, ``STRUCT<a: INT>``) in DuckDB's words."""
    try:
        return exp.DataType.build(databricks_type, dialect="databricks").sql("duckdb")
    except (sqlglot.errors.ParseError, ValueError) as exc:
        raise InvalidParameterValue(
            f"ai_query: returnType {databricks_type!r} is not a type: {exc}"
        ) from None


def _constant(node: exp.Expression, what: str) -> Any:
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else float(node.this) if "." in node.this else int(node.this)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        return -_constant(node.this, what)
    if isinstance(node, exp.Array):
        return [_constant(e, what) for e in node.expressions]
    if isinstance(node, exp.Struct):
        return {str(p.this.name): _constant(p.expression, what) for p in node.expressions}
    raise InvalidParameterValue(f"ai_query: {what} must be a constant; got {node.sql('databricks')}.")


def _field_names(node: exp.Expression) -> tuple[str, ...]:
    """The names of a struct written field by field (``named_struct('a', x, ...)``), else ()
    (any other request, or names that repeat)."""
    if not isinstance(node, exp.Struct) or not node.expressions:
        return ()
    names = []
    for item in node.expressions:
        if not (isinstance(item, exp.PropertyEQ) and isinstance(item.this, exp.Identifier)):
            return ()
        names.append(item.this.name)
    return tuple(names) if len(set(names)) == len(names) else ()


def _arguments(call: exp.Anonymous) -> dict[str, exp.Expression]:
    named: dict[str, exp.Expression] = {}
    for i, arg in enumerate(call.expressions):
        if isinstance(arg, exp.Kwarg | exp.PropertyEQ):
            key = next((a for a in _ARGS if a.lower() == arg.this.name.lower()), None)
            if key is None:
                raise InvalidParameterValue(f"ai_query: unknown argument '{arg.this.name}'.")
            named[key] = arg.expression
        elif i < 3:
            named[_ARGS[i]] = arg
        else:
            raise InvalidParameterValue("ai_query takes at most 3 positional arguments.")
    for need in ("endpoint", "request"):
        if need not in named:
            raise InvalidParameterValue(f"ai_query: missing required argument '{need}'.")
    return named


def rewrite(
    sql: str,
    return_type_of: Callable[[str], str] | None = None,
    functions_endpoint: str | None = None,
    similarity_endpoint: str | None = None,
    prefix: str = PREFIX,
) -> Rewritten:
    """``sql`` with its ``ai_query`` calls made calls of the functions in ``calls``.

    ``return_type_of(endpoint)`` gives the DuckDB type of an endpoint's answer where the call has
    no ``returnType`` (a custom model's signature, ``VARCHAR`` for chat...); without it such calls
    answer ``VARCHAR`` (the JSON text of the prediction where it is not a string).
    ``functions_endpoint`` is the chat endpoint of the task functions (:data:`TASK_FUNCTIONS`);
    None: they are left to DuckDB (which knows none of them). ``similarity_endpoint`` is the
    embeddings endpoint of ``ai_similarity`` (the cosine similarity of the two texts' embeddings).
    ``prefix`` starts the functions' names (one per statement on a connection: DuckDB cannot
    register a name twice).
    """
    tasks_on = bool(functions_endpoint or similarity_endpoint)
    if not _MENTION.search(sql) and not (tasks_on and _TASK_MENTION.search(sql)):
        return Rewritten(sql)
    try:
        statements = sqlglot.parse(sql, read="databricks")
    except sqlglot.errors.ParseError as exc:
        raise InvalidParameterValue(f"Query failed: {exc}") from None
    calls: dict[tuple[Any, ...], AiCall] = {}

    def transform(node: exp.Expression) -> exp.Expression:
        if not (isinstance(node, exp.Anonymous) and str(node.this).lower() == "ai_query"):
            return node
        args = _arguments(node)
        labels = tuple(node.meta.get("labels", ()))
        fields = tuple(node.meta.get("fields", ()))
        fmt: ResponseFormat | None = node.meta.get("format")
        if "responseFormat" in args:
            fmt = response_format.parse(_constant(args["responseFormat"], "responseFormat"))
        endpoint = _constant(args["endpoint"], "endpoint")
        if not isinstance(endpoint, str):
            raise InvalidParameterValue("ai_query: endpoint must be a string.")
        given = args.get("returnType")
        if given is not None:
            result_type = duckdb_type(str(_constant(given, "returnType")))
        elif node.meta.get("return_type"):
            result_type = str(node.meta["return_type"])
        elif return_type_of is not None:
            result_type = return_type_of(endpoint)
        else:
            result_type = "VARCHAR"
        fail = args.get("failOnError")
        fail_on_error = True if fail is None else bool(_constant(fail, "failOnError"))
        params = args.get("modelParameters")
        parameters = _constant(params, "modelParameters") if params is not None else {}
        if not isinstance(parameters, dict):
            raise InvalidParameterValue("ai_query: modelParameters must be a named_struct.")
        frozen = tuple(sorted(parameters.items(), key=lambda kv: kv[0]))
        columns = _field_names(args["request"])
        key = (endpoint, result_type, fail_on_error, repr(frozen), labels, fmt, fields, columns)
        found = calls.get(key)
        if found is None:
            name = f"{prefix}{len(calls)}"
            found = AiCall(name, endpoint, result_type, fail_on_error, frozen, labels, fmt, fields, columns)
            calls[key] = found
        if columns:
            values = [p.expression.copy() for p in args["request"].expressions]
            request = exp.Anonymous(this="json_array", expressions=values)
        else:
            request = exp.Anonymous(this="to_json", expressions=[args["request"].copy()])
        answer = exp.Anonymous(this=found.function, expressions=[request])
        struct = f"STRUCT(result {result_type}, errorMessage VARCHAR)"
        cast = exp.cast(exp.cast(answer, "JSON", dialect="duckdb"), struct, dialect="duckdb")
        if fail_on_error:
            return exp.Dot(this=exp.Paren(this=cast), expression=exp.to_identifier("result"))
        return cast

    def tasks(node: exp.Expression) -> exp.Expression:
        if similarity_endpoint and isinstance(node, exp.AISimilarity):  # sqlglot knows this one
            return _ai_similarity(similarity_endpoint, [a.copy() for a in node.expressions])
        if functions_endpoint and isinstance(node, exp.AIClassify):  # sqlglot knows this one
            args = [node.this, node.args.get("categories")]
            return _ai_classify(functions_endpoint, [a.copy() for a in args if a is not None])
        if functions_endpoint and isinstance(node, exp.Anonymous):
            task = TASK_FUNCTIONS.get(str(node.this).lower())
            if task is not None:
                return task(functions_endpoint, [a.copy() for a in node.expressions])
        return node

    out = [s.transform(tasks).transform(transform).sql("duckdb") for s in statements if s is not None]
    if not calls:  # the name only in a string or a comment: the statement is DuckDB's, as written
        return Rewritten(sql)
    return Rewritten(";\n".join(out), list(calls.values()))


# ---- the task functions ------------------------------------------------------------------------
def _prompted(
    endpoint: str, instruction: str, content: exp.Expression, labels: Sequence[str] = ()
) -> exp.Expression:
    """``ai_query(endpoint, '<instruction>\n\n' || content)``: NULL content, NULL prompt; with
    ``labels``, the answer constrained to ``{"label": one of them}`` and read as the label."""
    prompt = exp.DPipe(this=exp.Literal.string(instruction + "\n\n"), expression=content, safe=False)
    call = exp.Anonymous(this="ai_query", expressions=[exp.Literal.string(endpoint), prompt])
    call.meta["labels"] = tuple(labels)
    if labels:
        call.meta["format"] = response_format.classify_format(labels)
    return call


def _need(name: str, args: list[exp.Expression], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        took = str(low) if low == high else f"{low} to {high}"
        raise InvalidParameterValue(f"{name} takes {took} arguments; got {len(args)}.")


def _strings(name: str, node: exp.Expression) -> list[str]:
    value = _constant(node, f"{name}'s labels")
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidParameterValue(f"{name}: labels must be a non-empty array of strings.")
    return value


def _ai_gen(endpoint: str, args: list[exp.Expression]) -> exp.Expression:
    _need("ai_gen", args, 1, 1)
    call = exp.Anonymous(this="ai_query", expressions=[exp.Literal.string(endpoint), args[0]])
    return call


def _ai_summarize(endpoint: str, args: list[exp.Expression]) -> exp.Expression:
    _need("ai_summarize", args, 1, 2)
    words = _constant(args[1], "ai_summarize's max_words") if len(args) == 2 else 50
    if not isinstance(words, int) or words < 0:
        raise InvalidParameterValue("ai_summarize: max_words must be a non-negative integer.")
    limit = f" in at most {words} words" if words else ""
    return _prompted(endpoint, f"Summarize the following text{limit}. Answer with the summary only.", args[0])


def _ai_translate(endpoint: str, args: list[exp.Expression]) -> exp.Expression:
    _need("ai_translate", args, 2, 2)
    language = _constant(args[1], "ai_translate's to_lang")
    instruction = f"Translate the following text to {language}. Answer with the translation only."
    return _prompted(endpoint, instruction, args[0])


def _ai_fix_grammar(endpoint: str, args: list[exp.Expression]) -> exp.Expression:
    _need("ai_fix_grammar", args, 1, 1)
    instruction = "Correct the grammatical errors in the following text. Answer with the corrected text only."
    return _prompted(endpoint, instruction, args[0])


def _ai_mask(endpoint: str, args: list[exp.Expression]) -> exp.Expression:
    _need("ai_mask", args, 2, 2)
    kinds = ", ".join(_strings("ai_mask", args[1]))
    instruction = (
        f"Replace every part of the following text that is one of these kinds of information with "
        f"[MASKED]: {kinds}. Answer with the text only."
    )
    return _prompted(endpoint, instruction, args[0])


def _ai_classify(endpoint: str, args: list[exp.Expression]) -> exp.Expression:
    _need("ai_classify", args, 2, 2)
    labels = _strings("ai_classify", args[1])
    instruction = (
        f"Classify the following text as exactly one of these labels: {', '.join(labels)}. "
        "Answer with the label only."
    )
    return _prompted(endpoint, instruction, args[0], labels)


def _ai_extract(endpoint: str, args: list[exp.Expression]) -> exp.Expression:
    _need("ai_extract", args, 2, 2)
    labels = list(dict.fromkeys(_strings("ai_extract", args[1])))
    instruction = (
        f"Extract these kinds of information from the following text: {', '.join(labels)}. "
        "Answer with a JSON object with exactly these keys, each value the text found "
        "as a string, or null where the text has none."
    )
    call = _prompted(endpoint, instruction, args[0])
    call.meta["fields"] = tuple(labels)
    call.meta["format"] = response_format.extract_format(labels)
    fields = ", ".join(f"{exp.to_identifier(label, quoted=True).sql('duckdb')} VARCHAR" for label in labels)
    call.meta["return_type"] = f"STRUCT({fields})"
    return call


def _ai_analyze_sentiment(endpoint: str, args: list[exp.Expression]) -> exp.Expression:
    _need("ai_analyze_sentiment", args, 1, 1)
    instruction = (
        "What is the sentiment of the following text? Answer with one word: "
        "positive, negative, neutral or mixed."
    )
    return _prompted(endpoint, instruction, args[0], SENTIMENTS)


def _ai_similarity(endpoint: str, args: list[exp.Expression]) -> exp.Expression:
    _need("ai_similarity", args, 2, 2)
    embedded = [exp.Anonymous(this="ai_query", expressions=[exp.Literal.string(endpoint), a]) for a in args]
    return exp.Anonymous(this="list_cosine_similarity", expressions=embedded)


#: Databricks' task functions this module rewrites into ``ai_query`` calls of a chat endpoint.
TASK_FUNCTIONS: dict[str, Callable[[str, list[exp.Expression]], exp.Expression]] = {
    "ai_gen": _ai_gen,
    "ai_summarize": _ai_summarize,
    "ai_translate": _ai_translate,
    "ai_fix_grammar": _ai_fix_grammar,
    "ai_mask": _ai_mask,
    "ai_classify": _ai_classify,
    "ai_extract": _ai_extract,
    "ai_analyze_sentiment": _ai_analyze_sentiment,
}
_TASK_MENTION = re.compile(r"\b(?:ai_similarity|" + "|".join(TASK_FUNCTIONS) + r")\b", re.I)
