"""The one server the safe-rollouts tests share (``tests/rollouts/``: config history, shadow
traffic, comparison, replay, canaries, the event log).

The registered model ``ro-model`` has four versions of one pyfunc (:data:`BEHAVED`), each reading
its behaviour from its own control file on every prediction, so a test makes a version fail on
some inputs, slow down, hang or crash while it serves, without a new model:

    world.behave(3, fail_above=0.8)     # version 3 raises for rows whose x > 0.8
    world.behave(3, sleep_ms=300)       # version 3 answers 300 ms late
    world.behave(3, hang=True)          # version 3 answers nothing until its rule changes
    world.behave(3, crash=True)         # version 3's replica process exits
    world.behave(3, flip=True)          # version 3 answers the other label
    world.behave(3)                     # back to normal

A prediction of one row ``{"x": v}`` is ``{"label": int(v > 0.5), "score": v}``. Each test makes
its own endpoints (``world.endpoint(...)``; names carry the test's prefix) so tests never share
traffic; the server flushes its tables every second (``--tables-flush-seconds 1``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.principals import create_user, obo_token

__all__ = ["MODEL", "VERSIONS", "World", "entity", "started_world"]

MODEL = "ro-model"
VERSIONS = (1, 2, 3, 4)

BEHAVED = """
import json, os, time
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

CONTROL = Path({control!r})


class Behaved(PythonModel):
    def predict(self, context, model_input, params=None):
        try:
            rule = json.loads(CONTROL.read_text())
        except (OSError, ValueError):
            rule = {{}}
        if rule.get("crash"):
            os._exit(3)
        while rule.get("hang"):  # until the test changes the rule
            time.sleep(0.1)
            try:
                rule = json.loads(CONTROL.read_text())
            except (OSError, ValueError):
                rule = {{}}
        if rule.get("sleep_ms"):
            time.sleep(rule["sleep_ms"] / 1000)
        xs = [float(v) for v in model_input["x"]]
        above = rule.get("fail_above")
        if above is not None and any(v > above for v in xs):
            raise ValueError(f"x above {{above}}")
        flip = 1 if rule.get("flip") else 0
        return pd.DataFrame({{"label": [int(v > 0.5) ^ flip for v in xs], "score": xs}})


mlflow.models.set_model(Behaved())
"""


def entity(version: int, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """A served entity of ``ro-model`` version ``version`` (named ``v<version>`` by default)."""
    return {
        "name": name or f"v{version}",
        "entity_name": MODEL,
        "entity_version": str(version),
        "workload_size": "Small",
        "scale_to_zero_enabled": False,
        **extra,
    }


@dataclass
class World:
    server: ServerProcess
    admin: httpx.Client
    alice: httpx.Client  # a user with no permission on any endpoint
    alice_token: str
    controls: Path

    @property
    def tables(self) -> Path:
        return self.server.data_dir / "tables"

    def behave(self, version: int, **rule: Any) -> None:
        """Set how version ``version`` of ``ro-model`` answers from its next prediction on."""
        path = self.controls / f"v{version}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rule))
        tmp.replace(path)

    def endpoint(
        self,
        name: str,
        entities: list[dict[str, Any]],
        *,
        traffic: dict[str, int] | None = None,
        inference_table: bool = True,
        extra_config: dict[str, Any] | None = None,
        timeout: float = 180,
    ) -> dict[str, Any]:
        """Create endpoint ``name`` (an inference table ``ro.<name>`` by default), wait until it serves."""
        config: dict[str, Any] = {"served_entities": entities, **(extra_config or {})}
        if traffic is not None:
            config["traffic_config"] = {
                "routes": [{"served_entity_name": k, "traffic_percentage": v} for k, v in traffic.items()]
            }
        body: dict[str, Any] = {"name": name, "config": config}
        if inference_table:
            body["ai_gateway"] = {
                "inference_table_config": {
                    "enabled": True,
                    "catalog_name": "main",
                    "schema_name": "ro",
                    "table_name_prefix": name.replace("-", "_"),
                },
                "usage_tracking_config": {"enabled": True},
            }
        r = self.admin.post("/api/2.0/serving-endpoints", json=body)
        assert r.status_code == 200, r.text
        got = wait_settled(self.admin, name, timeout=timeout, poll=0.2)
        assert got["state"]["config_update"] == "NOT_UPDATING", got
        return got

    def query(self, name: str, x: float, *, client: httpx.Client | None = None) -> httpx.Response:
        return (client or self.admin).post(
            f"/serving-endpoints/{name}/invocations", json={"dataframe_records": [{"x": x}]}
        )

    def payload_table(self, name: str) -> Path:
        """The folder of endpoint ``name``'s inference table (Delta)."""
        return self.tables / "main" / "ro" / f"{name.replace('-', '_')}_payload"

    def wait_rows(self, name: str, count: int, timeout: float = 30.0, **where: Any) -> list[dict[str, Any]]:
        """The inference rows of ``name`` once at least ``count`` match ``where`` (column == value)."""
        from tests.support.tables import wait_rows

        return wait_rows(self.payload_table(name), count, timeout, **where)


def _register_versions(server: ServerProcess, controls: Path) -> None:
    import os

    import mlflow
    import pandas as pd

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(server.url)
    for version in VERSIONS:
        code = controls / f"behaved_v{version}.py"
        code.write_text(BEHAVED.format(control=str(controls / f"v{version}.json")))
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                registered_model_name=MODEL,
                input_example=pd.DataFrame({"x": [0.25]}),
                pip_requirements=["pandas"],
            )
        assert str(info.registered_model_version) == str(version)


def started_world(data_dir: Path) -> Iterator[World]:
    """The shared server, ``alice`` and the registered versions (a generator: the package fixture's body)."""
    controls = data_dir / "controls"
    controls.mkdir(parents=True)
    server = ServerProcess(data_dir, extra_args=["--tables-flush-seconds", "1"]).start()
    clients: list[httpx.Client] = []
    try:
        admin = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120
        )
        clients.append(admin)
        create_user(admin, "alice")
        alice_token = obo_token(admin, user_name="alice")["token_value"]
        alice = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {alice_token}"}, timeout=60
        )
        clients.append(alice)
        _register_versions(server, controls)
        yield World(server, admin, alice, alice_token, controls)
    finally:
        for c in clients:
            c.close()
        server.stop()
