"""Custom models: request parsing, signature errors, rendering, and predicting with real MLflow models."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import orjson
import pandas as pd
import pytest
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc.scoring_server import predictions_to_json
from mlflow.types.schema import Schema, TensorSpec
from sklearn.linear_model import LogisticRegression

from modelport.entities.custom import (
    CustomModel,
    ModelInput,
    SignatureInfo,
    decode_body,
    frame_from_records,
    frame_from_split,
    frame_of,
    parse_inputs,
    parse_instances,
    parse_request,
    predictions_json,
)
from modelport.errors import BadRequest, InvalidParameterValue, MalformedRequest, ModelportError

COLUMNS = ["a", "b", "c"]


def body(doc: Any) -> bytes:
    return orjson.dumps(doc)


# --- models ---------------------------------------------------------------------------------


# The models' predict methods carry no type hints: MLflow would read them as a signature (it
# warns about that when the classes are defined; UserWarnings are not errors here).
class Echo(mlflow.pyfunc.PythonModel):
    """Returns whatever ``params["kind"]`` asks for, built from the input."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        kind = (params or {}).get("kind", "frame")
        n = len(model_input)
        outputs: dict[str, Any] = {
            "str": "hello",
            "dict": {"rows": n, "ok": True},
            "list": list(range(n)),
            "frame": pd.DataFrame({"x": np.arange(n), "y": ["r"] * n}),
            "array": np.arange(n, dtype=np.float64) / 2,
            "boom": None,
        }
        if kind == "boom":
            raise ValueError("boom")
        return outputs[kind]


class RowSum(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return np.asarray(model_input).sum(axis=1)


class Chat(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        messages = model_input["messages"][0] if isinstance(model_input, pd.DataFrame) else model_input
        return {"choices": [{"message": {"role": "assistant", "content": str(messages)[:20]}}]}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def sklearn_model(models_dir: Path) -> CustomModel:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((40, 3)), columns=COLUMNS)
    y = (x["a"] > 0.5).astype(int)
    clf = LogisticRegression().fit(x, y)
    path = models_dir / "sklearn"
    mlflow.sklearn.save_model(
        clf, str(path), signature=infer_signature(x, clf.predict(x)), pip_requirements=["scikit-learn"]
    )
    return CustomModel.load(str(path))


@pytest.fixture(scope="module")
def echo_model(models_dir: Path) -> CustomModel:
    x = pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0]})
    signature = infer_signature(x, params={"kind": "frame"})
    path = models_dir / "echo"
    mlflow.pyfunc.save_model(str(path), python_model=Echo(), signature=signature, pip_requirements=["mlflow"])
    return CustomModel.load(str(path))


@pytest.fixture(scope="module")
def tensor_model(models_dir: Path) -> CustomModel:
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype("float32"), (-1, 3))]))
    path = models_dir / "tensor"
    mlflow.pyfunc.save_model(
        str(path), python_model=RowSum(), signature=signature, pip_requirements=["mlflow"]
    )
    return CustomModel.load(str(path))


@pytest.fixture(scope="module")
def unsigned_model(models_dir: Path) -> CustomModel:
    path = models_dir / "unsigned"
    mlflow.pyfunc.save_model(str(path), python_model=RowSum(), pip_requirements=["mlflow"])
    return CustomModel.load(str(path))


@pytest.fixture(scope="module")
def chat_model(models_dir: Path) -> CustomModel:
    path = models_dir / "chat"
    mlflow.pyfunc.save_model(str(path), python_model=Chat(), pip_requirements=["mlflow"])
    return CustomModel.load(str(path))


def predictions(model: CustomModel, doc: Any) -> Any:
    return orjson.loads(model.predict(model.parse(body(doc))))["predictions"]


# --- decoding and families --------------------------------------------------------------------


def test_malformed_json_is_malformed_request() -> None:
    with pytest.raises(MalformedRequest, match="not valid JSON"):
        decode_body(b'{"dataframe_split": ')


def test_a_json_list_is_malformed_request() -> None:
    with pytest.raises(MalformedRequest, match="got a JSON list"):
        decode_body(b"[1, 2]")


def test_nan_and_infinity_written_by_python_clients_are_accepted() -> None:
    doc = decode_body(b'{"instances": [[NaN, Infinity]]}')
    assert np.isnan(doc["instances"][0][0]) and doc["instances"][0][1] == float("inf")


def test_no_input_family_is_bad_request_naming_the_families() -> None:
    with pytest.raises(BadRequest, match=r"exactly one of the fields .*; found none of them"):
        parse_request(body({"data": [1]}), SignatureInfo())


def test_several_input_families_are_named() -> None:
    with pytest.raises(BadRequest, match="found dataframe_records, instances"):
        parse_request(body({"dataframe_records": [], "instances": []}), SignatureInfo())


def test_bookkeeping_keys_are_ignored() -> None:
    doc = {"instances": [[1, 2]], "client_request_id": "r1", "usage_context": {"team": "x"}}
    inp = parse_request(body(doc), SignatureInfo())
    assert (inp.family, inp.data, inp.params) == ("instances", [[1, 2]], None)


# --- DataFrame families -------------------------------------------------------------------------


def test_dataframe_split_builds_a_frame_with_index() -> None:
    frame = frame_from_split({"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]], "index": [7, 8]})
    assert frame.to_dict(orient="split") == {
        "index": [7, 8],
        "columns": ["a", "b"],
        "data": [[1, "x"], [2, "y"]],
    }


def test_dataframe_split_row_of_wrong_width_names_the_row() -> None:
    with pytest.raises(InvalidParameterValue, match="row 1 has 1 values but there are 2 columns"):
        frame_from_split({"columns": ["a", "b"], "data": [[1, 2], [3]]})


def test_dataframe_split_unknown_field_is_named() -> None:
    with pytest.raises(InvalidParameterValue, match=r"unexpected fields \['rows'\]"):
        frame_from_split({"columns": ["a"], "data": [[1]], "rows": 1})


def test_dataframe_split_must_be_an_object() -> None:
    with pytest.raises(InvalidParameterValue, match=r"must be an object .* got a list"):
        frame_from_split([[1, 2]])


def test_dataframe_records_builds_a_frame() -> None:
    frame = frame_from_records([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    assert frame.to_dict(orient="list") == {"a": [1, 2], "b": ["x", "y"]}


def test_dataframe_records_with_different_keys_fill_missing_values() -> None:
    frame = frame_from_records([{"a": 1}, {"b": 2}])
    assert list(frame.columns) == ["a", "b"]
    assert frame["a"].isna().tolist() == [False, True]


def test_dataframe_records_must_be_a_list() -> None:
    with pytest.raises(InvalidParameterValue, match="must be a list of records; got a object"):
        frame_from_records({"a": 1})


def test_frame_input_gets_a_batch_key_from_columns_and_cell_kinds() -> None:
    sig = SignatureInfo()
    one = parse_request(body({"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"]]}}), sig)
    two = parse_request(body({"dataframe_records": [{"a": 2.5, "b": "y"}, {"a": 3, "b": "z"}]}), sig)
    other = parse_request(body({"dataframe_records": [{"a": "2", "b": "y"}]}), sig)
    assert one.key == two.key == (("a", "b"), ("n", "s"))
    assert other.key != one.key
    assert (one.rows, two.rows) == (1, 2)


def test_frame_with_params_has_no_batch_key(echo_model: CustomModel) -> None:
    doc = {"dataframe_split": {"columns": COLUMNS, "data": [[1, 2, 3]]}, "params": {"kind": "list"}}
    inp = echo_model.parse(body(doc))
    assert inp.key is None and inp.params == {"kind": "list"}


def test_params_are_dropped_when_the_model_declares_none(sklearn_model: CustomModel) -> None:
    doc = {"dataframe_split": {"columns": COLUMNS, "data": [[1, 2, 3]]}, "params": {"x": 1}}
    inp = sklearn_model.parse(body(doc))
    assert inp.params is None and inp.key is not None


def test_params_must_be_an_object(echo_model: CustomModel) -> None:
    with pytest.raises(InvalidParameterValue, match="'params' must be an object"):
        echo_model.parse(body({"instances": [[1]], "params": [1]}))


def test_combined_frame_concatenates_rows_and_indexes() -> None:
    sig = SignatureInfo()
    first = parse_request(body({"dataframe_split": {"columns": ["a"], "data": [[1.5]], "index": [9]}}), sig)
    second = parse_request(body({"dataframe_records": [{"a": 2.5}, {"a": 3.5}]}), sig)
    assert first.frame is not None and second.frame is not None
    frame = frame_of([first.frame, second.frame], sig)
    assert frame.index.tolist() == [9, 0, 1]
    assert frame["a"].tolist() == [1.5, 2.5, 3.5]


@pytest.mark.parametrize(
    "rows",
    [
        [[1, 2.5, 3]],
        [[0.1, 0.2, 0.3], [4, 5, 6]],
        [[2**60, 1.0, -3]],
        [[float("nan"), 1, 2]],
    ],
)
def test_numeric_fast_path_equals_pandas_and_mlflow_cast(sklearn_model: CustomModel, rows: Any) -> None:
    from mlflow.utils.proto_json_utils import dataframe_from_parsed_json

    schema = sklearn_model.signature.schema
    expected = dataframe_from_parsed_json({"columns": COLUMNS, "data": rows}, "split", schema)
    got = frame_from_split({"columns": COLUMNS, "data": rows}, sklearn_model.signature)
    pd.testing.assert_frame_equal(got, expected)


# --- instances and inputs -----------------------------------------------------------------------


def test_instances_of_records_are_a_frame(sklearn_model: CustomModel) -> None:
    data = parse_instances([{"a": 1, "b": 2, "c": 3}], sklearn_model.signature)
    assert isinstance(data, pd.DataFrame)
    assert data.to_dict(orient="records") == [{"a": 1.0, "b": 2.0, "c": 3.0}]


def test_instances_of_lists_are_an_array(unsigned_model: CustomModel) -> None:
    data = parse_instances([[1, 2], [3, 4]], unsigned_model.signature)
    assert isinstance(data, np.ndarray) and data.tolist() == [[1, 2], [3, 4]]


def test_instances_must_be_a_list(unsigned_model: CustomModel) -> None:
    with pytest.raises(InvalidParameterValue, match="'instances' must be a list of rows; got a number"):
        unsigned_model.parse(body({"instances": 3}))


def test_instances_for_a_tensor_signature_are_typed_arrays(tensor_model: CustomModel) -> None:
    data = parse_instances([[1, 2, 3]], tensor_model.signature)
    assert isinstance(data, np.ndarray) and data.dtype == np.float32 and data.shape == (1, 3)


def test_inputs_of_columns_are_a_frame_for_a_column_signature(sklearn_model: CustomModel) -> None:
    data = parse_inputs({"a": [1, 2], "b": [3, 4], "c": [5, 6]}, sklearn_model.signature)
    assert isinstance(data, pd.DataFrame)
    assert data.to_dict(orient="list") == {"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]}


def test_inputs_list_is_an_array(unsigned_model: CustomModel) -> None:
    data = parse_inputs([[1.5, 2.5]], unsigned_model.signature)
    assert isinstance(data, np.ndarray) and data.tolist() == [[1.5, 2.5]]


def test_inputs_dict_for_a_tensor_signature_are_arrays(unsigned_model: CustomModel) -> None:
    data = parse_inputs({"x": [1, 2]}, unsigned_model.signature)
    assert isinstance(data, dict) and data["x"].tolist() == [1, 2]


# --- predicting ---------------------------------------------------------------------------------

SKLEARN_BODIES = {
    "dataframe_split": {"dataframe_split": {"columns": COLUMNS, "data": [[0.9, 0.1, 0.2], [0.1, 0.5, 0.5]]}},
    "dataframe_split_with_index": {
        "dataframe_split": {"index": [0, 1], "columns": COLUMNS, "data": [[0.9, 0.1, 0.2], [0.1, 0.5, 0.5]]}
    },
    "dataframe_records": {
        "dataframe_records": [{"a": 0.9, "b": 0.1, "c": 0.2}, {"a": 0.1, "b": 0.5, "c": 0.5}]
    },
    "instances": {"instances": [{"a": 0.9, "b": 0.1, "c": 0.2}, {"a": 0.1, "b": 0.5, "c": 0.5}]},
    "inputs": {"inputs": {"a": [0.9, 0.1], "b": [0.1, 0.5], "c": [0.2, 0.5]}},
}


@pytest.mark.parametrize("name", list(SKLEARN_BODIES))
def test_sklearn_predictions_match_mlflow_scoring_server(sklearn_model: CustomModel, name: str) -> None:
    from mlflow.pyfunc.scoring_server import invocations

    raw = body(SKLEARN_BODIES[name])
    ours = json.loads(sklearn_model.predict(sklearn_model.parse(raw)))
    schema = sklearn_model.model.metadata.get_input_schema()
    theirs = json.loads(invocations(raw, "application/json", sklearn_model.model, schema).response)
    assert ours == theirs == {"predictions": [1, 0]}


def test_missing_column_names_the_column(sklearn_model: CustomModel) -> None:
    doc = {"dataframe_split": {"columns": ["a", "b", "zz"], "data": [[1, 2, 3]]}}
    with pytest.raises(InvalidParameterValue) as info:
        sklearn_model.predict(sklearn_model.parse(body(doc)))
    assert info.value.message == (
        "Input does not match the model signature: Model is missing inputs ['c']. "
        "Note that there were extra inputs: ['zz']."
    )


def test_wrong_type_names_the_column(sklearn_model: CustomModel) -> None:
    doc = {"dataframe_records": [{"a": 1, "b": "seven", "c": 3}]}
    with pytest.raises(InvalidParameterValue, match="Failed to convert column b to type 'float64'"):
        sklearn_model.predict(sklearn_model.parse(body(doc)))


def test_tensor_shape_mismatch_is_a_client_error(tensor_model: CustomModel) -> None:
    with pytest.raises(InvalidParameterValue, match="Input does not match the model signature: Shape"):
        tensor_model.predict(tensor_model.parse(body({"inputs": [[1, 2]]})))


def test_tensor_model_predicts_rows(tensor_model: CustomModel) -> None:
    assert predictions(tensor_model, {"instances": [[1, 2, 3], [4, 5, 6]]}) == [6.0, 15.0]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("str", "hello"),
        ("dict", {"rows": 2, "ok": True}),
        ("list", [0, 1]),
        ("frame", [{"x": 0, "y": "r"}, {"x": 1, "y": "r"}]),
        ("array", [0.0, 0.5]),
    ],
)
def test_pyfunc_outputs_render_like_mlflow(echo_model: CustomModel, kind: str, expected: Any) -> None:
    doc = {"dataframe_split": {"columns": COLUMNS, "data": [[1, 2, 3], [4, 5, 6]]}, "params": {"kind": kind}}
    assert predictions(echo_model, doc) == expected


def test_model_exception_is_an_internal_error_with_its_type(echo_model: CustomModel) -> None:
    doc = {"dataframe_split": {"columns": COLUMNS, "data": [[1, 2, 3]]}, "params": {"kind": "boom"}}
    with pytest.raises(ModelportError) as info:
        echo_model.predict(echo_model.parse(body(doc)))
    assert (info.value.error_code, info.value.message) == ("INTERNAL_ERROR", "ValueError: boom")


def test_unified_llm_body_is_passed_as_is_and_answered_unwrapped(chat_model: CustomModel) -> None:
    inp = chat_model.parse(body({"messages": [{"role": "user", "content": "hi"}], "client_request_id": "x"}))
    assert inp.family == "llm" and inp.data == {"messages": [{"role": "user", "content": "hi"}]}
    answer = orjson.loads(chat_model.predict(inp))
    assert answer["choices"][0]["message"]["role"] == "assistant"


def test_combined_frames_predict_like_each_alone(sklearn_model: CustomModel) -> None:
    inputs = [
        sklearn_model.parse(body({"dataframe_split": {"columns": COLUMNS, "data": [[0.9, 0.1, 0.2]]}})),
        sklearn_model.parse(body({"dataframe_records": [{"a": 0.1, "b": 0.5, "c": 0.5}]})),
    ]
    together = sklearn_model.run(sklearn_model.combine(inputs))
    alone = [orjson.loads(sklearn_model.predict(inp))["predictions"] for inp in inputs]
    assert together.tolist() == [p[0] for p in alone] == [1, 0]


def test_combine_refuses_inputs_without_frames(unsigned_model: CustomModel) -> None:
    with pytest.raises(ValueError, match="only frame inputs"):
        unsigned_model.combine([ModelInput("instances", data=[[1]])])


# --- rendering ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (np.array([1.5, np.nan]), [1.5, None]),
        (np.array([[1, 2], [3, 4]], dtype=np.int32), [[1, 2], [3, 4]]),
        (np.array(["a", "b"]), ["a", "b"]),
        (np.array([{"k": 1}], dtype=object), [{"k": 1}]),
        (
            pd.DataFrame({"p": [0.25, 0.75], "label": ["x", "y"]}),
            [{"p": 0.25, "label": "x"}, {"p": 0.75, "label": "y"}],
        ),
        (pd.Series([1, 2]), [{"0": 1}, {"0": 2}]),
        (pd.Series([1.0, np.nan], name="score"), [{"score": 1.0}, {"score": None}]),
        ([1, "two", None], [1, "two", None]),
        ({"nested": np.float32(0.5), "arr": np.arange(2)}, {"nested": 0.5, "arr": [0, 1]}),
        (3, 3),
        ("text", "text"),
        (np.int64(7), 7),
        (datetime.datetime(2024, 5, 1, 12, 30), "2024-05-01T12:30:00"),
        (pd.DataFrame({"t": pd.to_datetime(["2024-05-01"])}), [{"t": "2024-05-01T00:00:00"}]),
    ],
    ids=lambda v: type(v).__name__,
)
def test_predictions_json(output: Any, expected: Any) -> None:
    assert orjson.loads(predictions_json(output)) == {"predictions": expected}


@pytest.mark.parametrize(
    "output",
    [
        np.array([1.5, 2.0]),
        pd.DataFrame({"p": [0.25], "label": ["x"]}),
        pd.Series([1, 2]),
        [1, "a"],
        {"a": [1]},
    ],
    ids=lambda v: type(v).__name__,
)
def test_predictions_json_equals_mlflow_json(output: Any) -> None:
    import io

    theirs = io.StringIO()
    predictions_to_json(output, theirs)
    assert orjson.loads(predictions_json(output)) == json.loads(theirs.getvalue())
