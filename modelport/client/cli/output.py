"""Rendering for the CLI: aligned text tables, key/value blocks, JSON and timestamps.

Pure functions from data to text; the commands decide where the text goes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["EMPTY", "format_ms", "render_fields", "render_json", "render_table"]

#: What a cell shows when the server sent no value.
EMPTY = "-"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; no trailing blanks."""
    cells = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def render_fields(fields: Sequence[tuple[str, str]]) -> str:
    """A two-column block of labels and values, as ``kubectl describe`` prints."""
    width = max((len(label) for label, _ in fields), default=0)
    return "\n".join(f"{label.ljust(width)}  {value}".rstrip() for label, value in fields)


def render_json(data: Any) -> str:
    """Indented JSON with keys in the server's order."""
    return json.dumps(data, indent=2, ensure_ascii=False)


def format_ms(value: Any) -> str:
    """An epoch-milliseconds timestamp as ISO 8601 UTC; ``-`` when missing or not positive."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return EMPTY
    moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
