"""The server's data plane as ``ai_query``'s :class:`~modelport.batch.ai_query.Endpoints`.

The SQL route runs DuckDB in a worker thread; each request of an ``ai_query`` function is an
:class:`~modelport.gateway.exchange.Exchange` of the calling user answered by
:meth:`DataPlane.query <modelport.gateway.pipeline.DataPlane.query>` on the server's event loop,
so the caller's permissions (403), rate limits (429, retried), guardrails, usage and inference
tables apply as to any query. An endpoint's kind and output type come from the same OpenAPI
document ``GET /api/2.0/serving-endpoints/{name}/openapi`` serves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from modelport.batch.ai_query import EndpointInfo, Endpoints, info_from_openapi
from modelport.control.endpoints import EndpointService
from modelport.control.openapi import endpoint_openapi, served_model_inputs
from modelport.entities.registry_handle import RegistryHandle
from modelport.gateway.exchange import Exchange
from modelport.gateway.pipeline import DataPlane
from modelport.spec.identity import Caller

__all__ = ["served_endpoints"]


def served_endpoints(
    dataplane: DataPlane,
    endpoints: EndpointService,
    registry: RegistryHandle,
    caller: Caller,
    loop: asyncio.AbstractEventLoop,
) -> Endpoints:
    """``ai_query``'s endpoints as ``caller`` sees them; ``loop`` is the server's event loop
    (the functions are called from another thread)."""

    async def call(endpoint: str, body: bytes) -> bytes:
        answer = await dataplane.query(Exchange(caller, endpoint, body))
        return answer.body

    def describe(endpoint: str) -> EndpointInfo:
        record, config = endpoints.snapshot(caller, endpoint)
        doc = endpoint_openapi(record, config, "", served_model_inputs(registry, config))
        return info_from_openapi(doc)

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    return Endpoints(call, describe, run)
