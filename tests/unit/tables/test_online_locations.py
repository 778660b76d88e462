"""Where the online store is: the locations ``--online-store`` accepts, which store each opens,
how they are shown in logs (never a password), and who is told (replicas, local and Ray)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelport import config
from modelport.config import Settings
from modelport.entities.registry_handle import RegistryHandle
from modelport.errors import InvalidParameterValue
from modelport.runtime.local import RuntimeOptions
from modelport.runtime.logs import LogStore
from modelport.runtime.ray_backend import RayBackend, RayOptions
from modelport.runtime.transport import ReplicaKeys
from modelport.store.records import EndpointRecord
from modelport.tables.online_postgres import PostgresOnlineReader, PostgresOnlineStore, postgres_location
from modelport.tables.online_redis import RedisOnlineReader, RedisOnlineStore, redis_location
from modelport.tables.online_store import OnlineReader, OnlineStore
from modelport.tables.online_stores import SCHEMES, open_reader, open_store, redacted, store_kind

PG = "postgresql://feat:pg-pass@db.internal:5432/features?schema=online&sslmode=disable"
REDIS = "redis://:redis-pass@cache.internal:6379/2?prefix=fs:"


@pytest.mark.parametrize(
    ("location", "kind"),
    [
        ("/var/lib/modelport/online/features.sqlite", "sqlite"),
        ("relative/features.sqlite", "sqlite"),
        ("postgresql://u@h/db", "postgresql"),
        ("postgres://u@h/db", "postgresql"),
        ("postgresql+psycopg://u@h/db", "postgresql"),
        ("redis://h:6379/0", "redis"),
        ("rediss://h:6380/0", "redis"),
    ],
)
def test_a_location_names_its_store(location: str, kind: str) -> None:
    assert store_kind(location) == kind


def test_another_url_scheme_is_refused_by_the_factory_and_the_setting() -> None:
    with pytest.raises(
        InvalidParameterValue, match=re.escape("file path, postgresql://... or redis://...; got a mysql")
    ):
        open_reader("mysql://u@h/db")
    with pytest.raises(
        ValueError, match="--online-store must be a file path, a postgresql:// URL or a redis"
    ):
        Settings(online_store="mysql://u@h/db")
    assert set(config._ONLINE_SCHEMES) == set(SCHEMES)


def test_the_factory_opens_each_store_without_connecting(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "online.sqlite"
    assert isinstance(open_store(path), OnlineStore) and path.exists()
    assert isinstance(open_reader(path), OnlineReader)
    assert isinstance(open_store(PG), PostgresOnlineStore)
    assert isinstance(open_reader(PG), PostgresOnlineReader)
    assert isinstance(open_store(REDIS), RedisOnlineStore)
    assert isinstance(open_reader(REDIS), RedisOnlineReader)


def test_modelports_own_url_parameters_are_taken_out_before_connecting() -> None:
    assert postgres_location(PG) == (
        "postgresql://feat:pg-pass@db.internal:5432/features?sslmode=disable",
        "online",
    )
    assert postgres_location("postgresql://u@h/db") == ("postgresql://u@h/db", "modelport_online")
    with pytest.raises(InvalidParameterValue, match="schema must be letters, digits and underscores"):
        postgres_location("postgresql://u@h/db?schema=a;drop")
    with pytest.raises(
        InvalidParameterValue, match='not a PostgreSQL URL psycopg reads: invalid URI query parameter: "ssl"'
    ):
        open_store("postgresql://u:pw@h/db?ssl=1")
    assert redis_location(REDIS) == ("redis://:redis-pass@cache.internal:6379/2", "fs:")
    assert redis_location("redis://h:6379/0?socket_timeout=2") == (
        "redis://h:6379/0?socket_timeout=2",
        "mp:feat:",
    )


def test_passwords_never_show_in_redacted_locations_reprs_or_logged_settings() -> None:
    assert redacted(PG) == "postgresql://feat:***@db.internal:5432/features?schema=online&sslmode=disable"
    assert redacted(REDIS) == "redis://:***@cache.internal:6379/2?prefix=fs:"
    assert redacted("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redacted(Path("/a/b.sqlite")) == "/a/b.sqlite"
    for opened in (open_store(PG), open_reader(PG), open_store(REDIS), open_reader(REDIS)):
        assert "pass" not in repr(opened) and ":***@" in repr(opened)
    settings = Settings(online_store=PG, store="postgresql://meta:meta-pass@h/db", redis=REDIS)
    logged = settings.redacted()
    assert logged["online_store"] == redacted(PG)
    assert "pass" not in repr(logged)


def test_the_setting_gives_replicas_a_url_as_is_and_a_path_made_absolute(tmp_path: Path) -> None:
    assert Settings(online_store=PG).online_store_location == PG
    relative = Settings(online_store="online.sqlite").online_store_location
    assert Path(relative).is_absolute() and relative.endswith("/online.sqlite")
    default = Settings(data_dir=str(tmp_path)).online_store_location
    assert default == str(tmp_path / "online" / "features.sqlite")


def test_ray_replicas_are_told_the_online_store_and_nothing_else_of_the_servers_environment(
    tmp_path: Path,
) -> None:
    options = RuntimeOptions(run_dir=tmp_path / "run", models_dir=tmp_path / "models")
    base_env = {"MODELPORT_ONLINE_STORE": PG, "HOME": "/root", "MODELPORT_ADMIN_TOKEN": "dapi-x"}
    backend = RayBackend(
        RegistryHandle(),
        LogStore(tmp_path / "logs"),
        options,
        base_env,
        ray=RayOptions(address="127.0.0.1:6379"),
        keys=ReplicaKeys(b"k" * 32),
        resolve_secret=lambda scope, key: "",
    )
    endpoint = EndpointRecord(
        id="e1", name="fraud", creator="admin", created_ms=0, updated_ms=0, config_update="IN_PROGRESS"
    )
    spec = backend._spec(endpoint, {"name": "model-1"}, tmp_path / "model", None)
    assert spec.env["MODELPORT_ONLINE_STORE"] == PG
    assert "HOME" not in spec.env and "MODELPORT_ADMIN_TOKEN" not in spec.env
