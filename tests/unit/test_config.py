from __future__ import annotations

import pytest

from modelport.config import SETTINGS, Settings


def test_defaults() -> None:
    s = Settings.load(environ={})
    assert (s.host, s.port, s.data_dir, s.store, s.registry_uri) == (
        "127.0.0.1",
        8080,
        "~/.modelport",
        "",
        "",
    )
    assert s.store_url.startswith("sqlite:///") and s.store_url.endswith("/modelport.db")
    assert s.embedded_registry


def test_env_overrides_default_and_flag_overrides_env() -> None:
    env = {"MODELPORT_SERVER_PORT": "9000", "MODELPORT_DATA_DIR": "/tmp/x", "MODELPORT_DEMO": "true"}
    s = Settings.load(environ=env)
    assert (s.port, s.data_dir, s.demo) == (9000, "/tmp/x", True)
    s = Settings.load({"port": 9100, "data_dir": None}, environ=env)
    assert (s.port, s.data_dir) == (9100, "/tmp/x")


def test_client_variable_modelport_host_does_not_change_the_bind_address() -> None:
    s = Settings.load(environ={"MODELPORT_HOST": "http://127.0.0.1:8080"})
    assert s.host == "127.0.0.1"


def test_postgres_store_url_is_used_as_given() -> None:
    s = Settings.load({"store": "postgresql://u@h:5432/db"}, environ={})
    assert s.store_url == "postgresql://u@h:5432/db"


def test_redacted_masks_secrets() -> None:
    s = Settings.load(environ={"MODELPORT_ADMIN_TOKEN": "dapi-secret"})
    assert s.redacted()["admin_token"] == "***"
    assert "dapi-secret" not in repr(s.redacted())


def test_every_setting_has_help_and_an_env_var() -> None:
    for spec in SETTINGS:
        assert spec.help and spec.env_var.startswith("MODELPORT_")
    assert len({spec.env_var for spec in SETTINGS}) == len(SETTINGS)


def test_provider_base_urls_keep_their_variables_and_have_no_flags() -> None:
    names = ("openai", "entra", "anthropic", "bedrock", "cohere", "vertex", "palm", "ai21")
    specs = {spec.name: spec for spec in SETTINGS}
    for name in names:
        spec = specs[f"{name}_base_url"]
        assert (spec.env_var, spec.flag, spec.default) == (f"MODELPORT_{name.upper()}_BASE_URL", False, "")
    env = {"MODELPORT_OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "MODELPORT_BEDROCK_BASE_URL": "http://b"}
    s = Settings.load(environ=env)
    assert s.provider_base_urls == {"openai": "http://127.0.0.1:9/v1", "bedrock": "http://b"}
    assert Settings.load(environ={}).provider_base_urls == {}


def test_engine_settings_keep_the_variables_entities_use() -> None:
    s = Settings.load(environ={})
    assert (s.llm_parallel, s.llm_context, s.llm_threads, s.embed_threads) == (4, 2048, 0, 0)
    env = {
        "MODELPORT_LLM_PARALLEL": "2",
        "MODELPORT_LLM_CONTEXT": "512",
        "MODELPORT_LLM_THREADS": "3",
        "MODELPORT_EMBED_THREADS": "1",
    }
    s = Settings.load(environ=env)
    assert (s.llm_parallel, s.llm_context, s.llm_threads, s.embed_threads) == (2, 512, 3, 1)
    assert Settings.load({"llm_threads": 6}, environ=env).llm_threads == 6


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"llm_parallel": 0}, "--llm-parallel must be at least 1"),
        ({"llm_context": 8}, "--llm-context must be at least 16"),
        ({"embed_threads": -1}, "--llm-threads and --embed-threads must be 0"),
    ],
)
def test_engine_settings_are_checked(values: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.load(values, environ={})
