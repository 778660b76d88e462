"""Cross-field rules of endpoint configs, gateway settings and tags; pure functions.

Each ``normalize_*`` function either returns the canonical JSON-ready form that the
store records, or raises :class:`InvalidParameterValue` with a message naming the
offending field and saying what to change. Nothing here touches the registry: whether a
registered model exists is checked by the control plane.
"""

from __future__ import annotations

import re
from typing import Any

from modelport.errors import InvalidParameterValue
from modelport.spec.endpoint import (
    BEDROCK_PROVIDERS,
    ENV_MANAGER_VAR,
    ENV_MANAGERS,
    FEATURE_SPEC_KEY,
    PROVIDER_CONFIG_KEY,
    PROVIDER_CREDENTIAL_PAIRS,
    PROVIDER_REQUIRED_FIELDS,
    RUN_AS_CALLER,
    TASKS,
    AiGatewayConfig,
    EndpointCoreConfigInput,
    EndpointTag,
    Provider,
    RateLimit,
    ServedEntityInput,
    WorkloadType,
)
from modelport.spec.extensions import ResponseCacheConfig, normalize_rollout, normalize_shadow
from modelport.spec.secrets import parse_reference

__all__ = [
    "MAX_NAME_LENGTH",
    "WORKLOAD_SIZES",
    "default_entity_name",
    "names_feature_spec",
    "normalize_agent_config",
    "normalize_ai_gateway",
    "normalize_config",
    "normalize_legacy_rate_limits",
    "normalize_tags",
    "validate_endpoint_name",
]

MAX_NAME_LENGTH = 63
MAX_RATE_LIMITS = 20
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+\Z")  # \Z: "$" matches before a final newline
_IDENT_RE = re.compile(r"^[A-Za-z0-9_]+\Z")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_VERSION_RE = re.compile(r"^[0-9]+\Z")
_ALIAS_RE = re.compile(r"^@[A-Za-z0-9_-]+\Z")
_THREE_PART_RE = re.compile(r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+\Z")

#: Concurrency band of each named workload size (Databricks' definition).
WORKLOAD_SIZES: dict[str, tuple[int, int]] = {"Small": (0, 4), "Medium": (8, 16), "Large": (16, 64)}
_RATE_KEYS = ("endpoint", "user", "user_group", "service_principal")
_PII_BEHAVIORS = ("BLOCK", "MASK", "NONE")


def _bad(path: str, problem: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Invalid value for '{path}': {problem}")


def validate_endpoint_name(name: str | None, path: str = "name") -> str:
    if not name:
        raise InvalidParameterValue(f"Missing required field '{path}': give the endpoint a name.")
    if len(name) > MAX_NAME_LENGTH:
        raise _bad(path, f"'{name}' is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}.")
    if not _NAME_RE.match(name):
        raise _bad(
            path,
            f"'{name}' may contain only letters, digits, dashes (-) and underscores (_).",
        )
    return name


def default_entity_name(entity: ServedEntityInput) -> str:
    """The name Databricks gives a served entity that has none."""
    if entity.external_model is not None:
        return re.sub(r"[.:]", "-", entity.external_model.name or "external")
    base = (entity.entity_name or "").removeprefix("models:/").split(".")[-1].split("/")[-1]
    version = (entity.entity_version or "").lstrip("@")
    return f"{base}-{version}" if version else base


def _check_secret_or_plaintext(block: dict[str, Any], key: str, path: str) -> None:
    ref, plain = block.get(key), block.get(f"{key}_plaintext")
    if ref is not None and plain is not None:
        raise _bad(
            path,
            f"give either '{key}' (a {{{{secrets/scope/key}}}} reference) or '{key}_plaintext', not both.",
        )
    if ref is not None and parse_reference(ref) is None:
        raise _bad(
            f"{path}.{key}",
            "must be a secret reference of the form {{secrets/<scope>/<key>}}; "
            f"to pass the value itself use '{key}_plaintext'.",
        )


def _normalize_external(entity: ServedEntityInput, path: str) -> dict[str, Any]:
    ext = entity.external_model
    assert ext is not None
    epath = f"{path}.external_model"
    if not ext.provider:
        raise InvalidParameterValue(f"Missing required field '{epath}.provider'.")
    try:
        provider = Provider(ext.provider)
    except ValueError:
        allowed = ", ".join(p.value for p in Provider)
        raise _bad(
            f"{epath}.provider", f"'{ext.provider}' is not a supported provider ({allowed})."
        ) from None
    if not ext.name:
        raise InvalidParameterValue(f"Missing required field '{epath}.name': the provider's model id.")
    if not ext.task:
        raise InvalidParameterValue(f"Missing required field '{epath}.task' (one of {', '.join(TASKS)}).")
    if ext.task not in TASKS:
        raise _bad(f"{epath}.task", f"'{ext.task}' is not one of {', '.join(TASKS)}.")
    extra = dict(ext.model_extra or {})
    blocks = {k: v for k, v in extra.items() if k.endswith("_config")}
    expected = PROVIDER_CONFIG_KEY[provider]
    others = sorted(set(blocks) - {expected})
    if others:
        raise _bad(epath, f"provider '{provider.value}' takes '{expected}' only; remove {', '.join(others)}.")
    block = blocks.get(expected)
    if block is None:
        raise InvalidParameterValue(
            f"Missing required field '{epath}.{expected}' for provider '{provider.value}'."
        )
    if not isinstance(block, dict):
        raise _bad(f"{epath}.{expected}", "must be an object.")
    block = dict(block)
    bpath = f"{epath}.{expected}"
    for req in PROVIDER_REQUIRED_FIELDS.get(expected, ()):
        if not block.get(req):
            raise InvalidParameterValue(f"Missing required field '{bpath}.{req}'.")
    for key in PROVIDER_CREDENTIAL_PAIRS.get(expected, ()):
        _check_secret_or_plaintext(block, key, bpath)
    if expected == "amazon_bedrock_config":
        bp = str(block["bedrock_provider"]).lower()
        if bp not in BEDROCK_PROVIDERS:
            raise _bad(
                f"{bpath}.bedrock_provider",
                f"'{block['bedrock_provider']}' is not one of {', '.join(BEDROCK_PROVIDERS)}.",
            )
        block["bedrock_provider"] = bp
    if expected == "custom_provider_config":
        auths = [k for k in ("api_key_auth", "bearer_token_auth") if block.get(k) is not None]
        if len(auths) > 1:
            raise _bad(bpath, "give at most one of 'api_key_auth' and 'bearer_token_auth'.")
        if "api_key_auth" in auths:
            auth = block["api_key_auth"]
            if not isinstance(auth, dict) or not auth.get("key"):
                raise InvalidParameterValue(f"Missing required field '{bpath}.api_key_auth.key'.")
            _check_secret_or_plaintext(auth, "value", f"{bpath}.api_key_auth")
        if "bearer_token_auth" in auths:
            _check_secret_or_plaintext(block["bearer_token_auth"], "token", f"{bpath}.bearer_token_auth")
        url = str(block["custom_provider_url"])
        if not url.startswith(("http://", "https://")):
            raise _bad(f"{bpath}.custom_provider_url", f"'{url}' must be an http:// or https:// URL.")
    for field_name in (
        "entity_name",
        "entity_version",
        "workload_size",
        "workload_type",
        "scale_to_zero_enabled",
        "min_provisioned_concurrency",
        "max_provisioned_concurrency",
    ):
        if getattr(entity, field_name) is not None:
            raise _bad(
                path,
                f"'{field_name}' cannot be combined with 'external_model'; "
                "an external model runs at the provider.",
            )
    out: dict[str, Any] = {"provider": provider.value, "name": ext.name, "task": ext.task}
    out[expected] = block
    return out


def _normalize_scaling(entity: ServedEntityInput, path: str, out: dict[str, Any]) -> None:
    lo, hi = entity.min_provisioned_concurrency, entity.max_provisioned_concurrency
    if entity.workload_size is not None and (lo is not None or hi is not None):
        raise _bad(path, "give either 'workload_size' or 'min/max_provisioned_concurrency', not both.")
    if lo is not None or hi is not None:
        if lo is None or hi is None:
            raise _bad(path, "'min_provisioned_concurrency' and 'max_provisioned_concurrency' go together.")
        if lo < 0 or hi < 1 or lo > hi:
            raise _bad(
                path,
                f"provisioned concurrency must satisfy 0 <= min <= max and max >= 1 "
                f"(got min={lo}, max={hi}).",
            )
        out["min_provisioned_concurrency"], out["max_provisioned_concurrency"] = lo, hi
        return
    size = entity.workload_size or "Small"
    canonical = {k.lower(): k for k in WORKLOAD_SIZES}.get(size.lower())
    if canonical:
        out["workload_size"] = canonical
    elif size.isdecimal() and int(size) > 0:
        out["workload_size"] = size
    else:
        raise _bad(
            f"{path}.workload_size", f"'{size}' is not Small, Medium, Large or a positive concurrency number."
        )


def _normalize_registered(entity: ServedEntityInput, path: str) -> dict[str, Any]:
    if not entity.entity_name:
        raise InvalidParameterValue(
            f"Missing required field '{path}.entity_name': name a registered model "
            "(or give 'external_model')."
        )
    version = entity.entity_version
    if version is None or version == "":
        raise InvalidParameterValue(
            f"Missing required field '{path}.entity_version': a version number such as \"1\" "
            'or an alias such as "@champion".'
        )
    version = str(version)
    if not (_VERSION_RE.match(version) or _ALIAS_RE.match(version)):
        raise _bad(
            f"{path}.entity_version",
            f"'{version}' is neither a version number nor an alias written as @alias.",
        )
    out: dict[str, Any] = {"entity_name": entity.entity_name, "entity_version": version}
    _normalize_scaling(entity, path, out)
    wtype = entity.workload_type or "CPU"
    try:
        out["workload_type"] = WorkloadType(wtype).value
    except ValueError:
        allowed = ", ".join(w.value for w in WorkloadType)
        raise _bad(f"{path}.workload_type", f"'{wtype}' is not one of {allowed}.") from None
    out["scale_to_zero_enabled"] = bool(entity.scale_to_zero_enabled)
    for key in ("min_provisioned_throughput", "max_provisioned_throughput", "provisioned_model_units"):
        value = getattr(entity, key)
        if value is not None:
            if value < 0:
                raise _bad(f"{path}.{key}", f"must not be negative (got {value}).")
            out[key] = value
    lo_t, hi_t = out.get("min_provisioned_throughput"), out.get("max_provisioned_throughput")
    if lo_t is not None and hi_t is not None and lo_t > hi_t:
        raise _bad(
            path,
            f"'min_provisioned_throughput' ({lo_t}) must not exceed 'max_provisioned_throughput' ({hi_t}).",
        )
    if entity.burst_scaling_enabled is not None:
        out["burst_scaling_enabled"] = entity.burst_scaling_enabled
    return out


def names_feature_spec(entity: ServedEntityInput, feature_serving: bool | None) -> bool:
    """Whether a served entity names a feature spec: with ``is_feature_serving: true``, every
    entity without ``entity_version``; without the flag, one whose ``entity_name`` is a
    three-part name (the control plane then takes it for a registered model missing its
    version when no feature spec has that name); with ``false``, none."""
    if entity.external_model is not None or entity.entity_version not in (None, ""):
        return False
    if feature_serving is None:
        return bool(entity.entity_name and _THREE_PART_RE.match(entity.entity_name))
    return feature_serving


def _normalize_feature_spec(entity: ServedEntityInput, path: str) -> dict[str, Any]:
    """A served feature spec: ``entity_name`` (``catalog.schema.spec``, lower-cased) and the
    sizing fields Databricks' feature-serving client sends, which change nothing here (the
    gateway answers from the online store). ``feature_spec`` is left empty: the control plane
    copies the spec in."""
    name = entity.entity_name
    if not name:
        raise InvalidParameterValue(
            f"Missing required field '{path}.entity_name': the feature spec's catalog.schema.name."
        )
    if not _THREE_PART_RE.match(name):
        raise _bad(
            f"{path}.entity_name",
            f"'{name}' is not a feature spec's name: catalog.schema.name, letters, digits and "
            "underscores in each part.",
        )
    for field_name in (
        "workload_type",
        "min_provisioned_throughput",
        "max_provisioned_throughput",
        "provisioned_model_units",
        "burst_scaling_enabled",
        "environment_vars",
    ):
        value = getattr(entity, field_name)
        if value is not None and not (field_name == "workload_type" and value == WorkloadType.CPU):
            raise _bad(
                path,
                f"'{field_name}' does not apply to a feature spec, which the gateway answers from "
                "the online store without replicas.",
            )
    out: dict[str, Any] = {"entity_name": name.lower()}
    _normalize_scaling(entity, path, out)
    out["scale_to_zero_enabled"] = bool(entity.scale_to_zero_enabled)
    out[FEATURE_SPEC_KEY] = {}
    return out


def _normalize_entity(
    entity: ServedEntityInput, path: str, feature_serving: bool | None = None
) -> dict[str, Any]:
    if entity.external_model is not None:
        out: dict[str, Any] = {"external_model": _normalize_external(entity, path)}
    elif names_feature_spec(entity, feature_serving):
        out = _normalize_feature_spec(entity, path)
    else:
        if feature_serving:
            raise _bad(
                path,
                "a feature-serving endpoint (is_feature_serving: true) serves feature specs: name "
                "one in 'entity_name' without 'entity_version' or 'external_model'.",
            )
        out = _normalize_registered(entity, path)
    name = entity.name or default_entity_name(entity)
    if len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise _bad(
            f"{path}.name", f"'{name}' must be 1-{MAX_NAME_LENGTH} letters, digits, dashes or underscores."
        )
    out = {"name": name, **out}
    if entity.environment_vars:
        for key, value in entity.environment_vars.items():
            if not _ENV_RE.match(key):
                raise _bad(f"{path}.environment_vars", f"'{key}' is not a valid environment variable name.")
            if not isinstance(value, str):
                raise _bad(f"{path}.environment_vars.{key}", "values must be strings.")
        manager = entity.environment_vars.get(ENV_MANAGER_VAR)
        if manager is not None and manager not in ENV_MANAGERS:
            raise _bad(
                f"{path}.environment_vars.{ENV_MANAGER_VAR}",
                f"'{manager}' is not one of {', '.join(ENV_MANAGERS)}.",
            )
        out["environment_vars"] = dict(entity.environment_vars)
    if entity.instance_profile_arn:
        out["instance_profile_arn"] = entity.instance_profile_arn
    if entity.agent_config is not None:
        if "entity_version" not in out:
            raise _bad(
                f"{path}.agent_config",
                "applies to a registered model served as an agent, not to an external model or a "
                "feature spec.",
            )
        out["agent_config"] = normalize_agent_config(entity.agent_config, f"{path}.agent_config")
    return out


_AGENT_CONFIG_KEYS = ("run_as", "allowed_endpoints")
#: Most endpoints an agent's ``allowed_endpoints`` may name (its tokens carry them).
MAX_ALLOWED_ENDPOINTS = 50


def normalize_agent_config(raw: Any, path: str) -> dict[str, Any]:
    """An agent's ``agent_config``: ``run_as`` (``caller``, the default, or the name of a
    service principal, whose existence the control plane checks) and ``allowed_endpoints``
    (endpoint names, which need not exist yet: an endpoint created later under a name listed is
    callable; absent: any endpoint the principal may query; ``[]``: none)."""
    if not isinstance(raw, dict):
        raise _bad(path, 'must be an object such as {"run_as": "caller", "allowed_endpoints": ["my-llm"]}.')
    unknown = sorted(set(raw) - set(_AGENT_CONFIG_KEYS))
    if unknown:
        raise _bad(path, f"unknown field(s) {', '.join(unknown)}; it takes {', '.join(_AGENT_CONFIG_KEYS)}.")
    run_as = raw.get("run_as", RUN_AS_CALLER)
    if run_as is None:
        run_as = RUN_AS_CALLER
    if not isinstance(run_as, str) or not run_as.strip():
        raise _bad(
            f"{path}.run_as",
            f"must be '{RUN_AS_CALLER}' or the name of a service principal (got {run_as!r}).",
        )
    out: dict[str, Any] = {"run_as": run_as.strip()}
    allowed = raw.get("allowed_endpoints")
    if allowed is not None:
        if not isinstance(allowed, list):
            raise _bad(f"{path}.allowed_endpoints", "must be a list of endpoint names.")
        if len(allowed) > MAX_ALLOWED_ENDPOINTS:
            raise _bad(
                f"{path}.allowed_endpoints",
                f"names {len(allowed)} endpoints; the limit is {MAX_ALLOWED_ENDPOINTS}.",
            )
        names: list[str] = []
        for i, name in enumerate(allowed):
            if not isinstance(name, str):
                raise _bad(f"{path}.allowed_endpoints[{i}]", f"must be an endpoint name (got {name!r}).")
            validate_endpoint_name(name, f"{path}.allowed_endpoints[{i}]")
            if name not in names:
                names.append(name)
        out["allowed_endpoints"] = names
    return out


def _check_external_mix(entities: list[dict[str, Any]], key: str) -> None:
    """External models may share an endpoint (a traffic split among them) when they all serve
    one task; an endpoint does not mix them with registered models (Databricks' rules)."""
    external = [e for e in entities if "external_model" in e]
    if not external or len(entities) == 1:
        return
    if len(external) != len(entities):
        names = ", ".join(e["name"] for e in external)
        raise _bad(
            f"config.{key}",
            f"external models ({names}) cannot share an endpoint with registered models; "
            "serve them from an endpoint of their own.",
        )
    tasks = {e["external_model"]["task"] for e in external}
    if len(tasks) > 1:
        listed = ", ".join(f"'{e['name']}' {e['external_model']['task']}" for e in external)
        raise _bad(
            f"config.{key}",
            f"the external models of one endpoint must all serve the same task ({listed}).",
        )


def _check_feature_spec_mix(entities: list[dict[str, Any]], key: str) -> None:
    """A feature spec is served by an endpoint of its own (with other feature specs at most)."""
    specs = [e for e in entities if FEATURE_SPEC_KEY in e]
    if not specs or len(specs) == len(entities):
        return
    names = ", ".join(f"'{e['name']}'" for e in specs)
    raise _bad(
        f"config.{key}",
        f"{names} name feature specs (no entity_version), which cannot share an endpoint with "
        "models; give entity_version if one is a registered model, or serve the models from "
        "another endpoint.",
    )


def _normalize_traffic(cfg: EndpointCoreConfigInput, names: list[str]) -> dict[str, Any]:
    if cfg.traffic_config is None or not cfg.traffic_config.routes:
        if len(names) == 1:
            return {
                "routes": [
                    {"served_entity_name": names[0], "served_model_name": names[0], "traffic_percentage": 100}
                ]
            }
        raise InvalidParameterValue(
            "Missing required field 'config.traffic_config': an endpoint with several served entities "
            f"({', '.join(names)}) needs routes whose traffic_percentage values add up to 100."
        )
    routes: list[dict[str, Any]] = []
    seen: set[str] = set()
    total = 0
    for i, route in enumerate(cfg.traffic_config.routes):
        path = f"config.traffic_config.routes[{i}]"
        target = route.target
        if not target:
            raise InvalidParameterValue(f"Missing required field '{path}.served_entity_name'.")
        if target not in names:
            raise _bad(
                f"{path}.served_entity_name",
                f"'{target}' is not a served entity of this config (served entities: {', '.join(names)}).",
            )
        if target in seen:
            raise _bad(path, f"served entity '{target}' has more than one route.")
        seen.add(target)
        pct = route.traffic_percentage
        if pct is None:
            raise InvalidParameterValue(f"Missing required field '{path}.traffic_percentage'.")
        if not 0 <= pct <= 100:
            raise _bad(f"{path}.traffic_percentage", f"{pct} is not between 0 and 100.")
        total += pct
        routes.append({"served_entity_name": target, "served_model_name": target, "traffic_percentage": pct})
    if total != 100:
        raise _bad(
            "config.traffic_config.routes", f"traffic percentages add up to {total}; they must add up to 100."
        )
    return {"routes": routes}


def _normalize_table(block: Any, path: str, default_prefix: str) -> dict[str, Any] | None:
    if block is None:
        return None
    data = block.dump()
    if data.get("enabled") is None:
        data["enabled"] = True
    if data["enabled"]:
        for key in ("catalog_name", "schema_name"):
            if not data.get(key):
                raise InvalidParameterValue(f"Missing required field '{path}.{key}'.")
        data.setdefault("table_name_prefix", default_prefix)
    for key in ("catalog_name", "schema_name", "table_name_prefix"):
        value = data.get(key)
        if value is not None and not _IDENT_RE.match(value.replace("-", "_")):
            raise _bad(f"{path}.{key}", f"'{value}' may contain only letters, digits and underscores.")
    return data


def normalize_config(
    cfg: EndpointCoreConfigInput, endpoint_name: str, *, feature_serving: bool | None = None
) -> dict[str, Any]:
    """Validate an endpoint config and return its canonical stored form.

    ``feature_serving``: the create request's ``is_feature_serving`` (see
    :func:`names_feature_spec`). A feature spec's entity comes back with an empty
    ``feature_spec``, for the control plane to fill."""
    if cfg.served_entities and cfg.served_models:
        raise _bad("config", "give 'served_entities' or the legacy 'served_models', not both.")
    legacy = bool(cfg.served_models)
    inputs = [m.as_entity() for m in cfg.served_models or []] if legacy else list(cfg.served_entities or [])
    key = "served_models" if legacy else "served_entities"
    if not inputs:
        raise InvalidParameterValue(
            "Missing required field 'config.served_entities': list at least one served entity."
        )
    spec_flag = False if legacy else feature_serving
    entities = [_normalize_entity(e, f"config.{key}[{i}]", spec_flag) for i, e in enumerate(inputs)]
    names = [e["name"] for e in entities]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _bad(
            f"config.{key}",
            f"served entity names must be unique; '{dupes[0]}' appears more than "
            "once. Give each entity its own 'name'.",
        )
    _check_external_mix(entities, key)
    _check_feature_spec_mix(entities, key)
    out: dict[str, Any] = {"served_entities": entities, "traffic_config": _normalize_traffic(cfg, names)}
    shadow = normalize_shadow(cfg.shadow, names, out["traffic_config"])
    if shadow is not None:
        out["shadow"] = shadow
    rollout = normalize_rollout(cfg.rollout, names, out["traffic_config"])
    if rollout is not None:
        out["rollout"] = rollout
    capture = _normalize_table(cfg.auto_capture_config, "config.auto_capture_config", endpoint_name)
    if capture is not None:
        out["auto_capture_config"] = capture
    if legacy:
        out["legacy_served_models"] = True
    return out


def normalize_ai_gateway(cfg: AiGatewayConfig, endpoint_name: str) -> dict[str, Any]:
    """Validate an AI-gateway config and return its canonical stored form."""
    out = cfg.dump()
    limits = cfg.rate_limits or []
    if len(limits) > MAX_RATE_LIMITS:
        raise _bad(
            "rate_limits", f"{len(limits)} rate limits given; an endpoint takes at most {MAX_RATE_LIMITS}."
        )
    norm_limits = []
    for i, limit in enumerate(limits):
        path = f"rate_limits[{i}]"
        if limit.renewal_period != "minute":
            raise _bad(f"{path}.renewal_period", f"'{limit.renewal_period}' is not supported; use 'minute'.")
        if limit.calls is None and limit.tokens is None:
            raise InvalidParameterValue(f"Missing required field '{path}.calls' (or '{path}.tokens').")
        for field_name in ("calls", "tokens"):
            value = getattr(limit, field_name)
            if value is not None and value < 0:
                raise _bad(f"{path}.{field_name}", f"must not be negative (got {value}).")
        key = limit.key or "endpoint"
        if key not in _RATE_KEYS:
            raise _bad(f"{path}.key", f"'{key}' is not one of {', '.join(_RATE_KEYS)}.")
        if limit.principal and key == "endpoint":
            raise _bad(
                f"{path}.principal",
                "a principal applies only to keys user, user_group and service_principal.",
            )
        item = limit.dump()
        item["key"] = key
        norm_limits.append(item)
    if cfg.rate_limits is not None:
        out["rate_limits"] = norm_limits
    if cfg.guardrails is not None:
        for side in ("input", "output"):
            params = getattr(cfg.guardrails, side)
            if params is not None and params.pii is not None and params.pii.behavior not in _PII_BEHAVIORS:
                raise _bad(
                    f"guardrails.{side}.pii.behavior",
                    f"'{params.pii.behavior}' is not one of {', '.join(_PII_BEHAVIORS)}.",
                )
    if cfg.fallback_config is not None and cfg.fallback_config.enabled is None:
        raise InvalidParameterValue("Missing required field 'fallback_config.enabled'.")
    for block in ("usage_tracking_config",):
        value = getattr(cfg, block)
        if value is not None and value.enabled is None:
            raise InvalidParameterValue(f"Missing required field '{block}.enabled'.")
    table = _normalize_table(cfg.inference_table_config, "inference_table_config", endpoint_name)
    if table is not None:
        out["inference_table_config"] = table
    if cfg.response_cache is not None:
        out["response_cache"] = _normalize_cache(cfg.response_cache)
    return out


#: ``ai_gateway.response_cache``: defaults and bounds.
CACHE_TTL_DEFAULT = 300
CACHE_TTL_MAX = 7 * 24 * 3600
CACHE_ENTRY_DEFAULT = 1024 * 1024
CACHE_ENTRY_MAX = 64 * 1024 * 1024


def _normalize_cache(cache: ResponseCacheConfig) -> dict[str, Any]:
    """The response cache block with its defaults filled in (TTL 300 s, scope ``user``, entries
    up to 1 MiB)."""
    path = "response_cache"
    if cache.enabled is None:
        raise InvalidParameterValue(f"Missing required field '{path}.enabled'.")
    ttl = CACHE_TTL_DEFAULT if cache.ttl_seconds is None else cache.ttl_seconds
    if not 1 <= ttl <= CACHE_TTL_MAX:
        raise _bad(f"{path}.ttl_seconds", f"must be between 1 and {CACHE_TTL_MAX} (got {ttl}).")
    size = CACHE_ENTRY_DEFAULT if cache.max_entry_bytes is None else cache.max_entry_bytes
    if not 1 <= size <= CACHE_ENTRY_MAX:
        raise _bad(f"{path}.max_entry_bytes", f"must be between 1 and {CACHE_ENTRY_MAX} (got {size}).")
    similarity = cache.semantic_similarity
    if similarity is not None and not 0 < similarity <= 1:
        raise _bad(f"{path}.semantic_similarity", f"must be above 0 and at most 1 (got {similarity}).")
    out: dict[str, Any] = {
        "enabled": cache.enabled,
        "ttl_seconds": ttl,
        "scope": cache.scope or "user",
        "max_entry_bytes": size,
        "cache_non_deterministic": bool(cache.cache_non_deterministic),
    }
    if similarity is not None:
        out["semantic_similarity"] = similarity
    return out


def normalize_legacy_rate_limits(limits: list[RateLimit] | None) -> list[dict[str, Any]]:
    out = []
    for i, limit in enumerate(limits or []):
        path = f"rate_limits[{i}]"
        if limit.calls is None:
            raise InvalidParameterValue(f"Missing required field '{path}.calls'.")
        if limit.calls < 0:
            raise _bad(f"{path}.calls", f"must not be negative (got {limit.calls}).")
        if limit.renewal_period != "minute":
            raise _bad(f"{path}.renewal_period", f"'{limit.renewal_period}' is not supported; use 'minute'.")
        key = limit.key or "endpoint"
        if key not in ("endpoint", "user"):
            raise _bad(f"{path}.key", f"'{key}' is not one of endpoint, user.")
        out.append({"calls": limit.calls, "renewal_period": "minute", "key": key})
    return out


def normalize_tags(tags: list[EndpointTag] | None, path: str = "tags") -> list[dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for i, tag in enumerate(tags or []):
        if not tag.key:
            raise InvalidParameterValue(f"Missing required field '{path}[{i}].key'.")
        if len(tag.key) > 255 or (tag.value is not None and len(tag.value) > 255):
            raise _bad(f"{path}[{i}]", "tag keys and values are limited to 255 characters.")
        item = {"key": tag.key}
        if tag.value is not None:
            item["value"] = tag.value
        out[tag.key] = item
    return list(out.values())
