"""``POST /serving-endpoints/{name}/invocations`` and the per-entity variant (compat-api.md §B)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.services import caller_of, services_of
from modelport.errors import MalformedRequest

MAX_QUERY_BYTES = 16 * 1024 * 1024
_TOO_LARGE = f"Request body is larger than the {MAX_QUERY_BYTES // (1024 * 1024)} MB limit of a query."


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_QUERY_BYTES:
        raise MalformedRequest(_TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_QUERY_BYTES:
            raise MalformedRequest(_TOO_LARGE)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise MalformedRequest('Request body is empty; send a JSON object such as {"dataframe_split": ...}.')
    return body


async def invocations(request: Request) -> Response:
    caller = caller_of(request)
    body = await _body(request)
    served = request.path_params.get("served")
    answer = await services_of(request).dataplane.query(
        caller, str(request.path_params["name"]), body, str(served) if served is not None else None
    )
    return Response(answer.body, media_type="application/json", headers={"served-model-name": answer.served})


routes = [
    Route("/serving-endpoints/{name}/invocations", invocations, methods=["POST"]),
    Route("/serving-endpoints/{name}/served-models/{served}/invocations", invocations, methods=["POST"]),
]
