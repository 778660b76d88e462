"""FeatureEngineeringClient's own logic: Arrow chunks, request shapes and error mapping, against a
scripted server behind ``httpx.MockTransport`` (no sockets). The real routes are exercised by the
integration tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression

from modelport.errors import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist, Unauthenticated
from modelport.features import FeatureEngineeringClient, FeatureLookup
from modelport.features.client import ARROW_STREAM, MAX_CHUNK_BYTES, ipc_chunks, to_arrow
from modelport.tables.features import FeatureTableInfo
from modelport.tables.online_store import OnlineStore

BASE = "/api/2.0/feature-engineering/tables"
INFO = {
    "name": "main.fraud.customers",
    "primary_keys": ["customer_id"],
    "timestamp_keys": [],
    "description": "",
    "columns": [
        {"name": "customer_id", "type": "int64", "nullable": False},
        {"name": "avg_amount", "type": "double", "nullable": True},
    ],
    "version": 3,
    "created_ms": 1,
    "updated_ms": 2,
}


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class Server:
    """Answers the feature-table routes from a dict and records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.rows = pa.table({"customer_id": pa.array([1, 2], pa.int64()), "avg_amount": [10.0, 20.0]})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.headers.get("authorization") != "Bearer t0k":
            return httpx.Response(401, json={"error_code": "UNAUTHENTICATED", "message": "bad token"})
        if path == f"{BASE}/main.fraud.secret":
            return httpx.Response(403, json={"error_code": "PERMISSION_DENIED", "message": "no SELECT"})
        if path == f"{BASE}/main.fraud.customers" and request.method == "GET":
            return httpx.Response(200, json={**INFO, "online": None})
        if path == f"{BASE}/main.fraud.customers/data":
            return httpx.Response(200, content=_ipc(self.rows), headers={"content-type": ARROW_STREAM})
        if path.endswith("/write") or (path == BASE and request.method == "POST"):
            return httpx.Response(200, json=INFO)
        if path.endswith("/publish"):
            return httpx.Response(
                200, json={"name": INFO["name"], "mode": json.loads(request.content)["mode"]}
            )
        return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"no {path}"})


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def client(server: Server) -> FeatureEngineeringClient:
    return FeatureEngineeringClient("modelport.test", "t0k", transport=httpx.MockTransport(server))


def test_chunks_stay_under_the_limit_and_keep_every_row() -> None:
    table = pa.table(
        {"k": pa.array(range(20_000), pa.int64()), "s": [f"value-{i:06d}" for i in range(20_000)]}
    )
    chunks = list(ipc_chunks(table, limit=64 * 1024))
    assert len(chunks) > 4
    assert all(len(c) <= 64 * 1024 for c in chunks)
    back = pa.concat_tables(pa.ipc.open_stream(c).read_all() for c in chunks)
    assert back.equals(table)


def test_an_empty_table_is_one_empty_stream() -> None:
    (chunk,) = ipc_chunks(pa.table({"k": pa.array([], pa.int64())}))
    assert pa.ipc.open_stream(chunk).read_all().num_rows == 0


def test_to_arrow_gives_the_types_delta_stores() -> None:
    df = pd.DataFrame({"s": ["a", "b"], "t": pd.to_datetime(["2024-01-01", "2024-01-02"])}, index=[5, 6])
    table = to_arrow(df)
    assert table.schema.names == ["s", "t"]
    assert table.schema.field("s").type == pa.string()
    assert table.schema.field("t").type == pa.timestamp("us", tz="UTC")
    assert table["t"][0].as_py().isoformat() == "2024-01-01T00:00:00+00:00"


def test_create_table_sends_the_schema_then_writes_the_rows(
    client: FeatureEngineeringClient, server: Server
) -> None:
    df = pd.DataFrame(
        {"customer_id": [1, 2], "ts": pd.to_datetime(["2024-01-01", "2024-01-02"]), "x": [0.5, 1.5]}
    )
    table = client.create_table("Main.Fraud.Customers", ["customer_id", "ts"], df, timestamp_keys="ts")
    assert table.name == "main.fraud.customers"
    create, write = server.requests
    assert json.loads(create.content) == {
        "name": "main.fraud.customers",
        "primary_keys": ["customer_id", "ts"],
        "timestamp_keys": ["ts"],
        "description": "",
        "columns": [
            {"name": "customer_id", "type": "int64"},
            {"name": "ts", "type": "timestamp[us, tz=UTC]"},
            {"name": "x", "type": "double"},
        ],
    }
    assert write.url.path == f"{BASE}/main.fraud.customers/write"
    assert write.url.params["mode"] == "merge"
    assert write.headers["content-type"] == ARROW_STREAM
    assert pa.ipc.open_stream(write.content).read_all().num_rows == 2


def test_an_overwrite_in_chunks_overwrites_once_then_merges(
    client: FeatureEngineeringClient, server: Server
) -> None:
    rows = 1_200_000  # 19 MB of int64 and float64: three requests of at most 8 MiB
    df = pd.DataFrame({"customer_id": range(rows), "avg_amount": [1.0] * rows})
    client.write_table("main.fraud.customers", df, mode="overwrite")
    assert all(len(r.content) <= MAX_CHUNK_BYTES for r in server.requests)
    modes = [r.url.params["mode"] for r in server.requests]
    assert len(modes) > 2
    assert modes == ["overwrite"] + ["merge"] * (len(modes) - 1)
    assert sum(pa.ipc.open_stream(r.content).read_all().num_rows for r in server.requests) == rows


def test_training_set_reads_tables_at_the_version_it_was_created_at(
    client: FeatureEngineeringClient, server: Server
) -> None:
    df = pd.DataFrame({"customer_id": [2, 1, 3], "amount": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    training = client.create_training_set(
        df,
        [FeatureLookup("main.fraud.customers", "customer_id", default_values={"avg_amount": 0.0})],
        label="y",
    )
    assert training.feature_spec.tables[0].table_version == 3
    loaded = training.load_df()
    assert loaded.to_dict("list") == {
        "customer_id": [2, 1, 3],
        "amount": [1.0, 2.0, 3.0],
        "avg_amount": [20.0, 10.0, 0.0],
        "y": [0, 1, 0],
    }
    data_read = server.requests[-1]
    assert data_read.url.path == f"{BASE}/main.fraud.customers/data"
    assert data_read.url.params["version"] == "3"


def test_server_errors_come_back_as_modelport_errors(client: FeatureEngineeringClient) -> None:
    with pytest.raises(PermissionDenied, match="no SELECT"):
        client.get_table("main.fraud.secret")
    with pytest.raises(ResourceDoesNotExist):
        client.drop_table("main.fraud.gone")


def test_publish_modes_are_checked_and_sent_lower_case(
    client: FeatureEngineeringClient, server: Server
) -> None:
    assert client.publish_table("main.fraud.customers", "CONTINUOUS")["mode"] == "continuous"
    with pytest.raises(InvalidParameterValue, match="mode must be one of"):
        client.publish_table("main.fraud.customers", "hourly")
    assert len(server.requests) == 1


def test_host_and_token_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPORT_HOST", "features.test:9000")
    monkeypatch.setenv("MODELPORT_TOKEN", "t0k")
    seen: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers["authorization"]))
        return httpx.Response(200, json={"tables": [INFO]})

    with FeatureEngineeringClient(transport=httpx.MockTransport(answer)) as client:
        (table,) = client.list_tables()
    assert table.features == ["avg_amount"]
    assert seen == [("http://features.test:9000/api/2.0/feature-engineering/tables", "Bearer t0k")]
    monkeypatch.delenv("MODELPORT_TOKEN")
    with pytest.raises(Unauthenticated):
        FeatureEngineeringClient()


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A tracking store in ``tmp_path``; its default artifact root, ``./mlruns``, too."""
    monkeypatch.chdir(tmp_path)
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


def test_log_model_logs_a_model_that_looks_its_features_up(
    client: FeatureEngineeringClient,
    server: Server,
    tracking: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    df = pd.DataFrame({"customer_id": [2, 1, 3], "amount": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 5.0]})
    lookup = FeatureLookup("main.fraud.customers", "customer_id", default_values={"avg_amount": 0.0})
    training = client.create_training_set(df, [lookup], label="y")
    features = training.load_df().drop(columns=["y"])
    raw = LinearRegression().fit(features, df["y"])

    info = client.log_model(
        raw, "model", flavor="sklearn", training_set=training, pip_requirements=["scikit-learn"]
    )

    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl")))
    assert (local / "data" / "feature_store" / "feature_spec.yaml").is_file()
    assert (local / "data" / "feature_store" / "raw_model" / "MLmodel").is_file()
    assert str(info.signature.inputs) == (
        "['customer_id': long (required), 'amount': double (required), 'avg_amount': double (optional)]"
    )
    store = OnlineStore(tmp_path / "online.sqlite")
    info_table = FeatureTableInfo(INFO["name"], ["customer_id"], [], "", INFO["columns"], 3, 1, 2)
    store.publish(info_table, server.rows, mode="snapshot")
    store.close()
    monkeypatch.setenv("MODELPORT_ONLINE_STORE", str(tmp_path / "online.sqlite"))
    served = mlflow.pyfunc.load_model(info.model_uri)
    assert np.allclose(served.predict(df[["customer_id", "amount"]]), raw.predict(features))
