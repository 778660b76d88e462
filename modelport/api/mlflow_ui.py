"""MLflow's own web UI under ``/mlflow/``, from the installed mlflow package's built files.

The page and its scripts are served here; the UI's API calls (``ajax-api/...``, ``graphql``,
``get-artifact``, relative to the page) arrive as ``/mlflow/<MLflow path>`` and are handed to the
embedded MLflow server with the prefix taken off (:func:`mlflow_api_path`), so they pass the same
guard and registry permissions as any MLflow client. The UI sends no bearer token: it rides on
the session cookie of a browser sign-in (:mod:`modelport.api.sessions`). Opening ``/mlflow/``
signed out redirects to the sign-in page, which comes back here afterwards (the URL's fragment,
MLflow's own route, is kept by the browser across the redirect).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from modelport.api.mlflow_mount import is_mlflow_path
from modelport.api.services import services_of
from modelport.errors import ModelportError

__all__ = ["PREFIX", "build_dir", "mlflow_api_path", "routes"]

PREFIX = "/mlflow"
SIGN_IN = "/ui/?next=/mlflow/"


@functools.cache
def build_dir() -> Path | None:
    """The built MLflow UI of the installed mlflow package (found without importing mlflow)."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or spec.origin is None:
        return None
    found = Path(spec.origin).parent / "server" / "js" / "build"
    return found if (found / "index.html").is_file() else None


def mlflow_api_path(path: str) -> str | None:
    """``/mlflow/ajax-api/...`` → ``/ajax-api/...`` (an MLflow path the UI calls), else None."""
    if not path.startswith(PREFIX + "/"):
        return None
    rest = path[len(PREFIX) :]
    return rest if is_mlflow_path(rest) else None


async def index(request: Request) -> Response:
    build = build_dir()
    if build is None:
        return PlainTextResponse("MLflow's UI is not in the installed mlflow package.", status_code=404)
    try:  # a cache miss reads the store: off the event loop
        await services_of(request).auth.authenticate_async(request.headers.get("authorization"))
    except ModelportError:
        return RedirectResponse(SIGN_IN, status_code=303)
    return FileResponse(build / "index.html", headers={"cache-control": "no-store"})


async def to_index(_: Request) -> Response:
    return RedirectResponse(PREFIX + "/", status_code=307)


def routes() -> list[Route | Mount]:
    found = build_dir()
    static: list[Route | Mount] = []
    if found is not None:
        static.append(Mount(PREFIX + "/static-files", app=StaticFiles(directory=found), name="mlflow-static"))
    return [
        Route(PREFIX, to_index, methods=["GET"]),
        Route(PREFIX + "/", index, methods=["GET"]),
        *static,
    ]
