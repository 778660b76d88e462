"""Inference-table rows unpacked into the rows a monitor profiles."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa

from modelport.monitoring.unpack import (
    _batches,
    is_inference_table,
    payload_kind,
    traffic_predicate,
    unpack,
)
from modelport.tables.records import INFERENCE_SCHEMA


def _payload(*queries: tuple[Any, Any], **extra: list[Any]) -> pa.Table:
    n = len(queries)
    columns: dict[str, list[Any]] = {
        "client_request_id": [f"c{i}" for i in range(n)],
        "databricks_request_id": [f"r{i}" for i in range(n)],
        "timestamp_ms": [1_765_000_000_000 + i for i in range(n)],
        "status_code": [200] * n,
        "execution_time_ms": [7] * n,
        "request": [orjson.dumps(q).decode() if q is not None else None for q, _ in queries],
        "response": [orjson.dumps(a).decode() if a is not None else None for _, a in queries],
        "served_entity_name": ["iris-1"] * n,
        "guardrails": [None] * n,
    }
    columns.update(extra)
    return pa.table(columns)


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def test_every_request_format_gives_one_row_per_record() -> None:
    split = {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, 4.5]]}}
    records = {"dataframe_records": [{"a": 5, "b": 6.5}]}
    columnar = {"inputs": {"a": [7, 8], "b": [8.5, 9.5]}}
    instances = {"instances": [{"a": 9, "b": 10.5}]}
    out = unpack(
        _payload(
            (split, {"predictions": [0, 1]}),
            (records, {"predictions": [1]}),
            (columnar, {"predictions": [0, 0]}),
            (instances, {"predictions": [1]}),
        ),
        "custom",
    )
    got = [(r["client_request_id"], r["request_row"], r["a"], r["b"], r["prediction"]) for r in _rows(out)]
    assert got == [
        ("c0", 0, 1, 2.5, 0),
        ("c0", 1, 3, 4.5, 1),
        ("c1", 0, 5, 6.5, 1),
        ("c2", 0, 7, 8.5, 0),
        ("c2", 1, 8, 9.5, 0),
        ("c3", 0, 9, 10.5, 1),
    ]
    assert out.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert out.column("served_entity_name").to_pylist() == ["iris-1"] * 6
    assert out.schema.field("a").type == pa.int64() and out.schema.field("b").type == pa.float64()


def test_tensors_dict_answers_and_name_clashes() -> None:
    out = unpack(
        _payload(
            ({"inputs": [[1, 2], [3, 4]]}, {"predictions": [{"label": "x", "score": 0.9}, {"label": "y"}]}),
            ({"instances": [5]}, {"predictions": [[0.1, 0.9]]}),
            ({"dataframe_records": [{"timestamp": 1, "prediction": 2}]}, {"predictions": [3]}),
        ),
        "custom",
    )
    rows = _rows(out)
    assert (rows[0]["input_0"], rows[0]["input_1"], rows[0]["prediction"], rows[0]["prediction_score"]) == (
        1,
        2,
        "x",
        0.9,
    )
    assert (rows[1]["prediction"], rows[1]["prediction_score"]) == ("y", None)
    assert (rows[2]["input"], rows[2]["prediction"]) == (5, "[0.1,0.9]")
    # A model input named like a column the monitor adds keeps its value under input_<name>.
    # (the predictions mix text and numbers: the column is text)
    assert (rows[3]["input_timestamp"], rows[3]["input_prediction"], rows[3]["prediction"]) == (1, 2, "3")


def test_a_column_of_mixed_types_is_kept_as_text_and_short_answers_give_nulls() -> None:
    out = unpack(
        _payload(
            ({"dataframe_records": [{"a": 1}, {"a": "two"}]}, {"predictions": [1]}),
            ("not json", None),
        ),
        "custom",
    )
    assert out.column("a").to_pylist() == ["1", "two"]
    assert out.column("prediction").to_pylist() == [1, None]


def test_llm_rows_measure_prompts_answers_tokens_and_guardrails() -> None:
    chat = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]}
    answer = {
        "object": "chat.completion",
        "choices": [{"message": {"role": "assistant", "content": "hi there"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }
    blocked = orjson.dumps([{"name": "safety", "result": "blocked"}]).decode()
    table = _payload((chat, answer), ({"prompt": "abc"}, None), guardrails=[None, blocked])
    table = table.set_column(3, "status_code", pa.array([200, 400]))
    rows = _rows(unpack(table, "llm"))
    assert [
        (r["prompt_length"], r["answer_length"], r["prompt_tokens"], r["total_tokens"], r["finish_reason"])
        for r in rows
    ] == [(13, 8, 9, 12, "stop"), (3, None, None, None, None)]
    assert [r["guardrail_outcome"] for r in rows] == [None, "blocked"]
    assert [r["status_code"] for r in rows] == [200, 400]


def test_kind_detection_and_traffic_filter() -> None:
    assert payload_kind(["nope", '{"predictions": [1]}']) == "custom"
    assert payload_kind(['{"choices": []}']) == "llm"
    assert payload_kind([]) == "custom"
    assert traffic_predicate(()) == (
        "shadow_of IS NULL AND replay_of IS NULL AND batch_job_id IS NULL AND cache_hit IS NOT TRUE "
        "AND status_code = 200"
    )
    assert traffic_predicate(("shadow", "batch"), "llm") == "replay_of IS NULL AND cache_hit IS NOT TRUE"
    assert is_inference_table(INFERENCE_SCHEMA.names)
    assert not is_inference_table(["request", "response"])


def test_no_rows_gives_an_empty_table_with_the_fixed_columns() -> None:
    out = unpack(_payload(), "custom")
    assert out.num_rows == 0
    assert out.column_names[:3] == ["timestamp", "client_request_id", "databricks_request_id"]
    assert "prediction" in out.column_names


def _general_only(table: pa.Table) -> pa.Table:
    """``table`` with every query sent to the general (orjson) path: each request's keys given
    twice (orjson reads the last; the fast path leaves queries with a repeated key alone)."""
    fast_free = [
        f"{text[:-1]}, {text[1:]}" if isinstance(_maybe_json(text), dict) else text
        for text in table.column("request").to_pylist()
    ]
    return table.set_column(table.column_names.index("request"), "request", pa.array(fast_free, pa.string()))


def _fast_rows(table: pa.Table) -> list[int]:
    """The payload rows the fast path unpacked."""
    return sorted({int(i) for b in _batches(table, "custom") if b.fast for i in b.source})


def _maybe_json(text: str | None) -> Any:
    try:
        return orjson.loads(text) if text is not None else None
    except orjson.JSONDecodeError:
        return None


def _split(data: list[Any], columns: tuple[str, ...] = ("a", "b")) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(columns), "data": data}}


def test_the_fast_path_reads_the_common_shape_as_the_general_path_does() -> None:
    table = _payload(
        *[(_split([[i, i + 0.5], [-i, None]]), {"predictions": [i % 2, None]}) for i in range(40)],
        (_split([[1, 2.0]], ("x", "timestamp")), {"predictions": ["setosa"]}),
    )
    out = unpack(table, "custom")
    assert out.num_rows == 81
    assert out.schema.field("a").type == pa.int64() and out.schema.field("b").type == pa.float64()
    assert out.column("b").to_pylist()[:4] == [0.5, None, 1.5, None]
    assert out.column("request_row").to_pylist()[:4] == [0, 1, 0, 1]
    assert out.column("input_timestamp").to_pylist()[-1] == 2.0
    # the prediction column mixes numbers and text: text, as the general path makes it
    assert out.column("prediction").to_pylist()[-3:] == ["1", None, "setosa"]
    assert out.equals(unpack(_general_only(table), "custom"))
    assert _fast_rows(table) == list(range(41))


def test_queries_of_other_shapes_keep_their_place_among_the_fast_ones() -> None:
    queries: list[tuple[Any, Any]] = [
        (_split([[1, 2.5], [3, 4.5]]), {"predictions": [0, 1]}),
        (_split([[True, 6.5]]), {"predictions": [1]}),  # a boolean
        (_split([[7, 8.5], [9]]), {"predictions": [1, 2]}),  # rows of different lengths
        (_split([[7, 8.5]]), {"predictions": [1, 2]}),  # more predictions than records
        (_split([[7, 8.5], [1, 1.5]]), {"predictions": [1]}),  # fewer
        (_split([[5, "five"]]), {"predictions": [1]}),  # text among numbers
        (_split([[5, [1]]]), {"predictions": [1]}),  # a list
        (_split([[5, 6.5]]), {"predictions": [[0.2, 0.8]]}),  # a multi-output prediction
        (_split([[5, 6.5]]), {"predictions": [{"label": 1, "p": 0.5}]}),
        (_split([[5, 6.5]]), {"predictions": {"label": [1]}}),
        ({"dataframe_records": [{"a": 11, "z": 2}]}, {"predictions": [1]}),
        ({"inputs": [[1, 2]]}, {"predictions": [0]}),
        ({"instances": [{"a": 12}]}, {"predictions": [0]}),
        (None, None),  # a failed query's row
        (_split([[13, 14.5]]), None),
        (_split([]), {"predictions": []}),
        (_split([[15, 16.5]], ("a", "a")), {"predictions": [1]}),  # a column named twice
        (_split([[17, 18.5]]), {"predictions": [0]}),
    ]
    table = _payload(*queries)
    requests = table.column("request").to_pylist()
    requests[1] = '{"dataframe_split": {"columns": ["a", "b"], "data": [[NaN, 1.5]]}}'  # orjson refuses
    requests[2] = '{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 1e400]]}}'  # so does it
    table = table.set_column(5, "request", pa.array(requests, pa.string()))
    out = unpack(table, "custom")
    assert out.equals(unpack(_general_only(table), "custom"))
    rows = _rows(out)
    got = [(r["client_request_id"], r["request_row"], r["a"], r["prediction"]) for r in rows]
    assert got[:3] == [("c0", 0, 1, "0"), ("c0", 1, 3, "1"), ("c3", 0, 7, "1")]
    assert [r["client_request_id"] for r in rows] == sorted(
        (r["client_request_id"] for r in rows), key=lambda c: int(c[1:])
    )
    assert got[-1] == ("c17", 0, 17, "0")
    assert rows[-2]["a"] == 16.5 and out.schema.field("a").type == pa.float64()  # the last "a"
    # the fast path read the queries of the common shape (values of any kind; the others took
    # the general path, and so did the texts orjson refuses)
    assert _fast_rows(table) == [0, 5, 6, 17]


def test_text_and_number_answers_of_the_same_columns_merge_as_text() -> None:
    table = _payload(
        (_split([[1, 2.5]]), {"predictions": ["setosa"]}),
        (_split([[3, 4.5], [5, 6.5]]), {"predictions": [7, None]}),
    )
    out = unpack(table, "custom")
    assert out.column("prediction").to_pylist() == ["setosa", "7", None]
    assert out.column("a").to_pylist() == [1, 3, 5] and out.schema.field("a").type == pa.int64()
    assert out.equals(unpack(_general_only(table), "custom"))
    assert _fast_rows(table) == [0, 1]
