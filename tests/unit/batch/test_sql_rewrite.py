"""``ai_query`` in Databricks SQL rewritten for DuckDB (``batch/sql_rewrite.py``), with the table
names of ``tables/query.py`` rewritten after it."""

from __future__ import annotations

import pytest

from modelport.batch.sql_rewrite import PREFIX, duckdb_type, rewrite
from modelport.errors import InvalidParameterValue
from modelport.tables.query import rewrite_table_names


def test_named_arguments_named_struct_and_options() -> None:
    out = rewrite(
        "SELECT ai_query(endpoint => 'e', request => named_struct('a', x, 'b', y), returnType => 'DOUBLE',"
        " failOnError => false, modelParameters => named_struct('max_tokens', 5, 'temperature', 0.5)) AS p"
        " FROM t"
    )
    [call] = out.calls
    assert (call.endpoint, call.return_type, call.fail_on_error) == ("e", "DOUBLE", False)
    assert call.parameters == {"max_tokens": 5, "temperature": 0.5}
    assert call.columns == ("a", "b")  # the struct's names; its values sent as each row's array
    assert "JSON_ARRAY(x, y)" in out.sql
    assert "STRUCT(result DOUBLE, errorMessage TEXT)" in out.sql
    assert ").result" not in out.sql  # failOnError false: the struct is the result


def test_positional_forms_and_default_type() -> None:
    out = rewrite("SELECT ai_query('e', txt), ai_query('e', txt, 'ARRAY<FLOAT>'), ai_query('e', txt) FROM t")
    assert [(c.endpoint, c.return_type, c.fail_on_error) for c in out.calls] == [
        ("e", "VARCHAR", True),
        ("e", "REAL[]", True),  # DuckDB calls a 4-byte float REAL
    ]  # the same call twice shares one function
    assert out.sql.count(").result") == 3
    assert out.sql.upper().count(f"{PREFIX}0(".upper()) == 2


def test_endpoint_type_from_the_resolver() -> None:
    out = rewrite("SELECT ai_query('m', x) FROM t", lambda name: "BIGINT" if name == "m" else "VARCHAR")
    assert out.calls[0].return_type == "BIGINT"


def test_statements_without_ai_query_are_untouched() -> None:
    sql = 'SELECT list_value(1, 2)[1], x::INT FROM "main.default.t" -- DuckDB SQL'
    assert rewrite(sql).sql == sql


def test_a_statement_naming_ai_query_only_in_a_string_is_left_as_written() -> None:
    # DuckDB's to_timestamp(epoch seconds) would become Databricks' CAST if the statement were
    # transpiled (the usage table's filter on usage_context['source'] names ai_query).
    sql = (
        "SELECT count(*) FROM t WHERE usage_context['source'] = 'ai_query'"
        " AND request_time >= to_timestamp(1796625903.26) -- not ai_query(x)"
    )
    done = rewrite(sql)
    assert done.sql == sql and done.calls == []


def test_table_names_still_rewritten_after() -> None:
    out = rewrite("SELECT ai_query('e', request) FROM main.default.chat_payload")
    sql = rewrite_table_names(out.sql, {"main.default.chat_payload"})
    assert 'FROM "main.default.chat_payload"' in sql


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT ai_query(request => x) FROM t", "missing required argument 'endpoint'"),
        ("SELECT ai_query(e, x) FROM t", "endpoint must be a constant"),
        ("SELECT ai_query('e', x, bogus => 1) FROM t", "unknown argument 'bogus'"),
        ("SELECT ai_query('e', x, returnType => 'NOT A TYPE<') FROM t", "is not a type"),
    ],
)
def test_malformed_calls_are_400(sql: str, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        rewrite(sql)


def test_databricks_types() -> None:
    assert duckdb_type("STRUCT<a: INT, b: ARRAY<STRING>>") == "STRUCT(a INT, b TEXT[])"
    assert duckdb_type("string") == "TEXT"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT ai_classify(x, labels) FROM t", "labels must be a constant"),
        ("SELECT ai_classify(x, array()) FROM t", "non-empty array of strings"),
        ("SELECT ai_summarize(x, -1) FROM t", "max_words must be a non-negative integer"),
        ("SELECT ai_translate(x) FROM t", "ai_translate takes 2 arguments; got 1"),
    ],
)
def test_task_functions_malformed_are_400(sql: str, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        rewrite(sql, functions_endpoint="chat")


def test_task_functions_become_ai_query_calls_of_the_endpoint() -> None:
    out = rewrite("SELECT ai_classify(x, array('a', 'b')), ai_summarize(x) FROM t", functions_endpoint="c")
    assert [(c.endpoint, c.labels) for c in out.calls] == [("c", ("a", "b")), ("c", ())]
    assert "ai_classify" not in out.sql.lower() and "|| x" in out.sql
