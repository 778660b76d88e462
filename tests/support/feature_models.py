"""A feature table and a model that looks its features up, on a real server.

:func:`create_user_features` makes the table (users 1..3); :func:`log_feature_model` trains a
tiny fraud model on a training set built from it and registers it with ``fe.log_model``, so
that the model version carries ``data/feature_store/feature_spec.yaml``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["DEFAULTS", "FEATURES", "USERS", "amount_ratio", "create_user_features", "log_feature_model"]

#: The feature columns of the table, and what a user without a row gets.
FEATURES = ["avg_amount", "txn_count"]
DEFAULTS = {"avg_amount": 50.0, "txn_count": 0}
USERS: dict[str, list[Any]] = {
    "user_id": [1, 2, 3],
    "avg_amount": [12.5, 300.0, 75.25],
    "txn_count": [4, 31, 9],
}


def create_user_features(
    host: str,
    token: str,
    table: str,
    *,
    publish: str | None = "snapshot",
    drop: tuple[str, ...] = (),
    primary_keys: tuple[str, ...] = ("user_id",),
) -> None:
    """Create ``table`` (key ``primary_keys``) holding :data:`USERS` less the columns ``drop``,
    and publish it in mode ``publish`` (None: not published)."""
    import pandas as pd

    from modelport.features import FeatureEngineeringClient

    rows = pd.DataFrame(USERS).astype({"user_id": "int64", "txn_count": "int64"}).drop(columns=list(drop))
    with FeatureEngineeringClient(host=host, token=token) as fe:
        fe.create_table(
            table, primary_keys=list(primary_keys), df=rows, description="Per-user payment behaviour"
        )
        if publish is not None:
            fe.publish_table(table, mode=publish)


def amount_ratio(amount: float, average: float) -> float:
    """How many times the user's average payment this one is."""
    return amount / average if average else 0.0


def log_feature_model(
    tracking_uri: str, token: str, table: str, name: str, function: str | None = None
) -> str:
    """Register a new version of ``name``: a classifier of ``amount`` and the table's features,
    looked up by ``user_id``; returns the version. With ``function`` (``catalog.schema.fn``,
    registered here from :func:`amount_ratio`), the model also reads ``amount_ratio``, computed
    from ``amount`` and ``avg_amount``."""
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from modelport.features import FeatureEngineeringClient, FeatureFunction, FeatureLookup

    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    mlflow.set_tracking_uri(tracking_uri)
    labels = pd.DataFrame(
        {
            "user_id": [1, 2, 3, 1, 2, 3],
            "amount": [10.0, 2500.0, 80.0, 900.0, 150.0, 70.0],
            "is_fraud": [0, 0, 0, 1, 0, 0],
        }
    )
    with FeatureEngineeringClient(host=tracking_uri, token=token) as fe:
        features: list[Any] = [FeatureLookup(table_name=table, lookup_key="user_id", default_values=DEFAULTS)]
        inputs = ["amount", *FEATURES]
        if function is not None:
            fe.create_function(function, amount_ratio)
            bindings = {"amount": "amount", "average": "avg_amount"}
            features.append(
                FeatureFunction(udf_name=function, input_bindings=bindings, output_name="amount_ratio")
            )
            inputs.append("amount_ratio")
        training_set = fe.create_training_set(labels, features, label="is_fraud", exclude_columns=["user_id"])
        train = training_set.load_df()
        model = LogisticRegression().fit(train[inputs], train["is_fraud"])
        with mlflow.start_run():
            info = fe.log_model(
                model,
                "model",
                flavor=mlflow.sklearn,
                training_set=training_set,
                registered_model_name=name,
                pip_requirements=["scikit-learn"],
            )
    return str(info.registered_model_version)
