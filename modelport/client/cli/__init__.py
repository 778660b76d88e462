"""The ``modelport`` command line: one module per noun (endpoints, tokens, secrets, principals,
tables) plus ``serve``."""
