"""Feature engineering: feature tables, training sets and models that look their features up.

``from modelport.features import FeatureEngineeringClient, FeatureLookup, FeatureFunction``
mirrors Databricks' ``databricks.feature_engineering``: create and write feature tables (Delta
tables with primary keys) on a modelport server, publish them to its online store, build
point-in-time correct training sets, log models whose serving looks the features up by key
(:mod:`modelport.features.mlflow_model`), and create feature specs that endpoints serve
(``create_feature_spec``, :mod:`modelport.features.feature_specs`).

Feature functions (``create_function``, :class:`FeatureFunction`) are plain Python functions
registered with the server; training sets compute their outputs offline and served models (and
feature-spec endpoints) online, with the same code (:mod:`modelport.features.functions`).
"""

from __future__ import annotations

from modelport.features.client import FeatureEngineeringClient
from modelport.features.entities import FeatureFunction, FeatureLookup, FeatureTable
from modelport.features.feature_specs import FeatureSpecInfo
from modelport.features.training import TrainingSet
from modelport.tables.feature_spec import FeatureSpec

__all__ = [
    "FeatureEngineeringClient",
    "FeatureFunction",
    "FeatureLookup",
    "FeatureSpec",
    "FeatureSpecInfo",
    "FeatureTable",
    "TrainingSet",
]
