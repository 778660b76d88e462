from __future__ import annotations

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
