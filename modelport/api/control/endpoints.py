"""Routes under /api/2.0/serving-endpoints (compat-api.md §A.1 #1-#16 plus cancel-update)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object, parse, validate
from modelport.api.responses import json_response, text_response
from modelport.api.services import caller_of, services_of
from modelport.control.openapi import endpoint_openapi, served_model_inputs
from modelport.errors import InvalidParameterValue
from modelport.spec.endpoint import (
    AiGatewayConfig,
    CreateEndpoint,
    CreatePtEndpoint,
    EmailNotifications,
    EndpointCoreConfigInput,
    PatchTags,
    PutRateLimits,
    UpdatePtConfig,
    core_config_of,
)

BASE = "/api/2.0/serving-endpoints"


def _name(request: Request) -> str:
    return str(request.path_params["name"])


def _dry_run(request: Request) -> bool:
    """The ``dry_run`` query parameter: ``true``/``1`` check and report without writing,
    ``false``/``0`` (or none) do the call."""
    raw = request.query_params.get("dry_run")
    if raw is None or raw.lower() in ("false", "0", ""):
        return False
    if raw.lower() in ("true", "1"):
        return True
    raise InvalidParameterValue(f"Invalid value for 'dry_run': '{raw}' is not true, false, 1 or 0.")


async def list_endpoints(request: Request) -> Response:
    caller = caller_of(request)
    items = await run_in_threadpool(services_of(request).endpoints.list, caller)
    return json_response({"endpoints": items})


async def create_endpoint(request: Request) -> Response:
    caller = caller_of(request)
    dry_run = _dry_run(request)
    body = await parse(request, CreateEndpoint)
    svc = services_of(request).endpoints
    return json_response(await run_in_threadpool(svc.create, caller, body, dry_run=dry_run))


async def get_endpoint(request: Request) -> Response:
    caller = caller_of(request)
    return json_response(await run_in_threadpool(services_of(request).endpoints.get, caller, _name(request)))


async def delete_endpoint(request: Request) -> Response:
    caller = caller_of(request)
    await run_in_threadpool(services_of(request).endpoints.delete, caller, _name(request))
    services_of(request).metrics.forget_endpoint(_name(request))
    return json_response({})


async def update_config(request: Request) -> Response:
    caller = caller_of(request)
    dry_run = _dry_run(request)
    config = await parse(request, EndpointCoreConfigInput)
    svc = services_of(request).endpoints
    name = _name(request)
    return json_response(await run_in_threadpool(svc.update_config, caller, name, config, dry_run=dry_run))


async def cancel_update(request: Request) -> Response:
    caller = caller_of(request)
    await json_object(request, required=False)
    svc = services_of(request).endpoints
    return json_response(await run_in_threadpool(svc.cancel_update, caller, _name(request)))


async def put_rate_limits(request: Request) -> Response:
    caller = caller_of(request)
    body = await parse(request, PutRateLimits)
    svc = services_of(request).endpoints
    return json_response(await run_in_threadpool(svc.put_rate_limits, caller, _name(request), body))


async def put_ai_gateway(request: Request) -> Response:
    caller = caller_of(request)
    body = await parse(request, AiGatewayConfig)
    svc = services_of(request).endpoints
    return json_response(await run_in_threadpool(svc.put_ai_gateway, caller, _name(request), body))


async def patch_tags(request: Request) -> Response:
    caller = caller_of(request)
    body = await parse(request, PatchTags)
    svc = services_of(request).endpoints
    return json_response(await run_in_threadpool(svc.patch_tags, caller, _name(request), body))


async def patch_notifications(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request, required=False)
    raw = data.get("email_notifications")
    notifications = validate(EmailNotifications, raw) if isinstance(raw, dict) else None
    svc = services_of(request).endpoints
    return json_response(
        await run_in_threadpool(svc.patch_notifications, caller, _name(request), notifications)
    )


async def patch_telemetry(request: Request) -> Response:
    caller = caller_of(request)
    data = await json_object(request, required=False)
    svc = services_of(request).endpoints
    return json_response(
        await run_in_threadpool(svc.patch_telemetry, caller, _name(request), data.get("telemetry_config"))
    )


async def served_logs(request: Request) -> Response:
    caller = caller_of(request)
    svc = services_of(request).endpoints
    kind = "build" if request.url.path.rstrip("/").endswith("build-logs") else "runtime"
    result = await run_in_threadpool(
        svc.logs, caller, _name(request), str(request.path_params["served"]), kind
    )
    return json_response(result)


async def endpoint_metrics(request: Request) -> Response:
    caller = caller_of(request)
    services = services_of(request)
    endpoint, config = await run_in_threadpool(services.endpoints.snapshot, caller, _name(request))
    gauges = {
        "modelport_endpoint_ready": ("1 when a config serves.", 1.0 if endpoint.active_version else 0.0),
        "modelport_endpoint_config_version": (
            "Config version that serves (0: none).",
            float(endpoint.active_version or 0),
        ),
        "modelport_endpoint_update_in_progress": (
            "1 while a config update runs.",
            1.0 if endpoint.config_update == "IN_PROGRESS" else 0.0,
        ),
        "modelport_endpoint_served_entities": (
            "Served entities in the serving config.",
            float(len(config.body["served_entities"]) if config else 0),
        ),
    }
    version = endpoint.active_version or -1
    sets = services.backend.sets_of(endpoint.id).get(version, {})
    stats: dict[str, Any] = {entity: replica_set.stats() for entity, replica_set in sets.items()}
    exchange = services.metrics_exchange
    if exchange is not None:  # the replicas' figures of the other HTTP workers too
        stats = exchange.replica_stats(endpoint.id, version, stats)
    entity_gauges = {
        f"modelport_endpoint_{key}": (
            help_text,
            {entity: float(s.get(key, 0)) for entity, s in stats.items()},
        )
        for key, help_text in (
            ("replicas", "Replicas ready to serve."),
            ("in_flight", "Requests being answered by replicas."),
            ("queued", "Requests waiting for a free replica."),
            ("cold_starts", "Starts from zero replicas since the config began serving."),
            ("restarts", "Replicas replaced after they died."),
        )
    }
    if exchange is not None:
        return text_response(exchange.endpoint_text(endpoint.name, gauges, entity_gauges))
    return text_response(services.metrics.render_endpoint(endpoint.name, gauges, entity_gauges))


async def endpoint_openapi_route(request: Request) -> Response:
    caller = caller_of(request)
    services = services_of(request)
    endpoint, config = await run_in_threadpool(services.endpoints.snapshot, caller, _name(request))
    models = await run_in_threadpool(served_model_inputs, services.registry, config)
    server = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
    doc = endpoint_openapi(endpoint, config, server, models)
    return Response(orjson.dumps(doc, option=orjson.OPT_INDENT_2), media_type="application/json")


async def create_pt_endpoint(request: Request) -> Response:
    """``POST /pt``: an endpoint whose entities are sized in model units (foundation models)."""
    caller = caller_of(request)
    dry_run = _dry_run(request)
    pt = await parse(request, CreatePtEndpoint)
    body = CreateEndpoint(
        name=pt.name,
        config=core_config_of(pt.config),
        ai_gateway=pt.ai_gateway,
        budget_policy_id=pt.budget_policy_id,
        email_notifications=pt.email_notifications,
        tags=pt.tags,
    )
    svc = services_of(request).endpoints
    return json_response(await run_in_threadpool(svc.create, caller, body, dry_run=dry_run))


async def update_pt_config(request: Request) -> Response:
    caller = caller_of(request)
    dry_run = _dry_run(request)
    pt = await parse(request, UpdatePtConfig)
    config = core_config_of(pt.config)
    svc = services_of(request).endpoints
    name = _name(request)
    return json_response(await run_in_threadpool(svc.update_config, caller, name, config, dry_run=dry_run))


routes = [
    Route(BASE, list_endpoints, methods=["GET"]),
    Route(BASE, create_endpoint, methods=["POST"]),
    Route(f"{BASE}/pt", create_pt_endpoint, methods=["POST"]),
    Route(f"{BASE}/pt/{{name}}/config", update_pt_config, methods=["PUT"]),
    Route(f"{BASE}/{{name}}", get_endpoint, methods=["GET"]),
    Route(f"{BASE}/{{name}}", delete_endpoint, methods=["DELETE"]),
    Route(f"{BASE}/{{name}}/config", update_config, methods=["PUT"]),
    Route(f"{BASE}/{{name}}/cancel-update", cancel_update, methods=["POST"]),
    Route(f"{BASE}/{{name}}/rate-limits", put_rate_limits, methods=["PUT"]),
    Route(f"{BASE}/{{name}}/ai-gateway", put_ai_gateway, methods=["PUT"]),
    Route(f"{BASE}/{{name}}/tags", patch_tags, methods=["PATCH"]),
    Route(f"{BASE}/{{name}}/notifications", patch_notifications, methods=["PATCH"]),
    Route(f"{BASE}/{{name}}/telemetry-config", patch_telemetry, methods=["PATCH"]),
    Route(f"{BASE}/{{name}}/served-models/{{served}}/logs", served_logs, methods=["GET"]),
    Route(f"{BASE}/{{name}}/served-models/{{served}}/build-logs", served_logs, methods=["GET"]),
    Route(f"{BASE}/{{name}}/metrics", endpoint_metrics, methods=["GET"]),
    Route(f"{BASE}/{{name}}/openapi", endpoint_openapi_route, methods=["GET"]),
]
