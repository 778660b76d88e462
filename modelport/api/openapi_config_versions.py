"""The config-history routes (``api/control/config_versions.py``) and the ``dry_run`` parameter of
create and config update, as the OpenAPI document describes them."""

from __future__ import annotations

from modelport.api.openapi_schemas import OBJECT, Operation, Param, Schema, array_of, obj, string
from modelport.control.config_history import DEFAULT_MAX_RESULTS, MAX_RESULTS_LIMIT

__all__ = ["DRY_RUN", "DRY_RUN_REPORT", "config_version_operations"]

_VERSIONS = "/api/2.0/serving-endpoints/{name}/config-versions"
_TAG = "serving-endpoints"
_VIEW, _MANAGE = "CAN_VIEW on the endpoint", "CAN_MANAGE on the endpoint"
_INT: Schema = {"type": "integer"}
_NULLABLE_INT: Schema = {"type": ["integer", "null"]}
_VERSION: Schema = {"type": "integer", "minimum": 1}

#: ``?dry_run=true`` on create and config update.
DRY_RUN = Param(
    "dry_run",
    string(enum=["true", "false", "1", "0"]),
    description="true: check everything the call checks and answer the dry-run report; nothing is written.",
)
_CHANGE = obj(
    {
        "path": string(
            "served_entities.<name>[.<field>...], traffic_config.<name>, shadow..., ai_gateway..."
        ),
        "change": string(enum=["added", "removed", "changed"]),
        "before": {},
        "after": {},
    },
    description="One changed field; credentials masked.",
)
#: What ``?dry_run=true`` answers.
DRY_RUN_REPORT = obj(
    {
        "dry_run": {"type": "boolean"},
        "valid": {"type": "boolean"},
        "config_version": _NULLABLE_INT,
        "next_config_version": _NULLABLE_INT,
        "diff": array_of(_CHANGE),
        "resolved": obj({}, description="Served entity name → what it resolves to now (model version)."),
        "rollout": {"type": ["object", "null"], "description": "The rollout plan of an update with one."},
    }
)
_ENTITY = obj(
    {
        "name": string(),
        "entity_name": string(),
        "entity_version": string(),
        "external_model": obj({"provider": string(), "name": string()}),
    }
)
_FIELDS: dict[str, Schema] = {
    "config_version": _INT,
    "status": string(enum=["PENDING", "ACTIVE", "FAILED", "CANCELED", "SUPERSEDED"]),
    "creator": string(),
    "creation_timestamp": _INT,
    "finished_timestamp": _NULLABLE_INT,
    "message": {"type": ["string", "null"]},
    "rolled_back_from": _NULLABLE_INT,
}
_SUMMARY = obj(
    {
        **_FIELDS,
        "served_entities": array_of(_ENTITY),
        "traffic_config": OBJECT,
        "shadow": {"type": ["object", "null"]},
        "rollout": {"type": ["object", "null"]},
    },
    description="One config version; status ACTIVE: the version that serves.",
)


def config_version_operations() -> list[Operation]:
    """The config-history operations."""
    return [
        Operation(
            "GET",
            _VERSIONS,
            "An endpoint's config versions, newest first: who made each, when, and what it serves.",
            _TAG,
            _VIEW,
            query=(
                Param(
                    "max_results",
                    {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS_LIMIT},
                    description=f"Default {DEFAULT_MAX_RESULTS}.",
                ),
                Param("page_token", string(), description="next_page_token of the previous page."),
            ),
            response=obj(
                {"config_versions": array_of(_SUMMARY), "next_page_token": {"type": ["string", "null"]}}
            ),
        ),
        Operation(
            "GET",
            f"{_VERSIONS}/{{version}}",
            "One config version in full: its config (credentials masked) and its AI-gateway settings.",
            _TAG,
            _VIEW,
            path_params={"version": _VERSION},
            response=obj({**_FIELDS, "config": OBJECT, "ai_gateway": {"type": ["object", "null"]}}),
        ),
        Operation(
            "POST",
            f"{_VERSIONS}/{{version}}/rollback",
            "Serve a config version again, as a new version through a zero-downtime update; its "
            "AI-gateway settings are restored with it.",
            _TAG,
            _MANAGE,
            body=obj({"reason": string("Why (kept in the event log); at most 1000 characters.")}),
            body_required=False,
            path_params={"version": _VERSION},
            response=obj(
                {
                    "rollback": obj(
                        {
                            "to_version": _INT,
                            "new_version": _INT,
                            "restored": array_of(string()),
                            "diff": array_of(_CHANGE),
                        }
                    )
                },
                description="The endpoint as GET shows it, plus rollback.",
            ),
        ),
    ]
