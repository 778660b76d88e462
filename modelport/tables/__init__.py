"""Inference, usage and feature tables: every query recorded to Delta tables, SQL over them, and
the features models look up.

- :mod:`modelport.tables.names`: table names (``<catalog>.<schema>.<prefix>_payload``,
  ``system.serving.endpoint_usage``) and where they live under the tables root.
- :mod:`modelport.tables.records`: :class:`~modelport.tables.records.InferenceRecord`,
  :class:`~modelport.tables.records.UsageRecord`, the Arrow schemas, body clipping to 1 MiB.
- :mod:`modelport.tables.spool`: the durable local spool a row is appended to before the answer.
- :mod:`modelport.tables.writer`: :class:`~modelport.tables.writer.TableWriter`, the hot-path
  ``record_*`` calls and the background flusher to Delta, with crash recovery.
- :mod:`modelport.tables.query`: DuckDB SQL by three-part names, and usage totals.
- :mod:`modelport.tables.features`: feature tables (Delta tables with primary and timestamp keys).
- :mod:`modelport.tables.online_stores`: the online store features are published to and looked
  up in, by the server and by replicas: :mod:`~modelport.tables.online_store` (embedded SQLite),
  :mod:`~modelport.tables.online_postgres`, :mod:`~modelport.tables.online_redis`; values as
  :mod:`~modelport.tables.online_values` stores them.
- :mod:`modelport.tables.feature_spec`: the feature spec (``feature_spec.yaml``);
  :mod:`modelport.tables.feature_lookup`: the evaluator that applies it to request rows (lookups,
  defaults, overrides, functions), in replicas and in the gateway;
  :mod:`modelport.tables.feature_functions`: feature functions' definitions, stored by
  :mod:`modelport.tables.function_store`.

Nothing is imported here, so that importing :mod:`modelport.tables.names` stays light.
"""
