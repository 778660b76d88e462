"""Clients of a modelport server: the Python SDK, the ``modelport`` CLI and the MLflow plugin.

Importing this package loads only the SDK (httpx); the CLI (typer) and the MLflow plugin
(mlflow) are imported on their own.
"""

from __future__ import annotations

from modelport.client.sdk import DEFAULT_HOST, ModelportClient

__all__ = ["DEFAULT_HOST", "ModelportClient"]
