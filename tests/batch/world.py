"""The one server the batch-inference tests share (``tests/batch/``: ``ai_query`` in SQL, bulk
jobs on tables, the Spark UDF): an external chat and an embeddings endpoint in front of the
OpenAI fake, a custom model (the tiny sklearn classifier) with usage tracking, and ``alice``, who
may query none of them. The package runs on one pytest worker (``tests/support/parallel.py``),
so the endpoints are made once for all its modules; each module's usage checks filter on what
its own requests carry (``usage_context``, a job id).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.models import log_sklearn_model
from tests.support.principals import create_user, obo_token

__all__ = ["CHAT", "CLASSIFIER", "EMBED", "MODEL", "World", "started_world"]

CHAT = "bt-chat"
EMBED = "bt-embed"
MODEL = "bt-model"
#: The registered model ``MODEL`` serves (version 1).
CLASSIFIER = "bt-clf"


@dataclass
class World:
    server: ServerProcess
    admin: httpx.Client
    alice: httpx.Client  # no permission on any endpoint
    alice_token: str
    fake: FakeOpenAI

    @property
    def tables(self) -> Path:
        return self.server.data_dir / "tables"


def external_endpoint(admin: httpx.Client, fake: FakeOpenAI, name: str, task: str) -> None:
    config = {"custom_provider_url": f"{fake.url}/v1", "bearer_token_auth": {"token_plaintext": API_KEY}}
    external = {"provider": "custom", "name": "llama-3", "task": task, "custom_provider_config": config}
    body = {
        "name": name,
        "config": {"served_entities": [{"name": "gpt", "external_model": external}]},
        "ai_gateway": {"usage_tracking_config": {"enabled": True}},
    }
    r = admin.post("/api/2.0/serving-endpoints", json=body)
    assert r.status_code == 200, r.text
    wait_settled(admin, name, timeout=60)


def started_world(data_dir: Path) -> Iterator[World]:
    """The shared server and its endpoints (a generator: the package fixture's body)."""
    fake = FakeOpenAI().start()
    server = ServerProcess(
        data_dir, env={"MODELPORT_AI_FUNCTIONS_ENDPOINT": CHAT, "MODELPORT_AI_SIMILARITY_ENDPOINT": EMBED}
    ).start()
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
        external_endpoint(admin, fake, CHAT, "llm/v1/chat")
        external_endpoint(admin, fake, EMBED, "llm/v1/embeddings")
        log_sklearn_model(server.url, ADMIN_TOKEN, CLASSIFIER)
        body = {
            "name": MODEL,
            "config": {"served_entities": [{"name": "v1", "entity_name": CLASSIFIER, "entity_version": "1"}]},
            "ai_gateway": {"usage_tracking_config": {"enabled": True}},
        }
        r = admin.post("/api/2.0/serving-endpoints", json=body)
        assert r.status_code == 200, r.text
        wait_settled(admin, MODEL, timeout=180)
        yield World(server, admin, alice, alice_token, fake)
    finally:
        for c in clients:
            c.close()
        server.stop()
        fake.stop()
