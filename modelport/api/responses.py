"""JSON responses rendered with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["json_response", "text_response"]


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def text_response(text: str, media_type: str = "text/plain; version=0.0.4; charset=utf-8") -> Response:
    return Response(text, media_type=media_type)
