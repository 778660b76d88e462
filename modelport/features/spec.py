"""The feature spec (``feature_spec.yaml``): re-exported from :mod:`modelport.tables.feature_spec`,
where it lives so that the gateway and the replicas read it without the client side."""

from __future__ import annotations

from modelport.tables.feature_spec import (
    FEATURE_SPEC_FILE,
    SERIALIZATION_VERSION,
    Column,
    FeatureColumn,
    FeatureSpec,
    FunctionColumn,
    SourceColumn,
    TableInfo,
    arrow_type,
    default_value_text,
    parse_default_value,
    spark_type,
)

__all__ = [
    "FEATURE_SPEC_FILE",
    "SERIALIZATION_VERSION",
    "Column",
    "FeatureColumn",
    "FeatureSpec",
    "FunctionColumn",
    "SourceColumn",
    "TableInfo",
    "arrow_type",
    "default_value_text",
    "parse_default_value",
    "spark_type",
]
