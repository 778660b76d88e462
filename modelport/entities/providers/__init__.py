"""External-model providers, one module each; :data:`PROVIDERS` maps a provider name to its class.

Each module registers its class here when it is written (see ``base.py`` for the contract).
"""

from __future__ import annotations

from modelport.entities.providers.ai21 import AI21Provider
from modelport.entities.providers.anthropic import AnthropicProvider
from modelport.entities.providers.base import Provider
from modelport.entities.providers.bedrock import BedrockProvider
from modelport.entities.providers.cohere import CohereProvider
from modelport.entities.providers.custom import CustomProvider
from modelport.entities.providers.databricks import DatabricksProvider
from modelport.entities.providers.openai import OpenAIProvider
from modelport.entities.providers.palm import PalmProvider
from modelport.entities.providers.vertex import VertexProvider

__all__ = ["PROVIDERS", "Provider"]

PROVIDERS: dict[str, type[Provider]] = {}
PROVIDERS["anthropic"] = AnthropicProvider
PROVIDERS["amazon-bedrock"] = BedrockProvider
PROVIDERS["cohere"] = CohereProvider
PROVIDERS["google-cloud-vertex-ai"] = VertexProvider
PROVIDERS["palm"] = PalmProvider
PROVIDERS["ai21labs"] = AI21Provider
PROVIDERS["openai"] = OpenAIProvider
PROVIDERS["custom"] = CustomProvider
PROVIDERS["databricks-model-serving"] = DatabricksProvider
