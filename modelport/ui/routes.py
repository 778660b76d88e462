"""The serving UI and playground under ``/ui``: static files, no build step.

The pages call the same REST API as every client, with the token the user logs in with
(kept in the browser's localStorage). ``/`` redirects here.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC", "routes"]

STATIC = Path(__file__).parent / "static"


async def root(_: Request) -> Response:
    return RedirectResponse("/ui/", status_code=307)


routes = [
    Route("/", root, methods=["GET"]),
    Mount("/ui", app=StaticFiles(directory=STATIC, html=True), name="ui"),
]
