"""Request body limits of the control plane and the MLflow routes, counted as the body streams.

Each path has a limit: a control-plane request (serving endpoints, permissions, secrets, tokens,
SCIM, tables, the UI) ``--max-body-mb``; an MLflow API call :data:`~modelport.api.body.MAX_BODY`
(16 MiB, MLflow's own largest field); an artifact uploaded through the MLflow artifact proxy
``--max-upload-mb`` (0: none); rows written to a feature table (Arrow IPC) 16 MiB or
``--max-body-mb`` if larger. Queries are not wrapped: their one reader (``api/body.py``)
applies the 16 MiB query limit itself.

A body whose ``Content-Length`` is over the limit is answered 413 ``REQUEST_TOO_LARGE`` before the
route runs. A chunked body (no length) is counted as it arrives, never buffered here: past the
limit the client gets the 413, the route's next read raises :class:`RequestTooLarge` and whatever
the route answers after that is dropped. MLflow's routes refuse a chunked body (400): Werkzeug
reads no body without a length, so an upload would be stored empty and answered 200.
The connection stays open: the server reads the rest of the body and throws it away (closing at
once would make most clients lose the 413 in a connection reset while they still send).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from modelport.api.body import MAX_BODY
from modelport.api.errors import send_error
from modelport.api.mlflow_mount import is_mlflow_path
from modelport.errors import MalformedRequest, RequestTooLarge

__all__ = ["BodyLimits", "describe_size"]

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths of the artifact proxy that take uploads (``PUT``) and of MLflow UI's upload.
_UPLOADS = (
    "/api/2.0/mlflow-artifacts/artifacts/",
    "/ajax-api/2.0/mlflow-artifacts/artifacts/",
    "/ajax-api/2.0/mlflow/upload-artifact",
)
#: The data plane's paths: their reader applies the query limit.
_QUERIES = "/serving-endpoints/"
#: Rows written to a feature table (an Arrow IPC stream): the largest body of any route.
_FEATURE_WRITE = re.compile(r"^/api/2\.0/feature-engineering/tables/[^/]+/write\Z")


def describe_size(size: int) -> str:
    """``16 MiB``, ``512 KiB`` or ``300 bytes``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


class BodyLimits:
    """Wraps an ASGI handler: refuses request bodies over their path's limit (module docstring)."""

    def __init__(self, handler: Handler, *, control: int, upload: int | None) -> None:
        """``control``: bytes a control-plane body may have; ``upload``: an artifact upload's
        (None: no limit)."""
        self._handler = handler
        self._control = control
        self._upload = upload

    def limit_of(self, path: str) -> tuple[int | None, str]:
        """The limit in bytes (None: none) of a path's body, and what it is called."""
        if path.startswith(_QUERIES):
            return None, "a query"
        if _FEATURE_WRITE.match(path):
            return max(self._control, MAX_BODY), "a feature table write"
        if is_mlflow_path(path):
            if path.startswith(_UPLOADS):
                return self._upload, "an artifact upload"
            return MAX_BODY, "an MLflow API request"
        return self._control, "a control-plane request"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit, what = self.limit_of(scope["path"])
        if limit is None:
            await self._handler(scope, receive, send)
            return
        declared: int | None = None
        chunked = False
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit():
                declared = int(value)
            elif key == b"transfer-encoding":
                chunked = True
        if not chunked:
            # A request without Transfer-Encoding has exactly Content-Length bytes of body (or
            # none): the HTTP parser delivers no more, so there is nothing to count.
            if declared is not None and declared > limit:
                await send_error(
                    send,
                    RequestTooLarge(
                        f"Request body is {declared} bytes, larger than the {describe_size(limit)} "
                        f"limit of {what}."
                    ),
                )
                return
            await self._handler(scope, receive, send)
            return
        if is_mlflow_path(scope["path"]):
            await send_error(
                send,
                MalformedRequest(
                    "Send the body with a Content-Length: MLflow's routes cannot read a chunked body."
                ),
            )
            return
        await self._counted(scope, receive, send, limit, what)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int, what: str) -> None:
        received = 0
        refused = False
        started = False
        too_large = RequestTooLarge(
            f"Request body is larger than the {describe_size(limit)} limit of {what}."
        )

        async def counting(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not refused and not started:
                        await send_error(send, too_large)
                    refused = True
                    raise too_large
            return message

        try:
            await self._handler(scope, counted_receive, counting)
        except RequestTooLarge:
            if not refused:
                raise
