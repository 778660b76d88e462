"""Where the embedded registry keeps its metadata (``Settings.mlflow_backend_uri``)."""

from __future__ import annotations

from modelport.config import Settings


def test_sqlite_store_keeps_the_registry_in_the_data_directory() -> None:
    settings = Settings(data_dir="/srv/mp")
    assert settings.mlflow_backend_uri == "sqlite:////srv/mp/mlflow.db"


def test_postgresql_store_puts_the_registry_in_its_own_schema_with_psycopg_3() -> None:
    uri = Settings(store="postgresql://mp:p%40ss@db:5432/mp").mlflow_backend_uri
    assert uri == "postgresql+psycopg://mp:p%40ss@db:5432/mp?options=-csearch_path%3Dmlflow"
    assert Settings(store="postgres://db/mp").mlflow_backend_uri.startswith("postgresql+psycopg://db/mp?")


def test_other_options_of_the_store_url_are_kept_and_its_search_path_replaced() -> None:
    store = "postgresql+psycopg://db/mp?sslmode=require&options=-c%20statement_timeout%3D5000%20-c%20search_path%3Dx"
    uri = Settings(store=store).mlflow_backend_uri
    assert uri == (
        "postgresql+psycopg://db/mp?sslmode=require"
        "&options=-c%20statement_timeout%3D5000%20-csearch_path%3Dmlflow"
    )
