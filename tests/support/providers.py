"""Every external-provider fake, started once, and the endpoints in front of them.

The integration suite's session-scoped ``provider_server`` (``tests/integration/conftest.py``)
is one ``modelport serve`` whose ``MODELPORT_*_BASE_URL`` variables point at the fakes of
:class:`ProviderFakes` (see :meth:`ProviderFakes.env`), with :data:`EXTERNAL_TIMEOUT_S` as its
``--external-timeout``. It starts with the endpoints of :func:`provider_endpoints`: one per
provider, family and task that the Cohere, Vertex AI, PaLM, AI21, Anthropic and Bedrock fakes
offer. The OpenAI-family endpoints are made by ``test_external_models.py`` on the same server.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.fakes import anthropic_server, bedrock_server, cohere_server, vertex_server
from tests.fakes.ai21_server import FakeAI21
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.bedrock_server import FakeBedrock
from tests.fakes.cohere_server import FakeCohere
from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.fakes.vertex_server import FakeGoogle
from tests.support.endpoints import wait_settled

__all__ = [
    "EXTERNAL_TIMEOUT_S",
    "ProviderFakes",
    "bedrock_model",
    "create_external",
    "custom_chat_entity",
    "provider_endpoints",
]

API = "/api/2.0/serving-endpoints"
#: The provider server's ``--external-timeout``: short, so that a slow fake gives a 504 quickly.
EXTERNAL_TIMEOUT_S = 1


class ProviderFakes:
    """One loopback fake per provider API, started together."""

    def __init__(self) -> None:
        self.openai = FakeOpenAI().start()
        try:
            self.anthropic = FakeAnthropic().start()
            self.bedrock = FakeBedrock().start()
            self.cohere = FakeCohere().start()
            self.google = FakeGoogle().start()
            self.ai21 = FakeAI21().start()
        except BaseException:
            self.stop()
            raise

    def _all(self) -> list[Any]:
        names = ("openai", "anthropic", "bedrock", "cohere", "google", "ai21")
        return [getattr(self, name) for name in names if hasattr(self, name)]

    def env(self) -> dict[str, str]:
        """The server's environment: every provider's base URL pointed at its fake."""
        return {
            "MODELPORT_OPENAI_BASE_URL": f"{self.openai.url}/v1",
            "MODELPORT_ENTRA_BASE_URL": self.openai.url,
            "MODELPORT_ANTHROPIC_BASE_URL": self.anthropic.url,
            "MODELPORT_BEDROCK_BASE_URL": self.bedrock.url,
            "MODELPORT_COHERE_BASE_URL": self.cohere.url,
            "MODELPORT_VERTEX_BASE_URL": self.google.url,
            "MODELPORT_PALM_BASE_URL": self.google.url,
            "MODELPORT_AI21_BASE_URL": self.ai21.url,
        }

    def reset(self) -> None:
        """Forget recorded requests, faults and canned answers of every fake."""
        for fake in self._all():
            fake.reset()

    def stop(self) -> None:
        for fake in self._all():
            fake.stop()


AWS = {
    "aws_region": bedrock_server.REGION,
    "aws_access_key_id_plaintext": bedrock_server.ACCESS_KEY_ID,
    "aws_secret_access_key_plaintext": bedrock_server.SECRET_ACCESS_KEY,
}
CLAUDE = {"anthropic_config": {"anthropic_api_key_plaintext": anthropic_server.API_KEY}}


def bedrock_model(family: str, model: str, task: str, **aws: str) -> dict[str, Any]:
    """An ``amazon-bedrock`` external model of ``family`` with the fake's AWS credentials."""
    config = {**AWS, "bedrock_provider": family, **aws}
    return {"provider": "amazon-bedrock", "name": model, "task": task, "amazon_bedrock_config": config}


def provider_endpoints(fakes: ProviderFakes) -> dict[str, dict[str, Any]]:
    """Endpoint name -> external model, for every non-OpenAI provider and task."""
    vertex = {
        "project_id": "proj-1",
        "region": "us-central1",
        "private_key_plaintext": json.dumps(fakes.google.new_service_account()),
    }
    cohere = {"cohere_api_key_plaintext": cohere_server.API_KEY}
    palm = {"palm_api_key_plaintext": vertex_server.API_KEY}
    ai21 = {"ai21labs_api_key_plaintext": "ai21-test-key"}
    return {
        # Cohere, Vertex AI, PaLM (the Gemini API) and AI21.
        "co-chat": {
            "provider": "cohere",
            "name": "command-r",
            "task": "llm/v1/chat",
            "cohere_config": cohere,
        },
        "co-complete": {
            "provider": "cohere",
            "name": "command-r",
            "task": "llm/v1/completions",
            "cohere_config": cohere,
        },
        "co-embed": {
            "provider": "cohere",
            "name": "embed-v4.0",
            "task": "llm/v1/embeddings",
            "cohere_config": cohere,
        },
        "vx-chat": {
            "provider": "google-cloud-vertex-ai",
            "name": "gemini-2.0-flash",
            "task": "llm/v1/chat",
            "google_cloud_vertex_ai_config": vertex,
        },
        "vx-complete": {
            "provider": "google-cloud-vertex-ai",
            "name": "gemini-2.0-flash",
            "task": "llm/v1/completions",
            "google_cloud_vertex_ai_config": vertex,
        },
        "vx-embed": {
            "provider": "google-cloud-vertex-ai",
            "name": "text-embedding-005",
            "task": "llm/v1/embeddings",
            "google_cloud_vertex_ai_config": vertex,
        },
        "palm-chat": {
            "provider": "palm",
            "name": "gemini-2.0-flash",
            "task": "llm/v1/chat",
            "palm_config": palm,
        },
        "palm-complete": {
            "provider": "palm",
            "name": "gemini-2.0-flash",
            "task": "llm/v1/completions",
            "palm_config": palm,
        },
        "palm-embed": {
            "provider": "palm",
            "name": "text-embedding-004",
            "task": "llm/v1/embeddings",
            "palm_config": palm,
        },
        "ai21-chat": {
            "provider": "ai21labs",
            "name": "jamba-mini",
            "task": "llm/v1/chat",
            "ai21labs_config": ai21,
        },
        "ai21-complete": {
            "provider": "ai21labs",
            "name": "jamba-mini",
            "task": "llm/v1/completions",
            "ai21labs_config": ai21,
        },
        # Anthropic, and Amazon Bedrock's model families (the fake checks every SigV4 signature).
        "claude-chat": {"provider": "anthropic", "name": "claude-opus-4-7", "task": "llm/v1/chat", **CLAUDE},
        "claude-complete": {
            "provider": "anthropic",
            "name": "claude-opus-4-7",
            "task": "llm/v1/completions",
            **CLAUDE,
        },
        "br-claude": bedrock_model("anthropic", "anthropic.claude-3-5-sonnet-20240620-v1:0", "llm/v1/chat"),
        "br-nova": bedrock_model("amazon", "us.amazon.nova-lite-v1:0", "llm/v1/chat"),
        "br-command-r": bedrock_model("cohere", "cohere.command-r-v1:0", "llm/v1/chat"),
        "br-jamba": bedrock_model("ai21labs", "ai21.jamba-1-5-mini-v1:0", "llm/v1/chat"),
        "br-titan-complete": bedrock_model("amazon", "amazon.titan-text-express-v1", "llm/v1/completions"),
        "br-titan-embed": bedrock_model("amazon", "amazon.titan-embed-text-v2:0", "llm/v1/embeddings"),
        "br-cohere-embed": bedrock_model("cohere", "cohere.embed-english-v3", "llm/v1/embeddings"),
        "br-wrong-key": bedrock_model(
            "anthropic",
            "anthropic.claude-3-haiku-20240307-v1:0",
            "llm/v1/chat",
            aws_secret_access_key_plaintext="nope",
        ),
    }


def create_external(http: httpx.Client, name: str, ext: dict[str, Any]) -> dict[str, Any]:
    """Create endpoint ``name`` serving ``ext`` (entity ``{name}-e``) and wait until it serves."""
    body = {"name": name, "config": {"served_entities": [{"name": f"{name}-e", "external_model": ext}]}}
    created = http.post(API, json=body)
    assert created.status_code == 200, created.text
    got = wait_settled(http, name)
    assert got["state"]["config_update"] == "NOT_UPDATING", got["state"]
    return got


def custom_chat_entity(url: str, name: str = "gpt") -> dict[str, Any]:
    """A served entity for the OpenAI-compatible server at ``url`` (an OpenAI fake) through the
    ``custom`` provider: no replica."""
    config = {"custom_provider_url": f"{url}/v1", "bearer_token_auth": {"token_plaintext": API_KEY}}
    return {
        "name": name,
        "external_model": {
            "provider": "custom",
            "name": "m",
            "task": "llm/v1/chat",
            "custom_provider_config": config,
        },
    }
