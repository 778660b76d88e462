"""Routes of the Databricks-compatible control plane."""
