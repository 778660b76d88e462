"""Batch inference: ``ai_query`` and the AI functions in SQL, and bulk jobs, through the same
governed endpoints as online traffic (issue 19). Above ``gateway/``: SQL functions get the data
plane's query call injected by whoever builds the DuckDB connection; ``tables/`` never imports
``gateway/``."""
