"""Which permission each route of the embedded MLflow server needs: the guard's route table.

Keys are the endpoint names of MLflow's Flask URL map (the ``/api/2.0``, ``/api/3.0`` and
``/ajax-api`` forms of a route share one), so the guard decides exactly as Flask will route.
Each :class:`Rule` names what the request acts on (a registered model by name, an experiment
by id, or one found through a run, a logged model, an experiment name or an artifact path)
and the level needed; ``after`` says what follows MLflow's answer (the creator becomes the
manager, grants follow a rename or a delete, search results are filtered).

:data:`ADMIN_ONLY` lists the routes the guard knows and does not govern yet (traces, datasets,
scorers, MLflow's AI gateway, webhooks, workspaces, jobs): only admins reach them. A route in
neither table is refused to everyone but admins, so a new MLflow route is closed until
someone decides about it (``tests/unit/api/test_mlflow_routes.py`` lists every route).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol
from urllib.parse import urlsplit

from modelport.errors import InvalidParameterValue, PermissionDenied
from modelport.spec.registry_permissions import DEFAULT_EXPERIMENT_ID, RegistryLevel, RegistryObject

__all__ = [
    "ADMIN_ONLY",
    "PROMPT_SOURCE",
    "RULES",
    "After",
    "Need",
    "Rule",
    "Target",
    "artifact_experiment",
    "source_of",
]

READ, EDIT, MANAGE = RegistryLevel.CAN_READ, RegistryLevel.CAN_EDIT, RegistryLevel.CAN_MANAGE
MODEL, EXPERIMENT = RegistryObject.REGISTERED_MODEL, RegistryObject.EXPERIMENT
#: The ``source`` MLflow's prompt registry gives every prompt version (``mlflow.genai.register_prompt``;
#: ``mlflow.prompt.constants._STORE_PROMPT_SOURCE_PLACEHOLDER``): it names no files.
PROMPT_SOURCE = "prompt-template"


@dataclass(frozen=True)
class Need:
    kind: RegistryObject
    object_id: str
    level: RegistryLevel


class Target(Protocol):
    """What a locator reads: the request as MLflow's handler will parse it, and lookups in
    MLflow's stores (None when the object does not exist: MLflow answers 404 itself)."""

    def value(self, name: str) -> str: ...
    def values(self, name: str) -> list[str]: ...
    def path_arg(self, name: str) -> str: ...
    def experiment_of_run(self, run_id: str) -> str | None: ...
    def experiment_of_logged_model(self, model_id: str) -> str | None: ...
    def experiment_named(self, name: str) -> str | None: ...


Locate = Callable[[Target], list[Need]]


class After(Enum):
    """What the guard does with MLflow's answer (a 200 only)."""

    OWN_MODEL = "own-model"  # registered-models/create: the caller manages the new model
    OWN_EXPERIMENT = "own-experiment"
    RENAME_MODEL = "rename-model"  # grants follow the model to its new name
    DROP_MODEL = "drop-model"
    FILTER_MODELS = "filter-models"  # keep what the caller may read
    FILTER_VERSIONS = "filter-versions"
    FILTER_EXPERIMENTS = "filter-experiments"
    FILTER_RUNS = "filter-runs"
    FILTER_LOGGED_MODELS = "filter-logged-models"


@dataclass(frozen=True)
class Rule:
    """``needs``: every object found must be held at its level by the caller (no locator:
    any authenticated user). ``body``: the ids are read from the request body, which the
    guard then buffers and replays; False for routes decided by path and query alone
    (artifact uploads stream through)."""

    needs: tuple[Locate, ...] = ()
    after: After | None = None
    body: bool = True


# ---- locators -----------------------------------------------------------------------------
def model(field: str, level: RegistryLevel) -> Locate:
    return lambda t: [Need(MODEL, t.value(field), level)]


def experiment(field: str, level: RegistryLevel, *, default: str | None = None) -> Locate:
    def locate(t: Target) -> list[Need]:
        found = t.value(field) or default
        return [Need(EXPERIMENT, found, level)] if found else []

    return locate


def experiments(field: str, level: RegistryLevel) -> Locate:
    return lambda t: [Need(EXPERIMENT, e, level) for e in dict.fromkeys(t.values(field))]


def _of_run(t: Target, run_id: str, level: RegistryLevel) -> list[Need]:
    found = t.experiment_of_run(run_id) if run_id else None
    return [Need(EXPERIMENT, found, level)] if found is not None else []


def run(level: RegistryLevel, *fields: str) -> Locate:
    """A run named by the first of ``fields`` that is set (MLflow reads ``run_id or run_uuid``)."""
    names = fields or ("run_id", "run_uuid")

    def locate(t: Target) -> list[Need]:
        run_id = next((v for v in (t.value(n) for n in names) if v), "")
        return _of_run(t, run_id, level)

    return locate


def runs(field: str, level: RegistryLevel) -> Locate:
    return lambda t: [n for r in dict.fromkeys(t.values(field)) for n in _of_run(t, r, level)]


def _of_logged_model(t: Target, model_id: str, level: RegistryLevel) -> list[Need]:
    found = t.experiment_of_logged_model(model_id) if model_id else None
    return [Need(EXPERIMENT, found, level)] if found is not None else []


def logged_model(level: RegistryLevel, *, field: str | None = None) -> Locate:
    """A logged model by its id in the path (``<model_id>``) or in a field."""
    return lambda t: _of_logged_model(t, t.value(field) if field else t.path_arg("model_id"), level)


def experiment_by_name(field: str, level: RegistryLevel) -> Locate:
    def locate(t: Target) -> list[Need]:
        found = t.experiment_named(t.value(field))
        return [Need(EXPERIMENT, found, level)] if found is not None else []

    return locate


def artifact_experiment(path: str) -> str:
    """The experiment owning a path of the proxied artifact store (``<experiment id>/...``:
    MLflow puts each experiment's artifacts under its id)."""
    parts = path.replace("\\", "/").split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or not parts[0].isdecimal():
        raise PermissionDenied(
            f"Artifact path '{path}' is not inside an experiment's folder (<experiment id>/...); "
            "only admins may reach it."
        )
    return parts[0]


def artifact_path(level: RegistryLevel, *, field: str | None = None) -> Locate:
    def locate(t: Target) -> list[Need]:
        path = t.value(field) if field else t.path_arg("artifact_path")
        return [Need(EXPERIMENT, artifact_experiment(path), level)]

    return locate


def source_of(uri: str, t: Target) -> list[Need]:
    """What a model version's ``source`` reads: the caller must be able to read it too."""
    if not uri or uri == PROMPT_SOURCE:
        return []
    parts = urlsplit(uri)
    scheme, path = parts.scheme, parts.path.lstrip("/")
    if scheme == "mlflow-artifacts":
        return [Need(EXPERIMENT, artifact_experiment(path), READ)]
    if scheme == "runs":
        return _of_run(t, path.split("/", 1)[0], READ) or [Need(EXPERIMENT, f"(run of {uri})", READ)]
    if scheme == "models":
        head = path.split("/", 1)[0]
        found = t.experiment_of_logged_model(head)
        if found is not None:
            return [Need(EXPERIMENT, found, READ)]
        return [Need(MODEL, head.split("@", 1)[0], READ)]
    raise PermissionDenied(
        f"Only admins may register a version from '{uri}': use a runs:/, models:/ or mlflow-artifacts:/ URI."
    )


def version_sources(t: Target) -> list[Need]:
    needs = run(READ, "run_id")(t) + logged_model(READ, field="model_id")(t)
    return needs + source_of(t.value("source"), t)


def no_artifact_location(t: Target) -> list[Need]:
    if t.value("artifact_location"):
        raise PermissionDenied(
            "Only admins may choose an experiment's artifact_location; leave it out and MLflow "
            "stores the experiment's artifacts under its id."
        )
    return []


def nonempty_path(t: Target) -> list[Need]:
    if not t.value("path"):
        raise InvalidParameterValue(
            "Give 'path' (<experiment id>/...): only admins may list the artifact root."
        )
    return artifact_path(READ, field="path")(t)


def _rule(*needs: Locate, after: After | None = None, body: bool = True) -> Rule:
    return Rule(tuple(needs), after, body)


ANYONE = _rule()
_EXP = "experiment_id"

RULES: dict[str, Rule] = {
    # ---- registered models and versions (model registry service) -------------------------
    "_create_registered_model": _rule(after=After.OWN_MODEL),
    "_get_registered_model": _rule(model("name", READ)),
    "_search_registered_models": _rule(after=After.FILTER_MODELS),
    "_get_latest_versions": _rule(model("name", READ)),
    "_update_registered_model": _rule(model("name", EDIT)),
    "_rename_registered_model": _rule(model("name", MANAGE), after=After.RENAME_MODEL),
    "_delete_registered_model": _rule(model("name", MANAGE), after=After.DROP_MODEL),
    "_set_registered_model_tag": _rule(model("name", EDIT)),
    "_delete_registered_model_tag": _rule(model("name", EDIT)),
    "_set_registered_model_alias": _rule(model("name", EDIT)),
    "_delete_registered_model_alias": _rule(model("name", EDIT)),
    "_get_model_version_by_alias": _rule(model("name", READ)),
    "_create_model_version": _rule(model("name", EDIT), version_sources),
    "_get_model_version": _rule(model("name", READ)),
    "_search_model_versions": _rule(after=After.FILTER_VERSIONS),
    "_update_model_version": _rule(model("name", EDIT)),
    "_transition_stage": _rule(model("name", EDIT)),
    "_delete_model_version": _rule(model("name", MANAGE)),
    "_set_model_version_tag": _rule(model("name", EDIT)),
    "_delete_model_version_tag": _rule(model("name", EDIT)),
    "_get_model_version_download_uri": _rule(model("name", READ)),
    "serve_model_version_artifact": _rule(model("name", READ), body=False),
    # ---- experiments ----------------------------------------------------------------------
    "_create_experiment": _rule(no_artifact_location, after=After.OWN_EXPERIMENT),
    "_get_experiment": _rule(experiment(_EXP, READ)),
    "_get_experiment_by_name": _rule(experiment_by_name("experiment_name", READ)),
    "_search_experiments": _rule(after=After.FILTER_EXPERIMENTS),
    "_update_experiment": _rule(experiment(_EXP, EDIT)),
    "_set_experiment_tag": _rule(experiment(_EXP, EDIT)),
    "_delete_experiment_tag": _rule(experiment(_EXP, EDIT)),
    "_delete_experiment": _rule(experiment(_EXP, MANAGE)),
    "_restore_experiment": _rule(experiment(_EXP, MANAGE)),
    # ---- runs (through their experiment) --------------------------------------------------
    "_create_run": _rule(experiment(_EXP, EDIT, default=DEFAULT_EXPERIMENT_ID)),
    "_get_run": _rule(run(READ)),
    "_search_runs": _rule(experiments("experiment_ids", READ), after=After.FILTER_RUNS),
    "_update_run": _rule(run(EDIT)),
    "_delete_run": _rule(run(MANAGE)),
    "_restore_run": _rule(run(MANAGE)),
    "_log_param": _rule(run(EDIT)),
    "_log_metric": _rule(run(EDIT)),
    "_log_batch": _rule(run(EDIT)),
    "_log_model": _rule(run(EDIT)),
    "_log_inputs": _rule(run(EDIT)),
    "_log_outputs": _rule(run(EDIT)),
    "_set_tag": _rule(run(EDIT)),
    "_delete_tag": _rule(run(EDIT)),
    "_get_metric_history": _rule(run(READ)),
    "get_metric_history_bulk_interval_handler": _rule(runs("run_ids", READ)),
    "serve_get_metric_history_bulk_interval": _rule(runs("run_ids", READ)),
    "serve_get_metric_history_bulk": _rule(runs("run_id", READ), body=False),
    "_list_artifacts": _rule(run(READ)),
    "serve_artifacts": _rule(run(READ), body=False),
    "serve_upload_artifact": _rule(run(EDIT, "run_uuid"), body=False),
    "serve_search_datasets": _rule(experiments("experiment_ids", READ)),
    # ---- logged models (through their experiment) -----------------------------------------
    "_create_logged_model": _rule(experiment(_EXP, EDIT), run(READ, "source_run_id")),
    "_get_logged_model": _rule(logged_model(READ)),
    "_finalize_logged_model": _rule(logged_model(EDIT)),
    "_delete_logged_model": _rule(logged_model(MANAGE)),
    "_set_logged_model_tags": _rule(logged_model(EDIT)),
    "_delete_logged_model_tag": _rule(logged_model(EDIT)),
    "_log_logged_model_params": _rule(logged_model(EDIT)),
    "_list_logged_model_artifacts": _rule(logged_model(READ)),
    "serve_get_logged_model_artifact": _rule(logged_model(READ), body=False),
    "_search_logged_models": _rule(experiments("experiment_ids", READ), after=After.FILTER_LOGGED_MODELS),
    # ---- the artifact proxy (by path: <experiment id>/...) --------------------------------
    "_download_artifact": _rule(artifact_path(READ), body=False),
    "_upload_artifact": _rule(artifact_path(EDIT), body=False),
    "_delete_artifact_mlflow_artifacts": _rule(artifact_path(EDIT), body=False),
    "_list_artifacts_mlflow_artifacts": _rule(nonempty_path),
    "_create_multipart_upload_artifact": _rule(artifact_path(EDIT), body=False),
    "_complete_multipart_upload_artifact": _rule(artifact_path(EDIT), body=False),
    "_abort_multipart_upload_artifact": _rule(artifact_path(EDIT), body=False),
    # ---- no object -----------------------------------------------------------------------
    "version": ANYONE,
    "_get_server_info": ANYONE,
    "_not_implemented": ANYONE,  # MLflow answers 404
    # every field decided inside MLflow by api/mlflow_graphql.py; the body streams through
    "_graphql": _rule(body=False),
}

ADMIN_ONLY: frozenset[str] = frozenset(
    {
        # presigned URLs would hand out the artifact store without a path check
        "_get_presigned_download_url",
        "_create_presigned_download_url",
        "_create_presigned_upload_url",
        # traces, assessments, issues, label schemas, review queues
        "_deprecated_start_trace_v2",
        "_deprecated_search_traces_v2",
        "_deprecated_end_trace_v2",
        "_deprecated_get_trace_info_v2",
        "_set_trace_tag",
        "_delete_trace_tag",
        "_delete_traces",
        "_link_prompts_to_trace",
        "_link_traces_to_run",
        "_start_trace_v3",
        "_get_trace_info_v3",
        "_get_trace",
        "_batch_get_traces",
        "_batch_get_trace_infos",
        "_search_traces_v3",
        "_set_trace_tag_v3",
        "_delete_trace_tag_v3",
        "_calculate_trace_filter_correlation",
        "_query_trace_metrics",
        "_create_assessment",
        "_get_assessment",
        "_update_assessment",
        "_delete_assessment",
        "serve_get_trace_artifact",
        "_create_issue",
        "_update_issue",
        "_get_issue",
        "_search_issues",
        "_invoke_issue_detection_handler",
        "_create_label_schema",
        "_delete_label_schema",
        "_get_label_schema",
        "_get_label_schema_by_name",
        "_list_label_schemas",
        "_update_label_schema",
        "_create_review_queue",
        "_delete_review_queue",
        "_get_review_queue",
        "_get_review_queue_by_name",
        "_get_or_create_user_queue",
        "_add_items_to_review_queue",
        "_list_review_queue_items",
        "_remove_items_from_review_queue",
        "_set_review_queue_item_status",
        "_list_review_queues",
        "_update_review_queue",
        # evaluation datasets, scorers, prompt optimization, evaluation jobs
        "_create_dataset_handler",
        "_get_dataset_handler",
        "_delete_dataset_handler",
        "_search_evaluation_datasets_handler",
        "_add_dataset_to_experiments_handler",
        "_remove_dataset_from_experiments_handler",
        "_get_dataset_experiment_ids_handler",
        "_upsert_dataset_records_handler",
        "_get_dataset_records_handler",
        "_delete_dataset_records_handler",
        "_set_dataset_tags_handler",
        "_delete_dataset_tag_handler",
        "_register_scorer",
        "_list_scorers",
        "_list_scorer_versions",
        "_get_scorer",
        "_delete_scorer",
        "_upsert_online_scoring_config",
        "_get_online_scoring_configs",
        "_invoke_scorer_handler",
        "_invoke_genai_evaluate_handler",
        "_create_prompt_optimization_job",
        "_get_prompt_optimization_job",
        "_delete_prompt_optimization_job",
        "_cancel_prompt_optimization_job",
        "_search_prompt_optimization_jobs",
        "_get_job",
        "_cancel_job",
        "serve_create_promptlab_run",
        # MLflow's AI gateway (modelport serves its own), webhooks, workspaces, demo data, UI
        "serve_gateway_proxy",
        "_add_guardrail_to_endpoint",
        "_attach_model_to_gateway_endpoint",
        "_create_budget_policy",
        "_create_gateway_endpoint",
        "_create_gateway_endpoint_binding",
        "_create_gateway_guardrail",
        "_create_gateway_model_definition",
        "_create_gateway_secret",
        "_delete_budget_policy",
        "_delete_gateway_endpoint",
        "_delete_gateway_endpoint_binding",
        "_delete_gateway_endpoint_tag",
        "_delete_gateway_guardrail",
        "_delete_gateway_model_definition",
        "_delete_gateway_secret",
        "_detach_model_from_gateway_endpoint",
        "_get_budget_policy",
        "_get_gateway_endpoint",
        "_get_gateway_guardrail",
        "_get_gateway_model_definition",
        "_get_gateway_secret_info",
        "_list_budget_policies",
        "_list_budget_windows",
        "_list_endpoint_guardrail_configs",
        "_list_gateway_endpoint_bindings",
        "_list_gateway_endpoints",
        "_list_gateway_guardrails",
        "_list_gateway_model_definitions",
        "_list_gateway_secrets",
        "_remove_guardrail_from_endpoint",
        "_set_gateway_endpoint_tag",
        "_update_budget_policy",
        "_update_endpoint_guardrail_config",
        "_update_gateway_endpoint",
        "_update_gateway_model_definition",
        "_update_gateway_secret",
        "_get_provider_config",
        "_get_secrets_config",
        "_list_supported_models",
        "_list_supported_providers",
        "_create_webhook",
        "_list_webhooks",
        "_get_webhook",
        "_update_webhook",
        "_delete_webhook",
        "_test_webhook",
        "_list_workspaces_handler",
        "_create_workspace_handler",
        "_get_workspace_handler",
        "_update_workspace_handler",
        "_delete_workspace_handler",
        "_generate_demo",
        "_delete_demo",
        "serve_get_ui_telemetry",
        "serve_post_ui_telemetry",
    }
)
