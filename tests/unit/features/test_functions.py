"""Feature functions on the client side: a Python function made a definition (what
``create_function`` sends), ``FeatureFunction``, and training sets that compute function outputs
exactly as the served model does."""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.linalg as la
import pandas as pd
import pyarrow as pa
import pytest

from modelport.errors import InvalidParameterValue
from modelport.features import FeatureFunction, FeatureLookup, FeatureTable
from modelport.features.functions import definition_of
from modelport.features.training import TrainingSet, build_feature_spec, resolve_functions, resolve_lookups
from modelport.tables.feature_functions import FunctionDef
from modelport.tables.feature_lookup import FeatureEvaluator
from modelport.tables.feature_spec import FeatureSpec, FunctionColumn
from modelport.tables.features import FeatureTableInfo
from modelport.tables.online_store import OnlineReader, OnlineStore

USERS = "main.fs.users"
LIMIT = 10.0


def log_ratio(amount: float, average: float | None) -> float | None:
    """log(amount / average)."""
    if average is None:
        return None
    return math.log(amount / average)


def norm(x: float, y: float) -> float:
    return float(la.norm([x, y]))


def reads_a_constant(x: float) -> float:
    return x * LIMIT


def untyped(x):  # type: ignore[no-untyped-def]
    return x


def returns_a_list(x: int) -> list[int]:
    return [x]


def is_big(amount: float, spend: float) -> bool:
    return amount > 2 * spend


def bucket(amount: float) -> str:
    return "high" if amount > 100 else "low"


def _registered(func: Any) -> FunctionDef:
    return definition_of(f"main.fs.{func.__name__}", func)


# ---- definitions from Python functions ---------------------------------------------------------


def test_a_function_becomes_a_definition_that_runs_on_its_own() -> None:
    definition = _registered(log_ratio)
    assert definition.parameters == (("amount", "double"), ("average", "double"))
    assert definition.return_type == "double"
    assert definition.description == "log(amount / average)."
    assert definition.source.startswith("import math\n")
    copy = FunctionDef.from_dict(definition.to_dict())  # as the server stores it
    assert copy.call(amount=math.e, average=1.0) == pytest.approx(1.0)


def test_a_module_imported_under_another_name_is_imported_so() -> None:
    definition = _registered(norm)
    assert "import numpy.linalg as la" in definition.source
    assert FunctionDef.from_dict(definition.to_dict()).call(x=3.0, y=4.0) == 5.0


def test_a_lambda_is_refused() -> None:
    with pytest.raises(InvalidParameterValue, match="A lambda cannot be registered"):
        definition_of("main.fs.f", lambda x: x)


def test_a_closure_is_refused_naming_what_it_reads() -> None:
    factor = 3.0

    def scaled(x: float) -> float:
        return x * factor

    with pytest.raises(InvalidParameterValue, match=r"reads \['factor'\] from an enclosing function"):
        definition_of("main.fs.scaled", scaled)


def test_a_global_that_is_not_a_module_is_refused_naming_it() -> None:
    with pytest.raises(InvalidParameterValue, match=r"global name\(s\) \['LIMIT'\]"):
        _registered(reads_a_constant)


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (untyped, "Parameter 'x' of function 'untyped' has no type annotation"),
        (returns_a_list, "The result of function 'returns_a_list' is annotated"),
        (print, "needs a plain Python function"),
    ],
)
def test_what_cannot_be_typed_or_read_is_refused(func: Any, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        definition_of("main.fs.f", func)


def test_feature_function_mirrors_databricks() -> None:
    function = FeatureFunction(udf_name="Main.FS.Log_Ratio", input_bindings={"average": "spend"})
    assert function.udf_name == "main.fs.log_ratio"
    assert function.output_name == "main.fs.log_ratio"  # Databricks' default
    assert FeatureFunction("main.fs.f", output_name="out").output_name == "out"
    with pytest.raises(TypeError, match="unexpected keyword"):
        FeatureFunction(udf_name="main.fs.f", name="x")  # type: ignore[call-arg]
    with pytest.raises(InvalidParameterValue, match="input_bindings must map"):
        FeatureFunction(udf_name="main.fs.f", input_bindings={"x": 1})  # type: ignore[dict-item]


# ---- training sets --------------------------------------------------------------------------------

USERS_DATA = pa.table({"user_id": pa.array([1, 2, 3], pa.int64()), "spend": [10.0, 20.0, 30.0]})
DEFINITIONS = {d.name: d for d in map(_registered, (log_ratio, is_big, bucket))}


def _table() -> FeatureTable:
    columns = [{"name": f.name, "type": str(f.type), "nullable": True} for f in USERS_DATA.schema]
    return FeatureTable.from_json(FeatureTableInfo(USERS, ["user_id"], [], "", columns, 1, 0, 0).to_json())


def _training(
    functions: list[FeatureFunction],
    exclude: list[str] | None = None,
    lookups: list[FeatureLookup] | None = None,
) -> TrainingSet:
    df = pd.DataFrame({"user_id": [1, 2, 9], "amount": [50.0, 30.0, 400.0], "label": [1.0, 0.0, 1.0]})
    lookups = (
        lookups if lookups is not None else [FeatureLookup(USERS, "user_id", default_values={"spend": 5.0})]
    )
    resolved = resolve_lookups(lookups, {USERS: _table()}, list(df.columns), ["label"])
    computed = resolve_functions(functions, DEFINITIONS, list(df.columns), resolved, ["label"])
    spec = build_feature_spec(df, resolved, ["label"], exclude or [], functions=computed)
    return TrainingSet(df, resolved, ["label"], spec, lambda _n, _v: USERS_DATA.to_pandas())


def test_functions_run_after_the_lookups_in_their_order() -> None:
    training = _training(
        [
            FeatureFunction("main.fs.log_ratio", {"average": "spend"}, "ratio"),
            FeatureFunction("main.fs.is_big", output_name="big"),
            FeatureFunction("main.fs.bucket"),
        ]
    )
    df = training.load_df()
    assert list(df.columns) == ["user_id", "amount", "spend", "ratio", "big", "main.fs.bucket", "label"]
    assert df["ratio"].tolist() == pytest.approx([math.log(5), math.log(1.5), math.log(80)])
    assert df["big"].tolist() == [True, False, True]
    assert df["main.fs.bucket"].tolist() == ["low", "low", "high"]
    spec = training.feature_spec
    assert [f.name for f in spec.functions] == ["main.fs.log_ratio", "main.fs.is_big", "main.fs.bucket"]
    assert spec.function_columns[0] == FunctionColumn(
        "ratio", "main.fs.log_ratio", (("amount", "amount"), ("average", "spend")), "double"
    )
    assert FeatureSpec.from_yaml(spec.to_yaml()) == spec  # the definitions travel in the spec


def test_an_excluded_feature_a_function_reads_stays_in_the_spec_not_in_the_frame() -> None:
    training = _training(
        [FeatureFunction("main.fs.log_ratio", {"average": "spend"}, "ratio")], exclude=["spend"]
    )
    assert list(training.load_df().columns) == ["user_id", "amount", "ratio", "label"]
    (spend,) = training.feature_spec.feature_columns
    assert spend.output_name == "spend" and not spend.include


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            FeatureFunction("main.fs.log_ratio", {"avg": "spend"}),
            r"names \['avg'\], which are not parameters",
        ),
        (FeatureFunction("main.fs.log_ratio"), "bound to 'average', which is neither a column"),
        (FeatureFunction("main.fs.log_ratio", {"average": "label"}), "bound to the label column 'label'"),
        (FeatureFunction("main.fs.bucket", output_name="spend"), "output 'spend' .* has the name of another"),
    ],
)
def test_a_function_that_does_not_fit_the_training_set_is_refused(
    function: FeatureFunction, message: str
) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        _training([function])


def test_the_served_model_gets_the_training_frame(tmp_path: Path) -> None:
    """The evaluator's frame for the training rows equals load_df() without the label: values
    and dtypes (what makes the served prediction the offline one)."""
    training = _training(
        [
            FeatureFunction("main.fs.log_ratio", {"average": "spend"}, "ratio"),
            FeatureFunction("main.fs.is_big", output_name="big"),
            FeatureFunction("main.fs.bucket", output_name="level"),
        ]
    )
    store = OnlineStore(tmp_path / "online.sqlite")
    columns = [{"name": f.name, "type": str(f.type), "nullable": True} for f in USERS_DATA.schema]
    store.publish(FeatureTableInfo(USERS, ["user_id"], [], "", columns, 1, 0, 0), USERS_DATA, mode="snapshot")
    evaluator = FeatureEvaluator(training.feature_spec, OnlineReader(tmp_path / "online.sqlite"))
    requests = pd.DataFrame({"user_id": [1, 2, 9], "amount": [50.0, 30.0, 400.0]})
    expected = training.load_df().drop(columns=["label"])
    pd.testing.assert_frame_equal(evaluator.frame(requests), expected)


def test_a_function_failing_offline_names_it_and_the_row() -> None:
    zero = pa.table({"user_id": pa.array([1, 2], pa.int64()), "spend": [10.0, 0.0]})
    df = pd.DataFrame({"user_id": [1, 2], "amount": [1.0, 1.0]})
    resolved = resolve_lookups([FeatureLookup(USERS, "user_id")], {USERS: _table()}, list(df.columns))
    computed = resolve_functions(
        [FeatureFunction("main.fs.log_ratio", {"average": "spend"}, "ratio")],
        DEFINITIONS,
        list(df.columns),
        resolved,
    )
    spec = build_feature_spec(df, resolved, [], [], functions=computed)
    training = TrainingSet(df, resolved, [], spec, lambda _n, _v: zero.to_pandas())
    with pytest.raises(
        InvalidParameterValue, match=r"main\.fs\.log_ratio .* failed on row 1: ZeroDivisionError"
    ):
        training.load_df()


def test_timestamps_in_a_training_set_keep_working_with_functions() -> None:
    """A point-in-time lookup and a function in one training set (the join is unchanged)."""
    events = pa.table(
        {
            "user_id": pa.array([1, 1], pa.int64()),
            "ts": pa.array(
                [datetime.datetime(2024, 1, d, tzinfo=datetime.UTC) for d in (1, 3)],
                pa.timestamp("us", tz="UTC"),
            ),
            "spend": [1.0, 3.0],
        }
    )
    columns = [{"name": f.name, "type": str(f.type), "nullable": True} for f in events.schema]
    table = FeatureTable.from_json(
        FeatureTableInfo(USERS, ["user_id"], ["ts"], "", columns, 1, 0, 0).to_json()
    )
    df = pd.DataFrame(
        {"user_id": [1, 1], "at": pd.to_datetime(["2024-01-02", "2024-01-04"]), "amount": [3.0, 3.0]}
    )
    resolved = resolve_lookups(
        [FeatureLookup(USERS, "user_id", timestamp_lookup_key="at")], {USERS: table}, list(df.columns)
    )
    computed = resolve_functions(
        [FeatureFunction("main.fs.log_ratio", {"average": "spend"}, "ratio")],
        DEFINITIONS,
        list(df.columns),
        resolved,
    )
    spec = build_feature_spec(df, resolved, [], ["at"], functions=computed)
    out = TrainingSet(df, resolved, [], spec, lambda _n, _v: events.to_pandas()).load_df()
    assert out["ratio"].tolist() == pytest.approx([math.log(3.0), 0.0])
    assert np.isfinite(out["ratio"]).all()
