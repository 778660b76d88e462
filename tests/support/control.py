"""The control plane over a fake deployment backend, for unit tests: an ``EndpointService`` and
its ``Reconciler`` on a real SQLite store in a temporary folder, and external-model configs
whose credentials become secrets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from modelport.control.cipher import SecretCipher
from modelport.control.endpoints import EndpointService
from modelport.control.permissions import AccessControl
from modelport.control.reconciler import Reconciler
from modelport.control.secrets import SecretService
from modelport.entities.registry import ModelVersionRef
from modelport.entities.registry_handle import RegistryHandle
from modelport.errors import ResourceDoesNotExist
from modelport.runtime.base import DeploymentFailed
from modelport.runtime.logs import BuildLog, LogStore
from modelport.spec.identity import Caller
from modelport.store import Database, open_database
from modelport.store.leases import RECONCILER_LEASE
from modelport.store.records import EndpointRecord

__all__ = [
    "ADMIN",
    "KEY",
    "FakeBackend",
    "FakeRegistry",
    "alice",
    "external",
    "run",
    "settle",
    "setup",
    "stored_block",
]


class FakeRegistry:
    versions = {"iris": ["1", "2"]}

    def lookup(self, name: str, version: str) -> ModelVersionRef:
        if name not in self.versions or version not in self.versions[name]:
            raise ResourceDoesNotExist(f"no {name} {version}")
        return ModelVersionRef(name, version)


class FakeBackend:
    """Deploys instantly, fails on entity names starting with 'bad', or waits on a gate."""

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.calls: list[tuple[str, Any]] = []
        self.deployed: set[str] = set()

    async def deploy(
        self,
        endpoint: EndpointRecord,
        version: int,
        entities: list[dict[str, Any]],
        logs: dict[str, BuildLog],
    ) -> list[dict[str, Any]]:
        self.calls.append(("deploy", version))
        self.deployed.add(endpoint.id)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        for e in entities:
            if e["name"].startswith("bad"):
                raise DeploymentFailed(e["name"], "model failed to load: boom")
        return entities

    async def abort(self, endpoint_id: str, version: int) -> None:
        self.calls.append(("abort", version))

    async def retire(self, endpoint_id: str, serving_version: int) -> None:
        self.calls.append(("retire", serving_version))

    async def remove(self, endpoint_id: str) -> None:
        self.calls.append(("remove", None))
        self.deployed.discard(endpoint_id)

    async def restore(
        self,
        endpoint: EndpointRecord,
        version: int,
        entities: list[dict[str, Any]],
        logs: dict[str, BuildLog],
    ) -> None:
        self.calls.append(("restore", version))
        self.deployed.add(endpoint.id)

    async def remove_all(self) -> None:
        self.calls.append(("remove_all", None))
        self.deployed.clear()

    def endpoint_ids(self) -> list[str]:
        return sorted(self.deployed)

    def replica_set(self, endpoint_id: str, version: int, entity: str) -> None:
        return None


ADMIN = Caller(id=1, name="admin", kind="user", groups=("admins",), principal_ids=frozenset({1}))


def setup(
    tmp_path: Path, db: Database | None = None
) -> tuple[Database, FakeBackend, Reconciler, EndpointService]:
    db = db or open_database(f"sqlite:///{tmp_path / 'm.db'}")
    if db.principals.get("admin") is None:
        db.principals.create("admin", "user", display_name=None, is_admin=True, now_ms=1)
    backend = FakeBackend()
    logs = LogStore(tmp_path / "logs")
    reconciler = Reconciler(db, backend, logs)
    registry = RegistryHandle()
    registry.set(FakeRegistry())  # type: ignore[arg-type]
    secrets = SecretService(db, SecretCipher([Fernet.generate_key()]))
    service = EndpointService(db, AccessControl(db), reconciler, logs, registry, secrets=secrets)
    return db, backend, reconciler, service


async def lead(reconciler: Reconciler) -> int:
    """Start the reconciler and make it lead, under a real lease of its store (its writes are
    fenced by that lease's epoch, as in a server)."""
    await reconciler.start()
    lease = reconciler.db.leases.acquire_or_renew(RECONCILER_LEASE, "tests:0:lead", 3600)
    assert lease is not None, "another holder has the reconciler's lease"
    await reconciler.lead(lease.epoch)
    return lease.epoch


async def settle(reconciler: Reconciler) -> None:
    await asyncio.sleep(0)
    await reconciler.idle()


# ---- external-model configs whose credentials become secrets ------------------------------------
KEY = "sk-endpoint-unit-7f3a9c"


def external(openai_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "served_entities": [
            {
                "name": "chat",
                "external_model": {
                    "provider": "openai",
                    "name": "gpt",
                    "task": "llm/v1/chat",
                    "openai_config": openai_config,
                },
            }
        ]
    }


def stored_block(db: Database, version: int = 1) -> dict[str, Any]:
    endpoint = db.endpoints.get("ext")
    assert endpoint is not None
    config = db.endpoints.get_config(endpoint.id, version)
    assert config is not None
    block: dict[str, Any] = config.body["served_entities"][0]["external_model"]["openai_config"]
    return block


def alice(db: Database) -> Caller:
    record = db.principals.create("alice", "user", display_name=None, is_admin=False, now_ms=1)
    return Caller(id=record.id, name="alice", kind="user", groups=(), principal_ids=frozenset({record.id}))


def run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        db, _, reconciler, service = setup(tmp_path)
        await lead(reconciler)
        await body(db, reconciler, service)

    asyncio.run(main())
