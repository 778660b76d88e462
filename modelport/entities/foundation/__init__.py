"""Foundation models served on this machine: LLM and embedding engines behind one contract
(``engine.py``), requests in the unified ``llm/v1`` shapes (``requests.py``)."""
