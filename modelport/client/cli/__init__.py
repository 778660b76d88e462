"""The ``modelport`` command line: one module per noun (endpoints, tokens) plus ``serve``."""
