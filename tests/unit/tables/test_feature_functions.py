"""FunctionDef: a feature function's definition, checked without running it, called with Spark's
value rules, and its JSON and source forms."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.errors import InvalidParameterValue, ResourceAlreadyExists, ResourceDoesNotExist
from modelport.tables.feature_functions import FunctionDef, FunctionValueError, function_name
from modelport.tables.function_store import FunctionStore, StoredFunction

SOURCE = '''import math


def log_ratio(amount, average):
    """log(amount / average)."""
    if amount is None or average is None:
        return None
    return math.log(amount / average)
'''


def _def(**changes: Any) -> FunctionDef:
    fields: dict[str, Any] = {
        "name": "Main.Fraud.Log_Ratio",
        "parameters": (("amount", "double"), ("average", "double")),
        "return_type": "double",
        "source": SOURCE,
        "entry_point": "log_ratio",
    }
    return FunctionDef(**{**fields, **changes})


def test_the_name_is_lower_cased_and_must_have_three_parts() -> None:
    assert _def().name == "main.fraud.log_ratio"
    assert function_name("A.B.C") == "a.b.c"
    with pytest.raises(InvalidParameterValue, match=r"must be catalog\.schema\.function"):
        _def(name="fraud.log_ratio")
    with pytest.raises(InvalidParameterValue, match=r"must be catalog\.schema\.function"):
        _def(name="main.fraud.log-ratio")


def test_call_runs_the_function_with_its_module() -> None:
    assert _def().call(amount=math.e, average=1.0) == pytest.approx(1.0)
    assert _def().call(amount=None, average=1.0) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source": "def log_ratio(amount, average:\n"}, "is not valid Python"),
        ({"entry_point": "other"}, "defines no function 'other'"),
        ({"entry_point": "not a name"}, "must be a Python name"),
        ({"parameters": (("amount", "double"),)}, r"takes \['amount', 'average'\]"),
        ({"parameters": (("amount", "double"), ("average", "decimal"))}, "must be one of"),
        ({"return_type": "timestamp"}, "return type of main.fraud.log_ratio must be one of"),
        ({"source": "def log_ratio(*values):\n    return 1.0\n", "parameters": ()}, "named parameters only"),
        ({"source": "async def log_ratio(amount, average):\n    return 1.0\n"}, "defines no function"),
        ({"source": "  "}, "has no source"),
    ],
)
def test_a_definition_that_cannot_run_is_refused_naming_why(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        _def(**changes)


def test_nothing_runs_before_the_first_call() -> None:
    definition = _def(source='raise RuntimeError("module ran")\n\n\n' + SOURCE)
    with pytest.raises(RuntimeError, match="module ran"):
        definition.call(amount=1.0, average=1.0)


def test_the_module_runs_once() -> None:
    source = "calls = []\n\n\ndef f(x):\n    calls.append(x)\n    return len(calls)\n"
    definition = FunctionDef("main.fs.f", (("x", "bigint"),), "bigint", source, "f")
    assert [definition.call(x=1), definition.call(x=2)] == [1, 2]


@pytest.mark.parametrize(
    ("kind", "value", "passed"),
    [
        ("bigint", 3.0, 3),
        ("bigint", np.int32(4), 4),
        ("double", 2, 2.0),
        ("double", np.float32(0.5), 0.5),
        ("double", float("nan"), None),
        ("string", "a", "a"),
        ("boolean", np.bool_(True), True),
    ],
)
def test_arguments_are_converted_where_nothing_is_lost(kind: str, value: Any, passed: Any) -> None:
    definition = FunctionDef(
        "main.fs.echo", (("x", kind),), "string", "def echo(x):\n    return repr(x)\n", "echo"
    )
    assert definition.call(x=value) == repr(passed)


@pytest.mark.parametrize(
    ("kind", "value"),
    [("bigint", 3.5), ("bigint", True), ("double", "1.0"), ("double", False), ("string", 1)],
)
def test_an_argument_that_does_not_fit_is_refused_naming_the_parameter(kind: str, value: Any) -> None:
    definition = FunctionDef(
        "main.fs.echo", (("x", kind),), "string", "def echo(x):\n    return 'x'\n", "echo"
    )
    with pytest.raises(FunctionValueError, match=f"parameter 'x' \\({kind}\\) cannot be"):
        definition.call(x=value)


def test_the_result_is_typed_as_declared() -> None:
    to_double = FunctionDef("main.fs.one", (), "double", "def one():\n    return 1\n", "one")
    assert to_double.call() == 1.0 and isinstance(to_double.call(), float)
    wrong = FunctionDef("main.fs.one", (), "bigint", "def one():\n    return 'one'\n", "one")
    with pytest.raises(FunctionValueError, match="returned 'one' \\(str\\), not a bigint"):
        wrong.call()


def test_json_round_trip() -> None:
    definition = _def(description="log of the ratio")
    body = definition.to_dict()
    assert body["name"] == "main.fraud.log_ratio"
    assert body["parameters"] == [{"name": "amount", "type": "double"}, {"name": "average", "type": "double"}]
    assert FunctionDef.from_dict({**body, "owner": "ignored"}) == definition
    with pytest.raises(InvalidParameterValue, match="Missing required field 'source'"):
        FunctionDef.from_dict({k: v for k, v in body.items() if k != "source"})


def test_from_source_reads_the_types_from_annotations() -> None:
    source = (
        "from typing import Optional\n\n\n"
        "def score(a: int, b: 'float', c: str | None, d: Optional[bool]) -> float:\n"
        '    """The score."""\n'
        "    return 1.0\n"
    )
    definition = FunctionDef.from_source("main.fs.score", source, "score")
    assert definition.parameters == (("a", "bigint"), ("b", "double"), ("c", "string"), ("d", "boolean"))
    assert definition.return_type == "double"
    assert definition.description == "The score."
    with pytest.raises(InvalidParameterValue, match="Parameter 'x' of function 'f' has no type annotation"):
        FunctionDef.from_source("main.fs.f", "def f(x) -> int:\n    return 1\n", "f")
    with pytest.raises(InvalidParameterValue, match="The result of function 'f' is annotated list"):
        FunctionDef.from_source("main.fs.f", "def f(x: int) -> list:\n    return [x]\n", "f")


def test_the_store_keeps_one_file_per_function(tmp_path: Path) -> None:
    store = FunctionStore(str(tmp_path))
    store.create(StoredFunction(_def(), "admin", 1))
    assert (tmp_path / "feature-functions" / "main.fraud.log_ratio.json").is_file()
    with pytest.raises(ResourceAlreadyExists):
        store.create(StoredFunction(_def(), "admin", 2))
    assert store.get("main.fraud.log_ratio") == StoredFunction(_def(), "admin", 1)
    (tmp_path / "feature-functions" / "main.fraud.broken.json").write_text("{")
    assert [s.definition.name for s in store.list()] == ["main.fraud.log_ratio"]  # a damaged file left out
    store.delete("main.fraud.log_ratio")
    with pytest.raises(ResourceDoesNotExist):
        store.get("main.fraud.log_ratio")
