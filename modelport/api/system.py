"""System routes: Databricks host discovery, health and readiness (no token), and Prometheus
metrics (any principal's valid token, or none with ``--public-metrics``)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of


async def discovery(request: Request) -> Response:
    """Answered from memory, always 200: the SDK blocks for minutes on a 429/503 here."""
    services = services_of(request)
    host = request.headers.get("host") or f"{services.settings.host}:{services.settings.port}"
    base = f"{request.url.scheme}://{host}"
    return json_response(
        {"oidc_endpoint": f"{base}/oidc", "workspace_id": services.workspace_id, "cloud": "aws"}
    )


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


async def ready(request: Request) -> Response:
    services = services_of(request)
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(services.db.meta_get, "workspace_id")
        checks["store"] = "ok"
    except Exception as exc:  # readiness reports, it does not raise
        checks["store"] = f"error: {type(exc).__name__}"
    checks["registry"] = "ok" if services.registry.loaded else "starting"
    checks["reconciler"] = "ok" if services.started else "starting"
    ok = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503
    )


async def metrics(request: Request) -> Response:
    """Any valid token will do (no permission is needed): the text names endpoints and served
    entities with their counts and latencies, never payloads or principals. With several HTTP
    workers, the figures of all of them (each published within the last second)."""
    services = services_of(request)
    if not services.settings.public_metrics:
        caller_of(request)
    exchange = services.metrics_exchange
    body = exchange.server_text() if exchange is not None else services.metrics.server_text()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


routes = [
    Route("/.well-known/databricks-config", discovery, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
