"""External-model providers, one module each; :data:`PROVIDERS` maps a provider name to its class.

Each module registers its class here when it is written (see ``base.py`` for the contract).
:func:`check_task` tells the control plane whether a provider serves an external model's task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from modelport.errors import InvalidParameterValue

__all__ = ["PROVIDERS", "Provider", "check_task"]

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


def check_task(
    provider: str,
    task: str,
    config: Mapping[str, Any],
    model: str,
    path: str,
    providers: Mapping[str, type[Provider]] = PROVIDERS,
) -> None:
    """Raise :class:`InvalidParameterValue` (naming the field at ``path``) unless ``provider``
    has a module here that serves ``task`` for upstream ``model`` with ``config``, its
    stored ``<provider>_config`` block."""
    cls = providers.get(provider)
    if cls is None:
        raise InvalidParameterValue(
            f"Invalid value for '{path}.provider': this server has no module for provider '{provider}' "
            f"(providers: {', '.join(sorted(providers)) or 'none'})."
        )
    offered = cls.tasks_for(config, model)
    if task in offered:
        return
    what = f"provider '{provider}'"
    if config.get("bedrock_provider"):
        what += f" with bedrock_provider '{config['bedrock_provider']}' and model '{model}'"
    offers = f"it offers {', '.join(sorted(offered))}" if offered else "it offers no task"
    raise InvalidParameterValue(f"Invalid value for '{path}.task': {what} does not offer {task}; {offers}.")
