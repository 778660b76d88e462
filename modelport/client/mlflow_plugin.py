"""The MLflow deployments plugin: ``mlflow.deployments.get_deploy_client("modelport")``.

Registered under the ``mlflow.deployments`` entry point ``modelport``. MLflow requires
the module to define ``run_local``, ``target_help`` and exactly one subclass of
``BaseDeploymentClient``; that is all this module holds.

The endpoint methods take the same arguments and return the same attribute-dicts as
MLflow's ``databricks`` target, so code written for it runs unchanged. The
deployment-style methods map one deployment onto one endpoint of the same name that
serves one registered model version (``models:/<name>/<version>``). Every call goes
through :class:`~modelport.client.sdk.ModelportClient` with the server and token taken
from ``MODELPORT_HOST`` and ``MODELPORT_TOKEN``; errors leave as ``MlflowException``
carrying the server's ``error_code``.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlflow.deployments import BaseDeploymentClient, PredictionsResponse
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, ErrorCode
from mlflow.utils import AttrDict

from modelport.client.sdk import ModelportClient
from modelport.errors import DeadlineExceeded, InvalidParameterValue, ModelportError

__all__ = ["ModelportDeploymentClient", "run_local", "target_help"]

#: ServedEntityInput fields a deployment ``config`` may set on its served entity.
_ENTITY_OPTIONS = frozenset(
    {
        "name",
        "workload_size",
        "workload_type",
        "scale_to_zero_enabled",
        "min_provisioned_concurrency",
        "max_provisioned_concurrency",
        "min_provisioned_throughput",
        "max_provisioned_throughput",
        "provisioned_model_units",
        "burst_scaling_enabled",
        "environment_vars",
        "instance_profile_arn",
    }
)
_ENTITY_INPUT_FIELDS = _ENTITY_OPTIONS | {"entity_name", "entity_version", "external_model"}
_PYFUNC_FLAVORS = {None, "python_function", "pyfunc"}


def target_help() -> str:
    """Help shown by ``mlflow deployments help -t modelport``."""
    options = textwrap.fill(
        ", ".join(sorted(_ENTITY_OPTIONS)), width=88, initial_indent="  ", subsequent_indent="  "
    )
    return f"""\
Target URI: "modelport". The server is MODELPORT_HOST (default http://127.0.0.1:8080) and
the token MODELPORT_TOKEN.

Endpoints (same arguments as the "databricks" target):
  create_endpoint(config={{"name": ..., "config": {{"served_entities": [...]}}}})
  update_endpoint_config(endpoint, config), update_endpoint_tags, update_endpoint_rate_limits,
  update_endpoint_ai_gateway, get_endpoint, list_endpoints, delete_endpoint,
  predict(endpoint=..., inputs={{...}})

Deployments: one deployment is one endpoint of the same name serving one registered model
version. model_uri must be "models:/<registered model>/<version>"; flavor must be
python_function (or None). config may set these served-entity fields:
{options}
create_deployment and update_deployment wait until the config update has finished.
"""


def run_local(
    name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None
) -> None:
    """Deploy on the modelport server at MODELPORT_HOST (by default the local one) and wait."""
    ModelportDeploymentClient("modelport").create_deployment(name, model_uri, flavor, config)


@contextmanager
def _mlflow_errors() -> Iterator[None]:
    """Translate modelport errors into ``MlflowException`` with the same error code."""
    try:
        yield
    except ModelportError as exc:
        try:
            code = ErrorCode.Value(exc.error_code)
        except ValueError:
            code = INTERNAL_ERROR
        raise MlflowException(exc.message, error_code=code) from exc
    except TimeoutError as exc:
        raise MlflowException(str(exc), error_code=ErrorCode.Value(DeadlineExceeded.error_code)) from exc


def _served_entity(model_uri: str, flavor: str | None, config: dict[str, Any] | None) -> dict[str, Any]:
    if flavor not in _PYFUNC_FLAVORS:
        raise InvalidParameterValue(f"modelport serves the python_function flavor, not {flavor!r}")
    prefix = "models:/"
    model, _, version = model_uri.removeprefix(prefix).rpartition("/")
    if not model_uri.startswith(prefix) or not model or not version.isdecimal():
        raise InvalidParameterValue(
            f"model_uri must be models:/<registered model>/<version>, got {model_uri!r}; "
            "register the model first"
        )
    entity: dict[str, Any] = {
        "entity_name": model,
        "entity_version": version,
        "workload_size": "Small",
        "scale_to_zero_enabled": False,
    }
    entity.update(_entity_options(config))
    return entity


def _entity_options(config: dict[str, Any] | None) -> dict[str, Any]:
    unknown = sorted(set(config or {}) - _ENTITY_OPTIONS)
    if unknown:
        raise InvalidParameterValue(
            f"unknown deployment config keys {unknown}; allowed: {sorted(_ENTITY_OPTIONS)}"
        )
    return dict(config or {})


def _check_same(name: str, endpoint: str | None) -> None:
    if endpoint is not None and endpoint != name:
        raise InvalidParameterValue(
            f"a modelport deployment is the endpoint of the same name; got deployment {name!r} "
            f"and endpoint {endpoint!r}"
        )


class ModelportDeploymentClient(BaseDeploymentClient):
    """Endpoints and deployments on a modelport server.

    Holds no connection: each call opens a :class:`ModelportClient` (reading
    ``MODELPORT_HOST``/``MODELPORT_TOKEN`` then) and closes it before returning.
    """

    def __init__(self, target_uri: str = "modelport") -> None:
        super().__init__(target_uri)  # type: ignore[no-untyped-call]

    @contextmanager
    def _session(self) -> Iterator[ModelportClient]:
        with _mlflow_errors(), ModelportClient() as client:
            yield client

    # ---- endpoints (the "databricks" target's surface) ------------------------------------
    def create_endpoint(
        self, name: str | None = None, config: dict[str, Any] | None = None, route_optimized: bool = False
    ) -> AttrDict:
        """Create an endpoint from the full CreateEndpoint body, or from ``name`` plus its core config."""
        if config and "config" in config:
            payload = dict(config)
            if name is not None and payload.setdefault("name", name) != name:
                raise MlflowException(f"name mismatch: {name!r} given, {payload['name']!r} in config")
        else:
            core = dict(config or {})
            extras = {key: core.pop(key) for key in ("tags", "rate_limits") if core.get(key)}
            payload = {"name": name, "config": core, "route_optimized": route_optimized, **extras}
        with self._session() as client:
            return AttrDict(client.create_endpoint(payload))

    def update_endpoint(self, endpoint: str, config: dict[str, Any] | None = None) -> AttrDict:
        """Rate limits alone go to ``/rate-limits``, anything else is a config update."""
        config = dict(config or {})
        if list(config) == ["rate_limits"]:
            return self.update_endpoint_rate_limits(endpoint, config)
        return self.update_endpoint_config(endpoint, config)

    def update_endpoint_config(self, endpoint: str, config: dict[str, Any]) -> AttrDict:
        with self._session() as client:
            return AttrDict(client.update_config(endpoint, config))

    def update_endpoint_tags(self, endpoint: str, config: dict[str, Any]) -> AttrDict:
        with self._session() as client:
            return AttrDict(client.patch_tags(endpoint, config.get("add_tags"), config.get("delete_tags")))

    def update_endpoint_rate_limits(self, endpoint: str, config: dict[str, Any]) -> AttrDict:
        with self._session() as client:
            return AttrDict(client.put_rate_limits(endpoint, config.get("rate_limits", [])))

    def update_endpoint_ai_gateway(self, endpoint: str, config: dict[str, Any]) -> AttrDict:
        with self._session() as client:
            return AttrDict(client.put_ai_gateway(endpoint, config))

    def delete_endpoint(self, endpoint: str) -> AttrDict:
        with self._session() as client:
            return AttrDict(client.delete_endpoint(endpoint))

    def list_endpoints(self) -> list[AttrDict]:
        with self._session() as client:
            return [AttrDict(ep) for ep in client.list_endpoints()]

    def get_endpoint(self, endpoint: str) -> AttrDict:
        with self._session() as client:
            return AttrDict(client.get_endpoint(endpoint))

    def predict(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> PredictionsResponse:
        """Query an endpoint; ``inputs`` is a request dict or a pandas DataFrame (sent split)."""
        target = endpoint or deployment_name
        if not target:
            raise MlflowException("predict needs an endpoint (or deployment_name)")
        if hasattr(inputs, "to_json") and hasattr(inputs, "columns"):
            inputs = {"dataframe_split": json.loads(inputs.to_json(orient="split"))}
        if not isinstance(inputs, dict):
            raise MlflowException("inputs must be a dict (the request body) or a pandas DataFrame")
        with self._session() as client:
            return PredictionsResponse(client.query(target, inputs))

    # ---- deployments: one deployment = one endpoint serving one model version ---------------
    def create_deployment(
        self,
        name: str,
        model_uri: str,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> AttrDict:
        """Create endpoint ``name`` serving ``model_uri`` and wait until its update has settled."""
        with self._session() as client:
            _check_same(name, endpoint)
            entity = _served_entity(model_uri, flavor, config)
            client.create_endpoint({"name": name, "config": {"served_entities": [entity]}})
            return AttrDict(client.wait_for_update(name))

    def update_deployment(
        self,
        name: str,
        model_uri: str | None = None,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> AttrDict:
        """Serve ``model_uri`` instead, or change the served entities' settings; then wait."""
        with self._session() as client:
            _check_same(name, endpoint)
            if model_uri is not None:
                core: dict[str, Any] = {"served_entities": [_served_entity(model_uri, flavor, config)]}
            else:
                options = _entity_options(config)
                current = client.get_endpoint(name).get("config") or {}
                entities = [
                    {**{k: v for k, v in entity.items() if k in _ENTITY_INPUT_FIELDS}, **options}
                    for entity in current.get("served_entities") or []
                ]
                core = {"served_entities": entities}
                if current.get("traffic_config"):
                    core["traffic_config"] = current["traffic_config"]
            client.update_config(name, core)
            return AttrDict(client.wait_for_update(name))

    def delete_deployment(
        self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None
    ) -> None:
        with self._session() as client:
            _check_same(name, endpoint)
            client.delete_endpoint(name)

    def list_deployments(self, endpoint: str | None = None) -> list[AttrDict]:
        """Every endpoint, or only ``endpoint`` when given."""
        if endpoint is not None:
            return [self.get_endpoint(endpoint)]
        return self.list_endpoints()

    def get_deployment(self, name: str, endpoint: str | None = None) -> AttrDict:
        with self._session() as client:
            _check_same(name, endpoint)
            return AttrDict(client.get_endpoint(name))
