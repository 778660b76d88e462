"""The API's data model: pydantic wire models and pure validation rules. No I/O."""
