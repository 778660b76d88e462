"""What a replica or proxy serves: registered MLflow models (and later LLM engines, providers)."""
