"""Which tasks each provider serves, as the control plane checks them when a config is written."""

from __future__ import annotations

import pytest

from modelport.entities.providers import PROVIDERS, check_task
from modelport.entities.providers.bedrock_formats import family_for
from modelport.errors import InvalidParameterValue, NotImplementedByServer
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS

PATH = "config.served_entities[0].external_model"
HELLO = {"messages": [{"role": "user", "content": "hi"}]}


def test_a_task_the_provider_offers_passes() -> None:
    check_task("openai", EMBEDDINGS, {}, "text-embedding-3-small", PATH)
    check_task("anthropic", COMPLETIONS, {}, "claude", PATH)


def test_anthropic_embeddings_are_refused_naming_provider_task_and_offer() -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        check_task("anthropic", EMBEDDINGS, {}, "claude", PATH)
    assert caught.value.message == (
        f"Invalid value for '{PATH}.task': provider 'anthropic' does not offer llm/v1/embeddings; "
        "it offers llm/v1/chat, llm/v1/completions."
    )


def test_ai21_embeddings_are_refused() -> None:
    with pytest.raises(InvalidParameterValue, match="provider 'ai21labs' does not offer llm/v1/embeddings"):
        check_task("ai21labs", EMBEDDINGS, {}, "jamba-mini", PATH)


def test_a_provider_without_a_module_is_refused_naming_those_that_exist() -> None:
    providers = {"openai": PROVIDERS["openai"], "anthropic": PROVIDERS["anthropic"]}
    with pytest.raises(InvalidParameterValue) as caught:
        check_task("cohere", CHAT, {}, "command-r", PATH, providers)
    assert caught.value.message == (
        f"Invalid value for '{PATH}.provider': this server has no module for provider 'cohere' "
        "(providers: anthropic, openai)."
    )


@pytest.mark.parametrize(
    ("family", "model", "task"),
    [
        ("anthropic", "anthropic.claude-3-5-sonnet-20240620-v1:0", CHAT),
        ("anthropic", "us.anthropic.claude-3-haiku-20240307-v1:0", COMPLETIONS),
        ("amazon", "amazon.nova-lite-v1:0", CHAT),
        ("amazon", "amazon.titan-text-express-v1", COMPLETIONS),
        ("amazon", "amazon.titan-embed-text-v2:0", EMBEDDINGS),
        ("cohere", "cohere.command-r-v1:0", CHAT),
        ("cohere", "cohere.embed-english-v3", EMBEDDINGS),
        ("ai21labs", "ai21.jamba-1-5-mini-v1:0", CHAT),
    ],
)
def test_bedrock_families_pass_the_tasks_they_serve(family: str, model: str, task: str) -> None:
    check_task("amazon-bedrock", task, {"bedrock_provider": family}, model, PATH)


@pytest.mark.parametrize(
    ("family", "model", "task", "offers"),
    [
        (
            "anthropic",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            EMBEDDINGS,
            "llm/v1/chat, llm/v1/completions",
        ),
        ("amazon", "amazon.titan-embed-text-v2:0", CHAT, "llm/v1/embeddings"),
        ("amazon", "amazon.nova-lite-v1:0", EMBEDDINGS, "llm/v1/chat, llm/v1/completions"),
        ("cohere", "cohere.embed-english-v3", COMPLETIONS, "llm/v1/embeddings"),
        ("cohere", "cohere.command-r-v1:0", EMBEDDINGS, "llm/v1/chat, llm/v1/completions"),
        ("ai21labs", "ai21.jamba-1-5-mini-v1:0", EMBEDDINGS, "llm/v1/chat, llm/v1/completions"),
    ],
)
def test_bedrock_refusals_name_the_family_and_the_model(
    family: str, model: str, task: str, offers: str
) -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        check_task("amazon-bedrock", task, {"bedrock_provider": family}, model, PATH)
    assert caught.value.message == (
        f"Invalid value for '{PATH}.task': provider 'amazon-bedrock' with bedrock_provider '{family}' "
        f"and model '{model}' does not offer {task}; it offers {offers}."
    )


@pytest.mark.parametrize(
    ("family", "model"),
    [
        ("anthropic", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("amazon", "amazon.nova-lite-v1:0"),
        ("amazon", "amazon.titan-text-express-v1"),
        ("amazon", "amazon.titan-embed-text-v2:0"),
        ("cohere", "cohere.command-r-v1:0"),
        ("cohere", "cohere.command-text-v14"),
        ("cohere", "cohere.embed-english-v3"),
        ("ai21labs", "ai21.jamba-1-5-mini-v1:0"),
    ],
)
def test_a_bedrock_family_builds_bodies_for_exactly_the_tasks_it_declares(family: str, model: str) -> None:
    found = family_for("amazon-bedrock", family, model)

    def serves(build: object) -> bool:
        try:
            build()  # type: ignore[operator]
        except NotImplementedByServer:
            return False
        return True

    built = {
        CHAT: serves(lambda: found.chat_body(HELLO)),
        COMPLETIONS: serves(lambda: found.prompt_body({}, "hi")),
        EMBEDDINGS: serves(lambda: found.embed_bodies({}, ["hi"])),
    }
    assert {task for task, ok in built.items() if ok} == found.tasks
