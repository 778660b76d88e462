"""``modelport.spark.ai_query`` on a local Spark session (``local[2]``) against a real server: a
custom model (the tiny sklearn classifier) scored in multi-row requests, ``failOnError`` false
with failing rows, ``returnType``, NULL requests, a chat and an embeddings endpoint in front of the
OpenAI fake (one request per row, retried 429s), and what the driver refuses before any job runs.

The package's server (``tests/batch/world.py``) and one Spark session for the module. Needs
pyspark (``make install``: the ``spark`` extra) and Java 17+; without them the tests are skipped,
and fail under ``CI``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from modelport.batch.ai_query import CUSTOM_PARAMETERS_REFUSED
from modelport.errors import InvalidParameterValue, NotFound
from tests.batch.world import CHAT, CLASSIFIER, EMBED, MODEL, World
from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

pytestmark = [pytest.mark.spark, pytest.mark.slow]

FEATURES = ("f0", "f1", "f2", "f3")


def _missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (make install adds the spark extra)"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (Spark needs Java 17+)"
    return None


@dataclass
class SparkWorld:
    """The package's server (``tests/batch/world.py``) and a local Spark session."""

    shared: World
    spark: SparkSession

    @property
    def server(self) -> ServerProcess:
        return self.shared.server

    @property
    def admin(self) -> httpx.Client:
        return self.shared.admin

    @property
    def fake(self) -> FakeOpenAI:
        return self.shared.fake

    def ai_query(self, endpoint: str, *cols: Any, **options: Any) -> Any:
        from modelport.spark import ai_query

        return ai_query(endpoint, *cols, host=self.server.url, token=ADMIN_TOKEN, **options)


@pytest.fixture(scope="module")
def world(world: World) -> Iterator[SparkWorld]:
    """The package's ``world`` with a Spark session (this module's tests see this one)."""
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI: {reason}", pytrace=False)
        pytest.skip(reason)
    from pyspark.sql import SparkSession

    env = pytest.MonkeyPatch()
    # The Python workers run this interpreter (the project's venv), not whatever python3 is on PATH.
    env.setenv("PYSPARK_PYTHON", sys.executable)
    env.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # the JVM on loopback only
    spark = None
    try:
        spark = (
            SparkSession.builder.master("local[2]")
            .appName("modelport-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            # A JVM that starts fast (C1 only, one GC thread): seconds less on 2 shared cores.
            .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        yield SparkWorld(world, spark)
    finally:
        if spark is not None:
            _stop(spark)
        env.undo()


def _stop(spark: SparkSession) -> None:
    """Stop the session and its JVM (``stop()`` alone leaves the JVM running, holding hundreds of
    MB, until this pytest worker exits): it exits when its stdin closes."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    spark.stop()
    if gateway is None:
        return
    gateway.shutdown()
    proc = getattr(gateway, "proc", None)
    if proc is not None and proc.stdin is not None:
        proc.stdin.close()
        proc.wait(timeout=60)
    SparkContext._gateway = None
    SparkContext._jvm = None


def _features(world: SparkWorld, rows: list[tuple[Any, ...]]) -> DataFrame:
    # local[2]: two partitions of the rows, in order.
    return world.spark.createDataFrame(rows, "id long, f0 double, f1 double, f2 double, f3 double")


def _usage_requests(world: SparkWorld, endpoint: str) -> int:
    r = world.admin.post(
        "/api/2.0/modelport/tables/query",
        json={
            "sql": "SELECT count(*) FROM system.serving.endpoint_usage"
            f" WHERE endpoint_name = '{endpoint}' AND usage_context['client'] = 'spark'"
        },
    )
    assert r.status_code == 200, r.text
    return int(r.json()["rows"][0][0])


def test_a_custom_model_scores_a_dataframe_as_the_model_predicts(world: SparkWorld) -> None:
    import mlflow
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    values = rng.random((300, 4)).round(4)
    rows = [(i, *map(float, v)) for i, v in enumerate(values)]
    scored = _features(world, rows).withColumn("p", world.ai_query(MODEL, *FEATURES, batch_rows=50))
    got = {r["id"]: r["p"] for r in scored.collect()}

    model = mlflow.pyfunc.load_model(f"models:/{CLASSIFIER}/1")  # the registry of the test server
    expected = model.predict(pd.DataFrame(values, columns=list(FEATURES)))
    assert got == {i: int(p) for i, p in enumerate(expected)}  # BIGINT, as the signature says
    assert set(got.values()) == {0, 1}
    # Two partitions of 150 rows, each in requests of 50 rows: 6 requests, recorded as
    # ai_query's usage from Spark (the usage table is written every 2 s).
    deadline = time.monotonic() + 30
    while (count := _usage_requests(world, MODEL)) < 6 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert count == 6


def test_a_struct_request_a_null_request_and_the_return_type(world: SparkWorld) -> None:
    from pyspark.sql import functions as F

    df = _features(world, [(1, 0.9, 0.0, 0.0, 0.0), (2, 0.1, 0.0, 0.0, 0.0), (3, None, 0.0, 0.0, 0.0)])
    request = F.when(F.col("f0").isNull(), None).otherwise(F.struct(*FEATURES))
    scored = df.select("id", world.ai_query(MODEL, request, return_type="DOUBLE").alias("p"))
    assert scored.schema["p"].dataType.simpleString() == "double"
    assert sorted(tuple(r) for r in scored.collect()) == [(1, 1.0), (2, 0.0), (3, None)]
    # An answer that is not of the type asked for is the row's error.
    wrong = df.select(
        world.ai_query(MODEL, request, return_type="STRUCT<label: STRING>", fail_on_error=False)
    )
    errors = sorted(str(r[0]["errorMessage"]) for r in wrong.collect() if r[0] is not None)
    assert len(errors) == 2 and all("not a struct<label:string>" in e for e in errors), errors


def test_fail_on_error_false_marks_only_the_failing_rows(world: SparkWorld) -> None:
    from pyspark.sql import functions as F

    # A NULL feature reaches the model as NaN, which the classifier refuses: the 4-row request
    # fails, is sent again row by row, and only that row carries the endpoint's message.
    rows = [(i, 0.9 if i % 2 else 0.1, 0.0, 0.0, 0.0) for i in range(3)] + [(3, 0.5, None, 0.0, 0.0)]
    df = _features(world, rows).toDF("id", "a", "b", "c", "d").coalesce(1)
    inputs = [F.col(c).alias(f) for c, f in zip("abcd", FEATURES, strict=True)]  # named as the model's
    before = _usage_requests(world, MODEL)
    scored = df.withColumn("r", world.ai_query(MODEL, *inputs, fail_on_error=False))
    assert scored.schema["r"].dataType.simpleString() == "struct<result:bigint,errorMessage:string>"
    got = {r["id"]: (r["r"]["result"], r["r"]["errorMessage"]) for r in scored.collect()}
    assert {i: got[i] for i in range(3)} == {0: (0, None), 1: (1, None), 2: (0, None)}
    result, message = got[3]
    assert result is None and message and "NaN" in message, message
    deadline = time.monotonic() + 30
    while (count := _usage_requests(world, MODEL)) < before + 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert count == before + 5  # the 4-row request, then each row alone


def test_chat_endpoint_one_request_per_row_retrying_429(world: SparkWorld) -> None:
    world.fake.reset()
    world.fake.faults.fail(429, "slow down", times=2, headers={"Retry-After": "0"})
    df = world.spark.createDataFrame([("a",), ("b",), ("c",), (None,)], "x string")
    prompts = df.select("x", world.ai_query(CHAT, "x", model_parameters={"temperature": 0.0}).alias("said"))
    got = sorted(prompts.collect(), key=lambda r: r["x"] or "")
    assert [tuple(r) for r in got] == [
        (None, None),
        ("a", "You said: a"),
        ("b", "You said: b"),
        ("c", "You said: c"),
    ]
    chats = [r.json() for r in world.fake.requests if r.path.endswith("/chat/completions")]
    assert len(chats) == 5  # three rows, two of them tried again after a 429; none for NULL
    assert all(c["temperature"] == 0.0 for c in chats)


def test_chat_fail_on_error(world: SparkWorld) -> None:
    from pyspark.errors import PythonException

    world.fake.reset()
    world.fake.faults.fail(400, "this prompt is refused")
    df = world.spark.createDataFrame([("a",), ("b",), ("c",)], "x string").coalesce(1)
    got = df.select(world.ai_query(CHAT, "x", fail_on_error=False).alias("r")).collect()
    failed = [r["r"] for r in got if r["r"]["errorMessage"] is not None]
    assert len(failed) == 1 and failed[0]["result"] is None
    assert "this prompt is refused" in failed[0]["errorMessage"]
    assert sorted(r["r"]["result"] for r in got if r["r"]["errorMessage"] is None)[0].startswith("You said: ")

    world.fake.faults.fail(400, "this prompt is refused")
    with pytest.raises(PythonException, match="this prompt is refused"):
        df.select(world.ai_query(CHAT, "x")).collect()


def test_embeddings_endpoint_answers_float_arrays(world: SparkWorld) -> None:
    df = world.spark.createDataFrame([("the cat sat",), ("a dog",)], "x string")
    got = df.select(world.ai_query(EMBED, "x").alias("v"))
    assert got.schema["v"].dataType.simpleString() == "array<float>"
    vectors = [r["v"] for r in got.collect()]
    assert [len(v) for v in vectors] == [8, 8] and vectors[0] != vectors[1]


def test_the_driver_refuses_before_any_job(world: SparkWorld) -> None:
    with pytest.raises(InvalidParameterValue) as refused:
        world.ai_query(MODEL, *FEATURES, model_parameters={"max_tokens": 5})
    assert refused.value.message == CUSTOM_PARAMETERS_REFUSED
    with pytest.raises(NotFound):
        world.ai_query("no-such-endpoint", "x")
    with pytest.raises(InvalidParameterValue, match="one column of text"):
        world.ai_query(CHAT, "x", "y")


def test_importing_the_module_does_not_import_pyspark() -> None:
    code = "import sys, modelport.spark; assert 'pyspark' not in sys.modules, 'pyspark imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_model_signature_types_become_spark_types() -> None:
    from modelport.spark import _ddl

    assert _ddl("BIGINT") == "BIGINT"
    assert _ddl("VARCHAR") == "STRING"
    assert _ddl("FLOAT[]") == "ARRAY<FLOAT>"
    assert _ddl('STRUCT("label" VARCHAR, "score, 1" DOUBLE, "v" FLOAT[])') == (
        "STRUCT<`label`: STRING, `score, 1`: DOUBLE, `v`: ARRAY<FLOAT>>"
    )
