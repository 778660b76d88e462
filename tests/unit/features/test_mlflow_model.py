"""The served side of a feature-aware model: Databricks' runtime rules, with a real online store
file (``OnlineStore``) and a real scikit-learn model saved in Databricks' layout."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LinearRegression

from modelport.errors import InvalidParameterValue, TemporarilyUnavailable
from modelport.features import FeatureLookup, FeatureTable
from modelport.features.mlflow_model import (
    FeatureLookupModel,
    _load_pyfunc,
    raw_model_requirements,
    save_feature_store_dir,
    signature_for,
)
from modelport.features.spec import FeatureSpec
from modelport.features.training import TrainingSet, build_feature_spec, point_in_time_join, resolve_lookups
from modelport.tables.features import FeatureTableInfo
from modelport.tables.online_store import OnlineReader, OnlineStore

CUSTOMERS = "main.fraud.customers"
TX = "main.fraud.tx"
MERCHANTS = "main.fraud.merchants"
UTC_US = pa.timestamp("us", tz="UTC")

DATA = {
    CUSTOMERS: pa.table(
        {
            "customer_id": pa.array([1, 2, 3], pa.int64()),
            "avg_amount": [10.0, 20.0, 30.0],
            "n_tx": pa.array([5, 6, 7], pa.int64()),
        }
    ),
    TX: pa.table(
        {
            "customer_id": pa.array([1, 1, 2], pa.int64()),
            "ts": pa.array([datetime.datetime(2024, 1, d, tzinfo=datetime.UTC) for d in (1, 3, 2)], UTC_US),
            "amount_7d": [10.0, 30.0, 200.0],
        }
    ),
    MERCHANTS: pa.table({"merchant": ["m1", "m2"], "risk": [0.1, 0.9]}),
}
KEYS = {CUSTOMERS: (["customer_id"], []), TX: (["customer_id"], ["ts"]), MERCHANTS: (["merchant"], [])}


def _info(name: str, data: pa.Table, version: int = 1) -> FeatureTableInfo:
    primary, timestamp = KEYS[name]
    columns = [{"name": f.name, "type": str(f.type), "nullable": True} for f in data.schema]
    return FeatureTableInfo(name, primary, timestamp, "", columns, version, 0, 0)


def _publish(path: Path, tables: dict[str, pa.Table]) -> Path:
    store = OnlineStore(path)
    for name, data in tables.items():
        store.publish(_info(name, data), data, mode="snapshot")
    store.close()
    return path


def _requests() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 9],
            "merchant": ["m1", "m2", "m9", "m1"],
            "event_ts": pd.to_datetime(
                ["2024-01-03 12:00", "2024-01-02 00:00", "2024-01-05 00:00", "2024-01-05 00:00"]
            ),
            "amount": [50.0, 60.0, 70.0, 80.0],
        }
    )


class Trained:
    """A model trained on a training set of the three tables, saved as modelport logs it."""

    def __init__(self, root: Path) -> None:
        tables = {n: FeatureTable.from_json(_info(n, d).to_json()) for n, d in DATA.items()}
        train = pd.DataFrame(
            {
                "customer_id": [1, 2, 3, 1, 2, 3, 4],
                "merchant": ["m1", "m2", "m1", "m2", "m1", "m3", "m2"],
                "event_ts": pd.to_datetime(
                    [
                        "2024-01-01 00:00",
                        "2024-01-02 00:00",
                        "2024-01-03 00:00",
                        "2024-01-04 00:00",
                        "2024-01-02 06:00",
                        "2024-01-03 00:00",
                        "2024-01-03 00:00",
                    ]
                ),
                "amount": [5.0, 9.0, 1.0, 7.0, 3.0, 8.0, 2.0],
                "label": [1.0, 3.0, 2.0, 5.0, 4.0, 0.5, 2.5],
            }
        )
        lookups = [
            FeatureLookup(CUSTOMERS, "customer_id", default_values={"avg_amount": 15.0, "n_tx": 0}),
            FeatureLookup(
                TX,
                "customer_id",
                timestamp_lookup_key="event_ts",
                lookback_window=datetime.timedelta(days=1),
                default_values={"amount_7d": -1.0},
            ),
            FeatureLookup(MERCHANTS, "merchant", default_values={"risk": 0.5}),
        ]
        self.lookups = resolve_lookups(lookups, tables, list(train.columns), ["label"])
        self.spec = build_feature_spec(train, self.lookups, ["label"], ["event_ts", "merchant"])
        self.frames = {n: d.to_pandas() for n, d in DATA.items()}
        training = TrainingSet(train, self.lookups, ["label"], self.spec, lambda n, _v: self.frames[n])
        df = training.load_df()
        self.model = LinearRegression().fit(df.drop(columns=["label"]), df["label"])
        # Requirements given, as inferring them takes MLflow tens of seconds.
        self.data_path = save_feature_store_dir(
            root / "work", self.model, mlflow.sklearn, self.spec, pip_requirements=["scikit-learn"]
        )
        self.model_path = root / "model"
        mlflow.pyfunc.save_model(
            str(self.model_path),
            loader_module="modelport.features.mlflow_model",
            data_path=str(self.data_path),
            signature=signature_for(self.spec, training.label_types()),
            pip_requirements=raw_model_requirements(self.data_path),
        )
        self.store = _publish(root / "online" / "features.sqlite", DATA)

    def offline_features(self, requests: pd.DataFrame) -> pd.DataFrame:
        """The features of ``requests`` as a training set would join them."""
        return point_in_time_join(requests, self.lookups, self.frames)[self.spec.output_columns]

    def served(self, reader: OnlineReader | None = None) -> FeatureLookupModel:
        model = _load_pyfunc(str(self.model_path / "data" / "feature_store"))
        return FeatureLookupModel(model.spec, model.raw_model, reader or OnlineReader(self.store))


class CountingReader(OnlineReader):
    """The real reader, recording each lookup: (table, number of keys, columns)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[tuple[str, int, list[str] | None]] = []

    def lookup(
        self, name: str, keys: list[tuple[Any, ...]], columns: list[str] | None = None, **kw: Any
    ) -> Any:
        self.calls.append((name, len(keys), columns))
        return super().lookup(name, keys, columns, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return Trained(tmp_path_factory.mktemp("feature-model"))


def test_model_is_laid_out_like_databricks(trained: Trained) -> None:
    data = trained.model_path / "data" / "feature_store"
    assert (data / "feature_spec.yaml").is_file()
    assert (data / "raw_model" / "MLmodel").is_file()
    mlmodel = (trained.model_path / "MLmodel").read_text()
    assert "loader_module: modelport.features.mlflow_model" in mlmodel
    assert FeatureSpec.load(data) == trained.spec
    assert raw_model_requirements(data) == ["mlflow==" + mlflow.__version__, "scikit-learn"]
    assert "scikit-learn" in (trained.model_path / "requirements.txt").read_text()


def test_keys_only_give_the_prediction_of_the_offline_join(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELPORT_ONLINE_STORE", str(trained.store))
    served = mlflow.pyfunc.load_model(str(trained.model_path))
    requests = _requests()
    expected = trained.model.predict(trained.offline_features(requests))
    assert np.allclose(served.predict(requests), expected)
    # Row by row the same (the batch does not change a row's features).
    single = [served.predict(requests.iloc[[i]])[0] for i in range(len(requests))]
    assert np.allclose(single, expected)


def test_features_come_in_spec_order_point_in_time_with_defaults(trained: Trained) -> None:
    frame = trained.served().augment(_requests())
    assert list(frame.columns) == [
        "customer_id",
        "amount",
        "avg_amount",
        "n_tx",
        "amount_7d",
        "risk",
    ]
    assert frame["avg_amount"].tolist() == [10.0, 10.0, 20.0, 15.0]  # key 9: the default
    assert frame["n_tx"].tolist() == [5, 5, 6, 0]
    assert frame["n_tx"].dtype == "int64"
    # 01-03 12:00 -> the 01-03 row; 01-02 -> the 01-01 row (24 h back, inclusive);
    # key 2 at 01-05 -> its 01-02 row is older than the 1-day window; key 9 has none.
    assert frame["amount_7d"].tolist() == [30.0, 10.0, -1.0, -1.0]
    assert frame["risk"].tolist() == [0.1, 0.9, 0.5, 0.1]


def test_one_lookup_per_table_for_a_batch(trained: Trained) -> None:
    reader = CountingReader(trained.store)
    trained.served(reader).predict(_requests())
    assert sorted(reader.calls) == [
        (CUSTOMERS, 4, ["avg_amount", "n_tx"]),
        (MERCHANTS, 4, ["risk"]),
        (TX, 4, ["amount_7d"]),
    ]


def test_the_replica_batches_a_feature_model_whose_raw_model_batches(trained: Trained) -> None:
    """modelport's replica joins concurrent requests of a batch-capable raw model (sklearn here)
    into one predict, and so into one lookup per table."""
    from modelport.entities.custom import CustomModel

    served = CustomModel.load(str(trained.model_path))
    assert served.flavors == ["python_function"] and served.batch_capable


def test_each_request_of_a_batch_gets_its_own_rows_and_missing_keys_back(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replica's side channel to the gateway: two requests predicted in one batch each get the
    rows their raw model received (when asked: the endpoint records them) and their own keys that
    found no row, per table."""
    import asyncio

    import orjson

    from modelport.entities.custom import CustomModel
    from modelport.runtime.batching import Batcher
    from modelport.runtime.custom_handler import CustomHandler

    monkeypatch.setenv("MODELPORT_ONLINE_STORE", str(trained.store))
    model = CustomModel.load(str(trained.model_path))
    handler = CustomHandler(model, Batcher(model, "on", 64, 0.05))
    requests = _requests().assign(event_ts=lambda df: df["event_ts"].dt.strftime("%Y-%m-%dT%H:%M:%S"))
    first, second = requests.iloc[[0, 2]], requests.iloc[[1, 3]]

    async def go() -> list[tuple[bytes, Any]]:
        running = asyncio.get_running_loop().create_task(handler.batcher.run())
        try:
            return list(
                await asyncio.gather(
                    handler.predict_with_trailer(_body(first), True),
                    handler.predict_with_trailer(_body(second), False),
                )
            )
        finally:
            running.cancel()

    (body_1, trailer_1), (body_2, trailer_2) = asyncio.run(go())
    assert handler.stats()["batches"] == 1  # predicted together, answered apart
    expected = trained.model.predict(trained.offline_features(_requests()))
    assert np.allclose(orjson.loads(body_1)["predictions"], expected[[0, 2]])
    assert np.allclose(orjson.loads(body_2)["predictions"], expected[[1, 3]])
    # Row 2: its transactions are older than the window, merchant m9 has no row; row 3: customer
    # 9 has no row, nor transactions.
    assert trailer_1.missing_rows == {TX: 1, MERCHANTS: 1}
    assert trailer_2.missing_rows == {CUSTOMERS: 1, TX: 1}
    assert orjson.loads(trailer_1.request) == {
        "dataframe_records": [
            {"customer_id": 1, "amount": 50.0, "avg_amount": 10.0, "n_tx": 5, "amount_7d": 30.0, "risk": 0.1},
            {"customer_id": 2, "amount": 70.0, "avg_amount": 20.0, "n_tx": 6, "amount_7d": -1.0, "risk": 0.5},
        ]
    }
    assert trailer_2.request is None  # not asked for: its endpoint records nothing
    assert not trailer_1.request_truncated


def _body(requests: pd.DataFrame) -> bytes:
    import orjson

    return orjson.dumps({"dataframe_records": requests.to_dict(orient="records")})


def test_a_fully_overridden_feature_is_not_looked_up(trained: Trained) -> None:
    reader = CountingReader(trained.store)
    requests = _requests().assign(risk=[0.7, 0.7, 0.7, 0.7], n_tx=[1, 2, 3, 4])
    frame = trained.served(reader).augment(requests)
    assert MERCHANTS not in [c[0] for c in reader.calls]
    assert (CUSTOMERS, 4, ["avg_amount"]) in reader.calls
    assert frame["risk"].tolist() == [0.7] * 4
    assert frame["n_tx"].tolist() == [1, 2, 3, 4]


def test_a_partly_overridden_feature_is_merged_cell_by_cell(trained: Trained) -> None:
    requests = _requests().assign(avg_amount=[100.0, None, None, 400.0])
    frame = trained.served().augment(requests)
    assert frame["avg_amount"].tolist() == [100.0, 10.0, 20.0, 400.0]


def test_overrides_reach_the_model_through_mlflow(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPORT_ONLINE_STORE", str(trained.store))
    served = mlflow.pyfunc.load_model(str(trained.model_path))
    requests = _requests().assign(avg_amount=[100.0, None, None, 400.0])
    features = trained.offline_features(_requests())
    features["avg_amount"] = [100.0, 10.0, 20.0, 400.0]
    assert np.allclose(served.predict(requests), trained.model.predict(features))


@pytest.mark.parametrize("column", ["customer_id", "merchant", "event_ts", "amount"])
def test_a_missing_required_column_is_named(trained: Trained, column: str) -> None:
    # event_ts is excluded from the model's input, yet required (as in Databricks).
    with pytest.raises(InvalidParameterValue, match=f"Input is missing columns \\['{column}'\\]"):
        trained.served().predict(_requests().drop(columns=[column]))


def test_mlflow_signature_also_names_a_missing_column(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELPORT_ONLINE_STORE", str(trained.store))
    served = mlflow.pyfunc.load_model(str(trained.model_path))
    with pytest.raises(MlflowException, match="missing inputs \\['merchant'\\]") as caught:
        served.predict(_requests().drop(columns=["merchant"]))
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_null_lookup_key_is_named(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPORT_ONLINE_STORE", str(trained.store))
    served = mlflow.pyfunc.load_model(str(trained.model_path))
    with pytest.raises(InvalidParameterValue, match="null values for lookup_key columns \\['merchant'\\]"):
        served.predict(_requests().assign(merchant=["m1", None, "m2", "m1"]))
    with pytest.raises(InvalidParameterValue, match="lookup_key columns \\['customer_id'\\]"):
        trained.served().predict(_requests().assign(customer_id=[1.0, None, 2.0, 3.0]))


def test_a_duplicate_column_is_refused(trained: Trained) -> None:
    requests = pd.concat([_requests(), _requests()[["amount"]]], axis=1)
    with pytest.raises(InvalidParameterValue, match="duplicate columns: \\['amount'\\]"):
        trained.served().predict(requests)


def test_a_table_not_published_is_unavailable_naming_it(trained: Trained, tmp_path: Path) -> None:
    store = _publish(tmp_path / "features.sqlite", {CUSTOMERS: DATA[CUSTOMERS], TX: DATA[TX]})
    with pytest.raises(TemporarilyUnavailable, match=r"'main\.fraud\.merchants' is not published"):
        trained.served(OnlineReader(store)).predict(_requests())


def test_a_republished_table_without_a_feature_is_unavailable_naming_it(
    trained: Trained, tmp_path: Path
) -> None:
    store = _publish(
        tmp_path / "features.sqlite", {**DATA, CUSTOMERS: DATA[CUSTOMERS].drop_columns(["n_tx"])}
    )
    with pytest.raises(TemporarilyUnavailable, match=r"'main\.fraud\.customers'.*no feature 'n_tx'"):
        trained.served(OnlineReader(store)).predict(_requests())


def test_a_feature_of_another_type_is_unavailable_not_wrong(trained: Trained, tmp_path: Path) -> None:
    merchants = pa.table({"merchant": ["m1", "m2"], "risk": ["low", "high"]})
    store = _publish(tmp_path / "features.sqlite", {**DATA, MERCHANTS: merchants})
    with pytest.raises(TemporarilyUnavailable, match=r"Feature 'risk' of table 'main\.fraud\.merchants'"):
        trained.served(OnlineReader(store)).predict(_requests())


def test_without_an_online_store_the_model_says_so(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELPORT_ONLINE_STORE", raising=False)
    model = _load_pyfunc(str(trained.model_path / "data" / "feature_store"))
    with pytest.raises(TemporarilyUnavailable, match="MODELPORT_ONLINE_STORE is not set"):
        model.predict(_requests())
