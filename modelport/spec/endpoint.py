"""Wire models of the serving-endpoint control plane (compat-api.md §A.2), no I/O.

Field names are the Databricks wire names. Unknown fields are ignored, as the real
service does. Cross-field rules live in ``spec/validation.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelport.spec.extensions import ResponseCacheConfig


class Wire(BaseModel):
    """Base of every wire model: unknown keys ignored, output without unset fields."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, mode="json")


class WorkloadType(StrEnum):
    CPU = "CPU"
    CPU_MEDIUM = "CPU_MEDIUM"
    CPU_LARGE = "CPU_LARGE"
    GPU_SMALL = "GPU_SMALL"
    GPU_MEDIUM = "GPU_MEDIUM"
    GPU_LARGE = "GPU_LARGE"
    GPU_XLARGE = "GPU_XLARGE"
    GPU_XLARGE_8 = "GPU_XLARGE_8"
    MULTIGPU_MEDIUM = "MULTIGPU_MEDIUM"


#: ``environment_vars`` key of a served entity (modelport's extension) that says where its
#: replicas run: ``local`` (the server's Python environment) or ``uv`` (a virtual
#: environment built from the model's recorded requirements).
ENV_MANAGER_VAR = "MODELPORT_ENV_MANAGER"
ENV_MANAGERS = ("local", "uv")


class Provider(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    COHERE = "cohere"
    AMAZON_BEDROCK = "amazon-bedrock"
    GOOGLE_CLOUD_VERTEX_AI = "google-cloud-vertex-ai"
    AI21LABS = "ai21labs"
    PALM = "palm"
    DATABRICKS_MODEL_SERVING = "databricks-model-serving"
    CUSTOM = "custom"


#: The config block each provider needs (exactly one per external model).
PROVIDER_CONFIG_KEY: dict[Provider, str] = {
    Provider.OPENAI: "openai_config",
    Provider.ANTHROPIC: "anthropic_config",
    Provider.COHERE: "cohere_config",
    Provider.AMAZON_BEDROCK: "amazon_bedrock_config",
    Provider.GOOGLE_CLOUD_VERTEX_AI: "google_cloud_vertex_ai_config",
    Provider.AI21LABS: "ai21labs_config",
    Provider.PALM: "palm_config",
    Provider.DATABRICKS_MODEL_SERVING: "databricks_model_serving_config",
    Provider.CUSTOM: "custom_provider_config",
}

#: Required fields inside each provider block (compat-api.md §A.2, bold fields).
PROVIDER_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "amazon_bedrock_config": ("aws_region", "bedrock_provider"),
    "google_cloud_vertex_ai_config": ("project_id", "region"),
    "databricks_model_serving_config": ("databricks_workspace_url",),
    "custom_provider_config": ("custom_provider_url",),
}

#: Credential pairs: a ``{{secrets/...}}`` reference or its ``_plaintext`` twin, not both.
PROVIDER_CREDENTIAL_PAIRS: dict[str, tuple[str, ...]] = {
    "openai_config": ("openai_api_key", "microsoft_entra_client_secret"),
    "anthropic_config": ("anthropic_api_key",),
    "cohere_config": ("cohere_api_key",),
    "amazon_bedrock_config": ("aws_access_key_id", "aws_secret_access_key"),
    "google_cloud_vertex_ai_config": ("private_key",),
    "ai21labs_config": ("ai21labs_api_key",),
    "palm_config": ("palm_api_key",),
    "databricks_model_serving_config": ("databricks_api_token",),
}

TASKS = ("llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings")
#: ``agent_config.run_as`` of an agent whose tool calls act as the caller of its endpoint.
RUN_AS_CALLER = "caller"
BEDROCK_PROVIDERS = ("anthropic", "cohere", "ai21labs", "amazon")

#: Key of a stored served entity that serves a feature spec: the spec itself (its
#: ``feature_spec.yaml`` document), copied in when the config is written, so that each config
#: version keeps the spec it was made with.
FEATURE_SPEC_KEY = "feature_spec"


def runs_in_gateway(entity: Mapping[str, Any]) -> bool:
    """Whether a stored served entity is answered by the gateway itself, with no replicas: an
    external model (its provider answers) or a feature spec (the online store answers)."""
    return "external_model" in entity or FEATURE_SPEC_KEY in entity


class ExternalModel(Wire):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    provider: str | None = None
    name: str | None = None
    task: str | None = None


class ServedEntityInput(Wire):
    name: str | None = None
    entity_name: str | None = None
    entity_version: str | None = None
    workload_size: str | None = None
    workload_type: str | None = None
    scale_to_zero_enabled: bool | None = None
    min_provisioned_concurrency: int | None = None
    max_provisioned_concurrency: int | None = None
    min_provisioned_throughput: int | None = None
    max_provisioned_throughput: int | None = None
    provisioned_model_units: int | None = None
    burst_scaling_enabled: bool | None = None
    environment_vars: dict[str, str] | None = None
    instance_profile_arn: str | None = None
    external_model: ExternalModel | None = None
    #: modelport extension for agents (a registered model served as an agent): who its tool
    #: calls act as and which endpoints they may call, ``{"run_as": "caller" | "<service
    #: principal>", "allowed_endpoints": [...]}`` (``spec/validation.py``; absent: as the caller,
    #: any endpoint the caller may query).
    agent_config: dict[str, Any] | None = None


class ServedModelInput(Wire):
    """Legacy form of a served entity (``served_models``)."""

    name: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    workload_size: str | None = None
    workload_type: str | None = None
    scale_to_zero_enabled: bool | None = None
    min_provisioned_concurrency: int | None = None
    max_provisioned_concurrency: int | None = None
    environment_vars: dict[str, str] | None = None
    instance_profile_arn: str | None = None

    def as_entity(self) -> ServedEntityInput:
        data = self.model_dump(exclude_none=True)
        data["entity_name"] = data.pop("model_name", None)
        data["entity_version"] = data.pop("model_version", None)
        return ServedEntityInput(**data)


class Route(Wire):
    served_model_name: str | None = None
    served_entity_name: str | None = None
    traffic_percentage: int | None = None

    @property
    def target(self) -> str | None:
        return self.served_entity_name or self.served_model_name


class TrafficConfig(Wire):
    routes: list[Route] = Field(default_factory=list)


class AutoCaptureConfigInput(Wire):
    catalog_name: str | None = None
    schema_name: str | None = None
    table_name_prefix: str | None = None
    enabled: bool | None = None


class EndpointCoreConfigInput(Wire):
    name: str | None = None
    served_entities: list[ServedEntityInput] | None = None
    served_models: list[ServedModelInput] | None = None
    traffic_config: TrafficConfig | None = None
    auto_capture_config: AutoCaptureConfigInput | None = None
    #: modelport extension blocks (``spec/extensions.py``), refused until their features exist.
    shadow: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None


class RateLimit(Wire):
    """Legacy endpoint rate limit (``rate_limits``)."""

    calls: int | None = None
    renewal_period: str | None = None
    key: str | None = None


class AiGatewayRateLimit(Wire):
    calls: int | None = None
    tokens: int | None = None
    renewal_period: str | None = None
    key: str | None = None
    principal: str | None = None


class PiiConfig(Wire):
    behavior: str | None = None


class GuardrailParameters(Wire):
    safety: bool | None = None
    pii: PiiConfig | None = None
    invalid_keywords: list[str] | None = None
    valid_topics: list[str] | None = None


class Guardrails(Wire):
    input: GuardrailParameters | None = None
    output: GuardrailParameters | None = None


class InferenceTableConfig(Wire):
    catalog_name: str | None = None
    schema_name: str | None = None
    table_name_prefix: str | None = None
    enabled: bool | None = None
    #: modelport extension: record the request as the client sent it, before input guardrails
    #: masked it (default: as the model received it, so MASK keeps PII out of the table too).
    record_raw_request: bool | None = None


class EnabledFlag(Wire):
    enabled: bool | None = None


class AiGatewayConfig(Wire):
    usage_tracking_config: EnabledFlag | None = None
    inference_table_config: InferenceTableConfig | None = None
    rate_limits: list[AiGatewayRateLimit] | None = None
    guardrails: Guardrails | None = None
    #: modelport extension block (``spec/extensions.py``): the response cache.
    response_cache: ResponseCacheConfig | None = None
    fallback_config: EnabledFlag | None = None


class EndpointTag(Wire):
    key: str | None = None
    value: str | None = None


class EmailNotifications(Wire):
    on_update_failure: list[str] | None = None
    on_update_success: list[str] | None = None


class CreateEndpoint(Wire):
    name: str | None = None
    config: EndpointCoreConfigInput | None = None
    ai_gateway: AiGatewayConfig | None = None
    budget_policy_id: str | None = None
    description: str | None = None
    email_notifications: EmailNotifications | None = None
    rate_limits: list[RateLimit] | None = None
    route_optimized: bool | None = None
    tags: list[EndpointTag] | None = None
    telemetry_config: dict[str, Any] | None = None
    #: Databricks' feature-serving client sends it: the served entities without
    #: ``entity_version`` name feature specs (without it, a versionless three-part name is taken
    #: for a feature spec when one of that name exists).
    is_feature_serving: bool | None = None


class PatchTags(Wire):
    add_tags: list[EndpointTag] | None = None
    delete_tags: list[str] | None = None


class PutRateLimits(Wire):
    rate_limits: list[RateLimit] | None = None


class PtServedModel(Wire):
    """A served entity of a provisioned-throughput endpoint (compat-api.md §A.2)."""

    entity_name: str | None = None
    entity_version: str | None = None
    provisioned_model_units: int | None = None
    name: str | None = None
    burst_scaling_enabled: bool | None = None


class PtEndpointCoreConfig(Wire):
    served_entities: list[PtServedModel] | None = None
    traffic_config: TrafficConfig | None = None


class CreatePtEndpoint(Wire):
    name: str | None = None
    config: PtEndpointCoreConfig | None = None
    ai_gateway: AiGatewayConfig | None = None
    budget_policy_id: str | None = None
    email_notifications: EmailNotifications | None = None
    tags: list[EndpointTag] | None = None


class UpdatePtConfig(Wire):
    config: PtEndpointCoreConfig | None = None


def core_config_of(pt: PtEndpointCoreConfig | None) -> EndpointCoreConfigInput:
    """A provisioned-throughput config as an ordinary one: each entity sized in model units
    (one unit is one replica; ``burst_scaling_enabled`` lets load double that)."""
    from modelport.errors import InvalidParameterValue

    if pt is None or not pt.served_entities:
        raise InvalidParameterValue("Missing required field 'config.served_entities'.")
    entities = []
    for i, e in enumerate(pt.served_entities):
        if not e.entity_name:
            raise InvalidParameterValue(f"Missing required field 'config.served_entities[{i}].entity_name'.")
        if e.provisioned_model_units is None or e.provisioned_model_units < 1:
            raise InvalidParameterValue(
                f"'config.served_entities[{i}].provisioned_model_units' must be a positive integer "
                f"(got {e.provisioned_model_units!r})."
            )
        entities.append(
            ServedEntityInput(
                name=e.name,
                entity_name=e.entity_name,
                entity_version=e.entity_version or "1",
                provisioned_model_units=e.provisioned_model_units,
                burst_scaling_enabled=e.burst_scaling_enabled,
            )
        )
    return EndpointCoreConfigInput(served_entities=entities, traffic_config=pt.traffic_config)
