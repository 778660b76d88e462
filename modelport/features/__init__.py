"""Feature engineering: feature tables, training sets and models that look their features up.

``from modelport.features import FeatureEngineeringClient, FeatureLookup`` mirrors Databricks'
``databricks.feature_engineering``: create and write feature tables (Delta tables with primary
keys) on a modelport server, publish them to its online store, build point-in-time correct
training sets, and log models whose serving looks the features up by key
(:mod:`modelport.features.mlflow_model`).

Not in this package yet: feature functions (``FeatureFunction``), feature specs served as
endpoints (``create_feature_spec``), online stores other than the embedded one.
"""

from __future__ import annotations

from modelport.features.client import FeatureEngineeringClient
from modelport.features.entities import FeatureLookup, FeatureTable
from modelport.features.spec import FeatureSpec
from modelport.features.training import TrainingSet

__all__ = ["FeatureEngineeringClient", "FeatureLookup", "FeatureSpec", "FeatureTable", "TrainingSet"]
