"""A whole secrets-key rotation on the real server, on SQLite and PostgreSQL.

K1 → restart with ``K2,K1`` → ``modelport secrets rotate-key`` → restart with ``K2`` alone:
an external-model endpoint whose API key is a secret still answers, the inline credential
the server stored for another endpoint still works, and admins still read the secrets. A
start with a key that sealed nothing (or with the old key once the rotation is done) is
refused with a message that says what to do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.principals import create_user, obo_token
from tests.support.providers import create_external

HELLO = {"messages": [{"role": "user", "content": "hello there"}]}
K1, K2, K3 = (Fernet.generate_key().decode() for _ in range(3))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    openai = FakeOpenAI().start()
    yield openai
    openai.stop()


def start(data_dir: Path, store: str, fake: FakeOpenAI, keys: str) -> ServerProcess:
    env = {"MODELPORT_SECRETS_KEY": keys, "MODELPORT_OPENAI_BASE_URL": f"{fake.url}/v1"}
    return ServerProcess(data_dir, store=store, env=env).start_until("/health")


def refused(data_dir: Path, store: str, keys: str) -> str:
    """Start with ``keys``, expect the server to exit at start-up; return its log."""
    server = ServerProcess(data_dir, store=store, env={"MODELPORT_SECRETS_KEY": keys})
    with pytest.raises(RuntimeError, match="exited") as exited:
        server.start_until("/health", timeout=60)
    return str(exited.value)


def admin(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)


def assert_everything_reads(server: ServerProcess) -> None:
    with admin(server) as http:
        for name in ("by-reference", "inline"):
            answered = http.post(f"/serving-endpoints/{name}/invocations", json=HELLO)
            assert answered.status_code == 200, answered.text
        got = http.get("/api/2.0/secrets/get", params={"scope": "rotation", "key": "openai"})
        assert got.status_code == 200, got.text
        assert got.json()["value"] == "c2stZmFrZS1vcGVuYWk="  # base64 of API_KEY
        got = http.get("/api/2.0/secrets/get", params={"scope": "rotation", "key": "other"})
        assert got.status_code == 200 and got.json()["value"] == "b3RoZXIgdmFsdWU="  # "other value"


def rotate_with_cli(server: ServerProcess) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELPORT_HOST": server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "modelport", "secrets", "rotate-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_key_rotation_ends_with_the_new_key_alone(tmp_path: Path, store_url: str, fake: FakeOpenAI) -> None:
    # Servers are killed rather than stopped: everything asserted on is in the store already,
    # and a clean shutdown costs seconds per restart. Refused starts get data directories of
    # their own (the key check reads only the store), so they can run beside a live server.
    data = tmp_path / "data"
    server = start(data, store_url, fake, K1)
    try:
        with admin(server) as http:
            assert http.post("/api/2.0/secrets/scopes/create", json={"scope": "rotation"}).status_code == 200
            for key, value in (("openai", API_KEY), ("other", "other value")):
                body = {"scope": "rotation", "key": key, "string_value": value}
                assert http.post("/api/2.0/secrets/put", json=body).status_code == 200
            chat = {"provider": "openai", "name": "gpt-4o-mini", "task": "llm/v1/chat"}
            create_external(
                http,
                "by-reference",
                {**chat, "openai_config": {"openai_api_key": "{{secrets/rotation/openai}}"}},
            )
            create_external(http, "inline", {**chat, "openai_config": {"openai_api_key_plaintext": API_KEY}})
            create_user(http, "rotator@example.com")
            user_token = obo_token(http, user_name="rotator@example.com")["token_value"]
    finally:
        server.kill()

    # The new key first, the old one after it: everything still reads.
    server = start(data, store_url, fake, f"{K2},{K1}")
    try:
        assert_everything_reads(server)
        # Before the rotation the new key alone is refused: the secrets are still K1's.
        log = refused(tmp_path / "refused-k2", store_url, K2)
        assert "not the key this store's secrets were encrypted with" in log and "rotate-key" in log
        # Only admins rotate.
        denied = httpx.post(
            f"{server.url}/api/2.0/modelport/secrets/rotate-key",
            headers={"Authorization": f"Bearer {user_token}"},
        )
        assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"
        rotated = rotate_with_cli(server)
        assert rotated.returncode == 0, rotated.stderr
        # rotation/openai, rotation/other and the inline credential in the endpoint's own scope
        assert rotated.stdout.startswith("Rewrote 3 secrets"), rotated.stdout
    finally:
        server.kill()

    # The rotation is done: the new key alone serves every secret.
    server = start(data, store_url, fake, K2)
    try:
        assert_everything_reads(server)
    finally:
        server.kill()
    # A key that sealed nothing, and the retired key, are refused (both starts at once).
    with ThreadPoolExecutor(2) as pool:
        logs = list(pool.map(lambda key: refused(tmp_path / f"refused-{key[:6]}", store_url, key), (K3, K1)))
    assert all("not the key this store's secrets were encrypted with" in log for log in logs)
