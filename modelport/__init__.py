"""modelport: self-hosted model serving behind a Databricks-compatible REST API."""

from modelport.errors import ModelportError

__version__ = "0.1.0"
__all__ = ["ModelportError", "__version__"]
