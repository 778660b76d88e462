"""Models registered into a real server's embedded registry through the MLflow client."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["log_sklearn_model"]


def log_sklearn_model(
    tracking_uri: str, token: str, name: str, requirements: tuple[str, ...] = ("scikit-learn",), **kwargs: Any
) -> str:
    """Train a tiny classifier on columns f0..f3 (label: f0 > 0.5) and register it as a new
    version of ``name``, with the signature MLflow infers from an input example and
    ``requirements`` as its pip requirements."""
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    mlflow.set_tracking_uri(tracking_uri)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((40, 4)), columns=["f0", "f1", "f2", "f3"])
    y = (x["f0"] > 0.5).astype(int)
    model = LogisticRegression(C=100.0).fit(x, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=name,
            input_example=x.head(2),
            pip_requirements=list(requirements),
            **kwargs,
        )
    return str(info.registered_model_version)
