"""Seed 002's feature serving with the online store in PostgreSQL, then in Redis: a real server
started with ``--online-store postgresql://...`` (``redis://...``) runs test_feature_serving.py's
flow (the fraud model queried with the user's id only, the lookup client's runtime rules, a
continuous publish seen within 5 s, a dropped table named in a 503 and healed by a republish), its
replicas reading the store through ``MODELPORT_ONLINE_STORE``.

Each server gets a PostgreSQL schema or Redis key prefix of its own, removed afterwards.
PostgreSQL or Redis unreachable: skipped, except under ``CI`` where that is an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest

from tests.integration import test_feature_serving as flow
from tests.serverproc import ServerProcess
from tests.support.stores import PG_ADMIN_URL

REDIS_URL = os.environ.get("MODELPORT_TEST_REDIS", "redis://127.0.0.1:6379/0")
#: Given in the PostgreSQL location (the test server trusts 127.0.0.1 and ignores it): it must
#: never show in the server's log.
PASSWORD = "online-store-pw-5d1c"


def _skip_or_fail(what: str, exc: Exception) -> None:
    if os.environ.get("CI"):
        raise exc
    pytest.skip(f"{what} not reachable: {exc}")


def _with_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is not None or parts.username is None:
        return url
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{PASSWORD}@{parts.netloc.split('@', 1)[1]}"))


@pytest.fixture(scope="module", params=["postgresql", "redis"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server of this module whose online store is a fresh PostgreSQL schema or Redis prefix."""
    namespace = uuid.uuid4().hex[:12]
    admin: Any
    if request.param == "postgresql":
        import psycopg

        try:
            admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            _skip_or_fail(f"PostgreSQL at {PG_ADMIN_URL}", exc)
        location = f"{_with_password(PG_ADMIN_URL)}?schema=online_it_{namespace}"
    else:
        import redis

        admin = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        try:
            admin.ping()
        except redis.exceptions.RedisError as exc:
            _skip_or_fail(f"Redis at {REDIS_URL}", exc)
        location = f"{REDIS_URL}?prefix=modelport-it:{namespace}:"
    proc = ServerProcess(
        tmp_path_factory.mktemp(f"modelport-{request.param}-online"), extra_args=["--online-store", location]
    )
    proc.location = location  # type: ignore[attr-defined]
    proc.admin = admin  # type: ignore[attr-defined]
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        if request.param == "postgresql":
            admin.execute(f'DROP SCHEMA IF EXISTS "online_it_{namespace}" CASCADE')
        else:
            keys = list(admin.scan_iter(match=f"modelport-it:{namespace}:*", count=1000))
            if keys:
                admin.delete(*keys)
        admin.close()


fraud = flow.fraud


def test_the_features_are_published_to_the_store_the_server_was_given(
    server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    fraud_: dict[str, Any] = request.getfixturevalue("fraud")
    table = fraud_["table"]
    location: str = server.location  # type: ignore[attr-defined]
    if location.startswith("postgresql"):
        schema = location.rsplit("schema=", 1)[1]
        rows = server.admin.execute(  # type: ignore[attr-defined]
            f'SELECT rows, mode FROM "{schema}".online_tables WHERE name = %s', (table,)
        ).fetchall()
        assert rows == [(200, "continuous")]
    else:
        prefix = location.rsplit("prefix=", 1)[1]
        entry = server.admin.hget(f"{prefix}tables", table)  # type: ignore[attr-defined]
        assert entry is not None
        state = orjson.loads(entry)
        assert (state["rows"], state["mode"]) == (200, "continuous")
        assert server.admin.hlen(state["data_table"]) == 200  # type: ignore[attr-defined]
    assert not (server.data_dir / "online").exists()  # no embedded store beside it
    # The server's lookup route reads the same store.
    expected = fraud_["features"].set_index("user_id").loc[7].to_dict()
    assert fraud_["fe"].lookup(table, [{"user_id": 7}, {"user_id": 99_999}]) == [expected, None]


# test_feature_serving.py's flow, in its order (the last one drops the table and makes it again).
test_only_the_key_is_sent_and_the_answer_is_the_models_on_the_joined_features = (
    flow.test_only_the_key_is_sent_and_the_answer_is_the_models_on_the_joined_features
)
test_the_runtime_rules_of_the_lookup = flow.test_the_runtime_rules_of_the_lookup
test_a_continuous_publish_reaches_the_next_query_within_five_seconds = (
    flow.test_a_continuous_publish_reaches_the_next_query_within_five_seconds
)
test_a_dropped_table_is_named_in_the_error_and_a_republish_heals_the_endpoint = (
    flow.test_a_dropped_table_is_named_in_the_error_and_a_republish_heals_the_endpoint
)


def test_the_servers_log_never_shows_the_stores_password(server: ServerProcess) -> None:
    assert PASSWORD not in server.log_path.read_text(errors="replace")
